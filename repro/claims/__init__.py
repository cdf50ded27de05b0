"""The paper's claims. A claim is two files: its module `repro/claims/<id>.py` and its settings
`configs/claims/<id>.yaml`; the YAML files are the list of claims (`CLAIMS`), which drives the CLI's
claim verbs, `ra3-repro list`, the help text and the tests.

Every claim module has the same interface:
- its docstring: the claim in one sentence, where it is in the paper, its commands;
- `COST`: {scale: what a run costs}, the one place a claim's cost is stated (measured where we could);
- `run(scale, seeds, out_dir, sets=(), root=None) -> record`: composes the cached stages of
  `repro.pipeline`, writes its tables and plots, and `out_dir/record.json` last (`record.write_record`);
  `seeds` None means the claim's default;
- `check(record) -> list[Verdict]`: the verdicts, from the record and the outcome files it links
  (`record.load_record`), exactly as `ra3-repro verify` reads them.
Shared by the claims: `record.py` (the run record's schema, writing, reading it back with its
evidence) and `verdicts.py` (the verdict, the side-of-zero rule, the calibrated guards).
"""

import importlib
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
