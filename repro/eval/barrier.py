"""A barrier across the processes of one run, whether or not torch.distributed is set up yet.

One process: nothing to wait for, and nothing is touched (no process group, no RNG), so a plain run
is what it was. Several (torchrun): the process group accelerate sets up for training is reused; a
process that has not trained yet (an evaluation-only run) joins it through `accelerate.PartialState`,
which picks gloo on CPUs (MULTI_CPU) and NCCL on GPUs, as the trainer's `Accelerator` would.

Here and not in the core because it imports torch (`repro.core.ranks` holds the environment-only
part); eval is the lowest layer allowed to, and every layer above shares this one barrier.
"""

from repro.core import ranks


def barrier() -> None:
    """Return once every process of the run has called this (at once in a single process).

    The group's timeout (accelerate's default, 30 minutes) bounds the wait: work longer than that
    on one rank waits on a file instead (`repro.core.runs.wait_done`)."""
    if ranks.world_size() == 1:
        return
    import torch
    from accelerate import PartialState

    PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()
