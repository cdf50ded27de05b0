"""`--plan`: every claim's stages and estimated device-hours at each scale without training anything,
and RA3's cost model (repro/plan.py) as the issue sets it: the paper's RA3 under 200 H100-hours per
seed for the three models with the default rollout, the M-step a large share of it, vLLM's estimate beside."""

import dataclasses

import pytest

from repro import cli, plan
from repro.claims import CLAIMS
from repro.core.scale import load_scale


@pytest.mark.parametrize("scale", ["small", "paper"])
@pytest.mark.parametrize("claim", [name for name in CLAIMS if name != "theory"])
def test_every_claim_plans_at_small_and_paper_scale_without_running(claim, scale, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RA3_RUNS_DIR", str(tmp_path / "runs"))
    assert cli.main([claim, "--scale", scale, "--plan"]) == 0
    out = capsys.readouterr().out
    assert "| stage | reads | writes | cached | tokens |" in out and "Total " in out
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("DONE.json"))


def test_paper_table1_prices_each_model_and_the_vllm_alternative(capsys):
    assert cli.main(["table1", "--scale", "paper", "--plan"]) == 0
    out = capsys.readouterr().out
    for model in ("Llama-3.2-1B", "Qwen-2.5-1.5B", "Llama-3.1-8B"):
        assert f"| RA3 {model} s0 |" in out and f"- RA3 {model} s0: rollout reading" in out
    assert "with `ra3.rollout_backend: vllm` about" in out


def test_paper_ra3_costs_under_200_h100_hours_per_seed():
    scale = load_scale("paper")
    models = [m.name for m in scale.models]
    default = {m: plan.ra3_hours(scale, m) for m in models}
    total = sum(sum(parts.values()) for parts in default.values())
    mstep = sum(parts["M-step"] for parts in default.values())
    vllm = sum(sum(plan.ra3_hours(scale, m, "vllm").values()) for m in models)
    assert total < 200 and 40 < mstep < 70 and vllm < total


def test_ra3_flops_follow_the_stated_cost_model():
    scale = load_scale("paper")
    cfg, hw = scale.ra3, scale.hardware
    n = plan.parameters(scale)["Llama-3.1-8B"]
    snippets, per = plan.corpus_snippets(scale)
    rows = cfg.rounds * (cfg.estep_steps * cfg.snippets_per_step * cfg.group_size + snippets) * per
    flops = plan.ra3_flops(scale, "Llama-3.1-8B")
    reading = 2 * n * rows * hw.rollout_slots_per_token
    assert flops["rollout reading"] == (pytest.approx(reading), hw.prefill_utilization)
    assert flops["rollout thoughts"][1] == hw.generate_utilization
    assert plan.ra3_flops(scale, "Llama-3.1-8B", "vllm")["rollout reading"][0] == pytest.approx(2 * n * rows)
    # The E-step's batch is the whole step's (split over the ranks), so more GPUs do not add rollouts.
    more = dataclasses.replace(scale, hardware=dataclasses.replace(hw, devices=2 * hw.devices))
    assert plan.ra3_flops(more, "Llama-3.1-8B")["E-step updates"] == flops["E-step updates"]
