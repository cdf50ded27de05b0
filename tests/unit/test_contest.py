"""The contest kinds (repro/eval/benchmarks: livecodebench, codeforces, _contest): LiveCodeBench and
Codeforces loaders and the sandboxed contest scorer.

The fixtures under tests/fixtures/ are problems written for these tests in the upstream schemas.
"""

import base64
import json
import os
import pickle
import re
import zlib
from pathlib import Path

import pytest

from repro.eval.benchmarks._contest import check_contest
from repro.eval.benchmarks.codeforces import load_codeforces
from repro.eval.benchmarks.livecodebench import load_livecodebench

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LCB_DIR = FIXTURES / "livecodebench"
LCB_RELEASE_1 = LCB_DIR / "test.jsonl"
CF_FILE = FIXTURES / "codeforces" / "test.jsonl"

PAIR_SUM = "a, b = map(int, input().split())\nprint(a + b)\n"
SHIFT_ALL = (
    "class Solution:\n"
    "    def shiftAll(self, nums: List[int], k: int) -> List[int]:\n"
    "        return [x - k for x in nums]\n"
)
DOUBLE_IT = "print(2 * int(input()))\n"
EVEN_TEST = "for _ in range(int(input())):\n    print('yes' if int(input()) % 2 == 0 else 'no')\n"


@pytest.fixture(scope="module")
def lcb() -> dict[str, dict]:
    return load_livecodebench(LCB_DIR, "2023-01-01", "2025-01-01")


@pytest.fixture(scope="module")
def codeforces() -> dict[str, dict]:
    return load_codeforces(CF_FILE)[0]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


# --- LiveCodeBench loading ------------------------------------------------------------------


def test_date_window_is_half_open_and_reads_every_release(lcb):
    window = load_livecodebench(LCB_DIR, "2024-03-01", "2024-05-01")
    # 9001 is dated exactly at the start (kept); 1999Z (test2.jsonl) exactly at the end (dropped).
    assert sorted(window) == ["LiveCodeBench/9001", "LiveCodeBench/fx101_a"]
    assert sorted(lcb) == ["LiveCodeBench/1999Z", "LiveCodeBench/9001", "LiveCodeBench/fx099_b",
                           "LiveCodeBench/fx101_a"]
    assert sorted(load_livecodebench(LCB_RELEASE_1, "2023-12-01", "2024-01-01")) == [
        "LiveCodeBench/fx099_b"]


def test_bad_window_is_rejected():
    with pytest.raises(ValueError, match="start_date"):
        load_livecodebench(LCB_DIR, "2024-05-01", "2024-03-01")
    with pytest.raises(ValueError, match="end_date"):
        load_livecodebench(LCB_DIR, "2024-03-01", "May 2024")


def test_problem_dict_and_private_test_decoding(lcb):
    functional = lcb["LiveCodeBench/9001"]
    # public first, then the two private tests stored as base64(zlib(pickle(JSON string)))
    assert [test["input"] for test in functional["tests"]] == ["[5, 7, 9]\n2", "[]\n4", "[0, -3]\n-1"]
    assert {test["testtype"] for test in functional["tests"]} == {"functional"}
    assert functional["func_name"] == "shiftAll"
    assert functional["starter_code"].startswith("class Solution:")
    assert functional["starter_code"] in functional["prompt"]
    stdin = lcb["LiveCodeBench/fx101_a"]
    assert stdin["func_name"] is None and len(stdin["tests"]) == 3
    assert stdin["prompt"].startswith("You are given two integers")
    assert stdin["time_limit_seconds"] == 6.0 and stdin["memory_bytes"] == 4 * 2**30


def test_malicious_private_tests_pickle_is_rejected(tmp_path):
    marker = tmp_path / "pwned"

    class CallsOsSystem:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    row = _lines(LCB_RELEASE_1)[1]
    row["private_test_cases"] = base64.b64encode(zlib.compress(pickle.dumps(CallsOsSystem()))).decode()
    path = _write_jsonl(tmp_path / "test.jsonl", [row])
    with pytest.raises(ValueError, match=r"line 1: key 'private_test_cases'.*global lookups are forbidden"):
        load_livecodebench(path, "2024-01-01", "2025-01-01")
    assert not marker.exists()


