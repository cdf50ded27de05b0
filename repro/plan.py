"""`--plan`: what a claim would run, stage by stage, and what it would cost, without training anything.

Every claim lists its stages (`plan(scale, seeds)` in its module) with these builders; each stage says
what it reads and writes, whether its run directory is already finished (cached), how many tokens it
processes, and an estimate of its cost in device-hours on the scale's `hardware` (configs/scales/):

    hours = FLOPs / (devices x peak x utilisation) x devices / 3600        (device-hours)

- training (pretraining, NTP, an M-step, a GRPO update): 6 x parameters x tokens, at `train_utilization`;
- a forward pass that only scores (RA3's teacher-forced rewards): 2 x parameters x tokens;
- sampling (evaluation, GRPO rollouts, a teacher's comments): 2 x parameters x (prompt + generated
  tokens), at `generate_utilization` (decoding is memory-bound: far below training's share of peak);
- RA3 (`ra3_flops`): the rollout reads its rows in windows, 2 x parameters x tokens x
  `rollout_slots_per_token` (the positions it feeds per real token, measured by
  benchmarks/estep_throughput.py) at `prefill_utilization`, and decodes its thoughts (THOUGHT_SHARE of
  the tokens) at `generate_utilization`; scoring is a prefill; the E-step's updates and the M-step train.
  The vLLM backend's estimate is printed beside it.
Attention's share of the FLOPs is left out (small at these lengths next to the weights' FLOPs). The
utilisations are assumptions at small/paper scale (stated in the scale's YAML) and measurements at tiny
scale; a plan is an estimate, never a measurement.
"""

import dataclasses

from repro.core import runs
from repro.core.scale import ScaleConfig

TINY_SNIPPET_TOKENS = 112
"""Tokens of one tiny-world function (byte-level BPE, 1k vocabulary; configs/scales/tiny.yaml)."""
HUB_SNIPPET_TOKENS = 286
"""Tokens of one corpus snippet at small/paper scale: the paper's ~1B tokens over 3.5M snippets."""
PROMPT_TOKENS = 150
"""A benchmark prompt (HumanEval averages about 130 tokens, MBPP fewer; contest statements more)."""


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    reads: str
    writes: str
    cached: str
    """"yes" (its run directory is finished), "no", or why it cannot be known before running."""
    tokens: float
    """Tokens processed (trained on, scored, rolled out or generated)."""
    hours: float
    """Estimated device-hours on the scale's hardware."""
    vllm_hours: float | None = None
    """RA3 stages: the estimate with the other rollout backend (vLLM), printed beside the plan."""
    parts: tuple[tuple[str, float], ...] = ()
    """RA3 stages: `hours` by part (`ra3_flops`), printed under the plan."""


def parameters(scale: ScaleConfig) -> dict[str, float]:
    """Each base model's parameter count (the tiny model's from its config)."""
    if scale.models:
        return {m.name: m.parameters for m in scale.models}
    c, vocab = scale.tiny_model, scale.tokenizer.vocab_size
    per_layer = 4 * c.hidden_size ** 2 + 3 * c.hidden_size * c.intermediate_size
    return {"tiny": c.num_hidden_layers * per_layer + vocab * c.hidden_size * (1 if c.tie_word_embeddings else 2)}


def hours(scale: ScaleConfig, flops: float, utilization: float) -> float:
    hw = scale.hardware
    return flops / (hw.peak_tflops * 1e12 * utilization) / 3600


def train_tokens(cfg, devices: int) -> float:
    return cfg.max_steps * cfg.batch_size * cfg.grad_accum_steps * cfg.seq_len * devices


def corpus_snippets(scale: ScaleConfig) -> tuple[float, float]:
    """(snippets, tokens per snippet) of the mid-training corpus."""
    if scale.corpus is None:
        return 4000, TINY_SNIPPET_TOKENS  # configs/world/tiny.yaml: n_expert
    return scale.corpus.max_snippets, min(HUB_SNIPPET_TOKENS, scale.corpus.max_tokens / scale.corpus.max_snippets)


def status(stage: str, identity) -> str:
    if identity is None:
        return "not yet known (depends on stages above)"
    return "yes" if runs.is_done(runs.stage_path(stage, identity)) else "no"


def pretrain(scale: ScaleConfig) -> list[Stage]:
    """The tiny world and base model (a scale that builds them); none for hub models."""
    if scale.world is None:
        return []
    from repro import pipeline

    world = pipeline.world_path(scale)
    world_done = runs.is_done(world)
    tokens = train_tokens(scale.pretrain, scale.hardware.devices)
    n = parameters(scale)["tiny"]
    return [Stage("world", "configs/world/tiny.yaml", "runs/world/<hash>/", "yes" if world_done else "no", 0, 0.0),
            Stage("pretrain", "the world's pretraining corpus", "runs/pretrain/<hash>/model",
                  status("pretrain", pipeline.pretrain_identity(scale, world) if world_done else None), tokens,
                  hours(scale, 6 * n * tokens, scale.hardware.train_utilization))]


