"""The paper's claims, one module per claim id: `repro/claims/<id>.py`, whose docstring states the
claim, its place in the paper, its commands and their cost, with `run(...)` (composes cached stages,
writes RUN_DIR/record.json) and `check(record)` (the verdicts). `CLAIMS` is the registry;
`module(claim)` imports a claim's module only when asked, so listing the claims never imports their
dependencies. `load_record(run_dir)` is what `ra3-repro verify` and the tests give to `check`: the
record plus the per-task outcomes it links to (the outcome files are the evidence, not the record's
summary of them).
"""

import dataclasses
import importlib
import json
from pathlib import Path
from types import ModuleType

from repro.config import ConfigError
from repro.data import DataError

CLAIMS = ("table1", "mstep_loss", "penalty_ablation", "rlvr_curves", "theory")

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


def module(claim: str) -> ModuleType:
    if claim not in CLAIMS:
        raise ConfigError(f"unknown claim {claim!r}; valid claims: {', '.join(CLAIMS)}")
    return importlib.import_module(f"{__name__}.{claim}")


def load_record(run_dir: Path) -> dict:
    """RUN_DIR/record.json with, under `outcomes`, every linked outcomes file read back as
    {task_id: [passed, ...]} (links are relative to RUN_DIR)."""
    from repro.data import iter_jsonl

    path = Path(run_dir) / "record.json"
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no record (is {run_dir} a finished claim run?)") from None
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(record, dict) or "claim" not in record:
        raise DataError(f"{path}: expected a JSON object with a `claim` key")
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
