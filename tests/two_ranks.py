"""Running a test's runner script under `torchrun --nproc_per_node 2` (gloo on the CPU), for the slow tests
under tests/pipeline/ that rehearse several processes: one thread per rank, the repository importable, and
a failure reported by the ranks' own error lines rather than torchrun's summary."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def torchrun(runner: Path, args: list[str], timeout: int, **environment: str) -> subprocess.CompletedProcess:
    """`runner ARGS` on 2 processes; `environment` adds variables (the runners' test switches)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **environment}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(runner), *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


def assert_succeeded(result: subprocess.CompletedProcess) -> None:
    errors = [line for line in result.stderr.splitlines() if "Error" in line and "ChildFailedError" not in line]
    assert result.returncode == 0, "\n".join(errors[-20:]) or result.stderr[-4000:]
