"""RLVR post-training: GRPO through TRL's `GRPOTrainer`, rewarded by running each completion against
its task's tests in the sandbox, with the oracle that grades the benchmarks.

Paper: RA3 (arXiv:2509.25810), the RLVR figure: GRPO with the DeepCoder recipe on
AReaL-boba-2-RL-Code (~7.7K problems filtered from DeepCoder's data), curves on HumanEval+, MBPP+,
LiveCodeBench and Codeforces; the hyperparameters are not given (../shared/paper/RA3.md). The
settings live in each scale's `rlvr:` block (`RLVRConfig`, field names of TRL's `GRPOConfig`).

- Tasks: `train_benchmark`, a benchmark of configs/eval.yaml (tiny: `tiny-rl`, the tiny world's
  RL split), or `train_data`, a Hugging Face dataset in AReaL-boba-2-RL-Code's schema read with
  `datasets` at a pinned revision (`load_rl_problems`; a local copy laid out like the repository
  works offline).
- One oracle: prompts are evaluation's prompts (`evaluate.prompt_for`), a completion is cut at the
  benchmark's stop strings and post-processed as evaluation does (`evaluate.solution_from`), and
  graded by `evaluate.make_checker`, hardened against always-equal return values and tampering
  with the test harness (the driver's `check_function` mode, repro/sandbox_driver.py).
- Reward: `all_pass` (1 when every test passes, else 0: DeepCoder's sparse outcome reward) or
  `fraction` (tests passed / tests). The sandboxed programs of a step run in parallel
  (`reward_workers`); each step logs the reward's seconds and status counts (`reward/seconds`,
  `reward/status/<status>`) beside TRL's `step_time` in `metrics.jsonl`, and the run's summary
  gives the share of step time spent in rewards.
- Stop strings: with vLLM, generation stops at them (`generation_kwargs`). TRL's transformers path
  cannot stop at strings (its completion mask ends only at EOS), so there a completion ends at EOS
  or `max_completion_length` and is cut for the reward only, as evaluation cuts it.
- Resumable: TRL checkpoints every `eval_every` steps (`checkpoint-<step>`, marked COMPLETE when
  written; the newest two kept) and a rerun resumes from the newest complete one with
  `trainer.train(resume_from_checkpoint=...)`, optimizer, scheduler and RNG states included.
- Curves: pass@1 on `eval_benchmarks` at step 0 and at each checkpoint, from the checkpoint's
  weights, in `curve/step-<k>/<benchmark>/` (evaluation's own files); an evaluation samples under
  `torch.random.fork_rng`, so it leaves the training's random stream as it found it.
"""

import dataclasses
import json
import logging
import re
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Literal

import torch

from repro import runs
from repro.config import CONFIG_DIR, ConfigError
from repro.data import Benchmark, BenchmarkConfig, DataError, EvalConfig
from repro.evaluate import atomic_write

log = logging.getLogger(__name__)

KEEP_CHECKPOINTS = 2  # the newest may be half-written when a run is killed; the one before it is whole
CHAT_MARKERS = re.compile(r"<｜(User|Assistant)｜>|<think>")
# AReaL-boba-2-RL-Code's `prompt` column wraps the question in DeepSeek-R1's chat tokens; base models get the question.


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
        if problems:
            raise ValueError("; ".join(problems))


GRPO_FIELDS = ("max_steps", "learning_rate", "per_device_train_batch_size", "num_generations",
               "max_completion_length", "gradient_accumulation_steps", "temperature", "top_p", "beta",
               "epsilon", "epsilon_high", "loss_type", "scale_rewards", "mask_truncated_completions",
               "num_iterations", "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm", "bf16",
               "gradient_checkpointing", "use_vllm", "vllm_mode", "vllm_gpu_memory_utilization",
               "vllm_tensor_parallel_size", "vllm_enable_sleep_mode")
"""RLVRConfig fields that are GRPOConfig fields of the same name and meaning (`deepspeed` is one too,
resolved to a path first)."""


