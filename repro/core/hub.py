"""The Hugging Face cache this run reads: offline mode, `--cache DIR`, and pinned snapshots in it.

`use_cache(DIR)` (what every verb's `--cache DIR` does) points the hub, `datasets`, EvalPlus and
this suite at one directory; `ra3-repro fetch` fills it (repro/fetch.py). With HF_HUB_OFFLINE=1,
loaders read a pinned revision's snapshot folder from the cache (`cached_snapshot`).
"""

import os
from pathlib import Path

from repro.core.files import DataError


def offline() -> bool:
    """HF_HUB_OFFLINE, read now (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def cache_env(cache: Path) -> dict[str, str]:
    """The environment that makes the hub, `datasets`, EvalPlus and this suite use `cache`."""
    cache = Path(cache).resolve()
    return {"XDG_CACHE_HOME": str(cache), "HF_HOME": str(cache / "huggingface"),
            "HF_HUB_CACHE": str(cache / "huggingface" / "hub"),
            "HF_DATASETS_CACHE": str(cache / "huggingface" / "datasets"), "RA3_DATA_DIR": str(cache / "ra3-repro")}


def use_cache(cache: Path) -> None:
    """Point this process at `cache`; call it before huggingface_hub, datasets or evalplus are imported."""
    os.environ.update(cache_env(cache))


def hub_cache() -> Path:
    """The hub cache as huggingface_hub resolves it, read now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    return Path(home) / "hub"


def cached_snapshot(repo: str, repo_type: str, revision: str) -> Path:
    """The hub cache's folder of `repo` at `revision`, without the network; DataError if it was never fetched."""
    path = hub_cache() / f"{repo_type}s--{repo.replace('/', '--')}" / "snapshots" / revision
    if not path.is_dir():
        raise DataError(f"{repo}@{revision} is not in the hub cache {hub_cache()}; fetch it first "
                        "(`ra3-repro fetch --scale S --cache DIR`, then run with `--cache DIR`)")
    return path
