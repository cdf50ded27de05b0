"""RLVR post-training: GRPO through TRL's `GRPOTrainer`, rewarded by running each completion against
its task's tests in the sandbox, with the oracle that grades the benchmarks.

Paper: RA3 (arXiv:2509.25810), the RLVR figure: GRPO with the DeepCoder recipe on
AReaL-boba-2-RL-Code (~7.7K problems filtered from DeepCoder's data), curves on HumanEval+, MBPP+,
LiveCodeBench and Codeforces; the hyperparameters are not given. The
settings live in each scale's `rlvr:` block (`RLVRConfig`, field names of TRL's `GRPOConfig`).

- Tasks: `train_benchmark`, a benchmark of configs/eval.yaml (tiny: `tiny-rl`, the tiny world's
  RL split), or `train_data`, a Hugging Face dataset in AReaL-boba-2-RL-Code's schema read with
  `datasets` at a pinned revision (`load_rl_problems`; a local copy laid out like the repository
  works offline).
- One oracle: prompts are evaluation's prompts (the benchmark kind's `prompt`), a completion is cut
  at the kind's stop strings and post-processed as evaluation does (the kind's `solution`), and
  graded by `repro.eval.score.make_checker`, hardened against always-equal return values and tampering
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
  weights, in `curve/step-<k>/<benchmark>/` (evaluation's own files). During training a checkpoint's
  weights are only kept (`keep_weights`, hard links); they are evaluated after training, once the
  trainer and its rollout engine have given their memory back (`repro.eval.generate.release_engine`):
  one engine at a time on a GPU. An evaluation samples under `torch.random.fork_rng`.
- vLLM (`use_vllm`, GPUs): `vllm_max_model_length` is required, and training prompts too long to
  leave room for a whole completion are left out and counted (`fitting_prompts`).
"""

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import torch

from repro.core import ranks, runs, sandbox
from repro.core.config import CONFIG_DIR, ConfigError
from repro.core.eval_config import BenchmarkConfig, EvalConfig
from repro.core.files import DataError, atomic_write
from repro.core.hub import cached_snapshot, offline
from repro.core.scale import GRPO_FIELDS, RLDataSpec, RLVRConfig
from repro.eval import benchmarks, generate, score
from repro.eval.benchmarks import Benchmark, Sample
from repro.train import zero

log = logging.getLogger(__name__)

KEEP_CHECKPOINTS = 2  # the newest may be half-written when a run is killed; the one before it is whole
CHAT_MARKERS = re.compile(r"<｜(User|Assistant)｜>|<think>")
# AReaL-boba-2-RL-Code's `prompt` column wraps the question in DeepSeek-R1's chat tokens; base models get the question.


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
    if cfg.train_benchmark is not None:
        return benchmarks.load_benchmark(cfg.train_benchmark, eval_config)
    return load_rl_problems(cfg.train_data, local_path)