def test_private_tests_pickle_must_hold_a_string(tmp_path):
    row = _lines(LCB_RELEASE_1)[1]
    tests = [{"input": "[1]\n1", "output": "[0]", "testtype": "functional"}]
    row["private_test_cases"] = base64.b64encode(zlib.compress(pickle.dumps(tests))).decode()
    path = _write_jsonl(tmp_path / "test.jsonl", [row])
    with pytest.raises(ValueError, match="unpickles to list, expected a str"):
        load_livecodebench(path, "2024-01-01", "2025-01-01")


def test_malformed_lcb_line_names_file_line_and_key(tmp_path):
    rows = _lines(LCB_RELEASE_1)
    del rows[2]["question_id"]
    path = _write_jsonl(tmp_path / "test.jsonl", rows)
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 3: missing key(s) ['question_id']")):
        load_livecodebench(path, "2023-01-01", "2025-01-01")
    path = _write_jsonl(tmp_path / "test.jsonl", [rows[0], "{not json"])
    with pytest.raises(ValueError, match=r"test.jsonl, line 2: not valid JSON"):
        load_livecodebench(path, "2023-01-01", "2025-01-01")


# --- LiveCodeBench grading ------------------------------------------------------------------


def test_stdin_solution_passes(lcb):
    status, detail = check_contest(lcb["LiveCodeBench/fx101_a"], PAIR_SUM)
    assert (status, detail) == ("pass", "3 tests passed")


def test_trailing_whitespace_and_exit_are_tolerated(lcb):
    sloppy = "a, b = map(int, input().split())\nprint(a + b, '  ')\nprint()\nprint('   ')\nexit(0)\n"
    assert check_contest(lcb["LiveCodeBench/fx101_a"], sloppy)[0] == "pass"
    reverse = "n = int(input())\nfor _ in range(n):\n    print('  ' + input()[::-1] + '\\t')\n"
    assert check_contest(lcb["LiveCodeBench/1999Z"], reverse)[0] == "pass"


def test_numbers_compare_as_decimals(lcb):
    # "2.5" is the Decimal 2.50 (LCB's second comparison), so it matches "2.50"; "2.49" does not.
    assert check_contest(lcb["LiveCodeBench/fx099_b"], "print(int(input()) / 2)")[0] == "pass"
    status, detail = check_contest(lcb["LiveCodeBench/fx099_b"], "print(int(input()) / 2 - 0.01)")
    assert status == "fail" and "test 1 of 2" in detail


def test_wrong_answer_fails_at_the_first_bad_test(lcb):
    status, detail = check_contest(lcb["LiveCodeBench/fx101_a"], "print(8)")
    assert status == "fail"
    assert detail.startswith("test 2 of 3: wrong answer at line 1: '8' != '0'")
    status, detail = check_contest(lcb["LiveCodeBench/fx101_a"], "print(8)\nprint(8)")
    assert (status, detail) == ("fail", "test 1 of 3: wrong answer: 2 output lines, expected 1")


def test_infinite_loop_times_out(lcb):
    status, detail = check_contest(lcb["LiveCodeBench/fx101_a"], "while True:\n    pass\n",
                                   time_scale=0.05)
    assert status == "timeout" and detail.startswith("test 1 of 3")


def test_exception_is_an_error(lcb):
    status, detail = check_contest(lcb["LiveCodeBench/fx101_a"], "raise ValueError('boom')")
    assert status == "error" and "ValueError: boom" in detail
    # an assertion escaping a stdin program is a runtime error too, not a wrong answer
    assert check_contest(lcb["LiveCodeBench/fx101_a"], "assert False, 'mine'")[0] == "error"


