"""What the contest kinds (LiveCodeBench, Codeforces, and the RLVR problems in AReaL's schema) share:
the prompt and stop rule, and grading in the sandbox.

Prompt: the problem statement followed by an opened Python code block; generation stops at the
block's closing fence, and the program graded is the completion itself.

Grading (LiveCodeBench's rules: lcb_runner/evaluation/testing_util.py and
compute_code_generation_metrics.py):
- every public test, then every private one, each within the problem's time limit (6 s for LCB);
- stdin problems: the whole output and then each line are stripped; the line counts must agree and
  each line must be equal, or else parse as the same sequence of `Decimal` numbers (exact, so
  "2.5" matches "2.50"; there is no float tolerance);
- functional problems (metadata `func_name`): each line of a test's input is one JSON argument;
  `Solution().<func_name>(*args)` (or a module-level function when the code has no
  `class Solution`) must equal the JSON output, a returned tuple counting as a list;
- both run after LCB's import prelude (`from math import *`, `from typing import *`, ...,
  recursion limit 50000) with Python's integer-string limit raised to 50000 digits; a functional
  solution runs as a module that is not `__main__`, as in LCB.
Unlike LCB, which runs solutions in its own process with a patched `sys.stdin`, each test here runs
as its own program in `repro.core.sandbox`, reading real stdin (as a judge would); a program that
exits with a non-zero status is an error here, where LCB swallows every `SystemExit`.

Codeforces problems (`grader: codeforces`) compare outputs as the dataset's own grader does (the
open-r1 Piston `codeforces` package run script): whitespace-separated tokens must be equal, the
whole words yes/no compared in any case. Memory is an address-space limit of `memory_limit` MiB,
as that script's `ulimit -v`.
"""

import json
import keyword
import math
import re
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from repro.core.sandbox import STARTUP_GRACE_SECONDS, Job, Limits, Verdict, run_job
from repro.eval.benchmarks import Benchmark, Outcome, Sample

PROMPT_SUFFIX = "\n\n```python\n"
STOPS = ("\n```",)
PROMPT_RULE = "task prompt + ```python"
POSTPROCESS = "completion up to the closing fence"

_LCB_STAR_IMPORTS = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math",
                     "random", "statistics", "itertools", "functools", "operator", "io", "sys",
                     "json", "builtins", "typing")
_LCB_IMPORTS = _LCB_STAR_IMPORTS[:-2]
LCB_PRELUDE = (
    "".join(f"from {name} import *\n" for name in _LCB_STAR_IMPORTS)
    + "".join(f"import {name}\n" for name in _LCB_IMPORTS)
    + "sys.setrecursionlimit(50000)\nsys.set_int_max_str_digits(50000)\n"
)
# The same imports in the same order as `import_string` in lcb_runner/evaluation/testing_util.py,
# which LCB puts before every solution; `from builtins import *` comes after `math`, `io` and `sys`
# so `pow`, `open` and `exit` are the builtins again. compute_code_generation_metrics.py calls
# `sys.set_int_max_str_digits(50000)` in the process that grades.
_CF_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE | re.ASCII)
_CF_SPACE = re.compile(r"[ \t\n\v\f\r]+")
# The grader script's `sed -E 's/\b(yes)\b/YES/ig; s/\b(no)\b/NO/ig'` and `tr -s '[:space:]'`.

OUTPUT_SLACK_BYTES = 64 * 2**10
# Not from upstream: stdout kept beyond twice the expected output, so a wrong answer is seen whole
# enough to report while a flood is cut off.
WRONG_ANSWER = "AssertionError: wrong answer"
# How the functional harness's mismatch reaches the verdict's detail (the driver's `_describe`).


def prompt(benchmark: Benchmark, task_id: str) -> str:
    return benchmark.tasks[task_id]["prompt"] + PROMPT_SUFFIX


def stops(config) -> list[str]:
    return list(STOPS)


def program_prefix(benchmark: Benchmark, task_id: str) -> str:
    """A contest completion is the whole program."""
    return ""


def solution(benchmark: Benchmark, task_id: str, prompt: str, completion: str) -> str:
    return completion


