"""The three scales as typed configuration: `configs/scales/{tiny,small,paper}.yaml`.

A scale names its models (built here at tiny scale, pinned hub revisions otherwise), its
mid-training corpus, its training and decoding settings and its benchmarks. Algorithms never
branch on the scale's name: everything that differs between scales is a value here.
"""

import dataclasses
from pathlib import Path

from repro.config import CONFIG_DIR, ConfigError, load
from repro.ntp import TrainConfig
from repro.pretrain import TinyModelConfig, TokenizerConfig
from repro.ra3 import RA3Config
from repro.rlvr import RLVRConfig

SCALES = ("tiny", "small", "paper")


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    n: int
    """Samples per problem (pass@k needs n >= k)."""
    temperature: float
    """Sampling temperature; 0 means greedy (then n must be 1)."""
    max_new_tokens: int
    """Longest completion."""
    batch_size: int
    """Prompts x samples generated together."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    seed: int = 0
    """Seeds sampling; a sample's seed is derived from (seed, task, index), so reruns match."""

    def __post_init__(self):
        if self.temperature == 0 and self.n != 1:
            raise ValueError(f"greedy decoding (temperature 0) gives one sample per problem, not n={self.n}")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    """The name tables use (e.g. Qwen-2.5-1.5B)."""
    hub_id: str
    """Hugging Face repository of the base (not instruct) model."""
    revision: str
    """Commit of that repository: loading never follows a moving branch."""


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
    dataset: str
    """Hugging Face dataset of the mid-training corpus."""
    revision: str
    """Commit of the dataset repository."""
    text_field: str
    """Column holding the code."""
    max_snippets: int
    """Snippets kept (the paper: about 3.5M)."""
    max_tokens: int
    """Token budget (the paper: about 1B)."""
    data_dir: str | None = None
    """Sub-directory of the dataset (e.g. one language)."""
    split: str = "train"
    why: str = ""
    """Why this corpus (the paper does not name its own)."""


@dataclasses.dataclass(frozen=True)
class ScaleConfig:
    name: str
    benchmarks: tuple[str, ...]
    """Benchmarks of configs/eval.yaml (plus tiny-heldout) that tables report."""
    ntp: TrainConfig
    """NTP mid-training (also the RA3 M-step's training settings)."""
    generation: GenerationConfig
    """Decoding for evaluation, identical for every method compared."""
    world: str | None = None
    """Tiny scale: the world config (YAML path relative to configs/)."""
    tokenizer: TokenizerConfig | None = None
    """Tiny scale: the tokenizer trained here."""
    tiny_model: TinyModelConfig | None = None
    """Tiny scale: the base model trained here."""
    pretrain: TrainConfig | None = None
    """Tiny scale: pretraining of the base model."""
    models: tuple[ModelSpec, ...] = ()
    """small/paper: base models from the hub."""
    corpus: CorpusSpec | None = None
    """small/paper: the mid-training corpus."""
    ra3: RA3Config | None = None
    """RA3's EM loop (E-step RL over thoughts); its M-step trains with `ntp`'s settings."""
    rlvr: RLVRConfig | None = None
    """RLVR post-training (GRPO) and its convergence curves (`repro/rlvr.py`)."""

    def __post_init__(self):
        builds_model = (self.world, self.tokenizer, self.tiny_model, self.pretrain)
        if all(v is None for v in builds_model) == (not self.models):
            raise ValueError("a scale either builds its model here (world, tokenizer, tiny_model, pretrain) "
                             "or names hub models (models, corpus), exactly one of the two")
        if self.models and self.corpus is None:
            raise ValueError("hub models need a mid-training `corpus`")
        if not self.models and any(v is None for v in builds_model):
            raise ValueError("a scale that builds its model needs world, tokenizer, tiny_model and pretrain")


def load_scale(name: str, config_dir: Path = CONFIG_DIR) -> ScaleConfig:
    if name not in SCALES:
        raise ConfigError(f"unknown scale {name!r}; choose from {list(SCALES)}")
    return load(ScaleConfig, config_dir / "scales" / f"{name}.yaml")