def grpo_args(cfg: RLVRConfig, output_dir: Path, seed: int, stops: list[str]):
    """TRL's GRPOConfig for a run: the scale's values, plus the run's directory, seed and checkpointing."""
    from trl import GRPOConfig

    values = {name: getattr(cfg, name) for name in GRPO_FIELDS}
    try:
        return GRPOConfig(
            **values, output_dir=str(output_dir), seed=seed, save_strategy="steps", save_steps=cfg.eval_every,
            save_total_limit=KEEP_CHECKPOINTS, logging_steps=1, report_to="none", disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
            deepspeed=str(CONFIG_DIR.parent / cfg.deepspeed) if cfg.deepspeed else None,
            generation_kwargs={"stop": list(stops)} if cfg.use_vllm else None,
        )
    except ValueError as exc:
        raise ConfigError(f"rlvr settings rejected by TRL's GRPOConfig: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Tasks and rewards


def train_tasks(cfg: RLVRConfig, eval_config: EvalConfig, local_path: Path | None = None) -> Benchmark:
    """The RL training tasks as a Benchmark, so that evaluation's prompt, stop and scoring rules apply."""
    from repro.data import load_benchmark

    if cfg.train_benchmark is not None:
        return load_benchmark(cfg.train_benchmark, eval_config)
    return load_rl_problems(cfg.train_data, local_path)


def load_rl_problems(spec: RLDataSpec, local_path: Path | None = None) -> Benchmark:
    """Problems of a dataset in AReaL-boba-2-RL-Code's schema, read with `datasets` (streamed: the
    training file is ~6 GB), as a contest-kind Benchmark whose problems are graded like
    LiveCodeBench's. `local_path`: a directory laid out like the repository (offline use, tests)."""
    import datasets

    if local_path is None:
        if spec.revision == "UNPINNED":
            raise ConfigError(f"{spec.dataset} has no pinned revision in the scale config; pin a commit "
                              "(huggingface_hub.HfApi().dataset_info(...).sha) or pass a local copy")
        builder = datasets.load_dataset_builder(spec.dataset, data_files=spec.data_files, revision=spec.revision)
        source = f"{spec.dataset}@{spec.revision}"
    else:
        builder = datasets.load_dataset_builder(str(local_path), data_files=spec.data_files)
        source = str(local_path)
    tasks: dict[str, dict] = {}
    for number, row in enumerate(builder.as_streaming_dataset(split="train"), 1):
        problem = _areal_problem(row, f"{source} {spec.data_files}, row {number}", spec)
        if problem["task_id"] in tasks:
            raise DataError(f"{source}: query_id {row['query_id']!r} appears twice")
        tasks[problem["task_id"]] = problem
        if spec.max_problems is not None and len(tasks) == spec.max_problems:
            break
    if not tasks:
        raise DataError(f"{source} {spec.data_files}: no problems")
    digest = runs.config_hash(tasks)  # the problems as read: prompt and tests, in order
    config = BenchmarkConfig(
        kind="codeforces", version=f"{spec.dataset}@{spec.revision}", file=spec.data_files, time_scale=1.0,
        provide=f"Download {spec.data_files} of the Hugging Face dataset {spec.dataset} at {spec.revision}.")
    log.info("RL problems: %d from %s (content hash %s)", len(tasks), source, digest)
    return Benchmark(spec.dataset, config, tasks, Path(spec.data_files), digest,
                     {"source": source, "max_problems": spec.max_problems})


def _areal_problem(row: dict, where: str, spec: RLDataSpec) -> dict:
    """One problem in `repro.contest`'s form (stdin or functional tests, LiveCodeBench comparison)."""
    if not isinstance(row.get("query_id"), str | int):
        raise DataError(f"{where}: expected a string `query_id`")
    question = row.get("question") or CHAT_MARKERS.sub("", row.get("prompt") or "").strip()
    if not isinstance(question, str) or not question:
        raise DataError(f"{where}: expected a non-empty `question` (or `prompt`)")
    spec_io = row.get("input_output")
    try:
        io = json.loads(spec_io) if isinstance(spec_io, str) else spec_io
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: `input_output` is not valid JSON ({exc})") from None
    if not isinstance(io, dict) or not isinstance(io.get("inputs"), list) or not isinstance(io.get("outputs"), list):
        raise DataError(f"{where}: `input_output` must hold lists `inputs` and `outputs`")
    if len(io["inputs"]) != len(io["outputs"]) or not io["inputs"]:
        raise DataError(f"{where}: `input_output` needs as many outputs as inputs, and at least one test")
    metadata = row.get("metadata") or {}
    try:
        metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: `metadata` is not valid JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise DataError(f"{where}: `metadata` must be a JSON object")
    func_name = io.get("fn_name") or metadata.get("fn_name") or None
    tests = []
    for index, (given, wanted) in enumerate(zip(io["inputs"], io["outputs"], strict=True)):
        given, wanted = (_text(v, f"{where}: test {index}") for v in (given, wanted))
        tests.append({"input": given, "output": wanted, "testtype": "functional" if func_name else "stdin"})
    return {"task_id": f"AReaL/{row['query_id']}", "grader": "livecodebench", "prompt": question, "tests": tests,
            "func_name": func_name, "time_limit_seconds": spec.time_limit_seconds,
            "memory_bytes": spec.memory_bytes, "starter_code": ""}


def _text(value, where: str) -> str:
    """A test's input or output: a string, or a list of lines (as some APPS-derived rows store them)."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    if not isinstance(value, str):
        raise DataError(f"{where}: expected a string or a list of lines, got {type(value).__name__}")
    return value


def reward_value(outcome, mode: str) -> float:
    if mode == "all_pass":
        return 1.0 if outcome.status == "pass" else 0.0
    return outcome.tests_passed / outcome.tests_total if outcome.tests_total else 0.0


def make_reward(tasks: Benchmark, eval_config: EvalConfig, mode: str, workers: int | None = None):
    """A TRL reward function: each completion graded by the benchmark's oracle, in parallel sandboxes."""
    from repro import evaluate, generate, sandbox

    check = evaluate.make_checker(tasks, eval_config, count_tests=mode == "fraction")
    stops = generate.stop_strings(tasks.config.kind, tasks.config.evalplus_dataset)

    def verifiable_reward(prompts, completions, task_id, log_metric=None, **_) -> list[float]:
        start = time.perf_counter()
        samples = [evaluate.Sample(t, i, evaluate.solution_from(tasks, t, p, generate.truncate(c, stops)))
                   for i, (p, c, t) in enumerate(zip(prompts, completions, task_id, strict=True))]
        outcomes = sandbox.parallel_map(check, samples, workers)
        if log_metric is not None:
            log_metric("reward/seconds", time.perf_counter() - start)
            counts = Counter(o.status for o in outcomes)
            for status in sandbox.STATUSES:
                log_metric(f"reward/status/{status}", counts[status])
        return [reward_value(o, mode) for o in outcomes]

    return verifiable_reward


# ---------------------------------------------------------------------------------------------
# Training


def latest_checkpoint(run_dir: Path) -> Path | None:
    complete = [p for p in Path(run_dir).glob("checkpoint-*") if (p / "COMPLETE").exists()]
    return max(complete, key=lambda p: int(p.name.split("-")[1]), default=None)


def _callback(run_dir: Path, on_checkpoint):
    """metrics.jsonl (one line per logged step) and, after each checkpoint, its COMPLETE mark and evaluation."""
    from transformers import TrainerCallback

    class RunFiles(TrainerCallback):  # TRL's callback interface is a class
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs and "step_time" in logs:
                with open(run_dir / "metrics.jsonl", "a") as f:
                    f.write(json.dumps({"step": state.global_step, **logs}) + "\n")
                log.debug("GRPO step %d: reward %.3f, %.2f s", state.global_step, logs["reward"], logs["step_time"])

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                checkpoint = run_dir / f"checkpoint-{state.global_step}"
                (checkpoint / "COMPLETE").write_text(str(state.global_step))
                on_checkpoint(state.global_step, checkpoint)

    return RunFiles()


def train(init_model: str, tasks: Benchmark, cfg: RLVRConfig, run_dir: Path, seed: int, eval_config: EvalConfig,
          on_checkpoint=lambda step, path: None) -> dict:
    """GRPO from `init_model` for cfg.max_steps steps, resuming from run_dir's newest complete checkpoint.

    `on_checkpoint(step, path)` runs after each checkpoint is written (the curves' evaluations). The
    final model goes to `<run_dir>/model`; returns a summary with the share of step time in rewards.
    """
    import datasets
    from transformers import AutoTokenizer, PrinterCallback
    from trl import GRPOTrainer

    from repro import evaluate, generate

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    stops = generate.stop_strings(tasks.config.kind, tasks.config.evalplus_dataset)
    prompts = datasets.Dataset.from_list([{"prompt": evaluate.prompt_for(tasks, t), "task_id": t} for t in tasks.tasks])
    resume = latest_checkpoint(run_dir)
    _trim_metrics(run_dir / "metrics.jsonl", int(resume.name.split("-")[1]) if resume else 0)
    trainer = GRPOTrainer(
        model=init_model, reward_funcs=make_reward(tasks, eval_config, cfg.reward, cfg.reward_workers),
        args=grpo_args(cfg, run_dir, seed, stops), train_dataset=prompts,
        processing_class=AutoTokenizer.from_pretrained(init_model), callbacks=[_callback(run_dir, on_checkpoint)])
    trainer.remove_callback(PrinterCallback)  # it prints every step's metrics; they go to metrics.jsonl instead
    if resume is not None:
        log.info("resuming GRPO from %s", resume)
    start = time.monotonic()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    trainer.save_model(str(run_dir / "model"))
    return {**step_time_split(run_dir / "metrics.jsonl"), "seconds_this_session": round(time.monotonic() - start, 1),
            "resumed_from": resume.name if resume else None}


def _trim_metrics(path: Path, last_step: int) -> None:
    """Drop logged steps after the checkpoint a run resumes from (they are trained again)."""
    if path.exists():
        rows = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= last_step]
        atomic_write(path, "".join(row + "\n" for row in rows))


