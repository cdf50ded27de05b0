"""The pieces the mid-training claims share: --set overrides, seed pooling, the paired bootstrap over
groups, tiny regression guards and their calibration, and the command line around them."""

import dataclasses

import numpy as np
import pytest

from repro import cli
from repro.claims import verdicts
from repro.claims.verdicts import Verdict
from repro.core.config import ConfigError
from repro.core.scale import resolve_scale
from repro.core.stats import paired_bootstrap, seed_summary, stratified_paired_bootstrap


def test_set_overrides_change_one_value_and_reject_unknown_keys():
    scale = resolve_scale("tiny", ["ra3.rounds=1", "generation.temperature=1"])
    assert scale.ra3.rounds == 1 and scale.generation.temperature == 1.0
    assert resolve_scale("tiny").ra3.rounds != 1
    # keys of one section apply together, so values that must agree can change together
    rlvr = resolve_scale("tiny", ["rlvr.max_steps=4", "rlvr.eval_every=2"]).rlvr
    assert (rlvr.max_steps, rlvr.eval_every) == (4, 2)
    # a string key takes the text as written, though YAML would read `no` as false
    assert resolve_scale("tiny", ["pretrain.mixed_precision=no"]).pretrain.mixed_precision == "no"
    # a nested block takes the keys given, the others stay the scale's
    data = resolve_scale("small", ["rlvr.train_data={revision: " + "ab" * 20 + ", max_problems: 3}"]).rlvr.train_data
    shipped = resolve_scale("small").rlvr.train_data
    assert (data.revision, data.max_problems, data.dataset) == ("ab" * 20, 3, shipped.dataset)
    # a list key takes a YAML list
    assert resolve_scale("paper", ["rlvr.eval_benchmarks=[humaneval+, mbpp+]"]).rlvr.eval_benchmarks == (
        "humaneval+", "mbpp+")
    with pytest.raises(ConfigError, match=r"--set rlvr.train_data: unknown key\(s\) \['revison'\]"):
        resolve_scale("small", ["rlvr.train_data={revison: x}"])
    for bad, message in (("ra3.roundz=1", "has no key 'roundz'"), ("nope.x=1", "unknown section 'nope'"),
                         ("ra3.rounds", "expected section.key=value"), ("ra3.rounds=two", "takes a int")):
        with pytest.raises(ConfigError, match=message):
            resolve_scale("tiny", [bad])


