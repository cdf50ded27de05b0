"""`python tests/pipeline/rehearsal_runner.py VERB ARGS`: `ra3-repro VERB ARGS` run with the CPU as if it were
the GPU the small scale is written for (tests/virtual_accelerator.py): a tensor a stage makes on the host and
feeds to, or mixes with, the model raises WrongDevice, as it would fail on a GPU. Used by the small scale's
rehearsal (tests/pipeline/test_small_rehearsal.py), one process per command.

Also lifts the sha256 pins of the EvalPlus benchmarks (humaneval+, mbpp, mbpp+), as tests/conftest.py's
`fixture_config` does: CI has no network to download EvalPlus's release files, so the rehearsal points
HUMANEVAL_OVERRIDE_PATH and MBPP_OVERRIDE_PATH (EvalPlus's own variables) at the fixtures in EvalPlus's
schema (tests/fixtures/evalplus), which the pins would rightly refuse. HumanEval is the real file.
"""

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the fixtures' helpers

from conftest import FIXTURE_BACKED
from virtual_accelerator import VirtualAccelerator

from repro import cli
from repro.eval import benchmarks

shipped_config = benchmarks.load_eval_config


def fixture_config(*args, **kwargs):
    config = shipped_config(*args, **kwargs)
    unpinned = {name: dataclasses.replace(config.benchmarks[name], sha256=None) for name in FIXTURE_BACKED}
    return dataclasses.replace(config, benchmarks={**config.benchmarks, **unpinned})


if __name__ == "__main__":
    benchmarks.load_eval_config = fixture_config  # every caller looks it up on the module when it runs
    with VirtualAccelerator():
        code = cli.main(sys.argv[1:])
    sys.exit(code)
