"""The tiny code world's configuration schema; the values live in `configs/world/tiny.yaml`.

Load it with `repro.config.load(WorldConfig, path)`: unknown keys, wrong types and values out of
range fail loudly, naming the key and the valid range.
"""

import dataclasses

SPLITS = ("pretrain", "expert", "rl", "heldout")


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    seed: int
    """Root seed; each split's generator seeds from it and the split's name, so splits are independent streams."""
    n_pretrain: int
    """Functions in the pretraining corpus (`pretrain.jsonl`), single-skill helpers included."""
    n_expert: int
    """Functions in the comment-free expert corpus for mid-training (`expert.jsonl`)."""
    n_rl: int
    """RL training tasks in the HumanEval schema (`rl_tasks.jsonl`)."""
    n_heldout: int
    """Held-out evaluation tasks in the HumanEval schema (`heldout.jsonl`), each with a held-out pair."""
    heldout_pair_fraction: float
    """Fraction of adjacent (type-compatible) skill pairs that no training split ever contains."""
    comment_probability: float
    """Chance that a skill block in the pretraining corpus is preceded by its intent as a `#` comment."""
    helper_fraction: float
    """Fraction of pretraining functions that are single-skill helpers rather than compositions."""
    min_skills: int
    """Fewest skills composed into one task (at least 2)."""
    max_skills: int
    """Most skills composed into one task (at most 4)."""
    n_tests: int
    """Asserts in each task's hidden test (at least 5), from distinct random inputs."""
    n_examples: int
    """`>>>` examples in each docstring (1 or 2); they are the first of the tested inputs."""
    docstring_wordings: dict[str, list[int]] = dataclasses.field(
        default_factory=lambda: {split: [0] for split in SPLITS})
    """Per split (pretrain, expert, rl, heldout), the wordings its docstrings draw each block's phrase
    from (`skills.wording`): 0 is the canonical intent, the phrase a comment uses; 1 and 2 say it
    another way. All 0: the docstring lists exactly the comments a programmer would write."""
    positional_names: bool = False
    """Blocks write `step1`, `step2`, ... instead of the skill's own variable name."""
    numbered_steps: bool = False
    """Docstrings list the steps one per line, numbered, and comments name their step ("# 2. ...")."""
    behaviours: int = 0
    """Named behaviours: made-up names for fixed two-block recipes (two adjacent skills with fixed
    parameters, never a held-out pair). A docstring names a behaviour ("apply the tamlek") where its
    two blocks are, so what those blocks are is knowledge the model must bring, not text in the prompt."""
    behaviour_rate: float = 0.0
    """Chance that a chain grows by a whole behaviour rather than one skill (where one fits)."""

    def __post_init__(self):
        counts = {"n_pretrain": self.n_pretrain, "n_expert": self.n_expert, "n_rl": self.n_rl,
                  "n_heldout": self.n_heldout}
        for name, value in counts.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if not 0.0 < self.heldout_pair_fraction < 1.0:  # held-out tasks need held-out pairs
            raise ValueError(f"heldout_pair_fraction must be in (0, 1), got {self.heldout_pair_fraction}")
        if self.behaviours < 0 or (self.behaviour_rate > 0) != (self.behaviours > 0):
            raise ValueError("behaviours must be >= 0, and behaviour_rate > 0 exactly when there are behaviours")
        for name in ("comment_probability", "helper_fraction", "behaviour_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 2 <= self.min_skills <= self.max_skills <= 4:
            raise ValueError(f"need 2 <= min_skills <= max_skills <= 4, got {self.min_skills}, {self.max_skills}")
        if self.n_tests < 5:
            raise ValueError(f"n_tests must be at least 5, got {self.n_tests}")
        if self.n_examples not in (1, 2):
            raise ValueError(f"n_examples must be 1 or 2, got {self.n_examples}")
        if set(self.docstring_wordings) != set(SPLITS):
            raise ValueError(f"docstring_wordings needs exactly the splits {list(SPLITS)}, "
                             f"got {sorted(self.docstring_wordings)}")
        for split, indices in self.docstring_wordings.items():
            if not indices or not set(indices) <= {0, 1, 2}:
                raise ValueError(f"docstring_wordings.{split} must be a non-empty subset of [0, 1, 2], "
                                 f"got {list(indices)}")
