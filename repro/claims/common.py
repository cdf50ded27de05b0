"""What the mid-training claims (`table1`, `mstep_loss`, `penalty_ablation`) share: a scale with
`--set key=value` overrides, its base models, cached evaluations copied into the claim's run
directory, the record's common fields, and per-task numbers read back from outcome files.
"""

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from repro import runs
from repro.config import ConfigError
from repro.scale import ScaleConfig, load_scale

log = logging.getLogger(__name__)


def resolve_scale(name: str, sets: list[str] | tuple[str, ...] = ()) -> ScaleConfig:
    """The scale's config with overrides `section.key=value` (value parsed as YAML), e.g.
    `ra3.rounds=1` or `generation.n=2`: a quick look at a claim without editing the YAML."""
    scale = load_scale(name)
    changes: dict[str, dict[str, Any]] = {}  # section -> {key: value}, applied together: keys can depend on each other
    for item in sets:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. ra3.rounds=1")
        section, field = parts
        current = getattr(scale, section, None) if section in {f.name for f in dataclasses.fields(scale)} else None
        if not dataclasses.is_dataclass(current):
            valid = [f.name for f in dataclasses.fields(scale) if dataclasses.is_dataclass(getattr(scale, f.name))]
            raise ConfigError(f"--set {item!r}: unknown section {section!r} of scale {name}; valid: {valid}")
        fields = {f.name: f for f in dataclasses.fields(current)}
        if field not in fields:
            raise ConfigError(f"--set {item!r}: {section} has no key {field!r}; valid: {sorted(fields)}")
        value = yaml.safe_load(raw)
        old = getattr(current, field)
        if old is not None and value is not None and not isinstance(value, type(old)) and not (
                isinstance(old, float) and isinstance(value, int)):
            raise ConfigError(f"--set {item!r}: {section}.{field} takes a {type(old).__name__}, got {raw!r}")
        changes.setdefault(section, {})[field] = value
    for section, values in changes.items():
        try:
            scale = dataclasses.replace(scale, **{section: dataclasses.replace(getattr(scale, section), **values)})
        except (TypeError, ValueError) as exc:
            shown = " ".join(f"{section}.{k}={v}" for k, v in values.items())
            raise ConfigError(f"--set {shown}: {exc}") from None
    return scale


def base_models(scale: ScaleConfig, root: Path | None = None) -> list[tuple[str, str]]:
    """(table name, local model folder) of each base model: the tiny model pretrained here, or each
    hub model at its pinned revision (from the Hugging Face cache; `ra3-repro fetch` fills it)."""
    from repro import stages

    if not scale.models:
        return [("tiny", str(stages.pretrain_stage(scale, root)))]
    from huggingface_hub import snapshot_download

    return [(spec.name, snapshot_download(spec.hub_id, revision=spec.revision)) for spec in scale.models]


def evaluate_into(out_dir: Path, label: str, model: str, benchmark: str, generation,
                  root: Path | None = None) -> tuple[str, dict[str, Any]]:
    """Evaluate (cached in runs/eval) and copy the outcome files into OUT/evals/LABEL/, so a claim's
    run directory carries its evidence. Returns (outcomes.jsonl relative to OUT, metrics)."""
    from repro import stages

    source = stages.eval_stage(model, benchmark, generation, root)
    dest = Path(out_dir) / "evals" / label
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("outcomes.jsonl", "metrics.json", "generation.json", "samples.jsonl"):
        shutil.copyfile(source / name, dest / name)
    metrics = json.loads((source / "metrics.json").read_text())
    return str((dest / "outcomes.jsonl").relative_to(out_dir)), metrics


def record_fields(claim: str, scale: ScaleConfig, seeds: list[int], sets: list[str] | tuple[str, ...]) -> dict:
    from repro.record import environment

    return {"claim": claim, "scale": scale.name, "sets": list(sets), "config": dataclasses.asdict(scale),
            "config_hash": runs.config_hash({"scale": scale, "seeds": seeds}), "seeds": list(seeds),
            "environment": environment()}


def write_record(out_dir: Path, record: dict) -> dict:
    """record.json, atomically; returns the record as `check` will read it back (tuples as lists)."""
    from repro.evaluate import atomic_write

    text = json.dumps(record, indent=1) + "\n"
    atomic_write(Path(out_dir) / "record.json", text)
    return json.loads(text)


def pass1_per_task(outcomes: dict[str, list[bool]], task_ids: list[str]) -> np.ndarray:
    """Per-task pass@1 (the share of a task's samples that passed), in `task_ids` order."""
    missing = [t for t in task_ids if t not in outcomes]
    if missing:
        raise ConfigError(f"outcomes lack {len(missing)} task(s), e.g. {missing[0]}")
    return np.array([np.mean(outcomes[t]) for t in task_ids], dtype=float)


def seed_summary(values: list[float], stderrs: list[float]) -> dict[str, float]:
    """Mean over seeds and its standard error, pooling each seed's sampling error with the spread
    between seeds: se^2 = (mean of se_i^2 + sample variance over seeds) / seeds (conservative: the
    seed spread already carries some sampling error)."""
    values_, stderrs_ = np.asarray(values, dtype=float), np.asarray(stderrs, dtype=float)
    spread = float(values_.std(ddof=1)) if len(values_) > 1 else 0.0
    se = float(np.sqrt((np.mean(stderrs_ ** 2) + spread ** 2) / len(values_)))
    return {"value": float(values_.mean()), "stderr": se, "seed_sd": spread, "seeds": len(values_)}


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
    from repro.claims import Verdict

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
    from statistics import NormalDist

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