def checker(benchmark: Benchmark, eval_config, count_tests: bool = False):
    """Each sample's program on the problem's tests (`grade_contest`)."""
    def check(sample: Sample) -> Outcome:
        start = time.monotonic()
        task = benchmark.tasks[sample.task_id]
        status, detail, passed = grade_contest(task, sample.code, time_scale=benchmark.config.time_scale,
                                               keep_going=count_tests)
        total = len(task["tests"]) if count_tests else None
        return Outcome(status, round(time.monotonic() - start, 4), detail, passed if count_tests else None, total)

    return check


# ---------------------------------------------------------------------------------------------
# Input helpers of the loaders


def expect_type(row: dict, key: str, kind: type, where: str) -> Any:
    if not isinstance(row[key], kind):
        raise ValueError(f"{where}: key {key!r} must be a {kind.__name__}, got {type(row[key]).__name__}")
    return row[key]


def json_field(row: dict, key: str, where: str) -> Any:
    expect_type(row, key, str, where)
    try:
        return json.loads(row[key])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: key {key!r} is not valid JSON: {exc}") from None


def is_identifier(name: Any) -> bool:
    return isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)


# ---------------------------------------------------------------------------------------------
# Grading


def check_contest(problem: dict, solution: str, *, time_scale: float = 1.0) -> tuple[str, str]:
    """(status, detail) of `solution` on the problem's tests, run in order, one sandbox job each.

    Status is pass, fail (wrong answer), error (runtime error, or did not run to its end), timeout
    or memory; grading stops at the first test that does not pass. `time_scale` multiplies the
    time limit (for machines slower than the judge's).
    """
    status, detail, _ = grade_contest(problem, solution, time_scale=time_scale)
    return status, detail


def grade_contest(problem: dict, solution: str, *, time_scale: float = 1.0,
                  keep_going: bool = False) -> tuple[str, str, int]:
    """`check_contest`'s (status, detail) and the number of tests passed. With `keep_going` every
    test runs (fraction-of-tests rewards); the status is that of the first test that did not pass."""
    if not time_scale > 0:
        raise ValueError(f"time_scale must be positive, got {time_scale!r}")
    tests = problem["tests"]
    passed, first = 0, None
    for index, test in enumerate(tests, 1):
        verdict = run_job(_job(problem, solution, test, time_scale))
        status, detail = _judge(problem, test, verdict)
        if status == "pass":
            passed += 1
            continue
        first = first or (status, f"test {index} of {len(tests)}: {detail}")
        if not keep_going:
            break
    if first is not None:
        return first[0], first[1], passed
    return "pass", f"{len(tests)} tests passed", passed


def _job(problem: dict, solution: str, test: dict, time_scale: float) -> Job:
    seconds = problem["time_limit_seconds"] * time_scale
    code, exit_ok = _program(problem, solution, test)
    limits = Limits(
        wall_seconds=seconds + STARTUP_GRACE_SECONDS,  # the interpreter starts before the timer
        cpu_seconds=math.ceil(seconds) + 1,  # a backstop; the driver's timer decides timeouts
        memory_bytes=problem["memory_bytes"],
        output_bytes=2 * len(test["output"].encode()) + OUTPUT_SLACK_BYTES,
    )
    args = {"code": code, "test_seconds": seconds, "exit_ok": exit_ok}
    return Job(mode="script", args=args, limits=limits, stdin=test["input"])


def _program(problem: dict, solution: str, test: dict) -> tuple[str, bool]:
    """The program for one test, and whether exiting with status 0 counts as running to its end.

    A functional harness must run after the solution, so there an early exit cannot pass.
    """
    if problem["grader"] == "codeforces":
        return solution, True
    if problem["func_name"] is None:
        return LCB_PRELUDE + solution, True
    return _functional_program(problem["func_name"], solution, test), False


