"""Shared fixtures: a private data directory, and configs that accept the test data files."""

import dataclasses
import os
from pathlib import Path

import pytest
import yaml

from repro.core.eval_config import EVAL_CONFIG
from repro.eval.benchmarks import load_eval_config

FIXTURES = Path(__file__).parent / "fixtures"
# Benchmarks whose real files are pinned by sha256; the fixtures in their schemas are not them.
FIXTURE_BACKED = ("humaneval+", "mbpp", "mbpp+")


def pytest_addoption(parser):
    parser.addoption("--results-dir", default=os.environ.get("RA3_RESULTS_DIR"),
                     help="tests/claims: a directory of small/paper claim runs (RUN/record.json) to verify")


@pytest.fixture(autouse=True)
def private_data_dir(tmp_path_factory, monkeypatch):
    """The suite's data directory (EvalPlus ground truth, fetched files), one per test session."""
    monkeypatch.setenv("RA3_DATA_DIR", str(tmp_path_factory.getbasetemp() / "ra3-data"))


@pytest.fixture(scope="session")
def fixture_config():
    """The shipped eval config with the EvalPlus pins lifted, so fixture files in their schema load."""
    config = load_eval_config()
    unpinned = {name: dataclasses.replace(config.benchmarks[name], sha256=None) for name in FIXTURE_BACKED}
    return dataclasses.replace(config, benchmarks={**config.benchmarks, **unpinned})


@pytest.fixture(scope="session")
def fixture_config_path(tmp_path_factory):
    """The same as a YAML file, for the command line's --config."""
    data = yaml.safe_load(EVAL_CONFIG.read_text())
    for name in FIXTURE_BACKED:
        data["benchmarks"][name]["sha256"] = None
    path = tmp_path_factory.mktemp("config") / "eval.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
