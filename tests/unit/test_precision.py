"""`mixed_precision: auto`: bf16 autocast where bf16 is native, fp32 where a CPU would emulate it. What the
machine resolves it to must reach everything that depends on it: the run's Accelerator, the identities of
cached stages and the claim records (repro/train/precision.py)."""

import dataclasses
import os
import platform
import subprocess
import sys

import pytest
import yaml

from repro import pipeline
from repro.core.config import CONFIG_DIR
from repro.core.scale import load_scale, resolve_scale
from repro.train import precision


@pytest.fixture(params=[True, False, None], ids=["native", "emulated", "no-probe"])
def native(request, monkeypatch):
    """This machine as one with native bf16, one that emulates it, and a torch without the probe."""
    monkeypatch.setattr(precision, "bf16_is_native", lambda: request.param)
    return request.param


def test_the_tiny_scale_trains_in_auto_and_auto_resolves_to_what_is_native(native):
    raw = yaml.safe_load((CONFIG_DIR / "scales" / "tiny.yaml").read_text())
    assert raw["pretrain"]["mixed_precision"] == raw["ntp"]["mixed_precision"] == "auto"
    tiny = load_scale("tiny")
    expected = "bf16" if native else "no"
    assert precision.effective(tiny.pretrain).mixed_precision == expected
    assert precision.effective(tiny.ntp) == dataclasses.replace(tiny.ntp, mixed_precision=expected)
    forced = resolve_scale("tiny", ["ntp.mixed_precision=bf16", "pretrain.mixed_precision=no"])
    assert precision.effective(forced.ntp).mixed_precision == "bf16"  # a named precision is kept
    assert precision.effective(forced.pretrain).mixed_precision == "no"
    assert precision.effective(load_scale("small").ntp).mixed_precision == "bf16"  # GPU scales name bf16


def test_stage_identities_hold_the_resolved_precision(monkeypatch):
    """A stage trained in bf16 is never reused for an fp32 run (or the other way), and a machine with native
    bf16 computes the same identities as before `auto` existed (its cached stages stay valid)."""
    tiny = load_scale("tiny")
    identities = {}
    for native in (True, False):
        monkeypatch.setattr(precision, "bf16_is_native", lambda native=native: native)
        ntp = pipeline.ntp_identity("Qwen/Qwen2.5-1.5B", {"corpus": "x"}, tiny.ntp)
        ra3 = pipeline.ra3_identity("Qwen/Qwen2.5-1.5B", {"corpus": "x"}, tiny.ra3, tiny.ntp)
        assert ntp["train"].mixed_precision == ra3["mstep"].mixed_precision == ("bf16" if native else "no")
        identities[native] = ntp
    bf16 = dataclasses.replace(tiny.ntp, mixed_precision="bf16")
    assert identities[True] == pipeline.ntp_identity("Qwen/Qwen2.5-1.5B", {"corpus": "x"}, bf16)
    assert identities[True] != identities[False]


def test_the_accelerator_gets_the_resolved_precision(monkeypatch):
    """accelerate knows no `auto` (it raises); the run's Accelerator gets what this machine resolves."""
    from accelerate.state import AcceleratorState

    from repro.train import zero

    monkeypatch.setattr(precision, "bf16_is_native", lambda: False)
    cfg = dataclasses.replace(load_scale("tiny").ntp, mixed_precision="auto")
    AcceleratorState._reset_state()
    try:
        with zero.accelerator(cfg) as run:
            assert run.mixed_precision == "no"
    finally:
        AcceleratorState._reset_state()


def test_records_say_which_precision_each_section_ran_in(native):
    from repro.claims.record import record_fields

    record = record_fields("table1", load_scale("tiny"), [0], [])
    assert record["config"]["ntp"]["mixed_precision"] == "auto"  # the settings as shipped
    expected = "bf16" if native else "no"
    assert record["precision"] == {"pretrain": expected, "ntp": expected}


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="ONEDNN_MAX_CPU_ISA=AVX2 is an x86 ceiling")
def test_auto_is_fp32_on_a_cpu_without_native_bf16():
    """oneDNN's probe honours ONEDNN_MAX_CPU_ISA, so an AVX2 ceiling stands in for an AVX2-only CPU (as some
    of CI's machines are) and `auto` must pick fp32 there, not emulated bf16."""
    code = "from repro.train.precision import native_precision; print(native_precision())"
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "no"
