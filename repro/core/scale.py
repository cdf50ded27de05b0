"""The three scales as typed configuration: `configs/scales/{tiny,small,paper}.yaml`.

A scale names its models (built here at tiny scale, pinned hub revisions otherwise), its
mid-training corpus, its training and decoding settings and its benchmarks. Algorithms never
branch on the scale's name: everything that differs between scales is a value here. Each
section's schema is here, beside the others (the algorithms import it, never the reverse):
`TrainConfig` (repro/train/ntp.py: NTP, pretraining, the RA3 M-step), `TokenizerConfig` and
`TinyModelConfig` (repro/train/pretrain.py), `RA3Config` (repro/train/ra3/), `RLVRConfig` and
`RLDataSpec` (repro/rlvr.py), `GenerationConfig` (repro/eval/generate.py).
"""

import dataclasses
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from repro.core.config import CONFIG_DIR, ConfigError, from_dict, load

SCALES = ("tiny", "small", "paper")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    seq_len: int
    """Tokens per packed row."""
    batch_size: int
    """Rows per optimizer step and process (times `grad_accum_steps` micro-batches)."""
    lr: float
    """Peak learning rate after warm-up."""
    max_steps: int
    """Optimizer steps; a fixed budget (not wall time) keeps runs reproducible and resumable."""
    warmup_steps: int
    """Linear warm-up from 0 to `lr`."""
    min_lr_ratio: float = 0.1
    """Cosine decay ends at `lr * min_lr_ratio`."""
    grad_accum_steps: int = 1
    """Micro-batches of `batch_size` rows accumulated per step."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay on matrices (not on norms and biases)."""
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    max_grad_norm: float = 1.0
    """Gradient clipping threshold."""
    checkpoint_every: int = 200
    """Steps between resumable checkpoints (0: only the final model)."""
    log_every: int = 10
    """Steps between lines in metrics.jsonl."""
    seed: int = 0
    """Seeds the data order (and the model init where the caller builds one)."""
    mixed_precision: Literal["no", "bf16", "auto"] = "no"
    """`bf16`: bf16 autocast (mixed precision under DeepSpeed) with fp32 master weights; `no`: fp32; `auto`:
    bf16 where this machine computes it natively, else fp32 (`repro.train.precision.effective`: training,
    stage identities and records all use the resolved value)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory (large models)."""
    deepspeed_config: str | None = None
    """DeepSpeed JSON (ZeRO stage, offload) such as `configs/deepspeed/zero3.json`; None: plain DDP.
    Its "auto" micro-batch, accumulation and clipping values are filled from this config."""


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    vocab_size: int
    """BPE vocabulary, special tokens included."""
    min_frequency: int = 2
    """A merge needs at least this many occurrences."""


@dataclasses.dataclass(frozen=True)
class TinyModelConfig:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool = True
    """Share input and output embeddings (a large share of the parameters at this size)."""


