"""This process's place in a run of several processes, from the environment that `torchrun` and
`accelerate launch` set: RANK (global), WORLD_SIZE and LOCAL_RANK (the GPU on this node).

Environment only, no torch: the core writes the run files (`runs.py`: identity.json, DONE.json,
run.log) and must know whether it is their one writer, and the core imports no torch, not even
inside a function (repro/__init__.py). A single process (no torchrun) is rank 0 of 1. The barrier,
which needs torch.distributed, is `repro.eval.barrier.barrier`: eval is the lowest layer that may
import torch, and evaluation (rank 0 evaluates, the others wait) is its first user.
"""

import os


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    """Whether this process writes the run's shared files (rank 0; the only process of a plain run)."""
    return rank() == 0
