"""Files: whole-or-nothing writes, streamed JSON Lines, content hashes, and the suite's data directory.

Every result file goes through `atomic_write`, so a crash never leaves half a file; every JSON Lines
file is read through `iter_jsonl`, so a bad line is named by file and line number (`DataError`).
"""

import functools
import gzip
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """A data, samples, record or cache file is missing, corrupted or malformed."""


def data_dir() -> Path:
    """The suite's data directory: `$RA3_DATA_DIR`, else `~/.cache/ra3-repro`. Read at each use, so that
    `--cache DIR` (which sets the variable, see `repro.core.hub.use_cache`) applies to the whole run."""
    return Path(os.environ.get("RA3_DATA_DIR") or Path.home() / ".cache" / "ra3-repro")


@functools.cache
def _umask() -> int:
    """The process's umask: from /proc (Linux) without touching it, else by setting and restoring it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, text: str) -> None:
    """Write a whole file or nothing: a temporary file in the same directory, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be read (reports, records)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_jsonl(path: Path, rows) -> None:
    """JSON Lines, atomically."""
    atomic_write(path, "".join(json.dumps(row) + "\n" for row in rows))


def iter_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(`<file>, line <n>`, row) for each row of a JSON-lines file (gzip allowed), streamed; a bad
    line raises DataError naming it."""
    opener = gzip.open if Path(path).suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise DataError(f"{where}: not valid JSON ({exc})") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield where, row


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in iter_jsonl(path)]


def require_keys(row: dict, keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise DataError(f"{where}: missing key(s) {missing}")


def sha256_of(path: Path) -> str:
    """sha256 of a file's content (decompressed when it is gzip, so `x.jsonl.gz` and `x.jsonl` pin
    alike); of a directory, the sha256 of its `<sha256>  <relative path>` listing."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        listing = "".join(f"{sha256_of(p)}  {p.relative_to(path)}\n" for p in files)
        return hashlib.sha256(listing.encode()).hexdigest()
    digest = hashlib.sha256()
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