def step_time_split(metrics_file: Path) -> dict:
    """Seconds per step, and the share of them spent computing rewards, from metrics.jsonl."""
    rows = [json.loads(line) for line in open(metrics_file)] if Path(metrics_file).exists() else []
    step = sum(r["step_time"] for r in rows)
    reward = sum(r.get("reward/seconds", 0.0) for r in rows)
    return {"steps_logged": len(rows), "mean_step_seconds": round(step / len(rows), 3) if rows else None,
            "reward_share_of_step_time": round(reward / step, 3) if step else None}


# ---------------------------------------------------------------------------------------------
# The stage: one GRPO run and its curves


def eval_benchmarks(cfg: RLVRConfig, eval_config: EvalConfig) -> dict[str, Benchmark]:
    """The curves' benchmarks, each cut to its first `eval_tasks` tasks."""
    from repro.data import load_benchmark

    benchmarks = {}
    for name in cfg.eval_benchmarks:
        bench = load_benchmark(name, eval_config)
        if cfg.eval_tasks is not None and cfg.eval_tasks < len(bench.tasks):
            subset = dict(list(bench.tasks.items())[: cfg.eval_tasks])
            bench = dataclasses.replace(bench, tasks=subset, notes={
                **bench.notes, "subset": f"the first {cfg.eval_tasks} of {len(bench.tasks)} tasks"})
        benchmarks[name] = bench
    return benchmarks


