"""Contest benchmarks: LiveCodeBench code generation and Codeforces, read from local files and graded
in the sandbox.

LiveCodeBench: `livecodebench/code_generation_lite` on Hugging Face. Its release files are JSON
lines (test.jsonl is release_v1; test2.jsonl ... test6.jsonl add the later problems) with the
fields of `CodeGenerationProblem` in lcb_runner/benchmarks/code_generation.py. Grading follows
lcb_runner/evaluation/testing_util.py and compute_code_generation_metrics.py:
- every public test, then every private one, each within 6 s;
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
as its own program in `repro.sandbox`, reading real stdin (as a judge would); a program that exits
with a non-zero status is an error here, where LCB swallows every `SystemExit`. The date window is
start <= contest_date < end; LCB's own `--end_date` keeps contest_date <= that day at 00:00.

Codeforces: `open-r1/codeforces`, config `verifiable`, split `test` (CC-BY-4.0; problems from late
2024 and early 2025 that the dataset's authors ask not to train on). Chosen because it is
permissively licensed, versioned on the Hub (a fetch can pin a revision), and per problem carries
the official tests (not only the ~400-character truncated ones the website shows),
`official_tests_complete`, the time limit (seconds) and memory limit (megabytes), `input_mode` and
a `generated_checker` for the ~30% of problems whose answer is not unique. Problems with a checker
cannot be graded by comparing outputs, so they are excluded at load time, as are interactive
problems, problems that read input.txt/write output.txt, problems the dataset marks not
executable, and problems without tests or limits; the loader returns how many it excluded. Only the
official tests are used (the generated tests are a separate, very large download);
`official_tests_complete` is kept on each problem so a report can tell which test sets are whole.
Output comparison is that of the dataset's own grader (the open-r1 Piston `codeforces` package run
script): whitespace-separated tokens must be equal, the whole words yes/no compared in any case.
Memory is an address-space limit of `memory_limit` MiB, as that script's `ulimit -v`.
"""

import base64
import binascii
import io
import json
import keyword
import logging
import math
import pickle
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from repro.data import iter_jsonl, require_keys
from repro.sandbox import STARTUP_GRACE_SECONDS, Job, Limits, Verdict, run_job

log = logging.getLogger(__name__)

LCB_TIMEOUT_SECONDS = 6.0
# LiveCodeBench's per-test limit: `codegen_metrics(..., timeout=6)` in
# lcb_runner/evaluation/compute_code_generation_metrics.py, armed as `signal.alarm(timeout)` per test.
LCB_MEMORY_BYTES = 4 * 2**30
# LiveCodeBench sets no memory limit (`run_test` calls `reliability_guard()` with None). 4 GiB is the
# sandbox's default (EvalPlus's), so a runaway solution cannot take the host's memory.
LCB_RELEASE_GLOB = "test*.jsonl"
# The release files of livecodebench/code_generation_lite: test.jsonl, test2.jsonl, ... test6.jsonl.
LCB_FIELDS = ("question_title", "question_content", "platform", "question_id", "contest_id",
              "contest_date", "starter_code", "difficulty", "public_test_cases",
              "private_test_cases", "metadata")
# `CodeGenerationProblem`'s fields (lcb_runner/benchmarks/code_generation.py).
LCB_TEST_TYPES = ("stdin", "functional")
LCB_PLATFORMS = ("leetcode", "codeforces", "atcoder")
LCB_DIFFICULTIES = ("easy", "medium", "hard")
# lcb_runner's `TestType`, `Platform` and `Difficulty` enums.
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
MAX_PRIVATE_TESTS_BYTES = 2**30
# Not from upstream: a bound on one decompressed `private_test_cases` field, against a
# decompression bomb; far above any real problem's tests (whole release files are 0.1-1.3 GB).

CODEFORCES_DATASET = ("open-r1/codeforces", "verifiable", "test")
# (repository, config, split) on Hugging Face that `load_codeforces` reads; see the module doc.
CF_FIELDS = ("id", "contest_id", "title", "time_limit", "memory_limit", "description",
             "input_format", "output_format", "interaction_format", "note", "examples",
             "official_tests", "official_tests_complete", "input_mode", "generated_checker",
             "executable")
# The open-r1/codeforces columns this module reads (its dataset card lists them all).
_CF_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE | re.ASCII)
_CF_SPACE = re.compile(r"[ \t\n\v\f\r]+")
# The grader script's `sed -E 's/\b(yes)\b/YES/ig; s/\b(no)\b/NO/ig'` and `tr -s '[:space:]'`.

