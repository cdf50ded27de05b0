"""Scoring: samples.jsonl -> sandboxed tests -> outcomes.jsonl + metrics.json; and a model's whole
evaluation (generate, post-process, score).

Samples are EvalPlus-style JSON lines: `task_id` plus `completion` (code that follows the prompt)
or `solution` (the whole program). Each sample is graded by its benchmark kind's checker
(`repro/eval/benchmarks/<kind>.py`), always inside `repro.core.sandbox`; evaluation and RL rewards
share it.

Identical programs of one task run once and share their outcome (`programs_run` in the metrics):
the tests are fixed, so a program that depends on chance or the clock is graded by one draw, as
it would be if it appeared once. Outputs keep the input order. Nothing is written until every
input has been validated, and each file is replaced atomically with `metrics.json` last, so a crash
never leaves a finished-looking directory.
"""

import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from repro.core import sandbox, stats
from repro.core.eval_config import EvalConfig
from repro.core.files import DataError, atomic_write, read_jsonl
from repro.core.runs import config_hash
from repro.eval import benchmarks, generate
from repro.eval.benchmarks import Benchmark, Outcome, Sample

log = logging.getLogger(__name__)


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
            code = benchmarks.kind(benchmark.config.kind).program_prefix(benchmark, task_id) + row["completion"]
        else:
            raise DataError(f"{where}: expected a string `completion` or `solution`")
        samples.append(Sample(task_id, seen[task_id], code))
        seen[task_id] += 1
    if not samples:
        raise DataError(f"{path}: no samples")
    return samples


def make_checker(benchmark: Benchmark, config: EvalConfig, count_tests: bool = False) -> Callable[[Sample], Outcome]:
    """The benchmark's oracle for one sample (evaluation and RL rewards share it). With `count_tests`
    every test runs, also after a failure, and the outcome counts the passed ones; the status is the
    same as without (pass iff every test passes), though a later test may time out after a failure."""
    return benchmarks.kind(benchmark.config.kind).checker(benchmark, config, count_tests)


def score(benchmark: Benchmark, samples: list[Sample], config: EvalConfig,
          workers: int | None = None) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    """Grade every sample; returns outcome rows (input order), the metrics and each status's detail."""
    check = make_checker(benchmark, config)
    start = time.monotonic()
    # A task's identical programs run once and share the outcome: the tests are fixed, so a copy
    # would only repeat the run (small models repeat themselves: 40-60% of the tiny models' samples).
    position: dict[tuple[str, str], int] = {}  # (task, program) -> its index in `unique`
    unique = []
    for sample in samples:
        if (sample.task_id, sample.code) not in position:
            position[(sample.task_id, sample.code)] = len(unique)
            unique.append(sample)
    ran = sandbox.parallel_map(check, unique, workers, desc=f"scoring {benchmark.name}")
    outcomes = [ran[position[(s.task_id, s.code)]] for s in samples]
    rows = [{"task_id": s.task_id, "sample": s.index, "passed": o.status == "pass",
             "status": o.status, "seconds": o.seconds} for s, o in zip(samples, outcomes, strict=True)]
    metrics = compute_metrics(benchmark, rows)
    metrics["scoring_seconds"] = round(time.monotonic() - start, 2)
    metrics["programs_run"] = len(unique)
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


def write_results(out_dir: Path, rows: list[dict], metrics: dict, details: list[str]) -> None:
    """outcomes.jsonl (the contract), details.jsonl (why each sample got its status), metrics.json last."""
    out_dir = Path(out_dir)
    (out_dir / "metrics.json").unlink(missing_ok=True)  # an interrupted rewrite must not look finished
    atomic_write(out_dir / "outcomes.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    atomic_write(out_dir / "details.jsonl", "".join(
        json.dumps({"task_id": r["task_id"], "sample": r["sample"], "detail": d}) + "\n"
        for r, d in zip(rows, details, strict=True)))
    atomic_write(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")


def evaluate_model(model_id: str, benchmark: Benchmark, config: EvalConfig, gen, out_dir: Path, *,
                   revision: str | None = None, limit: int | None = None, workers: int | None = None,
                   thoughts: str = "free") -> dict:
    """Generate `gen.n` completions per task, write raw and processed samples, score them. `thoughts`:
    comment lines as the model writes them (`free`), forbidden (`banned`), or each replaced by the
    task's next true intent (`forced`: tasks that carry `intents`, the tiny world's), see
    `repro.eval.generate.THOUGHT_MODES`.

    Writes `samples_raw.jsonl`, `samples.jsonl`, `generation.json` (model, settings, prompt and stop
    rule, their hash), then the score files. Samples whose generation hash matches are reused.
    """
    out_dir = Path(out_dir)
    task_ids = list(benchmark.tasks)[:limit]
    kind = benchmarks.kind(benchmark.config.kind)
    stops = kind.stops(benchmark.config)
    settings = {"model": model_id, "revision": revision, "benchmark": benchmark.name, "data_sha256": benchmark.sha256,
                "generation": dataclasses.asdict(gen), "stops": stops, "tasks": len(task_ids),
                "prompt_rule": kind.PROMPT_RULE, "postprocess": kind.POSTPROCESS}
    given = None
    if thoughts != "free":
        settings["thoughts"] = thoughts
    if thoughts == "forced":
        missing = [t for t in task_ids if "intents" not in benchmark.tasks[t]]
        if missing:
            raise DataError(f"{benchmark.name}: forced thoughts need each task's `intents`; {missing[0]} has none")
        given = [benchmark.tasks[t]["intents"] for t in task_ids]
    settings_hash = config_hash(settings)
    generation_file = out_dir / "generation.json"
    if generation_file.exists() and json.loads(generation_file.read_text())["hash"] == settings_hash:
        log.info("reusing the samples in %s (same generation settings)", out_dir)
    else:
        prompts = [kind.prompt(benchmark, t) for t in task_ids]
        start = time.monotonic()
        completions = generate.generate(model_id, prompts, gen, stops, revision, thoughts, given)
        seconds = time.monotonic() - start
        raw, processed = [], []
        for task_id, prompt, texts in zip(task_ids, prompts, completions, strict=True):
            for text in texts:
                raw.append({"task_id": task_id, "completion": text, "generation_hash": settings_hash})
                solution = kind.solution(benchmark, task_id, prompt, text)
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
