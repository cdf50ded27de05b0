"""Run directories: `runs/<stage>/<config-hash>/`, completion markers written last, resumable work.

A stage's directory is named by the hash of everything that determines its result (its resolved
config and the identities of its inputs), so rerunning a finished stage finds `DONE.json` and
reuses the outputs, and a changed config never reads stale ones. Two markers, each written last:
- `DONE.json` (`mark_done`): a finished stage, or a finished part of one (an EM round); a
  directory without it is unfinished and resumes from its own checkpoints;
- `COMPLETE` inside `checkpoint-<step>/` (`mark_checkpoint`): a checkpoint written whole, the only
  kind `latest_checkpoint` returns.
Files that other tools read have their own "written last" file: `metrics.json` of a scored
evaluation, `record.json` of a claim run.

Under several processes (torchrun) every rank runs the same stage code, and rank 0 alone writes
identity.json, DONE.json and run.log (`repro.core.ranks.is_main`); the stages put a barrier before
DONE.json (every rank's part is on disk) and after it (no rank goes on before it exists).
"""

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from repro.core import ranks
from repro.core.files import atomic_write

RUNS_ROOT = Path(os.environ.get("RA3_RUNS_DIR", "runs"))
DONE = "DONE.json"
CHECKPOINT_COMPLETE = "COMPLETE"


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def config_hash(identity: Any) -> str:
    """Twelve hex digits of the sha256 of the canonical JSON of `identity` (dataclasses allowed)."""
    text = json.dumps(_plain(identity), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def stage_path(stage: str, identity: Any, root: Path | None = None) -> Path:
    """Where the stage's directory for this identity is (or would be), without creating it."""
    return Path(root or RUNS_ROOT) / stage / config_hash(identity)


def stage_dir(stage: str, identity: Any, root: Path | None = None) -> Path:
    """The stage's directory for this identity, created with `identity.json` if new (by rank 0)."""
    path = stage_path(stage, identity, root)
    path.mkdir(parents=True, exist_ok=True)
    identity_file = path / "identity.json"
    if ranks.is_main() and not identity_file.exists():
        atomic_write(identity_file, json.dumps(_plain(identity), indent=2, sort_keys=True) + "\n")
    return path


def is_done(path: Path) -> bool:
    return (Path(path) / DONE).exists()


def read_done(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / DONE).read_text())


def mark_done(path: Path, summary: dict[str, Any]) -> None:
    """Write DONE.json (rank 0 only; the other ranks return at once)."""
    if not ranks.is_main():
        return
    atomic_write(Path(path) / DONE, json.dumps({**_plain(summary), "finished_at": time.time()}, indent=2) + "\n")


WAIT_DONE_SECONDS = 24 * 3600.0
"""How long a rank waits for another's stage (`wait_done`): longer than any stage one rank does alone
(a paper-scale evaluation takes hours), short enough that a rank whose writer died without torchrun
noticing does not hang a job for days."""


def wait_done(path: Path, poll_seconds: float = 1.0, timeout_seconds: float = WAIT_DONE_SECONDS) -> None:
    """Block until `path` has DONE.json: how ranks wait for work that rank 0 does alone for longer than
    a process group's timeout allows (an evaluation); torchrun ends every rank if rank 0 dies. Raises
    TimeoutError after `timeout_seconds`."""
    deadline = time.monotonic() + timeout_seconds
    while not is_done(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: no DONE.json after {timeout_seconds:.0f} s waiting for the rank that "
                               "writes it (did it fail? its run.log says)")
        time.sleep(poll_seconds)


@contextlib.contextmanager
def stage_log(path: Path) -> Iterator[None]:
    """Copy the suite's log records into `<path>/run.log` while the stage runs (rank 0's only: one
    writer, no line twice)."""
    if not ranks.is_main():
        yield
        return
    handler = logging.FileHandler(Path(path) / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("repro")
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()


def mark_checkpoint(checkpoint: Path, step: int) -> None:
    """Mark `checkpoint-<step>` as written whole (after every file of it is on disk)."""
    (Path(checkpoint) / CHECKPOINT_COMPLETE).write_text(str(step))


def checkpoint_step(checkpoint: Path) -> int:
    return int(Path(checkpoint).name.split("-")[1])


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest `checkpoint-<step>` of `run_dir` that was marked complete, or None."""
    complete = [p for p in Path(run_dir).glob("checkpoint-*") if (p / CHECKPOINT_COMPLETE).exists()]
    return max(complete, key=checkpoint_step, default=None)