OUTPUT_SLACK_BYTES = 64 * 2**10
# Not from upstream: stdout kept beyond twice the expected output, so a wrong answer is seen whole
# enough to report while a flood is cut off.
WRONG_ANSWER = "AssertionError: wrong answer"
# How the functional harness's mismatch reaches the verdict's detail (the driver's `_describe`).


# ---------------------------------------------------------------------------------------------
# LiveCodeBench


def load_livecodebench(path: Path, start_date: str, end_date: str) -> dict[str, dict]:
    """Problems with start_date <= contest_date < end_date (YYYY-MM-DD), keyed `LiveCodeBench/<id>`.

    `path` is one release file or a directory of them (`test*.jsonl`, read in release order).
    Malformed input raises ValueError naming the file, the line and the key expected.
    """
    start, end = _parse_day(start_date, "start_date"), _parse_day(end_date, "end_date")
    if start >= end:
        raise ValueError(f"start_date {start_date} is not before end_date {end_date}")
    problems: dict[str, dict] = {}
    for file in _lcb_release_files(Path(path)):
        for where, row in iter_jsonl(file):
            require_keys(row, LCB_FIELDS, where)
            date = _lcb_date(row["contest_date"], where)
            if not start <= date < end:
                continue  # decode the (large) private tests of kept problems only
            problem = _lcb_problem(row, where)
            if problem["task_id"] in problems:
                raise ValueError(f"{where}: question_id {row['question_id']!r} appears twice")
            problems[problem["task_id"]] = problem
    log.info("LiveCodeBench: %d problems dated in [%s, %s) from %s", len(problems), start_date,
             end_date, path)
    return problems


def _parse_day(value: str, name: str) -> datetime:
    try:
        return datetime.strptime(value, "%Y-%m-%d")
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a date YYYY-MM-DD, got {value!r}") from None


def _lcb_release_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ValueError(f"{path}: no such LiveCodeBench release file or directory")
    files = list(path.glob(LCB_RELEASE_GLOB))
    if not files:
        raise ValueError(f"{path}: no LiveCodeBench release files ({LCB_RELEASE_GLOB})")

    def release_number(file: Path) -> int:  # test.jsonl is release 1, testN.jsonl release N
        suffix = file.stem[len("test"):]
        return int(suffix) if suffix.isdigit() else 1

    return sorted(files, key=lambda file: (release_number(file), file.name))


def _lcb_date(value: Any, where: str) -> datetime:
    try:
        date = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: key 'contest_date' must be an ISO datetime, got {value!r}") from None
    if date.tzinfo is not None:  # upstream compares with naive dates; an aware one would not compare
        raise ValueError(f"{where}: key 'contest_date' must have no time zone, got {value!r}")
    return date


def _lcb_problem(row: dict, where: str) -> dict:
    for key in ("question_title", "question_content", "question_id", "starter_code"):
        _expect_type(row, key, str, where)
    for key, allowed in (("platform", LCB_PLATFORMS), ("difficulty", LCB_DIFFICULTIES)):
        if row[key] not in allowed:
            raise ValueError(f"{where}: key {key!r} is {row[key]!r}, expected one of {allowed}")
    public = _lcb_tests(_json_field(row, "public_test_cases", where), "public_test_cases", where)
    private = _lcb_tests(_lcb_private_tests(row["private_test_cases"], where),
                         "private_test_cases", where)
    metadata = _json_field(row, "metadata", where)
    if not isinstance(metadata, dict):
        raise ValueError(f"{where}: key 'metadata' must hold a JSON object")
    func_name = metadata.get("func_name")
    if func_name is not None and not _is_identifier(func_name):
        raise ValueError(f"{where}: key 'func_name' in metadata is not a Python name: {func_name!r}")
    tests = public + private  # LCB's order (`get_evaluation_sample`)
    if not tests:
        raise ValueError(f"{where}: keys 'public_test_cases' and 'private_test_cases' hold no tests")
    if func_name is None and any(test["testtype"] == "functional" for test in tests):
        raise ValueError(f"{where}: functional tests but no key 'func_name' in metadata")
    starter = row["starter_code"]
    prompt = row["question_content"] + (f"\n\n```python\n{starter}\n```\n" if starter.strip() else "")
    return {
        "task_id": f"LiveCodeBench/{row['question_id']}",
        "grader": "livecodebench",
        "prompt": prompt,
        "tests": tests,
        "func_name": func_name,
        "time_limit_seconds": LCB_TIMEOUT_SECONDS,
        "memory_bytes": LCB_MEMORY_BYTES,
        "starter_code": starter,
        "title": row["question_title"],
        "platform": row["platform"],
        "difficulty": row["difficulty"],
        "contest_id": row["contest_id"],
        "contest_date": row["contest_date"],
    }