@dataclasses.dataclass(frozen=True)
class RA3Config:
    rounds: int
    """EM rounds K."""
    group_size: int
    """Samples G per snippet for group-relative advantages."""
    max_thought_tokens: int
    """L: the longest thought, in tokens, before the forced newline."""
    temperature: float
    """Sampling temperature of decisions and thoughts in the E-step and for the infused corpus."""
    penalty: float
    """c: the reward cost of starting a thought (the paper's default is 0.05)."""
    estep_steps: int
    """Policy-gradient steps per E-step."""
    snippets_per_step: int
    """Expert snippets per E-step step (each sampled G times)."""
    estep_lr: float
    """Learning rate of the E-step's AdamW."""
    clip_eps: float = 0.2
    """PPO ratio clipping."""
    ppo_epochs: int = 1
    """Updates per batch of rollouts (1: plain on-policy policy gradient)."""
    kl_weight: float = 0.0
    """Weight of the KL penalty to the pre-E-step model on decisions and thoughts (0: off)."""
    expert_lm_weight: float = 0.0
    """Weight of next-token prediction on the expert tokens of the E-step's samples, an anchor that keeps
    the E-step's updates from degrading the code model they share weights with (0: off)."""
    infusion: Literal["sample", "greedy_thoughts", "best_of_group"] = "sample"
    """Which thoughts of the final policy go into the M-step's corpus: one sample, sampled places with
    the most likely thoughts, or the best of `group_size` samples by the E-step's reward."""
    rollout_batch_size: int = 64
    """Snippets rolled out together when infusing the corpus (a speed knob: results do not depend on it)."""
    rollout_window: int = 16
    """Expert tokens a rollout row feeds per forward (a speed knob: results do not depend on it). A think
    discards what its window held after the decision, so a wider window wastes more at a higher think
    rate and a narrower one takes more forwards (`benchmarks/estep_throughput.py` measures both)."""
    rollout_backend: Literal["hf", "vllm"] = "hf"
    """What samples the rollouts: the model itself through transformers (`repro.train.ra3.rollout`, the
    default and the only one ever run), or a vLLM engine beside it that receives the weights after every
    E-step update (`repro.train.ra3.vllm_rollout`; tested against a fake engine only)."""
    policy_micro_batch: int = 32
    """Rows per forward and backward of the E-step's policy loss (memory only: gradients accumulate over
    the micro-batches, so the update is the batch's)."""
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class RLDataSpec:
    """RL training problems from a Hugging Face dataset in AReaL-boba-2-RL-Code's schema: one JSON
    object per problem with `query_id`, `question` (or a chat-formatted `prompt`), and
    `input_output`, a JSON string {"inputs": [...], "outputs": [...], "fn_name": ...} whose tests
    follow LiveCodeBench's conventions (stdin text, or one JSON argument per input line when
    `fn_name` names a function; `metadata.fn_name` is read too)."""

    dataset: str
    """Hugging Face dataset repository."""
    revision: str
    """Its commit; `UNPINNED` until one is known, and then only a local copy loads (never a moving branch)."""
    data_files: str
    """The file(s) within the repository, e.g. train/train.jsonl."""
    max_problems: int | None = None
    """Keep the first N problems in file order (None: all)."""
    time_limit_seconds: float = 6.0
    """Per test; LiveCodeBench's and AReaL's `run_test` default."""
    memory_bytes: int = 4 * 2**30
    """Address-space limit per test (the sandbox's default)."""
    why: str = ""