def _cached(stage: str, scale: ScaleConfig, identity_of) -> str:
    """A mid-training stage's status: known at a built world once the base model exists; unknown for a hub
    corpus, whose identity is the sha256 of its text (known once read)."""
    if scale.corpus is not None:
        return "not yet known (the corpus identity is its sha256, known once read)"
    from repro import pipeline

    base = pipeline.built_base_model(scale)
    if base is None:
        return status(stage, None)
    return status(stage, identity_of(base, runs.read_done(pipeline.world_path(scale))["files"]["expert.jsonl"]))


def ntp(scale: ScaleConfig, model: str, seed: int, label: str = "NTP") -> Stage:
    from repro import pipeline

    n, tokens = parameters(scale)[model], train_tokens(scale.ntp, scale.hardware.devices)
    train = dataclasses.replace(scale.ntp, seed=seed)
    return Stage(f"{label} {model} s{seed}", "base model, expert corpus", "runs/ntp/<hash>/model",
                 _cached("ntp", scale, lambda base, corpus: pipeline.ntp_identity(base, corpus, train)), tokens,
                 hours(scale, 6 * n * tokens, scale.hardware.train_utilization))


def teacher(scale: ScaleConfig, model: str, seed: int) -> list[Stage]:
    """The synthetic baseline: a teacher model's comments (hub corpus), then NTP on the commented corpus."""
    stages = []
    unknown = "not yet known (its identity is known once the corpus is read or commented)"
    if scale.synthetic is not None and scale.corpus is not None:
        snippets, per = corpus_snippets(scale)
        tokens = snippets * 2.2 * per  # the snippet in the prompt, and again with comments in the answer
        stages.append(Stage(f"teacher comments ({scale.synthetic.teacher.name})", "expert corpus",
                            "runs/teacher/<hash>/commented.jsonl", unknown, tokens,
                            hours(scale, 2 * scale.synthetic.teacher.parameters * tokens,
                                  scale.hardware.generate_utilization)))
    base = ntp(scale, model, seed, "teacher NTP")
    stages.append(dataclasses.replace(base, reads="base model, commented corpus", writes="runs/teacher/<hash>/model",
                                      cached=unknown))
    return stages


THOUGHT_SHARE = 0.15
"""Thought tokens per expert token of the infused corpus (measured at tiny scale: infused code is ~15%
thoughts); they are what the rollout decodes one token per forward."""


def ra3_tokens(scale: ScaleConfig) -> tuple[float, float, float]:
    """RA3's tokens per seed: (E-step rollouts, the step's rows over all ranks; corpus infusion, group_size
    draws per snippet for best_of_group; M-steps, NTP's tokens plus their thoughts)."""
    cfg = scale.ra3
    snippets, per = corpus_snippets(scale)
    draws = cfg.group_size if cfg.infusion == "best_of_group" else 1
    return (cfg.rounds * cfg.estep_steps * cfg.snippets_per_step * cfg.group_size * per,
            cfg.rounds * snippets * per * draws,
            train_tokens(scale.ntp, scale.hardware.devices) * (1 + THOUGHT_SHARE))


def ra3_flops(scale: ScaleConfig, model: str, backend: str = "hf") -> dict[str, tuple[float, float]]:
    """RA3's FLOPs per seed by the utilisation they run at: {part: (FLOPs, utilisation)}. The rollout
    reads every snippet (E-step rows and corpus infusion) in windows, `rollout_slots_per_token` positions
    per real token, at `prefill_utilization`, and decodes its thoughts at `generate_utilization`; the vLLM
    backend reads each token once (prefix caching, nothing discarded) and decodes at
    `vllm_generate_utilization`. Teacher-forced scoring is a prefill; the E-step's updates and the M-step
    train."""
    n, hw = parameters(scale)[model], scale.hardware
    estep, infusion, mstep = ra3_tokens(scale)
    best_of_group = scale.ra3.infusion == "best_of_group"
    vllm = backend == "vllm"
    return {
        "rollout reading": (2 * n * (estep + infusion) * (1.0 if vllm else hw.rollout_slots_per_token),
                            hw.prefill_utilization),
        "rollout thoughts": (2 * n * (estep + infusion) * THOUGHT_SHARE,
                             hw.vllm_generate_utilization if vllm else hw.generate_utilization),
        "scoring": (2 * n * (estep + (infusion if best_of_group else 0)), hw.prefill_utilization),
        "E-step updates": (6 * n * estep, hw.train_utilization),
        "M-step": (6 * n * mstep, hw.train_utilization),
    }


def ra3_hours(scale: ScaleConfig, model: str, backend: str = "hf") -> dict[str, float]:
    """`ra3_flops` in device-hours, per part."""
    return {part: hours(scale, flops, utilization) for part, (flops, utilization) in
            ra3_flops(scale, model, backend).items()}