def _lcb_tests(value: Any, key: str, where: str) -> list[dict]:
    if not isinstance(value, list):
        raise ValueError(f"{where}: key {key!r} must hold a JSON list of tests")
    tests = []
    for index, test in enumerate(value):
        if not isinstance(test, dict) or any(not isinstance(test.get(k), str)
                                             for k in ("input", "output", "testtype")):
            raise ValueError(f"{where}: key {key!r}, test {index}: expected string keys "
                             "'input', 'output' and 'testtype'")
        if test["testtype"] not in LCB_TEST_TYPES:
            raise ValueError(f"{where}: key {key!r}, test {index}: key 'testtype' is "
                             f"{test['testtype']!r}, expected one of {LCB_TEST_TYPES}")
        tests.append({"input": test["input"], "output": test["output"], "testtype": test["testtype"]})
    return tests


def _lcb_private_tests(value: Any, where: str) -> Any:
    """A JSON string, or base64 of zlib of a pickled JSON string (as `CodeGenerationProblem` reads)."""
    if not isinstance(value, str):
        raise ValueError(f"{where}: key 'private_test_cases' must be a string")
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        pass
    key = "key 'private_test_cases'"
    try:
        text = _restricted_unpickle(_bounded_decompress(base64.b64decode(value)))
    except (binascii.Error, zlib.error, pickle.UnpicklingError, EOFError, ValueError, TypeError,
            IndexError, KeyError, AttributeError, OverflowError, RecursionError) as exc:
        raise ValueError(f"{where}: {key} is neither JSON nor base64(zlib(pickle(JSON string))): "
                         f"{type(exc).__name__}: {exc}") from None
    if not isinstance(text, str):
        raise ValueError(f"{where}: {key} unpickles to {type(text).__name__}, expected a str")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: {key} unpickles to a string that is not JSON: {exc}") from None


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Unpickles plain data only: any class or function reference (the way a pickle runs code) fails."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"global lookups are forbidden (the data names {module}.{name})")


def _restricted_unpickle(data: bytes) -> Any:
    return _NoGlobalsUnpickler(io.BytesIO(data)).load()


def _bounded_decompress(data: bytes) -> bytes:
    decompressor = zlib.decompressobj()
    out = decompressor.decompress(data, MAX_PRIVATE_TESTS_BYTES)
    if decompressor.unconsumed_tail:
        raise ValueError(f"decompresses to more than {MAX_PRIVATE_TESTS_BYTES} bytes")
    if not decompressor.eof:
        raise zlib.error("incomplete or truncated stream")
    return out


# ---------------------------------------------------------------------------------------------
# Codeforces


def load_codeforces(path: Path) -> tuple[dict[str, dict], int]:
    """Problems keyed `Codeforces/<id>` from JSONL or Parquet rows of open-r1/codeforces, and the
    number of problems excluded because output comparison cannot grade them (see the module doc).

    `path` is a .jsonl or .parquet file or a directory of them. Malformed input raises ValueError
    naming the file, the line (JSONL) or row (Parquet) and the key expected.
    """
    problems: dict[str, dict] = {}
    excluded: Counter[str] = Counter()
    for where, row in _codeforces_rows(Path(path)):
        require_keys(row, CF_FIELDS, where)
        reason = _cf_exclusion(row, where)
        if reason:
            excluded[reason] += 1
            continue
        problem = _cf_problem(row, where)
        if problem["task_id"] in problems:
            raise ValueError(f"{where}: id {row['id']!r} appears twice")
        problems[problem["task_id"]] = problem
    log.info("Codeforces: %d problems from %s; excluded %d (%s)", len(problems), path,
             sum(excluded.values()), ", ".join(f"{n} {why}" for why, n in excluded.items()) or "none")
    return problems, sum(excluded.values())


def _codeforces_rows(path: Path) -> Iterator[tuple[str, dict]]:
    if path.is_dir():
        files = sorted(path.glob("*.jsonl")) + sorted(path.glob("*.parquet"))
        if not files:
            raise ValueError(f"{path}: no .jsonl or .parquet files")
    elif path.is_file():
        files = [path]
    else:
        raise ValueError(f"{path}: no such Codeforces file or directory")
    for file in files:
        if file.suffix == ".parquet":
            yield from _parquet_rows(file)
        else:
            yield from iter_jsonl(file)


