"""The run record: what every claim run writes last (`record.json`), and how it is read back.

A record holds the claim id, the resolved config and its hash, the seeds, the `--set` overrides,
the precision each training section ran in (`mixed_precision: auto` as resolved on that machine),
the environment (repro.core.provenance: commit, versions, hardware, sandbox, image), and the claim's
own measurements; `outcome_files` links (relative to the run directory) the per-sample outcome files
that are the evidence. `load_record` reads the record back with every linked outcome file as
{task_id: [passed, ...]}, which is what `check` and `ra3-repro verify` read, never the record's own
summary of them. The schema below (REQUIRED, OPTIONAL) is checked on every read.
"""

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from repro.claims import CLAIMS
from repro.core import ranks, runs
from repro.core.config import ConfigError
from repro.core.files import DataError, atomic_write, iter_jsonl
from repro.core.provenance import code_sha256, environment
from repro.core.scale import ScaleConfig, load_scale
from repro.core.stats import pass_at_k
from repro.train import precision

REQUIRED = {"claim": str, "config": dict, "config_hash": str, "seeds": list, "environment": dict}
OPTIONAL = {"scale": str, "seconds": (int, float), "tables": dict, "data_sha256": dict, "links": dict,
            "outcome_files": dict, "stages": dict, "notes": list, "precision": dict}


def validate(record: dict, path: Path) -> None:
    """The record contract (module docstring): required keys and the types of the optional ones."""
    for key, kind in REQUIRED.items():
        if not isinstance(record.get(key), kind):
            raise DataError(f"{path}: expected `{key}` to be a {kind.__name__}, got {record.get(key)!r:.80}")
    for key, kind in OPTIONAL.items():
        if key in record and not isinstance(record[key], kind):
            raise DataError(f"{path}: expected optional `{key}` to be a {getattr(kind, '__name__', 'number')}, "
                            f"got {record[key]!r:.80}")
    for key in ("tables", "data_sha256", "links", "outcome_files", "stages", "precision"):
        if not all(isinstance(v, str) for v in record.get(key, {}).values()):
            raise DataError(f"{path}: expected `{key}` to map names to strings")
    if not all(isinstance(note, str) for note in record.get("notes", [])):
        raise DataError(f"{path}: expected `notes` to be a list of strings")
    for key in ("links", "outcome_files"):
        for label, link in record.get(key, {}).items():
            if Path(link).is_absolute() or ".." in Path(link).parts:
                raise DataError(f"{path}: {key}.{label} = {link!r}: expected a path inside the run directory")


def record_fields(claim: str, scale: ScaleConfig, seeds: list[int], sets: list[str] | tuple[str, ...]) -> dict:
    """The fields every mid-training claim's record starts with."""
    return {"claim": claim, "scale": scale.name, "sets": list(sets), "config": dataclasses.asdict(scale),
            "config_hash": runs.config_hash({"scale": scale, "seeds": seeds}), "seeds": list(seeds),
            "precision": {f.name: precision.effective(section).mixed_precision for f in dataclasses.fields(scale)
                          if hasattr(section := getattr(scale, f.name), "mixed_precision")},
            "environment": environment(), "code_sha256": code_sha256()}


def publish(out_dir: Path, record: dict, heading: str, plot: Callable[[dict, Path], None] | None = None) -> dict:
    """A claim run's files: `<claim>.md` (`heading` over the record's table), `<claim>.png` (`plot`) and
    record.json last, each atomically. Returns the record as `check` will read it back (tuples as lists).

    Under several processes (`torchrun ... ra3-repro CLAIM`) every rank runs the claim, whose stages are
    collective, but only rank 0 writes these files: the others return the same record unwritten."""
    claim, out_dir = record["claim"], Path(out_dir)
    text = json.dumps(record, indent=1) + "\n"
    readback = json.loads(text)
    if ranks.is_main():
        atomic_write(out_dir / f"{claim}.md", f"# {heading}\n\n{record['tables'][claim]}\n")
        if plot is not None:
            plot(readback, out_dir / f"{claim}.png")
        atomic_write(out_dir / "record.json", text)
    return readback


def load_record(run_dir: Path) -> dict:
    """RUN_DIR/record.json, checked against the schema, with every linked outcomes file read back as
    {task_id: [passed, ...]} under `outcomes` (links are relative to RUN_DIR)."""
    path = Path(run_dir) / "record.json"
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no record (is {run_dir} a finished claim run?)") from None
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(record, dict) or "claim" not in record:
        raise DataError(f"{path}: expected a JSON object with a `claim` key")
    if record["claim"] not in CLAIMS:
        raise ConfigError(f"{path}: unknown claim {record['claim']!r}; valid claims: {', '.join(CLAIMS)}")
    validate(record, path)
    outcomes = {}
    for label, link in record.get("outcome_files", {}).items():
        file = Path(run_dir) / link
        if not file.exists():
            raise DataError(f"{path}: outcome file {link} of {label} is missing (expected under {run_dir})")
        per_task: dict[str, list[bool]] = {}
        for where, row in iter_jsonl(file):
            if not isinstance(row.get("passed"), bool) or "task_id" not in row:
                raise DataError(f"{where}: expected `task_id` and a boolean `passed`")
            per_task.setdefault(row["task_id"], []).append(row["passed"])
        outcomes[label] = per_task
    record["outcomes"] = outcomes
    return record


def compares_with_paper(record: dict) -> bool:
    """The scale's `paper_values` setting the run was made with (records written before the setting
    existed take the shipped value of their scale)."""
    value = record["config"].get("paper_values")
    return load_scale(record["scale"]).paper_values if value is None else value


def pass_k_per_task(outcomes: dict[str, list[bool]], task_ids: list[str], k: int = 1) -> np.ndarray:
    """Per-task pass@k (the unbiased estimator over a task's samples; pass@1 is the share that
    passed), in `task_ids` order."""
    missing = [t for t in task_ids if t not in outcomes]
    if missing:
        raise ConfigError(f"outcomes lack {len(missing)} task(s), e.g. {missing[0]}")
    short = [t for t in task_ids if len(outcomes[t]) < k]
    if short:
        raise ConfigError(f"pass@{k} needs at least {k} samples per task; {short[0]} has {len(outcomes[short[0]])}")
    return np.array([pass_at_k(len(outcomes[t]), sum(outcomes[t]), k) for t in task_ids], dtype=float)


def per_task(record: dict, model: str, method: str, benchmark: str, k: int = 1) -> tuple[list[str], np.ndarray]:
    """Per-task pass@k of `model/method/s<seed>/benchmark`, averaged over the record's seeds, from the
    outcome files."""
    arrays, task_ids = [], None
    for seed in record["seeds"]:
        label = f"{model}/{method}/s{seed}/{benchmark}"
        if label not in record["outcomes"]:
            raise ConfigError(f"record has no outcomes for {label}")
        outcomes = record["outcomes"][label]
        task_ids = task_ids or sorted(outcomes)
        arrays.append(pass_k_per_task(outcomes, task_ids, k))
    return task_ids, np.mean(arrays, axis=0)