@dataclasses.dataclass(frozen=True)
class RLVRConfig:
    """GRPO settings (names of TRL's `GRPOConfig`, passed through as they are; see GRPO_FIELDS), the
    reward and training tasks, and the curve evaluation."""

    max_steps: int
    """Optimizer steps of GRPO (the curves' budget)."""
    learning_rate: float
    per_device_train_batch_size: int
    """Completions per device and micro-batch. A generation batch (this x processes x
    gradient_accumulation_steps) holds whole groups of num_generations (TRL checks it)."""
    num_generations: int
    """G: completions sampled per prompt; advantages are relative within the group."""
    max_completion_length: int
    """Longest completion in tokens."""
    eval_benchmarks: tuple[str, ...]
    """Benchmarks of configs/eval.yaml evaluated at step 0 and every `eval_every` steps."""
    eval_every: int
    """Steps between checkpoints, and so between points of the curves; divides max_steps."""
    gradient_accumulation_steps: int = 1
    temperature: float = 1.0
    """Sampling temperature of the rollouts."""
    top_p: float = 1.0
    beta: float = 0.0
    """KL coefficient to the initial model (0: no reference model, as DeepCoder)."""
    epsilon: float = 0.2
    """Lower clip of the importance ratio."""
    epsilon_high: float | None = None
    """Upper clip (None: epsilon); DAPO's clip-high, 0.28, as DeepCoder."""
    loss_type: str = "dapo"
    """TRL's loss normalisation (dapo: over the tokens of the whole batch)."""
    scale_rewards: str = "group"
    """Advantage scaling: group (GRPO's std within a group), batch, or none (Dr. GRPO)."""
    mask_truncated_completions: bool = False
    """Overlong filtering: completions cut at max_completion_length get no loss (DAPO, DeepCoder)."""
    num_iterations: int = 1
    """Updates per generated batch (mu); 1 is on-policy."""
    lr_scheduler_type: str = "constant"
    warmup_steps: float = 0.0
    """Steps of linear warm-up (a value below 1 is a fraction of max_steps)."""
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    bf16: bool = False
    """bf16 autocast (GPUs); CPUs train in fp32."""
    gradient_checkpointing: bool = False
    use_vllm: bool = False
    """Generate with vLLM (GPUs), else with transformers' `generate`."""
    vllm_mode: Literal["colocate", "server"] = "colocate"
    vllm_gpu_memory_utilization: float = 0.3
    vllm_tensor_parallel_size: int = 1
    vllm_enable_sleep_mode: bool = False
    vllm_max_model_length: int | None = None
    """vLLM's context window for the rollouts (required with use_vllm: unset, vLLM reserves a KV cache for
    the model's whole window, 131,072 tokens for Qwen2.5). Training prompts whose tokens plus
    max_completion_length exceed it are left out of the training set, and the run's summary counts them."""
    deepspeed: str | None = None
    """DeepSpeed JSON relative to the repository (configs/deepspeed/zero3.json), handed to the Trainer."""
    reward: Literal["all_pass", "fraction"] = "all_pass"
    """all_pass: 1 when every test passes, else 0; fraction: the share of tests passed."""
    train_benchmark: str | None = None
    """Training tasks from a benchmark of configs/eval.yaml (exactly one of this and train_data)."""
    train_data: RLDataSpec | None = None
    """Training tasks from a Hugging Face dataset in AReaL-boba-2-RL-Code's schema."""
    eval_tasks: int | None = None
    """Evaluate on the first N tasks of each benchmark (None: all): the curves' cost."""
    eval_n: int = 1
    """Samples per task at each curve point (pass@1 is their mean)."""
    reward_workers: int | None = None
    """Sandboxed programs run at once for rewards (None: the usable cores)."""
    torch_threads: int | None = None
    """torch's intra-op threads (None: torch's default); small models on shared CPUs run faster on fewer."""

    def __post_init__(self):
        problems = []
        if (self.train_benchmark is None) == (self.train_data is None):
            problems.append("name exactly one of `train_benchmark` and `train_data`")
        if self.eval_every <= 0 or self.max_steps % self.eval_every:
            problems.append(f"eval_every ({self.eval_every}) must divide max_steps ({self.max_steps})")
        if self.num_generations < 2:
            problems.append("GRPO needs num_generations >= 2 (advantages are relative within a group)")
        if not self.eval_benchmarks:
            problems.append("eval_benchmarks is empty: the curves need at least one benchmark")
        if self.reward_workers is not None and self.reward_workers < 1:
            problems.append(f"reward_workers must be positive, got {self.reward_workers}")
        if self.use_vllm and self.vllm_max_model_length is None:
            problems.append("use_vllm needs vllm_max_model_length (the longest prompt plus max_completion_length "
                            "to train on; unset, vLLM reserves the model's whole window)")
        if self.vllm_max_model_length is not None and self.vllm_max_model_length <= self.max_completion_length:
            problems.append(f"vllm_max_model_length ({self.vllm_max_model_length}) leaves no room for a prompt "
                            f"beside max_completion_length ({self.max_completion_length})")
        if problems:
            raise ValueError("; ".join(problems))


GRPO_FIELDS = ("max_steps", "learning_rate", "per_device_train_batch_size", "num_generations",
               "max_completion_length", "gradient_accumulation_steps", "temperature", "top_p", "beta",
               "epsilon", "epsilon_high", "loss_type", "scale_rewards", "mask_truncated_completions",
               "num_iterations", "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm", "bf16",
               "gradient_checkpointing", "use_vllm", "vllm_mode", "vllm_gpu_memory_utilization",
               "vllm_tensor_parallel_size", "vllm_enable_sleep_mode", "vllm_max_model_length")
"""RLVRConfig fields that are GRPOConfig fields of the same name and meaning (`deepspeed` is one too,
resolved to a path first)."""


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    n: int
    """Samples per problem (pass@k needs n >= k)."""
    temperature: float
    """Sampling temperature; 0 means greedy (then n must be 1)."""
    max_new_tokens: int
    """Longest completion."""
    batch_size: int
    """Prompts x samples generated together."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    seed: int = 0
    """Seeds sampling; a sample's seed is derived from (seed, task, index), so reruns match."""

    def __post_init__(self):
        if self.temperature == 0 and self.n != 1:
            raise ValueError(f"greedy decoding (temperature 0) gives one sample per problem, not n={self.n}")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    """The name tables use (e.g. Qwen-2.5-1.5B)."""
    hub_id: str
    """Hugging Face repository of the base (not instruct) model."""
    revision: str
    """Commit of that repository: loading never follows a moving branch."""
    parameters: float | None = None
    """Parameter count (from the model card), for `--plan`'s cost estimates."""


