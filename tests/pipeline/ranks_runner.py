"""Run by tests/pipeline/test_two_processes.py under `torchrun --nproc_per_node 2` (gloo, CPU): the tiny world, a
20-step pretraining, a 20-step NTP stage (checkpoint at step 10) and an evaluation of its model on
tiny-heldout (n=1). Each rank writes `paths-<rank>.json` (the paths the stages returned to it) and
`writes-<rank>.jsonl` (every file it wrote through `atomic_write`, and when), for the test to read.

    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 tests/pipeline/ranks_runner.py ROOT
"""

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch

from repro import pipeline
from repro.core import files
from repro.core.scale import load_scale

SHORT = {"max_steps": 20, "checkpoint_every": 10, "log_every": 5, "warmup_steps": 2}
GENERATION = {"n": 1, "max_new_tokens": 48}


def scale_and_generation():
    tiny = load_scale("tiny")
    scale = dataclasses.replace(tiny, pretrain=dataclasses.replace(tiny.pretrain, **SHORT),
                                ntp=dataclasses.replace(tiny.ntp, **SHORT))
    return scale, dataclasses.replace(tiny.generation, **GENERATION)


def record_writes(log_file: Path) -> None:
    """Every module holding `atomic_write` gets a copy that also logs (path, time) to `log_file`."""
    original = files.atomic_write

    def logged(path, text):
        original(path, text)
        with open(log_file, "a") as f:
            f.write(json.dumps({"path": str(path), "time": time.time()}) + "\n")

    for module in list(sys.modules.values()):
        if getattr(module, "atomic_write", None) is original:
            module.atomic_write = logged


def main(root: Path) -> None:
    torch.set_num_threads(1)
    rank = os.environ.get("RANK", "0")
    record_writes(root / f"writes-{rank}.jsonl")
    scale, generation = scale_and_generation()
    base = pipeline.pretrain_stage(scale, root)
    ntp = pipeline.ntp_stage(scale, str(base), root)
    evaluation = pipeline.eval_stage(str(ntp), "tiny-heldout", generation, root)
    (root / f"paths-{rank}.json").write_text(json.dumps({"base": str(base), "ntp": str(ntp),
                                                         "eval": str(evaluation)}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
