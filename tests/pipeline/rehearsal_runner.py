"""`python tests/pipeline/rehearsal_runner.py VERB ARGS`: `ra3-repro VERB ARGS` run with the CPU as if it were
the GPU the small scale is written for (tests/virtual_accelerator.py): a tensor a stage makes on the host and
feeds to, or mixes with, the model raises WrongDevice, as it would fail on a GPU. Used by the small scale's
rehearsal (tests/pipeline/test_small_rehearsal.py), one process per command, and by the paper scale's
(tests/pipeline/test_paper_rehearsal.py), under `torchrun` with DeepSpeed's CPU backend.

RA3_TEST_PLAIN_CPU=1 runs without the virtual accelerator: for GRPO under ZeRO-3, where TRL loads the model
inside DeepSpeed's `zero.Init`, whose parameter gathering assigns `param.data` to views of its own buffers, which
the virtual accelerator cannot follow (the small rehearsal checks GRPO's devices without DeepSpeed).

RA3_TEST_KILL=RANK:STEP (the paper rehearsal's kill): process RANK dies (os._exit) right after the first
training checkpoint STEP of the run is marked complete, once (it leaves `killed` in RA3_RUNS_DIR).

Also lifts the sha256 pins of the EvalPlus benchmarks (humaneval+, mbpp, mbpp+), as tests/conftest.py's
`fixture_config` does: CI has no network to download EvalPlus's release files, so the rehearsal points
HUMANEVAL_OVERRIDE_PATH and MBPP_OVERRIDE_PATH (EvalPlus's own variables) at the fixtures in EvalPlus's
schema (tests/fixtures/evalplus), which the pins would rightly refuse. HumanEval is the real file.
"""

import contextlib
import dataclasses
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the fixtures' helpers

from conftest import FIXTURE_BACKED
from virtual_accelerator import VirtualAccelerator

from repro import cli
from repro.core import ranks, runs
from repro.eval import benchmarks
from repro.train import ntp

shipped_config = benchmarks.load_eval_config


def fixture_config(*args, **kwargs):
    config = shipped_config(*args, **kwargs)
    unpinned = {name: dataclasses.replace(config.benchmarks[name], sha256=None) for name in FIXTURE_BACKED}
    return dataclasses.replace(config, benchmarks={**config.benchmarks, **unpinned})


def kill_after_checkpoint(rank: int, step: int) -> None:
    """Process `rank` dies once checkpoint `step` of the first training stage to reach it is marked complete
    (rank 0 marks it; the others wait for the mark, so the checkpoint a resume finds is whole)."""
    save = ntp._save_checkpoint

    def saved_then_killed(accelerator, run_dir, at):
        save(accelerator, run_dir, at)
        marker = Path(os.environ["RA3_RUNS_DIR"]) / "killed"
        if ranks.rank() == rank and at == step and not marker.exists():
            checkpoint = Path(run_dir) / f"checkpoint-{at}"
            deadline = time.monotonic() + 60
            while runs.latest_checkpoint(run_dir) != checkpoint and time.monotonic() < deadline:
                time.sleep(0.1)
            marker.write_text(str(checkpoint))
            os._exit(9)

    ntp._save_checkpoint = saved_then_killed


if __name__ == "__main__":
    benchmarks.load_eval_config = fixture_config  # every caller looks it up on the module when it runs
    if "RA3_TEST_KILL" in os.environ:
        kill_after_checkpoint(*map(int, os.environ["RA3_TEST_KILL"].split(":")))
    with contextlib.nullcontext() if os.environ.get("RA3_TEST_PLAIN_CPU") else VirtualAccelerator():
        code = cli.main(sys.argv[1:])
    sys.exit(code)
