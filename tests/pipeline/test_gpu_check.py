"""tools/gpu_check.py, the script a lent GPU runs, rehearsed on the CPU with its shortest sizes: the same
stages, in the same order, writing the same report."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a few minutes: world, pretraining, NTP, RA3, three evaluations, GRPO

ROOT = Path(__file__).resolve().parents[2]


def test_the_gpu_check_runs_end_to_end_on_the_cpu(tmp_path):
    env = {**os.environ, "RA3_RUNS_DIR": str(tmp_path / "runs"), "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--out", str(tmp_path),
                             "--device", "cpu", "--quick"], capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(report["pass@1"]) == {"base", "ntp", "ra3", "ntp + GRPO"}
    assert all(0 <= v <= 1 for v in report["pass@1"].values())
    assert report["train_tokens_per_second"]["ntp"] > 0 and report["estep"]["steps"] == 2
    assert {"world + pretraining", "NTP", "RA3", "GRPO"} <= set(report["seconds"])
