"""Training precision: what `mixed_precision: auto` (the tiny scale's setting) means on this machine.

bf16 autocast with fp32 master weights where bf16 is native, fp32 where it would be emulated: on a
CPU without AVX-512 BF16 or AMX, oneDNN emulates bf16 an order of magnitude slower than fp32 (the
tiny pretraining made 1,017 tokens/s under bf16 autocast and 12,755 in fp32 on a 2-core AVX2-only
EPYC, `python benchmarks/train_throughput.py --steps 12`, 2026-12-02). Everything that depends on the
precision reads it through `effective`: the run's `Accelerator` (repro/train/zero.py), the E-step's
autocast, the identities of cached stages (repro/pipeline.py) and the claim records, so a stage
cached in one precision never stands for the other.
"""

import dataclasses
from typing import Literal, TypeVar

Config = TypeVar("Config")


def bf16_is_native() -> bool | None:
    """Whether this machine computes bf16 natively: a CUDA device with bf16, or a CPU with AVX-512 BF16 or AMX
    (oneDNN's own probe, which honours ONEDNN_MAX_CPU_ISA). None where torch lacks the probe."""
    import torch  # here, not at the top: stage identities are computed by commands that train nothing

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return None


def native_precision() -> Literal["no", "bf16"]:
    """What `auto` trains in here: bf16 where it is native, fp32 otherwise (and where the probe is missing)."""
    return "bf16" if bf16_is_native() else "no"


def effective(cfg: Config) -> Config:
    """`cfg` (a TrainConfig) with `mixed_precision: auto` replaced by this machine's `native_precision()`;
    unchanged when it names a precision."""
    if getattr(cfg, "mixed_precision", None) != "auto":
        return cfg
    return dataclasses.replace(cfg, mixed_precision=native_precision())
