"""Verdicts: PASS / FAIL / INCONCLUSIVE per check of a claim, and the rules the claims share.

- `side_of_zero`: a paired difference's interval against the direction the paper gives. PASS when
  the whole interval lies on the paper's side of 0, FAIL when it lies on the other side,
  INCONCLUSIVE when it covers 0 (too few problems or seeds to tell the sign).
- `guard_verdict`: a regression guard at a scale with no paper numbers (`verdicts: calibrated`):
  the measured value must lie within guard_z standard errors of the mean calibrated from earlier
  multi-seed runs of this code (`Expectation`, in configs/claims/<claim>.yaml; `calibrate` and
  tools/calibrate.py produce them).
"""

import dataclasses
from statistics import NormalDist

import numpy as np

STATUSES = ("PASS", "FAIL", "INCONCLUSIVE")


@dataclasses.dataclass(frozen=True)
class Verdict:
    claim: str
    cell: str
    measured: float
    reference: float | str
    band: tuple[float | None, float | None]
    """Where `measured` (or its interval, see `statistic`) must lie; None is an open end."""
    statistic: str
    status: str
    """PASS, FAIL or INCONCLUSIVE (too little data to decide)."""
    reason: str


def counts(verdicts: list[Verdict]) -> dict[str, int]:
    return {status: sum(v.status == status for v in verdicts) for status in STATUSES}


def overall(verdicts: list[Verdict]) -> str:
    """FAIL if any check failed, else INCONCLUSIVE if any was (or there were none), else PASS."""
    n = counts(verdicts)
    return "FAIL" if n["FAIL"] else "INCONCLUSIVE" if n["INCONCLUSIVE"] or not verdicts else "PASS"


SIDE_REASONS = {"PASS": "the interval lies on the paper's side of 0",
                "FAIL": "the interval lies on the other side of 0 than the paper's",
                "INCONCLUSIVE": "the interval covers 0: too few problems or seeds to tell the sign"}


def side_of_zero(low: float, high: float, direction: int) -> str:
    """PASS when [low, high] lies strictly on the `direction` side of 0 (+1: above, -1: below), FAIL
    when it lies strictly on the other side, else INCONCLUSIVE."""
    if direction * low > 0 and direction * high > 0:
        return "PASS"
    if direction * low < 0 and direction * high < 0:
        return "FAIL"
    return "INCONCLUSIVE"


@dataclasses.dataclass(frozen=True)
class Expectation:
    """A tiny-scale regression guard for one verdict cell, calibrated from real multi-seed runs."""
    cell: str
    """The verdict's cell, exactly as `check` names it."""
    mean: float
    """Mean over the calibration seeds of the cell's per-seed value."""
    seed_sd: float
    """Sample standard deviation over the calibration seeds."""
    seeds: int
    paper_direction_reproduced: bool
    """Whether the tiny world shows what the paper claims for this cell."""
    measured_with: str
    """The command (and date) that produced these numbers."""


def guard_verdict(claim: str, cell: str, measured: float, statistic: str, expectations, record: dict,
                  guard_z: float, se_floor: float, paper: str):
    """PASS when `measured` lies within guard_z standard errors of the calibrated mean, where the
    standard error combines the seed spread at this run's and the calibration's number of seeds;
    `se_floor` (e.g. a bootstrap interval's standard error) keeps the band honest when the seed
    spread is 0 or smaller than the problem-sampling error."""
    if record.get("sets"):
        return Verdict(claim, cell, measured, paper, (None, None), statistic, "INCONCLUSIVE",
                       f"run with --set {' '.join(record['sets'])}: the tiny expectations hold for the shipped "
                       "settings only")
    seeds = len(record["seeds"])
    match = [e for e in expectations if e.cell == cell]
    if not match:
        return Verdict(claim, cell, measured, paper, (None, None), statistic, "INCONCLUSIVE",
                       "no tiny-scale calibration for this cell (configs/claims/<claim>.yaml)")
    e = match[0]
    half = guard_z * max(float(np.sqrt(e.seed_sd ** 2 / seeds + e.seed_sd ** 2 / e.seeds)), se_floor, 1e-3)
    band = (e.mean - half, e.mean + half)
    direction = "reproduces" if e.paper_direction_reproduced else "does NOT reproduce"
    return Verdict(claim, cell, measured, e.mean, band, statistic, "PASS" if band[0] <= measured <= band[1] else "FAIL",
                   f"tiny regression guard: calibrated {e.mean:+.4f} (seed sd {e.seed_sd:.4f}, {e.seeds} seeds; "
                   f"{e.measured_with}); the tiny world {direction} the paper here (paper: {paper})")


def interval_se(interval: dict) -> float:
    """The standard error a (normal-ish) bootstrap interval implies: its half-width over z."""
    z = NormalDist().inv_cdf(0.5 + interval["confidence"] / 2)
    return (interval["high"] - interval["low"]) / (2 * z)


def restrict_to_seed(record: dict, seed: int) -> dict:
    """The record as if only `seed` had run (for calibrating per-seed spreads)."""
    out = dict(record, seeds=[seed])
    for key in ("rows", "runs", "entries"):
        if key in record:
            out[key] = [r for r in record[key] if r.get("seed") == seed]
    return out


def calibrate(check, record: dict) -> list[dict]:
    """Per verdict cell: mean and sample sd over the record's seeds of the value `check` measures on
    each seed alone. Paste the result under `tiny_expectations` (with `paper_direction_reproduced`
    and `measured_with`)."""
    per_cell: dict[str, list[float]] = {}
    for seed in record["seeds"]:
        for v in check(restrict_to_seed(record, seed)):
            per_cell.setdefault(v.cell, []).append(float(v.measured))
    return [{"cell": cell, "mean": float(np.mean(values)),
             "seed_sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, "seeds": len(values)}
            for cell, values in per_cell.items()]
