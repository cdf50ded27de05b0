"""Verdicts: what a claim run says, in two separate kinds that are never merged.

- Claim verdicts (kind "claim"): PASS / FAIL / INCONCLUSIVE, does this run support the paper's claim?
  At every scale, from paired statistics against the direction the paper gives (`side_of_zero`:
  PASS when the whole interval lies on the paper's side of 0, FAIL when it lies on the other side,
  INCONCLUSIVE when it covers 0), and at scales with paper values (`paper_values` in the scale
  config) against the paper's numbers. The headline, `ra3-repro verify`'s exit code and the
  report's summary say these.
- Regression guards (kind "guard"): OK / DRIFT / STALE, does this run behave like the calibrated runs
  of this code? `guard_verdict`: OK when the measured value lies within guard_z standard errors of
  the mean calibrated from earlier multi-seed runs (`Guard`, under `guards:` in
  configs/claims/<claim>.yaml; tools/calibrate.py writes them), DRIFT when it does not, STALE when
  the code that produces the numbers changed since the calibration (its sha256, `code_sha256`, is
  recorded with every run) or no guard was calibrated in the precision the run trained in: the band
  is still shown, but a recalibration is due. CI fails on DRIFT.
  A guard holds for one precision (`run_precision`: bf16 autocast or fp32, as the run's training
  sections resolved `mixed_precision`; `auto` depends on the machine), because the tiny numbers differ
  between the two by more than their seed spread (measured: `mstep_loss` and `synthetic_reasoning`
  drifted in fp32 outside guards calibrated in bf16, and table1's RA3 - NTP verdict turns over).
"""

import dataclasses
from statistics import NormalDist

import numpy as np

STATUSES = ("PASS", "FAIL", "INCONCLUSIVE")
GUARD_STATUSES = ("OK", "DRIFT", "STALE")
PRECISION_NAMES = {"no": "fp32", "fp16": "fp16", "bf16": "bf16"}
"""A training section's resolved `mixed_precision` -> the name guards and reports use."""


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
    """PASS, FAIL or INCONCLUSIVE (too little data to decide); for a guard OK, DRIFT or STALE."""
    reason: str
    kind: str = "claim"
    """"claim" (does the run support the paper?) or "guard" (does it behave like calibrated runs?)."""