def test_claim_commands_map_bad_input_to_exit_2(capsys):
    assert cli.main(["table1", "--seeds", "0"]) == 2
    assert cli.main(["penalty_ablation", "--set", "ra3.nothing=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--seeds must be at least 1" in err[0] and "nothing" in err[1]


def test_seed_summary_pools_sampling_error_with_seed_spread():
    one = seed_summary([0.5], [0.03])
    assert one["value"] == 0.5 and one["stderr"] == pytest.approx(0.03) and one["seed_sd"] == 0.0
    three = seed_summary([0.4, 0.5, 0.6], [0.03, 0.03, 0.03])
    assert three["seed_sd"] == pytest.approx(0.1)
    assert three["stderr"] == pytest.approx(np.sqrt((0.03 ** 2 + 0.1 ** 2) / 3))


def test_stratified_bootstrap_is_the_plain_one_for_one_group_and_averages_groups():
    rng = np.random.default_rng(0)
    a, b = rng.random(50), rng.random(50)
    assert stratified_paired_bootstrap([(a, b)]) == pytest.approx(
        {**paired_bootstrap(a, b), "groups": 1}, rel=1e-9)
    two = stratified_paired_bootstrap([(np.ones(10), np.zeros(10)), (np.zeros(30), np.zeros(30))])
    assert two["mean"] == pytest.approx(0.5) and two["low"] == two["high"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        stratified_paired_bootstrap([(np.ones(3), np.ones(4))])


def test_guard_is_ok_near_the_calibration_drifts_far_and_is_stale_on_other_code():
    guard = verdicts.Guard("tiny x", scale="tiny", precision="bf16", mean=-0.09, seed_sd=0.02, seeds=3, commit="abc",
                           code_sha256="c0de", measured_with="test")
    record = {"seeds": [0], "sets": [], "scale": "tiny", "code_sha256": "c0de",
              "precision": {"pretrain": "bf16", "ntp": "bf16"}}
    (near,) = verdicts.guard_verdict("c", "tiny x", -0.1, "s", [guard], record, 3.0, 0.0)
    (far,) = verdicts.guard_verdict("c", "tiny x", +0.09, "s", [guard], record, 3.0, 0.0)
    assert near.kind == far.kind == "guard" and near.status == "OK" and far.status == "DRIFT" and "abc" in far.reason
    half = 3.0 * np.sqrt(0.02 ** 2 / 1 + 0.02 ** 2 / 3)
    assert near.band == pytest.approx((-0.09 - half, -0.09 + half))
    (stale,) = verdicts.guard_verdict("c", "tiny x", +0.09, "s", [guard], {**record, "code_sha256": "new"}, 3.0, 0.0)
    assert stale.status == "STALE" and "OUTSIDE" in stale.reason
    assert verdicts.guard_verdict("c", "other", 0.0, "s", [guard], record, 3.0, 0.0) == []  # not calibrated
    assert verdicts.guard_verdict("c", "tiny x", 0.0, "s", [guard], {**record, "scale": "small"}, 3.0, 0.0) == []
    assert verdicts.guard_verdict("c", "tiny x", -0.09, "s", [guard], {**record, "sets": ["a.b=1"]}, 3.0, 0.0) == []


def test_guards_apply_to_runs_in_their_precision_only():
    bf16 = verdicts.Guard("tiny x", scale="tiny", precision="bf16", mean=-0.09, seed_sd=0.02, seeds=3, commit="abc",
                          code_sha256="c0de", measured_with="test")
    fp32 = dataclasses.replace(bf16, precision="fp32", mean=+0.09)
    record = {"seeds": [0], "sets": [], "scale": "tiny", "code_sha256": "c0de",
              "precision": {"pretrain": "no", "ntp": "no"}}
    assert verdicts.run_precision(record) == "fp32"
    assert verdicts.run_precision({**record, "precision": {"pretrain": "bf16", "ntp": "no"}}) == "bf16+fp32"
    assert verdicts.run_precision({}) == "unknown"
    # an fp32 run far from the bf16 calibration is not DRIFT: it has no guard of its own yet
    (uncalibrated,) = verdicts.guard_verdict("c", "tiny x", +0.09, "s", [bf16], record, 3.0, 0.0)
    assert uncalibrated.status == "STALE" and "fp32" in uncalibrated.reason and "OUTSIDE" in uncalibrated.reason
    # with both calibrated, each run is judged by its own precision's guard, whatever the order
    for guards in ([bf16, fp32], [fp32, bf16]):
        (own,) = verdicts.guard_verdict("c", "tiny x", +0.09, "s", guards, record, 3.0, 0.0)
        assert own.status == "OK" and own.reference == pytest.approx(+0.09)
        (drift,) = verdicts.guard_verdict("c", "tiny x", +0.09, "s", guards,
                                          {**record, "precision": {"pretrain": "bf16", "ntp": "bf16"}}, 3.0, 0.0)
        assert drift.status == "DRIFT" and drift.reference == pytest.approx(-0.09)
    # records from before the field: never judged against a guard of a known precision
    (old,) = verdicts.guard_verdict("c", "tiny x", -0.09, "s", [bf16], {**record, "precision": None}, 3.0, 0.0)
    assert old.status == "STALE"
    with pytest.raises(ValueError, match="bfloat16"):  # a typo would leave the guard unused for good
        dataclasses.replace(bf16, precision="bfloat16")


def test_guards_never_decide_the_headline():
    claim = Verdict("c", "x", 1.0, 0, (0, None), "", "PASS", "")
    drift = Verdict("c", "x", 1.0, 0, (0, None), "", "DRIFT", "", kind="guard")
    assert verdicts.overall([claim, drift]) == "PASS" and verdicts.counts([claim, drift])["PASS"] == 1
    assert verdicts.guard_counts([claim, drift]) == {"OK": 0, "DRIFT": 1, "STALE": 0}
    assert verdicts.side_of_zero(0.1, 0.3, +1) == "PASS" and verdicts.side_of_zero(0.1, 0.3, -1) == "FAIL"
    assert verdicts.side_of_zero(-0.1, 0.3, +1) == "INCONCLUSIVE"


def test_calibration_measures_each_seed_alone():
    record = {"seeds": [0, 1, 2], "runs": [{"seed": s, "value": v} for s, v in ((0, 1.0), (1, 2.0), (2, 6.0))],
              "scale": "tiny", "code_sha256": "c0de", "precision": {"pretrain": "bf16", "ntp": "bf16"},
              "environment": {"git": {"commit": "0123456789abc", "dirty": True}}}

    def check(rec):
        measured = float(np.mean([r["value"] for r in rec["runs"]]))
        return [Verdict("c", "cell", measured, 0, (None, None), "", "PASS", ""),
                Verdict("c", "cell", measured, 0, (None, None), "", "OK", "", kind="guard")]

    (row,) = verdicts.calibrate(check, record)
    assert row == {"cell": "cell", "scale": "tiny", "precision": "bf16", "mean": 3.0,
                   "seed_sd": pytest.approx(np.std([1, 2, 6], ddof=1)),
                   "seeds": 3, "commit": "0123456789+dirty", "code_sha256": "c0de"}


def test_list_names_every_claim_with_its_cost(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for claim in ("table1", "mstep_loss", "penalty_ablation", "theory"):
        assert f"{claim}\n  claim: " in out
    assert out.count("  cost: tiny ") >= 4
