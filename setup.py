"""Only one addition to pyproject.toml's build: record the source commit inside the package.

`pip install .` from a git checkout writes `repro/_source.json` ({"commit", "dirty"}) into the built
package, so that every run record names the commit even where the installed package is no checkout
(`repro.core.provenance.git_state`). Without git the file is simply not written.
"""

import json
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=10).stdout.strip()


class BuildPyWithSource(build_py):
    def run(self):
        super().run()
        try:
            info = {"commit": _git("rev-parse", "HEAD"), "dirty": bool(_git("status", "--porcelain"))}
        except (OSError, subprocess.SubprocessError):
            return
        target = Path(self.build_lib) / "repro" / "_source.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(info) + "\n")


setup(cmdclass={"build_py": BuildPyWithSource})