def evaluate_point(model_dir: Path, benchmarks: dict[str, Benchmark], eval_config: EvalConfig, gen,
                   out_dir: Path, workers: int | None = None) -> dict[str, float]:
    """pass@1 of a checkpoint on each benchmark; a finished evaluation (metrics.json) is reused.
    Sampling runs under fork_rng: the training's random stream continues as if it had not happened."""
    from repro import evaluate

    devices = list(range(torch.cuda.device_count()))
    for name, bench in benchmarks.items():
        out = Path(out_dir) / name
        if not (out / "metrics.json").exists():
            with torch.random.fork_rng(devices=devices):
                evaluate.evaluate_model(str(model_dir), bench, eval_config, gen, out, workers=workers)
    return read_point(out_dir, benchmarks)


def read_point(out_dir: Path, benchmarks) -> dict[str, float]:
    return {name: json.loads((Path(out_dir) / name / "metrics.json").read_text())["pass@1"] for name in benchmarks}


def rlvr_stage(scale, init_model: str, seed: int, root: Path | None = None) -> Path:
    """One GRPO run from `init_model` with `seed` (data order, rollouts and curve sampling), cached in
    runs/rlvr/<hash>/: `curve.json` holds pass@1 per benchmark at step 0 and every `eval_every` steps."""
    from repro.data import load_eval_config
    from repro.stages import model_identity

    cfg: RLVRConfig = scale.rlvr
    if cfg is None:
        raise ConfigError(f"scale {scale.name} has no `rlvr` settings in configs/scales/{scale.name}.yaml")
    eval_config = load_eval_config()
    tasks = train_tasks(cfg, eval_config)
    benchmarks = eval_benchmarks(cfg, eval_config)
    gen = dataclasses.replace(scale.generation, n=cfg.eval_n, seed=seed)
    identity = {"init": model_identity(init_model), "rlvr": cfg, "seed": seed,
                "train_tasks": {"name": tasks.name, "sha256": tasks.sha256, "n": len(tasks.tasks)},
                "eval": {name: {"sha256": b.sha256, "tasks": len(b.tasks)} for name, b in benchmarks.items()},
                "generation": gen, "sandbox": eval_config.sandbox,
                "scoring": {name: b.config for name, b in benchmarks.items()}}
    path = runs.stage_dir("rlvr", identity, root)
    if runs.is_done(path):
        return path
    if cfg.torch_threads is not None:
        torch.set_num_threads(cfg.torch_threads)
    curve: dict[int, dict[str, float]] = {}

    def point(step: int, model_dir: Path) -> None:
        evaluation_start = time.monotonic()
        curve[step] = evaluate_point(model_dir, benchmarks, eval_config, gen, path / "curve" / f"step-{step}",
                                     cfg.reward_workers)
        rows = [json.loads(line) for line in open(path / "metrics.jsonl")] if step else []
        recent = [r["reward"] for r in rows if step - cfg.eval_every < r["step"] <= step]
        log.info("step %d: pass@1 %s (evaluated in %.1f s)%s", step, json.dumps(curve[step]),
                 time.monotonic() - evaluation_start, f"; mean training reward of the last {len(recent)} steps "
                 f"{sum(recent) / len(recent):.3f}" if recent else "")

    started = time.monotonic()
    with runs.stage_log(path):
        log.info("RLVR from %s, seed %d, %d training tasks (%s)", init_model, seed, len(tasks.tasks), tasks.name)
        point(0, Path(init_model))
        if (resume := latest_checkpoint(path)) is not None:  # killed during its evaluation
            point(int(resume.name.split("-")[1]), resume)
        summary = train(init_model, tasks, cfg, path, seed, eval_config, on_checkpoint=point)
        done_steps = sorted(int(p.name.split("-")[1]) for p in (path / "curve").glob("step-*"))
        # Every point from its files, those evaluated before a kill included.
        curve = {step: read_point(path / "curve" / f"step-{step}", benchmarks) for step in done_steps}
        record = {"init_model": init_model, "seed": seed, "steps": done_steps,
                  "pass@1": {name: [curve[s][name] for s in done_steps] for name in benchmarks},
                  "train": summary, "eval_tasks": {name: len(b.tasks) for name, b in benchmarks.items()},
                  "stage_seconds_this_session": round(time.monotonic() - started, 1)}
        atomic_write(path / "curve.json", json.dumps(record, indent=2) + "\n")
        log.info("RLVR done: %s", json.dumps(summary))
    runs.mark_done(path, record)
    for checkpoint in path.glob("checkpoint-*"):  # optimizer states are not needed once the run is done
        shutil.rmtree(checkpoint, ignore_errors=True)
    return path