def _parquet_rows(file: Path) -> Iterator[tuple[str, dict]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(f"{file}: reading Parquet needs pyarrow (pip install pyarrow)") from exc
    number = 0
    for batch in pq.ParquetFile(file).iter_batches(batch_size=64):
        for row in batch.to_pylist():
            number += 1
            yield f"{file}, row {number}", row


def _cf_exclusion(row: dict, where: str) -> str | None:
    """Why output comparison cannot grade this problem, or None."""
    for key in ("generated_checker", "interaction_format", "input_mode"):
        if row[key] is not None and not isinstance(row[key], str):
            raise ValueError(f"{where}: key {key!r} must be a string or null")
    if (row["generated_checker"] or "").strip():  # the grader runs checker.py when it is non-empty
        return "needing a checker"
    if (row["interaction_format"] or "").strip():
        return "interactive"
    if row["input_mode"] == "file":
        return "reading input.txt"
    if row["executable"] is False:
        return "not executable"
    if row["time_limit"] is None or row["memory_limit"] is None:
        return "without limits"
    if not row["official_tests"]:
        return "without official tests"
    if row["input_mode"] not in (None, "stdio"):
        raise ValueError(f"{where}: key 'input_mode' is {row['input_mode']!r}, expected 'stdio' or 'file'")
    return None


def _cf_problem(row: dict, where: str) -> dict:
    if not isinstance(row["id"], str) or not row["id"]:
        raise ValueError(f"{where}: key 'id' must be a non-empty string")
    time_limit = _positive_number(row, "time_limit", where)
    memory_mb = _positive_number(row, "memory_limit", where)
    tests = [_cf_test(test, "official_tests", index, where)
             for index, test in enumerate(_expect_type(row, "official_tests", list, where))]
    return {
        "task_id": f"Codeforces/{row['id']}",
        "grader": "codeforces",
        "prompt": _cf_prompt(row, time_limit, memory_mb, where),
        "tests": tests,
        "func_name": None,
        "time_limit_seconds": float(time_limit),
        "memory_bytes": int(memory_mb * 2**20),  # the grader's `ulimit -v` of MEMORY_LIMIT * 1024 KiB
        "starter_code": "",
        "title": row["title"],
        "contest_id": row["contest_id"],
        "rating": row.get("rating"),
        "official_tests_complete": bool(row["official_tests_complete"]),
    }


def _cf_test(test: Any, key: str, index: int, where: str) -> dict:
    if not isinstance(test, dict) or any(not isinstance(test.get(k), str) for k in ("input", "output")):
        raise ValueError(f"{where}: key {key!r}, test {index}: expected string keys 'input' and 'output'")
    return {"input": test["input"], "output": test["output"], "testtype": "stdin"}


def _cf_prompt(row: dict, time_limit: float, memory_mb: float, where: str) -> str:
    """The statement as the website shows it: limits, legend, input, output, examples, note."""
    parts = [f"# {row['title']}",
             f"Time limit per test: {time_limit:g} seconds\nMemory limit per test: {memory_mb:g} megabytes",
             row["description"] or ""]
    for heading, key in (("Input", "input_format"), ("Output", "output_format")):
        if row[key]:
            parts.append(f"## {heading}\n{row[key]}")
    for index, example in enumerate(row["examples"] or [], 1):
        example = _cf_test(example, "examples", index - 1, where)
        parts.append(f"## Example {index}\nInput:\n```\n{example['input'].rstrip()}\n```\n"
                     f"Output:\n```\n{example['output'].rstrip()}\n```")
    if row["note"]:
        parts.append(f"## Note\n{row['note']}")
    return "\n\n".join(part for part in parts if part) + "\n"


def _positive_number(row: dict, key: str, where: str) -> float:
    value = row[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{where}: key {key!r} must be a positive number, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# Shared input helpers


def _expect_type(row: dict, key: str, kind: type, where: str) -> Any:
    if not isinstance(row[key], kind):
        raise ValueError(f"{where}: key {key!r} must be a {kind.__name__}, got {type(row[key]).__name__}")
    return row[key]


def _json_field(row: dict, key: str, where: str) -> Any:
    _expect_type(row, key, str, where)
    try:
        return json.loads(row[key])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: key {key!r} is not valid JSON: {exc}") from None


def _is_identifier(name: Any) -> bool:
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
