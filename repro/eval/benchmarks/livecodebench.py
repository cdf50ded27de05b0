"""Benchmark kind `livecodebench`: LiveCodeBench code generation, read from local release files.

Data: `livecodebench/code_generation_lite` on Hugging Face. Its release files are JSON
lines (test.jsonl is release_v1; test2.jsonl ... test6.jsonl add the later problems) with the
fields of `CodeGenerationProblem` in lcb_runner/benchmarks/code_generation.py. Each problem's
tests run within 6 s (LiveCodeBench's `codegen_metrics(..., timeout=6)`). The date window is
start <= contest_date < end; LCB's own `--end_date` keeps contest_date <= that day at 00:00.

The prompt, stop rule and grading are the contest kinds' (`_contest.py`).
"""

import base64
import binascii
import io
import json
import logging
import pickle
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

from repro.core.files import DataError, iter_jsonl, require_keys
from repro.eval.benchmarks import _contest
from repro.eval.benchmarks._contest import expect_type, is_identifier, json_field

log = logging.getLogger(__name__)

# The prompt, stop and post-processing rule, and the checker: the contest kinds' (see _contest.py).
PROMPT_RULE, POSTPROCESS = _contest.PROMPT_RULE, _contest.POSTPROCESS
prompt, stops, program_prefix, solution, checker = (_contest.prompt, _contest.stops, _contest.program_prefix,
                                                    _contest.solution, _contest.checker)

KEYS = ("start_date", "end_date", "time_scale")
"""The kind-specific keys of configs/eval.yaml this kind needs."""

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
MAX_PRIVATE_TESTS_BYTES = 2**30
# Not from upstream: a bound on one decompressed `private_test_cases` field, against a
# decompression bomb; far above any real problem's tests (whole release files are 0.1-1.3 GB).


def load(path: Path, cfg) -> tuple[dict[str, dict], dict[str, Any]]:
    """The problems of the configured date window, and what was filtered (for the record)."""
    try:
        tasks = load_livecodebench(path, cfg.start_date, cfg.end_date)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    return tasks, {"start_date": cfg.start_date, "end_date": cfg.end_date}


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
        expect_type(row, key, str, where)
    for key, allowed in (("platform", LCB_PLATFORMS), ("difficulty", LCB_DIFFICULTIES)):
        if row[key] not in allowed:
            raise ValueError(f"{where}: key {key!r} is {row[key]!r}, expected one of {allowed}")
    public = _lcb_tests(json_field(row, "public_test_cases", where), "public_test_cases", where)
    private = _lcb_tests(_lcb_private_tests(row["private_test_cases"], where),
                         "private_test_cases", where)
    metadata = json_field(row, "metadata", where)
    if not isinstance(metadata, dict):
        raise ValueError(f"{where}: key 'metadata' must hold a JSON object")
    func_name = metadata.get("func_name")
    if func_name is not None and not is_identifier(func_name):
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
