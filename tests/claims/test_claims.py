"""Every claim's check() on real records; mutations of a record must move or fail the verdicts."""

import json
import shutil

import pytest

from repro import cli
from repro.claims import CLAIMS, module
from repro.claims.record import load_record, per_task
from repro.claims.verdicts import claims_of, guards_of
from repro.core.stats import paired_bootstrap

pytestmark = pytest.mark.slow  # trains and evaluates the tiny pipeline (minutes)


def test_every_claim_has_a_tiny_run_here(tiny_claims):
    assert set(tiny_claims) | {"theory"} == set(CLAIMS)


def test_tiny_claims_have_verdicts_and_their_guards_do_not_drift(tiny_runs, tiny_claim):
    """Every claim gets verdicts on the paper's direction (whichever way they come out); the regression
    guards of a run with the shipped settings stay within their calibrated bands (or are STALE: the
    code changed since their calibration, which the guard's reason says)."""
    claim = tiny_claim
    record = load_record(tiny_runs / claim)
    verdicts = module(claim).check(record)
    assert verdicts and all(v.claim == claim for v in verdicts)
    assert {v.status for v in claims_of(verdicts)} <= {"PASS", "FAIL", "INCONCLUSIVE"} and claims_of(verdicts)
    drifted = [f"{v.cell}: {v.measured} not in {v.band} ({v.reason})"
               for v in guards_of(verdicts) if v.status == "DRIFT"]
    assert not drifted
    if claim == "table1":  # both comparisons, at pass@1 and pass@5
        cells = {v.cell for v in claims_of(verdicts)}
        assert {"ra3-ntp tiny tiny-heldout pass@1", "ra3-base tiny tiny-heldout pass@5"} <= cells
        assert record["bounds"] and record["ra3_diagnostics"]
    if claim == "penalty_ablation":  # the mechanism's check ran (at this length it is within the noise)
        assert any(v.cell.endswith("think rate falls as c grows") for v in verdicts)


def test_verify_reads_a_directory_of_runs_and_fails_exactly_when_a_claim_does(tiny_runs, capsys):
    failed = any(v.status == "FAIL" for claim in (p.name for p in tiny_runs.iterdir())
                 for v in claims_of(module(claim).check(load_record(tiny_runs / claim))))
    assert cli.main(["verify", str(tiny_runs)]) == (1 if failed else 0)
    out = capsys.readouterr().out
    assert "table1" in out and "mstep_loss" in out and "rlvr_curves" in out and "inconclusive" in out


def _copy(tiny_runs, tmp_path):
    dest = tmp_path / "table1"
    shutil.copytree(tiny_runs / "table1", dest)
    return dest


def test_swapping_ra3_and_ntp_flips_the_verdict(tiny_runs, tmp_path):
    run = _copy(tiny_runs, tmp_path)
    cell = "ra3-ntp tiny tiny-heldout pass@1"
    before = next(v for v in module("table1").check(load_record(run)) if v.cell == cell and v.kind == "claim")
    record = json.loads((run / "record.json").read_text())
    files = record["outcome_files"]
    for label in [k for k in files if "/ra3/" in k]:
        other = label.replace("/ra3/", "/ntp/")
        files[label], files[other] = files[other], files[label]
    (run / "record.json").write_text(json.dumps(record))
    after = next(v for v in module("table1").check(load_record(run)) if v.cell == cell and v.kind == "claim")
    assert after.measured == pytest.approx(-before.measured)
    assert after.status == {"PASS": "FAIL", "FAIL": "PASS", "INCONCLUSIVE": "INCONCLUSIVE"}[before.status]


def test_flipping_one_outcome_moves_the_paired_interval(tiny_runs, tmp_path):
    run = _copy(tiny_runs, tmp_path)
    record = load_record(run)
    _, ra3 = per_task(record, "tiny", "ra3", "tiny-heldout")
    _, ntp = per_task(record, "tiny", "ntp", "tiny-heldout")
    before = paired_bootstrap(ra3, ntp)
    path = run / record["outcome_files"]["tiny/ra3/s0/tiny-heldout"]
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["passed"] = not rows[0]["passed"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    mutated = load_record(run)
    _, ra3_after = per_task(mutated, "tiny", "ra3", "tiny-heldout")
    after = paired_bootstrap(ra3_after, ntp)
    assert after["mean"] != before["mean"] and (after["low"], after["high"]) != (before["low"], before["high"])


def test_report_renders_the_tiny_runs(tiny_runs, tmp_path):
    assert cli.main(["report", str(tiny_runs), "--out", str(tmp_path)]) == 0
    html = (tmp_path / "report.html").read_text()
    assert "table1" in html and "mstep_loss" in html and "data:image/png;base64," in html


def test_small_or_paper_results_pass_their_checks(results_dir):
    runs = sorted(p.parent for p in results_dir.glob("*/record.json"))
    assert runs, f"{results_dir} holds no claim runs (*/record.json)"
    for run in runs:
        record = load_record(run)
        assert record["scale"] in ("small", "paper"), f"{run}: a {record['scale']} run"
        failed = [v for v in module(record["claim"]).check(record) if v.status == "FAIL"]
        assert not failed, f"{run}: " + "; ".join(f"{v.cell} ({v.reason})" for v in failed)