def ra3(scale: ScaleConfig, model: str, seed: int, penalty: float | None = None) -> Stage:
    """The EM loop: E-step rollouts, rewards and updates, corpus infusion, M-steps on NTP's expert tokens."""
    from repro import pipeline

    cfg = scale.ra3
    settings = pipeline.ra3_settings(scale, seed, penalty)
    parts = ra3_hours(scale, model, cfg.rollout_backend)
    vllm = (sum(ra3_hours(scale, model, "vllm").values()) if scale.hardware.vllm_generate_utilization is not None
            else None)
    return Stage(f"RA3 {model} s{seed}" + (f" c={penalty:g}" if penalty is not None else ""),
                 "base model, expert corpus", "runs/ra3/<hash>/round-*/",
                 _cached("ra3", scale, lambda base, corpus: pipeline.ra3_identity(base, corpus, *settings)),
                 sum(ra3_tokens(scale)), sum(parts.values()), vllm_hours=vllm, parts=tuple(parts.items()))


def evaluation(scale: ScaleConfig, model: str, label: str, benchmarks: tuple[str, ...], tasks: dict[str, int],
               cached: str = "once the model exists", samples: int | None = None) -> Stage:
    n, gen = parameters(scale)[model], scale.generation
    count = sum(tasks[b] for b in benchmarks) * (samples or gen.n)
    tokens = count * (PROMPT_TOKENS + gen.max_new_tokens)
    return Stage(f"evaluate {label}", ", ".join(benchmarks), "runs/eval/<hash>/outcomes.jsonl", cached, tokens,
                 hours(scale, 2 * n * tokens, scale.hardware.generate_utilization))


def rlvr(scale: ScaleConfig, model: str, label: str, tasks: dict[str, int]) -> list[Stage]:
    n, cfg, hw = parameters(scale)[model], scale.rlvr, scale.hardware
    completions = cfg.max_steps * cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * hw.devices
    generated = completions * (PROMPT_TOKENS + cfg.max_completion_length)
    trained = completions * (PROMPT_TOKENS + cfg.max_completion_length / 2)
    points = cfg.max_steps // cfg.eval_every + 1
    curve = evaluation(scale, model, f"{label} curve ({points} points)", cfg.eval_benchmarks,
                       {b: min(tasks[b], cfg.eval_tasks or tasks[b]) * points for b in cfg.eval_benchmarks},
                       samples=cfg.eval_n)
    return [Stage(f"GRPO {label}", "a mid-trained model, the RL tasks", "runs/rlvr/<hash>/", "once the model exists",
                  generated + trained, hours(scale, 2 * n * generated, hw.generate_utilization)
                  + hours(scale, 6 * n * trained, hw.train_utilization)), curve]


BENCHMARK_TASKS = {"humaneval": 164, "humaneval+": 164, "mbpp": 378, "mbpp+": 378, "livecodebench": 279,
                   "codeforces": 400, "tiny-heldout": 200, "tiny-rl": 1000}
"""Tasks per benchmark without loading the files (HumanEval(+) 164, MBPP(+) 378; LiveCodeBench release_v5 in
the configured window and Codeforces' gradable problems are approximate)."""


def table(stages: list[Stage], scale: ScaleConfig) -> str:
    """The plan as a Markdown table with its total."""
    hw = scale.hardware
    lines = [f"| stage | reads | writes | cached | tokens | {hw.device}-hours |", "|---|---|---|---|---|---|"]
    for s in stages:
        lines.append(f"| {s.name} | {s.reads} | {s.writes} | {s.cached} | {s.tokens:.3g} | {s.hours:.3g} |")
    todo = sum(s.hours for s in stages if s.cached != "yes")
    lines += ["", f"Total {sum(s.hours for s in stages):.3g} {hw.device}-hours ({todo:.3g} not cached), on "
              f"{hw.devices} x {hw.device}: about {todo / hw.devices:.3g} hours of wall time. Cost model: "
              f"{hw.peak_tflops:g} TFLOP/s peak, training at {hw.train_utilization:.0%} of it, prefill-like "
              f"forwards (the rollout's windows, scoring) at {hw.prefill_utilization:.0%}, sampling at "
              f"{hw.generate_utilization:.0%}, {hw.rollout_slots_per_token:g} rollout slots per real token "
              "(repro/plan.py says how each stage is priced)."]
    ra3_stages = [s for s in stages if s.vllm_hours is not None]
    if ra3_stages:
        lines.append(f"RA3 stages: {sum(s.hours for s in ra3_stages):.3g} {hw.device}-hours with the transformers "
                     f"rollout (the default); with `ra3.rollout_backend: vllm` about "
                     f"{sum(s.vllm_hours for s in ra3_stages):.3g} (each token read once, decoding at "
                     f"{hw.vllm_generate_utilization:.0%}; never run, its per-request overhead not priced).")
    for s in stages:
        if s.parts:
            lines.append(f"- {s.name}: " + ", ".join(f"{part} {value:.3g}" for part, value in s.parts))
    return "\n".join(lines)

