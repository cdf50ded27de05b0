"""The tiny pipeline end to end: world -> base model -> NTP, each evaluated on tiny-heldout.

Runs once per test session (minutes: about 4 of pretraining on 2 cores) into the git-ignored
`runs/`, where a developer's later sessions find the finished stages and reuse them.
"""

import dataclasses
import json

import pytest

from repro import pipeline
from repro.core.scale import load_scale
from repro.eval import benchmarks, score

pytestmark = pytest.mark.slow  # trains and evaluates the tiny pipeline (minutes)


@pytest.fixture(scope="session")
def tiny():
    return load_scale("tiny")


@pytest.fixture(scope="session")
def base_model(tiny):
    return pipeline.pretrain_stage(tiny)


@pytest.fixture(scope="session")
def ntp_model(tiny, base_model):
    return pipeline.ntp_stage(tiny, str(base_model))


@pytest.fixture(scope="session")
def heldout():
    config = benchmarks.load_eval_config()
    return config, benchmarks.load_benchmark("tiny-heldout", config)


def test_the_base_model_solves_a_real_share_of_heldout_tasks(tiny, base_model, heldout):
    config, benchmark = heldout
    out = pipeline.eval_stage(str(base_model), "tiny-heldout", tiny.generation)  # cached: table1 reuses it
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_tasks"] == len(benchmark.tasks) and metrics["samples_per_task"]["min"] == tiny.generation.n
    assert 0.05 < metrics["pass@1"] <= metrics["pass@5"]
    generation = json.loads((out / "generation.json").read_text())
    assert generation["generation"] == dataclasses.asdict(tiny.generation) and generation["stops"]


def test_ntp_model_is_evaluated_with_identical_settings(tiny, base_model, ntp_model, heldout, tmp_path_factory):
    config, benchmark = heldout
    runs = {}
    for name, model in (("base", base_model), ("ntp", ntp_model)):
        out = tmp_path_factory.mktemp(f"eval-{name}-again")
        score.evaluate_model(str(model), benchmark, config, tiny.generation, out, limit=40)
        runs[name] = json.loads((out / "generation.json").read_text())
    same = {k: v for k, v in runs["base"].items() if k not in ("model", "hash", "generation_seconds")}
    assert same == {k: v for k, v in runs["ntp"].items() if k not in ("model", "hash", "generation_seconds")}


def test_real_humaneval_runs_offline_with_the_tiny_model(tiny, base_model, tmp_path):
    config = benchmarks.load_eval_config()
    benchmark = benchmarks.load_benchmark("humaneval", config)
    greedy = dataclasses.replace(tiny.generation, n=1, temperature=0.0, max_new_tokens=64)
    metrics = score.evaluate_model(str(base_model), benchmark, config, greedy, tmp_path, limit=16)
    assert metrics["n_samples"] == 16 and 0.0 <= metrics["pass@1"] <= 1.0
    assert (tmp_path / "samples_raw.jsonl").exists() and (tmp_path / "outcomes.jsonl").exists()
