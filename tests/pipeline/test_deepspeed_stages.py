"""DeepSpeed ZeRO-3 in `train_causal_lm` under 2 processes (gloo, DeepSpeed's CPU backend), as the paper scale
uses it: NTP and then two M-step windows in one process (tests/pipeline/deepspeed_runner.py), once under ZeRO-3
and once without DeepSpeed.

It fails when a call hangs (the old code gathered ZeRO-3's weights, a collective, on rank 0 alone) or dies (a
second `Accelerator` given a DeepSpeed plugin raises NotImplementedError), when a saved model is empty, wrongly
shaped or did not train, when the optimizer's partitioned state is not handed from one window to the next (the
ZeRO-3 weights then leave the DDP ones by ~1e-2 instead of ~1e-6), when a window restores the previous window's
weights instead of training the model it is given, when a file is written by two ranks, or when a run leaves
DeepSpeed behind: an engine alive, accelerate's state, transformers' ZeRO-3 flag, ACCELERATE_USE_DEEPSPEED.
About 40 s on 2 cores, plus about a minute the first time: DeepSpeed compiles its CPU communication op
(a C++ compiler is needed; the build is cached under ~/.cache/torch_extensions).
"""

import json
import re
import sys
from pathlib import Path

import pytest
import torch
import two_ranks

pytestmark = pytest.mark.slow  # two processes, six training runs of a tiny Llama

RUNNER = Path(__file__).with_name("deepspeed_runner.py")
RUNS = ("ntp", "round-0", "round-1")
OWN_FILE_OF_RANK_1 = re.compile(r"(optimizer-rank1\.pt|zero_pp_rank_1_mp_rank_00_\w+\.pt|random_states_1\.pkl)$")
"""The files rank 1 writes: its ZeRO partitions, its RNG state, its part of the window hand-off."""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("deepspeed")
    two_ranks.assert_succeeded(two_ranks.torchrun(RUNNER, [str(root)], 420))
    reports = [json.loads((root / f"report-{rank}.json").read_text()) for rank in (0, 1)]
    return root, reports


def saved(root: Path, mode: str, run: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(root / "runs" / mode / run / "model" / "model.safetensors")


def test_every_saved_model_holds_trained_weights_and_every_rank_holds_them_in_place(run):
    from transformers import AutoTokenizer

    sys.path.insert(0, str(RUNNER.parent))
    from deepspeed_runner import MODEL

    from repro.train.pretrain import init_model

    root, reports = run
    initial = init_model(AutoTokenizer.from_pretrained(root / "tokenizer"), MODEL, seed=0).state_dict()
    initial = {k: v for k, v in initial.items() if k != "lm_head.weight"}  # tied: saved once
    for mode in ("zero3", "ddp"):
        previous = initial
        for run_name in RUNS:
            weights = saved(root, mode, run_name)
            assert weights.keys() == initial.keys(), f"{mode}/{run_name}"
            for name, tensor in weights.items():
                assert tensor.shape == initial[name].shape and tensor.numel() > 0, f"{mode}/{run_name}: {name}"
                assert tensor.dtype == torch.float32 and torch.isfinite(tensor).all(), f"{mode}/{run_name}: {name}"
                assert not torch.equal(tensor, previous[name]), f"{mode}/{run_name}: {name} did not move"
            previous = weights
        for calls in (reports[0][mode], reports[1][mode]):
            assert all(call["is_saved_model"] and call["plain_fp32"] for call in calls), calls
        assert [c["sha256"] for c in reports[0][mode]] == [c["sha256"] for c in reports[1][mode]]


def test_zero3_trains_as_ddp_does_with_the_optimizer_state_handed_between_windows(run):
    """Same losses and weights within float rounding: window 1 continued window 0's Adam moments and step (a
    fresh optimizer there leaves the weights ~7.5e-3 apart) and trained the model it was given."""
    root, _ = run
    for run_name in RUNS:
        zero3, ddp = saved(root, "zero3", run_name), saved(root, "ddp", run_name)
        gap = max((zero3[k] - ddp[k]).abs().max().item() for k in ddp)
        assert gap < 1e-4, f"{run_name}: ZeRO-3 and DDP weights differ by {gap}"
        losses = [[json.loads(line)["loss"] for line in open(root / "runs" / mode / run_name / "metrics.jsonl")]
                  for mode in ("zero3", "ddp")]
        assert losses[0] == pytest.approx(losses[1], abs=1e-5)

    zero3, ddp = root / "runs" / "zero3", root / "runs" / "ddp"
    checkpoint = zero3 / "ntp" / "checkpoint-4" / "pytorch_model"  # DeepSpeed's own partitions: it did run
    assert {f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)} <= {p.name for p in checkpoint.iterdir()}
    assert not (ddp / "ntp" / "checkpoint-4" / "pytorch_model").exists()
    handed = torch.load(zero3 / "round-0" / "optimizer.pt", weights_only=True)
    assert handed["zero_shards"] == 2 and "optimizer" not in handed
    assert all((zero3 / "round-0" / f"optimizer-rank{r}.pt").exists() for r in (0, 1))
    assert "optimizer" in torch.load(ddp / "round-0" / "optimizer.pt", weights_only=True)
    assert not list(zero3.glob("round-1/optimizer*")), "the schedule's last window hands nothing on"


def test_each_file_has_one_writer(run):
    root, _ = run
    writes = [{row["path"] for row in map(json.loads, open(root / f"writes-{rank}.jsonl"))} for rank in (0, 1)]
    assert writes[0] and not writes[0] & writes[1], f"written by both ranks: {sorted(writes[0] & writes[1])}"
    assert writes[1] and all(OWN_FILE_OF_RANK_1.search(path) for path in writes[1]), sorted(writes[1])
    assert any(path.endswith("zero3/round-1/model/model.safetensors") for path in writes[0])
    assert not list((root / "runs").rglob("tokens.bin*")), "a run's own token file outlived it"


def test_deepspeed_leaves_nothing_behind_after_each_run(run):
    _, reports = run
    for report in reports:
        for mode, calls in report.items():
            for call in calls:
                where = f"{mode}/{call['run']}"
                assert call["deepspeed_objects_alive"] == 0, f"{where}: a DeepSpeed engine or ZeRO optimizer is alive"
                assert not call["zero3_flag"] and call["use_deepspeed_env"] is None, where
                assert mode == "ddp" or not call["accelerate_state_kept"], where