def claims_of(verdicts: list[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if v.kind == "claim"]


def guards_of(verdicts: list[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if v.kind == "guard"]


def counts(verdicts: list[Verdict]) -> dict[str, int]:
    """How many claim verdicts have each status (guards are counted by `guard_counts`)."""
    return {status: sum(v.status == status for v in claims_of(verdicts)) for status in STATUSES}


def guard_counts(verdicts: list[Verdict]) -> dict[str, int]:
    return {status: sum(v.status == status for v in guards_of(verdicts)) for status in GUARD_STATUSES}


def overall(verdicts: list[Verdict]) -> str:
    """Of the claim verdicts: FAIL if any failed, else INCONCLUSIVE if any was (or there were none),
    else PASS."""
    n = counts(verdicts)
    return "FAIL" if n["FAIL"] else "INCONCLUSIVE" if n["INCONCLUSIVE"] or not claims_of(verdicts) else "PASS"


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
class Guard:
    """A regression guard for one verdict cell at one scale, calibrated from real multi-seed runs."""
    cell: str
    """The verdict's cell, exactly as `check` names it."""
    scale: str
    """The scale whose runs were calibrated (a guard applies to runs of that scale only)."""
    precision: str
    """The precision those runs trained in, as `run_precision` names it ("bf16", "fp32"): a guard
    applies to runs in that precision only."""
    mean: float
    """Mean over the calibration seeds of the cell's per-seed value."""
    seed_sd: float
    """Sample standard deviation over the calibration seeds."""
    seeds: int
    commit: str
    """The commit the calibration runs were made with (`+dirty` when the tree had changes)."""
    code_sha256: str
    """`repro.core.provenance.code_sha256()` of those runs: a run whose code differs is STALE."""
    measured_with: str
    """The command and date that produced these numbers."""

    def __post_init__(self):
        if not set(self.precision.split("+")) <= set(PRECISION_NAMES.values()):
            raise ValueError(f"guard {self.cell!r}: precision {self.precision!r} is not one of "
                             f"{sorted(set(PRECISION_NAMES.values()))} (or several joined by '+', as `run_precision` "
                             f"names a run's)")


def direction_verdict(claim: str, cell: str, interval: dict, direction: int, statistic: str, paper: str,
                      reasons: dict[str, str] | None = None) -> Verdict:
    """A claim verdict on a paired difference: its interval against the paper's direction (+1: the
    paper's difference is positive)."""
    status = side_of_zero(interval["low"], interval["high"], direction)
    band = (0.0, None) if direction > 0 else (None, 0.0)
    return Verdict(claim, cell, interval["mean"], paper, band, statistic, status, (reasons or SIDE_REASONS)[status])


def run_precision(record: dict) -> str:
    """The precision a claim run trained in, from its record's `precision` (training section ->
    resolved `mixed_precision`): "bf16" or "fp32" when every section agrees, else the distinct ones
    joined by "+" ("bf16+fp32"); "unknown" for records from before the field existed."""
    found = sorted({PRECISION_NAMES.get(value, str(value)) for value in (record.get("precision") or {}).values()})
    return "+".join(found) or "unknown"


def guard_verdict(claim: str, cell: str, measured: float, statistic: str, guards, record: dict,
                  guard_z: float, se_floor: float) -> list[Verdict]:
    """The guard of `cell` at the record's scale and precision, if one was calibrated and the run used
    the shipped settings (no `--set`); else none. OK when `measured` lies within guard_z standard errors
    of the calibrated mean, where the standard error combines the seed spread at this run's and the
    calibration's number of seeds, floored by `se_floor` (e.g. a bootstrap interval's standard error)
    where the seed spread is smaller than the sampling error; STALE when the code changed since, or
    when the cell has guards at this scale but none in this run's precision (the band shown is then
    another precision's)."""
    at_scale = [g for g in guards if g.cell == cell and g.scale == record.get("scale")]
    if not at_scale or record.get("sets"):
        return []
    precision = run_precision(record)
    same_precision = [g for g in at_scale if g.precision == precision]
    g = (same_precision or at_scale)[0]
    seeds = len(record["seeds"])
    half = guard_z * max(float(np.sqrt(g.seed_sd ** 2 / seeds + g.seed_sd ** 2 / g.seeds)), se_floor, 1e-3)
    band = (g.mean - half, g.mean + half)
    inside = band[0] <= measured <= band[1]
    calibrated = (f"calibrated {g.mean:+.4f} in {g.precision} (seed sd {g.seed_sd:.4f}, {g.seeds} seeds; "
                  f"commit {g.commit}; {g.measured_with})")
    where = f"the value is {'inside' if inside else 'OUTSIDE'} that band: recalibrate (tools/calibrate.py)"
    if not same_precision:
        status = "STALE"
        reason = (f"no guard calibrated for runs in {precision}, this run's precision (guards exist for "
                  f"{', '.join(sorted({h.precision for h in at_scale}))}; {calibrated}); {where}")
    elif record.get("code_sha256") != g.code_sha256:
        status = "STALE"
        reason = f"the code that produces the numbers changed since the calibration ({calibrated}); {where}"
    else:
        status = "OK" if inside else "DRIFT"
        reason = f"regression guard: {calibrated}"
    return [Verdict(claim, cell, measured, g.mean, band, statistic, status, reason, kind="guard")]


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
    """Per claim-verdict cell: mean and sample sd over the record's seeds of the value `check` measures
    on each seed alone, with the run's scale, precision, commit and code hash: the `guards:` entries of
    the claim's YAML (add `measured_with`)."""
    per_cell: dict[str, list[float]] = {}
    for seed in record["seeds"]:
        for v in claims_of(check(restrict_to_seed(record, seed))):
            per_cell.setdefault(v.cell, []).append(float(v.measured))
    git = record["environment"]["git"]
    commit = (git["commit"] or "unknown")[:10] + ("+dirty" if git["dirty"] else "")
    return [{"cell": cell, "scale": record["scale"], "precision": run_precision(record),
             "mean": round(float(np.mean(values)), 5),
             "seed_sd": round(float(np.std(values, ddof=1)), 5) if len(values) > 1 else 0.0, "seeds": len(values),
             "commit": commit, "code_sha256": record["code_sha256"]}
            for cell, values in per_cell.items()]