def load_rl_problems(spec: RLDataSpec, local_path: Path | None = None) -> Benchmark:
    """Problems of a dataset in AReaL-boba-2-RL-Code's schema, read with `datasets` (streamed: the
    training file is ~6 GB), as a contest-kind Benchmark whose problems are graded like
    LiveCodeBench's. `local_path`: a directory laid out like the repository (offline use, tests). With
    HF_HUB_OFFLINE=1 and no `local_path`, the pinned revision's folder in the hub cache is read (what
    `ra3-repro fetch` put there; `datasets` cannot load a hub dataset offline)."""
    import datasets

    source = str(local_path)
    if local_path is None:
        if spec.revision == "UNPINNED":
            raise ConfigError(f"{spec.dataset} has no pinned revision in the scale config; pin a commit "
                              "(huggingface_hub.HfApi().dataset_info(...).sha) or pass a local copy")
        source = f"{spec.dataset}@{spec.revision}"
        if offline():
            local_path = cached_snapshot(spec.dataset, "dataset", spec.revision)
    if local_path is None:
        builder = datasets.load_dataset_builder(spec.dataset, data_files=spec.data_files, revision=spec.revision)
    else:
        builder = datasets.load_dataset_builder(str(local_path), data_files=spec.data_files)
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
    check = score.make_checker(tasks, eval_config, count_tests=mode == "fraction")
    stops = benchmarks.stops(tasks.config)

    def verifiable_reward(prompts, completions, task_id, log_metric=None, **_) -> list[float]:
        start = time.perf_counter()
        samples = [Sample(t, i, benchmarks.solution(tasks, t, p, generate.truncate(c, stops)))
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
                runs.mark_checkpoint(checkpoint, state.global_step)
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

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    stops = benchmarks.stops(tasks.config)
    tokenizer = AutoTokenizer.from_pretrained(init_model)
    rows, too_long = fitting_prompts(tasks, tokenizer, cfg)
    if not rows:
        raise DataError(f"{tasks.name}: no training prompt fits vllm_max_model_length ({cfg.vllm_max_model_length}) "
                        f"beside max_completion_length ({cfg.max_completion_length})")
    resume = runs.latest_checkpoint(run_dir)
    if ranks.is_main():  # metrics.jsonl's one writer (the callback writes on world process zero)
        _trim_metrics(run_dir / "metrics.jsonl", runs.checkpoint_step(resume) if resume else 0)
    trainer = None
    # Under DeepSpeed the trainer owns accelerate's state while it runs and gives it back after (repro.train.zero)
    with zero.owned_state(lambda: trainer and trainer.accelerator) if cfg.deepspeed else contextlib.nullcontext():
        trainer = GRPOTrainer(
            model=init_model, reward_funcs=make_reward(tasks, eval_config, cfg.reward, cfg.reward_workers),
            args=grpo_args(cfg, run_dir, seed, stops), train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tokenizer, callbacks=[_callback(run_dir, on_checkpoint)])
        trainer.remove_callback(PrinterCallback)  # it prints every step's metrics; they go to metrics.jsonl instead
        if resume is not None:
            log.info("resuming GRPO from %s", resume)
        start = time.monotonic()
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        trainer.save_model(str(run_dir / "model"))
    trainer = None  # its model, optimizer and rollout engine: the curve evaluations after it need the memory
    generate.release_engine()
    return {**step_time_split(run_dir / "metrics.jsonl"), "seconds_this_session": round(time.monotonic() - start, 1),
            "resumed_from": resume.name if resume else None, "prompts_too_long": too_long}


def fitting_prompts(tasks: Benchmark, tokenizer, cfg: RLVRConfig) -> tuple[list[dict], int]:
    """The training rows (prompt, task_id) whose prompt fits vLLM's window beside a whole completion,
    and how many did not (all fit without vLLM: transformers' generate has no fixed window)."""
    rows = [{"prompt": benchmarks.prompt(tasks, t), "task_id": t} for t in tasks.tasks]
    if cfg.vllm_max_model_length is None:
        return rows, 0
    room = cfg.vllm_max_model_length - cfg.max_completion_length
    lengths = [len(ids) for ids in tokenizer([r["prompt"] for r in rows])["input_ids"]]
    kept = [r for r, n in zip(rows, lengths, strict=True) if n <= room]
    if len(kept) < len(rows):
        log.warning("%s: %d of %d training prompts are longer than %d tokens (vllm_max_model_length %d minus "
                    "max_completion_length %d) and are left out", tasks.name, len(rows) - len(kept), len(rows),
                    room, cfg.vllm_max_model_length, cfg.max_completion_length)
    return kept, len(rows) - len(kept)


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
    chosen = {}
    for name in cfg.eval_benchmarks:
        bench = benchmarks.load_benchmark(name, eval_config)
        if cfg.eval_tasks is not None and cfg.eval_tasks < len(bench.tasks):
            subset = dict(list(bench.tasks.items())[: cfg.eval_tasks])
            bench = dataclasses.replace(bench, tasks=subset, notes={
                **bench.notes, "subset": f"the first {cfg.eval_tasks} of {len(bench.tasks)} tasks"})
        chosen[name] = bench
    return chosen


def evaluate_point(model_dir: Path, benchmarks: dict[str, Benchmark], eval_config: EvalConfig, gen,
                   out_dir: Path, workers: int | None = None) -> dict[str, float]:
    """pass@1 of a checkpoint on each benchmark; a finished evaluation (metrics.json) is reused.
    Sampling runs under fork_rng: the training's random stream continues as if it had not happened."""
    devices = list(range(torch.cuda.device_count()))
    for name, bench in benchmarks.items():
        out = Path(out_dir) / name
        if not (out / "metrics.json").exists():
            with torch.random.fork_rng(devices=devices):
                score.evaluate_model(str(model_dir), bench, eval_config, gen, out, workers=workers)
    return read_point(out_dir, benchmarks)


TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json", "training_args.bin",
                  runs.CHECKPOINT_COMPLETE)
"""Files of a TRL checkpoint that only resuming needs (with `rng_state*.pth` and DeepSpeed's `global_step*/`)."""


def keep_weights(checkpoint: Path, dest: Path) -> None:
    """A TRL checkpoint's model files (weights, config, tokenizer) hard-linked into `dest` (copied where
    linking fails): a curve point is evaluated after training, once the rollout engine's memory is free,
    when TRL may have deleted the checkpoint. Written under a temporary name, so `dest` is whole."""
    dest = Path(dest)
    if dest.exists():
        return
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for file in sorted(Path(checkpoint).iterdir()):
        if not file.is_file() or file.name in TRAINING_STATE or file.name.startswith("rng_state"):
            continue
        try:
            os.link(file, partial / file.name)
        except OSError:
            shutil.copy2(file, partial / file.name)
    if not any(f.suffix in (".safetensors", ".bin") for f in partial.iterdir()):
        raise DataError(f"{checkpoint} holds no model weights to evaluate (under DeepSpeed ZeRO-3 the config needs "
                        "stage3_gather_16bit_weights_on_model_save: true)")
    partial.rename(dest)


def read_point(out_dir: Path, benchmarks) -> dict[str, float]:
    return {name: json.loads((Path(out_dir) / name / "metrics.json").read_text())["pass@1"] for name in benchmarks}
