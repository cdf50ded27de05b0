"""Benchmark kind `evalplus`: HumanEval+, MBPP and MBPP+ graded by EvalPlus's own oracle.

Data: EvalPlus release files (`HumanEvalPlus`, `MbppPlus`), found through EvalPlus's override
variables or its cache. Each sample is judged by EvalPlus's `unsafe_execute` per input split,
against expected outputs from EvalPlus's own `trusted_exec` of the canonical solution (run in the
sandbox too, since benchmark code is untrusted code, and cached by data sha256), with EvalPlus's
float tolerance, special oracles and time limits max(min_time_limit, factor x ground-truth time).
A `+` score needs every split (base and plus). MBPP is MbppPlus's base inputs.

Prompt, stops and post-processing: the function benchmarks' rule (humaneval.py).
"""

import base64
import dataclasses
import json
import math
from collections.abc import Callable

from repro.core import sandbox
from repro.core.config import ConfigError
from repro.core.files import DataError, atomic_write, data_dir, iter_jsonl, require_keys
from repro.core.sandbox import Job, Limits
from repro.eval.benchmarks import Benchmark, Outcome, Sample, humaneval

KEYS = ("evalplus_dataset", "splits", "min_time_limit", "gt_time_limit_factor")
"""The kind-specific keys of configs/eval.yaml this kind needs."""
PROMPT_RULE, POSTPROCESS = humaneval.PROMPT_RULE, humaneval.POSTPROCESS
prompt, stops, program_prefix, solution = (humaneval.prompt, humaneval.stops, humaneval.program_prefix,
                                          humaneval.solution)

# EvalPlus caps one sample's tests at EVALPLUS_TIMEOUT_PER_TASK (60 s) plus 2 s of bookkeeping.
EVALPLUS_TASK_TIMEOUT = 60.0
EVALPLUS_BOOKKEEPING_SECONDS = 2.0


def load(path, cfg):
    from evalplus.data.mbpp import mbpp_deserialize_inputs

    tasks = {}
    keys = ("task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input", "atol")
    for where, row in iter_jsonl(path):
        require_keys(row, keys, where)
        if cfg.evalplus_dataset == "mbpp":  # as EvalPlus's get_mbpp_plus does
            row["base_input"] = mbpp_deserialize_inputs(row["task_id"], row["base_input"])
            row["plus_input"] = mbpp_deserialize_inputs(row["task_id"], row["plus_input"])
        tasks[row["task_id"]] = row
    return tasks, {"splits": list(cfg.splits)}


def checker(benchmark: Benchmark, eval_config, count_tests: bool = False):
    if count_tests:
        raise ConfigError(f"{benchmark.name}: EvalPlus's oracle stops at the first failing input, so it "
                          "cannot count passed tests; use all-pass rewards or a humaneval/contest kind")
    return _checker(benchmark, eval_config.sandbox)


def _checker(benchmark: Benchmark, limits: Limits) -> Callable[[Sample], Outcome]:
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
