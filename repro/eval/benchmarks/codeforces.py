"""Benchmark kind `codeforces`: Codeforces problems of open-r1/codeforces, read from local files.

Data: `open-r1/codeforces`, config `verifiable`, split `test` (CC-BY-4.0; problems from late
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

The prompt, stop rule and grading are the contest kinds' (`_contest.py`).
"""

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from repro.core.files import DataError, iter_jsonl, require_keys
from repro.eval.benchmarks import _contest
from repro.eval.benchmarks._contest import expect_type

log = logging.getLogger(__name__)

# The prompt, stop and post-processing rule, and the checker: the contest kinds' (see _contest.py).
PROMPT_RULE, POSTPROCESS = _contest.PROMPT_RULE, _contest.POSTPROCESS
prompt, stops, program_prefix, solution, checker = (_contest.prompt, _contest.stops, _contest.program_prefix,
                                                    _contest.solution, _contest.checker)

KEYS = ("time_scale",)
"""The kind-specific keys of configs/eval.yaml this kind needs."""

CODEFORCES_DATASET = ("open-r1/codeforces", "verifiable", "test")
# (repository, config, split) on Hugging Face that `load_codeforces` reads; see the module doc.
CF_FIELDS = ("id", "contest_id", "title", "time_limit", "memory_limit", "description",
             "input_format", "output_format", "interaction_format", "note", "examples",
             "official_tests", "official_tests_complete", "input_mode", "generated_checker",
             "executable")
# The open-r1/codeforces columns this module reads (its dataset card lists them all).


def load(path: Path, cfg) -> tuple[dict[str, dict], dict[str, Any]]:
    """The gradable problems, and how many were excluded (for the record)."""
    try:
        tasks, excluded = load_codeforces(path)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    return tasks, {"excluded_ungradable": excluded}


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
             for index, test in enumerate(expect_type(row, "official_tests", list, where))]
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