def test_functional_solution_passes_with_lcb_prelude(lcb):
    # `List` comes from LCB's import prelude; a tuple counts as a list.
    assert check_contest(lcb["LiveCodeBench/9001"], SHIFT_ALL) == ("pass", "3 tests passed")
    as_tuple = SHIFT_ALL.replace("return [x - k for x in nums]", "return tuple(x - k for x in nums)")
    assert check_contest(lcb["LiveCodeBench/9001"], as_tuple)[0] == "pass"
    # without a `class Solution`, LCB calls a module-level function of that name
    function = "def shiftAll(nums, k):\n    return [x - k for x in nums]\n"
    assert check_contest(lcb["LiveCodeBench/9001"], function)[0] == "pass"
    # as in LCB, the solution is not `__main__`: a model's example usage does not run
    usage = SHIFT_ALL + "if __name__ == '__main__':\n    print(Solution().shiftAll(eval(input()), 1))\n"
    assert check_contest(lcb["LiveCodeBench/9001"], usage)[0] == "pass"


def test_functional_wrong_answer_fails(lcb):
    wrong = SHIFT_ALL.replace("x - k", "x + k")
    status, detail = check_contest(lcb["LiveCodeBench/9001"], wrong)
    assert status == "fail"
    assert detail == "test 1 of 3: AssertionError: wrong answer: got [7, 9, 11], expected [3, 5, 7]"


def test_functional_errors_and_early_exit(lcb):
    raising = SHIFT_ALL.replace("return [x - k for x in nums]", "return nums[10]")
    assert check_contest(lcb["LiveCodeBench/9001"], raising)[0] == "error"
    asserting = SHIFT_ALL.replace("return [x - k for x in nums]", "assert False")
    assert check_contest(lcb["LiveCodeBench/9001"], asserting)[0] == "error"
    # exiting before the harness runs never passes a functional problem
    assert check_contest(lcb["LiveCodeBench/9001"], SHIFT_ALL + "exit(0)\n")[0] == "error"


# --- Codeforces -----------------------------------------------------------------------------


def test_codeforces_excludes_problems_needing_a_checker(codeforces):
    problems, excluded = load_codeforces(CF_FILE)
    assert excluded == 1
    assert sorted(problems) == ["Codeforces/9101/A", "Codeforces/9102/A"]
    problem = problems["Codeforces/9101/A"]
    assert problem["time_limit_seconds"] == 1.0 and problem["memory_bytes"] == 256 * 2**20
    assert problem["func_name"] is None and problem["starter_code"] == ""
    assert problem["tests"][1] == {"input": "1000000000\n", "output": "2000000000\n", "testtype": "stdin"}
    assert "# Double It" in problem["prompt"] and "## Example 1" in problem["prompt"]


def test_codeforces_reads_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "test-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(_lines(CF_FILE)), path)
    assert load_codeforces(path) == load_codeforces(CF_FILE)


def test_malformed_codeforces_row_names_file_line_and_key(tmp_path):
    rows = _lines(CF_FILE)
    del rows[1]["official_tests"]
    path = _write_jsonl(tmp_path / "cf.jsonl", rows)
    with pytest.raises(ValueError, match=r"cf.jsonl, line 2: missing key\(s\) \['official_tests'\]"):
        load_codeforces(path)
    rows = _lines(CF_FILE)
    rows[0]["time_limit"] = "1 second"
    path = _write_jsonl(tmp_path / "cf.jsonl", rows)
    with pytest.raises(ValueError, match=r"cf.jsonl, line 1: key 'time_limit' must be a positive number"):
        load_codeforces(path)


def test_codeforces_grading(codeforces):
    assert check_contest(codeforces["Codeforces/9101/A"], DOUBLE_IT) == ("pass", "2 tests passed")
    # tokens are compared, and whole-word yes/no in any case
    assert check_contest(codeforces["Codeforces/9102/A"], EVEN_TEST)[0] == "pass"
    one_line = "input()\nprint(*('YES' if int(x) % 2 == 0 else 'NO' for x in __import__('sys').stdin))"
    assert check_contest(codeforces["Codeforces/9102/A"], one_line)[0] == "pass"
    assert check_contest(codeforces["Codeforces/9101/A"], "print(8)")[0] == "fail"
    loop = "while True:\n    pass\n"
    assert check_contest(codeforces["Codeforces/9101/A"], loop, time_scale=0.3)[0] == "timeout"
    assert check_contest(codeforces["Codeforces/9101/A"], "x = bytearray(2**30)")[0] == "memory"
