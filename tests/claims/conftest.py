"""The claims on real runs. Tiny scale: the pipeline runs once per test session (session fixtures;
stages are cached in the git-ignored runs/, so a developer's later sessions reuse them) and every
claim's `check()` runs on its record, as `ra3-repro verify` does. Small and paper scales: the tests
read a results directory (`--results-dir DIR` or RA3_RESULTS_DIR) holding claim runs, and skip
without one.
"""

from pathlib import Path

import pytest

from repro.claims import module
from repro.claims.record import load_record
from repro.core.scale import resolve_scale

# One seed keeps the session in minutes; the tiny guards' bands widen for it (verdicts.guard_verdict), which judge the
# run by the guards of the precision it trained in (bf16 or fp32: `mixed_precision: auto` on this CPU).
TINY_SEEDS = [0]
# The penalty ablation trains three RA3 models: a shortened schedule keeps it to a few minutes. With
# --set, its tiny guards do not apply (they hold for the shipped settings only); the ordering
# check (think rate falls as c grows) runs and reports within-noise steps as INCONCLUSIVE.
PENALTY_SMOKE = ("ntp.max_steps=50", "ra3.rounds=1", "ra3.estep_steps=4", "generation.n=1")
# RLVR curves from table1's cached inits: 4 GRPO steps, curve points every 2 on 40 held-out tasks (with one
# seed every curve verdict is INCONCLUSIVE; the run, record, evidence and check are what is tested).
RLVR_SMOKE = ("rlvr.max_steps=4", "rlvr.eval_every=2", "rlvr.eval_tasks=40")


# Every mid-training claim runs here, in this order (later claims reuse earlier claims' cached stages),
# with these `--set` overrides; `theory` is tested on its own (tests/unit/test_theory.py).
TINY_RUNS = {"table1": (), "mstep_loss": (), "synthetic_reasoning": (), "penalty_ablation": PENALTY_SMOKE,
             "rlvr_curves": RLVR_SMOKE}


def pytest_generate_tests(metafunc):
    """`tiny_claim`: each claim of TINY_RUNS in turn."""
    if "tiny_claim" in metafunc.fixturenames:
        metafunc.parametrize("tiny_claim", list(TINY_RUNS))


@pytest.fixture(scope="session")
def tiny_claims() -> list[str]:
    return list(TINY_RUNS)


def _run(claim: str, out: Path, sets=()) -> dict:
    scale = resolve_scale("tiny", sets)
    module(claim).run(scale, TINY_SEEDS, out, sets)
    return load_record(out)


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> Path:
    """A directory of tiny claim runs: table1 and mstep_loss with the shipped settings, the penalty
    ablation and the RLVR curves shortened."""
    root = tmp_path_factory.mktemp("claims")
    for claim, sets in TINY_RUNS.items():
        _run(claim, root / claim, sets)
    return root


@pytest.fixture(scope="session")
def results_dir(pytestconfig) -> Path:
    value = pytestconfig.getoption("--results-dir")  # declared in tests/conftest.py
    if not value:
        pytest.skip("no small/paper results: pass --results-dir DIR or set RA3_RESULTS_DIR to a directory of "
                    "claim runs (e.g. from `ra3-repro table1 --scale small --out DIR/table1`)")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"--results-dir {path} is not a directory")
    return path