def _functional_program(func_name: str, solution: str, test: dict) -> str:
    """A program that calls the solution on the test's stdin as LCB's `grade_call_based` does.

    LCB execs the solution in a module named `tmp_sol`, so an `if __name__ == "__main__":` block
    (a model's example usage) does not run; the harness does the same in a namespace of its own.
    """
    # LCB instantiates `Solution` when the code contains "class Solution", else calls a function.
    target = f'namespace["Solution"]().{func_name}' if "class Solution" in solution else \
        f"namespace[{func_name!r}]"
    return f'''def _ra3_contest_harness(source, expected):
    import json, sys
    # Parsed, and the builtins taken, before the solution runs: it cannot patch what judges it.
    exact, array, pair, mapping = type, list, tuple, dict
    expected = json.loads(expected)
    args = [json.loads(line) for line in sys.stdin.buffer.read().decode("utf-8").split("\\n")]

    def plain(value):  # JSON's types exactly (and tuples), so that `!=` below is Python's own
        kind = exact(value)
        if kind is array or kind is pair:
            for item in value:
                if not plain(item):
                    return False
            return True
        if kind is mapping:
            for key in value:
                if exact(key) is not str or not plain(value[key]):
                    return False
            return True
        return kind is bool or kind is int or kind is float or kind is str or value is None

    namespace = {{"__name__": "tmp_sol"}}
    try:
        exec(compile(source, "<solution>", "exec"), namespace)
        result = {target}(*args)
    except AssertionError as exc:  # the solution's own assertion is a runtime error, not a verdict
        raise RuntimeError("AssertionError in the solution: " + str(exc)) from None
    if not plain(result):
        raise AssertionError("wrong answer: the return value is not made of JSON types (an object's own "
                             "comparison cannot be trusted)")
    if exact(result) is pair:  # LCB does not penalise a tuple for a list
        result = array(result)
    if result != expected:
        raise AssertionError("wrong answer: got " + repr(result)[:200] + ", expected "
                             + repr(expected)[:200])


_ra3_contest_harness({LCB_PRELUDE + solution!r}, {test["output"]!r})
'''


def _judge(problem: dict, test: dict, verdict: Verdict) -> tuple[str, str]:
    status, detail = verdict.status, verdict.detail
    if status == "fail" and not (problem["func_name"] and detail.startswith(WRONG_ANSWER)):
        # An AssertionError that escaped the program itself: a runtime error on any judge.
        return "error", detail
    if status != "pass" or problem["func_name"]:
        return status, detail
    if problem["grader"] == "codeforces":
        return _compare_tokens(verdict.stdout, test["output"])
    return _compare_lcb_lines(verdict.stdout, test["output"])


def _compare_lcb_lines(actual: str, expected: str) -> tuple[str, str]:
    """LCB's `grade_stdio` comparison: stripped lines, equal or equal as Decimal sequences."""
    got, want = _stripped_lines(actual), _stripped_lines(expected)
    if len(got) != len(want):
        return "fail", f"wrong answer: {len(got)} output lines, expected {len(want)}"
    for number, (line, wanted) in enumerate(zip(got, want, strict=True), 1):
        if line == wanted:
            continue
        numbers, wanted_numbers = _decimals(line), _decimals(wanted)
        if numbers is None or wanted_numbers is None or numbers != wanted_numbers:
            return "fail", f"wrong answer at line {number}: {line[:100]!r} != {wanted[:100]!r}"
    return "pass", ""


def _stripped_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def _decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(token) for token in line.split()]
    except (InvalidOperation, ValueError):
        return None


def _compare_tokens(actual: str, expected: str) -> tuple[str, str]:
    """The open-r1 Codeforces grader's diff: whitespace-separated tokens, yes/no in any case."""
    got, want = _cf_tokens(actual), _cf_tokens(expected)
    if got == want:
        return "pass", ""
    for index, (token, wanted) in enumerate(zip(got, want, strict=False), 1):
        if token != wanted:
            return "fail", f"wrong answer at token {index}: {token[:100]!r} != {wanted[:100]!r}"
    return "fail", f"wrong answer: {len(got)} output tokens, expected {len(want)}"


def _cf_tokens(text: str) -> list[str]:
    return [token for token in _CF_SPACE.split(_CF_YES_NO.sub(lambda m: m[1].upper(), text)) if token]