@dataclasses.dataclass(frozen=True)
class HardwareConfig:
    """What `--plan` prices a scale's stages on: a stated cost model, not a measurement (repro/plan.py)."""
    device: str
    """What the estimate is in hours of (e.g. an H100 80 GB GPU, or 2 CPU cores)."""
    devices: int
    """How many of them one run uses."""
    peak_tflops: float
    """Dense peak of one device at the training precision (bf16 on GPUs, fp32 on CPUs), TFLOP/s."""
    train_utilization: float
    """Share of the peak training reaches (model FLOPs utilisation)."""
    generate_utilization: float
    """Share of the peak that batched sampling reaches (decoding is memory-bound, so far lower)."""
    rollout_slots_per_token: float
    """Token positions the RA3 rollout feeds per real token (benchmarks/estep_throughput.py measures it)."""
    prefill_utilization: float
    """Share of the peak that forwards over many tokens at once reach without a backward: the RA3
    rollout reading its snippets in windows across a batch of rows, and teacher-forced scoring."""
    vllm_generate_utilization: float | None = None
    """Share of the peak vLLM's decoding reaches, for the estimate of RA3 with `rollout_backend: vllm`
    (None: not estimated)."""
    why: str = ""


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """The teacher of the synthetic-reasoning baseline (the paper's Fig. 7): an instruction-tuned model
    that writes comments into the expert corpus, which NTP then trains on."""
    teacher: ModelSpec
    """The teacher model at a pinned revision."""
    instruction: str
    """What the teacher is asked, followed by the snippet in a Python code block."""
    max_new_tokens: int
    """Longest answer (the snippet with its comments)."""
    batch_size: int
    """Snippets commented together."""


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
    dataset: str
    """Hugging Face dataset of the mid-training corpus."""
    revision: str
    """Commit of the dataset repository."""
    text_field: str
    """Column holding the code."""
    max_snippets: int
    """Snippets kept (the paper: about 3.5M)."""
    max_tokens: int
    """Token budget (the paper: about 1B)."""
    data_dir: str | None = None
    """Sub-directory of the dataset (e.g. one language)."""
    split: str = "train"
    why: str = ""
    """Why this corpus (the paper does not name its own)."""


@dataclasses.dataclass(frozen=True)
class ScaleConfig:
    name: str
    benchmarks: tuple[str, ...]
    """Benchmarks of configs/eval.yaml (plus tiny-heldout) that tables report."""
    ntp: TrainConfig
    """NTP mid-training (also the RA3 M-step's training settings)."""
    generation: GenerationConfig
    """Decoding for evaluation, identical for every method compared."""
    world: str | None = None
    """Tiny scale: the world config (YAML path relative to configs/)."""
    tokenizer: TokenizerConfig | None = None
    """Tiny scale: the tokenizer trained here."""
    tiny_model: TinyModelConfig | None = None
    """Tiny scale: the base model trained here."""
    pretrain: TrainConfig | None = None
    """Tiny scale: pretraining of the base model."""
    models: tuple[ModelSpec, ...] = ()
    """small/paper: base models from the hub."""
    corpus: CorpusSpec | None = None
    """small/paper: the mid-training corpus."""
    ra3: RA3Config | None = None
    """RA3's EM loop (E-step RL over thoughts); its M-step trains with `ntp`'s settings."""
    rlvr: RLVRConfig | None = None
    """RLVR post-training (GRPO) and its convergence curves (`repro/rlvr.py`)."""
    synthetic: SyntheticConfig | None = None
    """The synthetic-reasoning teacher for a hub corpus; a scale that builds its world uses the world's
    true intents instead (a perfect teacher)."""
    hardware: HardwareConfig | None = None
    """The cost model of `--plan` (what the scale's stages are priced on)."""
    paper_values: bool = True
    """Whether the claims compare absolute numbers with the paper's (its models on its benchmarks). Every
    scale gets verdicts on the paper's directions; the tiny world has no paper numbers to compare."""

    def __post_init__(self):
        builds_model = (self.world, self.tokenizer, self.tiny_model, self.pretrain)
        if all(v is None for v in builds_model) == (not self.models):
            raise ValueError("a scale either builds its model here (world, tokenizer, tiny_model, pretrain) "
                             "or names hub models (models, corpus), exactly one of the two")
        if self.models and self.corpus is None:
            raise ValueError("hub models need a mid-training `corpus`")
        if not self.models and any(v is None for v in builds_model):
            raise ValueError("a scale that builds its model needs world, tokenizer, tiny_model and pretrain")


