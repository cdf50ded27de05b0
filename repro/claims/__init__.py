"""The paper's claims. A claim is two files: its module `repro/claims/<id>.py` and its settings
`configs/claims/<id>.yaml`; the YAML files are the list of claims (`CLAIMS`), which drives the CLI's
claim verbs, `ra3-repro list`, the help text and the tests.

Every claim module has the same interface:
- its docstring: the claim in one sentence, where it is in the paper, its commands;
- `COST`: {scale: what a run costs}, the one place a claim's cost is stated (measured where we could);
- `NEEDS`: the scale sections it runs on (`ntp`, `ra3`, `rlvr`, ...), checked with the scale's pins by
  `preflight` before anything trains;
- `run(scale, seeds, out_dir, sets=(), root=None) -> record`: composes the cached stages of
  `repro.pipeline` (after `preflight`), writes its tables and plots, and `out_dir/record.json` last
  (`record.publish`, rank 0 only under several processes); `seeds` None means the claim's default;
- `plan(scale, seeds) -> list[repro.plan.Stage]`: the stages `run` would compose, with cost estimates,
  for `--plan` and `ra3-repro list`;
- `check(record) -> list[Verdict]`: the verdicts, from the record and the outcome files it links
  (`record.load_record`), exactly as `ra3-repro verify` reads them.
Shared by the claims: `record.py` (the run record's schema, writing, reading it back with its
evidence) and `verdicts.py` (the verdict, the side-of-zero rule, the calibrated guards).
"""

import importlib
import re
from types import ModuleType

from repro.core.config import CONFIG_DIR, ConfigError

CLAIMS = tuple(sorted(p.stem for p in (CONFIG_DIR / "claims").glob("*.yaml")))


def module(claim: str) -> ModuleType:
    """A claim's module (imported only when asked, so listing claims never imports their dependencies)."""
    if claim not in CLAIMS:
        raise ConfigError(f"unknown claim {claim!r}; valid claims: {', '.join(CLAIMS)}")
    return importlib.import_module(f"{__name__}.{claim}")


def claim_summary(claim_module: ModuleType) -> str:
    """The claim in one line: the first paragraph of its module's docstring, after `Claim `<id>`:`."""
    first = claim_module.__doc__.split("\n\n")[0]
    return " ".join(first.split(":", 1)[1].split())


PINNED = re.compile(r"[0-9a-f]{40}")
"""A hub revision that cannot move: a full commit hash."""


def preflight(claim_module: ModuleType, scale, extra_pins: tuple[tuple[str, str, str], ...] = ()) -> None:
    """Fail before anything trains, in one line naming what is missing and how to get it: a scale section
    the claim needs, a hub revision that is not a commit (the scale's models and corpus, the RLVR set
    where the claim trains RLVR, `extra_pins` of (key, repo, revision)), a model or data set the hub
    cache cannot serve (`repro.pipeline.check_inputs`)."""
    claim = claim_module.__name__.rsplit(".", 1)[1]
    missing = [section for section in claim_module.NEEDS if getattr(scale, section) is None]
    if missing:
        raise ConfigError(f"claim {claim} at scale {scale.name} needs the {', '.join(f'`{m}`' for m in missing)} "
                          f"settings: add them to configs/scales/{scale.name}.yaml or give them whole with "
                          f"--set {missing[0]}='{{key: value, ...}}'")
    pins = [(f"models.{m.name}", m.hub_id, m.revision) for m in scale.models]
    if scale.corpus is not None:
        pins.append(("corpus", scale.corpus.dataset, scale.corpus.revision))
    if "rlvr" in claim_module.NEEDS and scale.rlvr.train_data is not None:
        pins.append(("rlvr.train_data", scale.rlvr.train_data.dataset, scale.rlvr.train_data.revision))
    pins += extra_pins
    for key, repo, revision in pins:
        if not PINNED.fullmatch(revision):
            raise ConfigError(f"claim {claim} at scale {scale.name}: {key} ({repo}) has revision {revision!r}, not a "
                              f"commit; pin one in configs/scales/{scale.name}.yaml (the dataset's or model's commit "
                              f"on the hub, e.g. huggingface_hub.HfApi().dataset_info('{repo}').sha)")
    from repro import pipeline  # the hub and the training stack: only for a claim about to run

    pipeline.check_inputs(scale, [repo for _, repo, _ in pins])
