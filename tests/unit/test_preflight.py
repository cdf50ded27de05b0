"""Bad input at the small scale stops a claim before anything trains, in one line that names what is
missing and how to get it, with exit code 2: a model missing from an offline cache, a revision the hub
does not have, a gated model without a token, an RL set whose revision is not pinned. Each case runs the
real command line in its own process (huggingface_hub reads its endpoint and cache at import)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from repro.core.scale import load_scale

SMALL = load_scale("small")
MODEL = SMALL.models[0]


def claim(args: list[str], tmp_path: Path, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "RA3_RUNS_DIR": str(tmp_path / "runs"), **env}
    if "HF_HUB_OFFLINE" not in env:
        environment.pop("HF_HUB_OFFLINE", None)
    return subprocess.run([sys.executable, "-m", "repro.cli", *args, "--cache", str(tmp_path / "cache")],
                          capture_output=True, text=True, env=environment, timeout=300)


def one_line_exit_2(result: subprocess.CompletedProcess, tmp_path: Path, *expected: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.startswith("ra3-repro: error")]
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    stages = [p.name for p in (tmp_path / "runs").glob("*") if p.name != "claims"]  # claims/: the run's own folder
    assert stages == [], f"stages started before the error: {stages}"


def test_a_model_missing_from_the_offline_cache(tmp_path):
    result = claim(["table1", "--scale", "small"], tmp_path, HF_HUB_OFFLINE="1")
    one_line_exit_2(result, tmp_path, f"{MODEL.hub_id}@{MODEL.revision} is not in the hub cache",
                    "ra3-repro fetch --scale small --cache DIR")


@pytest.mark.parametrize(("status", "code", "expected"), [
    (404, "RevisionNotFound", f"{MODEL.hub_id} has no revision {MODEL.revision}: check its pin in "
                              "configs/scales/small.yaml"),
    (403, "GatedRepo", f"{MODEL.hub_id} is gated: accept its terms at https://huggingface.co/{MODEL.hub_id} and set "
                       "HF_TOKEN"),
])
def test_the_hub_refuses_the_model(tmp_path, fake_hub, status, code, expected):
    fake_hub.refusals[MODEL.hub_id] = (status, code)
    result = claim(["mstep_loss", "--scale", "small"], tmp_path, HF_ENDPOINT=fake_hub.endpoint)
    one_line_exit_2(result, tmp_path, expected)


def test_an_unpinned_rl_set(tmp_path):
    assert SMALL.rlvr.train_data.revision == "UNPINNED"  # as shipped: no public commit was found
    result = claim(["rlvr_curves", "--scale", "small"], tmp_path, HF_HUB_OFFLINE="1")
    one_line_exit_2(result, tmp_path, "rlvr.train_data (inclusionAI/AReaL-boba-2-RL-Code) has revision 'UNPINNED'",
                    "pin one in configs/scales/small.yaml")