def load_scale(name: str, config_dir: Path = CONFIG_DIR) -> ScaleConfig:
    if name not in SCALES:
        raise ConfigError(f"unknown scale {name!r}; choose from {list(SCALES)}")
    return load(ScaleConfig, config_dir / "scales" / f"{name}.yaml")


def _section_types() -> dict[str, type]:
    """The dataclass of every section of ScaleConfig (`ra3` -> RA3Config, ...)."""
    hints = typing.get_type_hints(ScaleConfig)
    out = {}
    for field, hint in hints.items():
        options = [hint, *typing.get_args(hint)]
        kinds = [h for h in options if dataclasses.is_dataclass(h)]
        if kinds:
            out[field] = kinds[0]
    return out


def resolve_scale(name: str, sets: list[str] | tuple[str, ...] = ()) -> ScaleConfig:
    """The scale's config with overrides (values parsed as YAML): `section.key=value`, e.g.
    `ra3.rounds=1` or `generation.n=2`, or a whole section `section={key: value, ...}` (for a section
    the scale does not have, e.g. `ra3` at a scale without one), or some keys of a nested block,
    `rlvr.train_data={revision: <commit>}`: a quick look without editing the YAML."""
    scale = load_scale(name)
    sections = _section_types()
    for item in sets:  # whole sections first; keys of a section then apply on top of them
        key, sep, raw = item.partition("=")
        if sep and key.strip() in sections:
            scale = dataclasses.replace(scale, **{key.strip(): from_dict(sections[key.strip()], yaml.safe_load(raw),
                                                                         f"--set {key.strip()}")})
    changes: dict[str, dict[str, Any]] = {}  # section -> {key: value}, applied together: keys can depend on each other
    for item in sets:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if sep and len(parts) == 1 and parts[0] in sections:
            continue
        if not sep or len(parts) != 2 or not all(parts):
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. ra3.rounds=1, or a whole section "
                              f"section={{key: value, ...}} (sections: {sorted(sections)})")
        section, field = parts
        if section not in sections:
            raise ConfigError(f"--set {item!r}: unknown section {section!r} of scale {name}; valid: {sorted(sections)}")
        current = getattr(scale, section)
        if current is None:
            raise ConfigError(f"--set {item!r}: scale {name} has no `{section}` section to change; give it whole, "
                              f"--set {section}='{{key: value, ...}}' ({sections[section].__name__})")
        fields = {f.name: f for f in dataclasses.fields(current)}
        if field not in fields:
            raise ConfigError(f"--set {item!r}: {section} has no key {field!r}; valid: {sorted(fields)}")
        value = yaml.safe_load(raw)
        old = getattr(current, field)
        if isinstance(old, str) and not isinstance(value, str):  # YAML reads `no`, `off`, `1e-5` as non-strings
            value = raw.strip()
        if isinstance(old, tuple) and isinstance(value, list):  # a YAML list for a tuple field: [a, b]
            value = tuple(value)
        if dataclasses.is_dataclass(old) and isinstance(value, dict):  # a nested block: the keys given change
            value = from_dict(type(old), {**dataclasses.asdict(old), **value}, f"--set {key.strip()}")
        if old is not None and value is not None and not isinstance(value, type(old)) and not (
                isinstance(old, float) and isinstance(value, int)):
            raise ConfigError(f"--set {item!r}: {section}.{field} takes a {type(old).__name__}, got {raw!r}")
        changes.setdefault(section, {})[field] = value
    for section, values in changes.items():
        try:
            scale = dataclasses.replace(scale, **{section: dataclasses.replace(getattr(scale, section), **values)})
        except (TypeError, ValueError) as exc:
            shown = " ".join(f"{section}.{k}={v}" for k, v in values.items())
            raise ConfigError(f"--set {shown}: {exc}") from None
    return scale
