# The ra3-repro image: the suite, its Python dependencies from a hash-checked lock, bubblewrap and a C toolchain,
# on Debian bookworm (Python 3.11) pinned by tag and digest.
#
#   podman build -t ra3-repro .        (or docker build; the GPU lock: torch 2.13.0 for CUDA 13, vLLM, DeepSpeed)
#   podman run --device nvidia.com/gpu=all -v ra3-runs:/runs -v ra3-cache:/cache \
#     -e RA3_IMAGE_DIGEST="$(podman image inspect -f '{{.Digest}}' ra3-repro)" ra3-repro table1 --scale small
#   docker run --gpus all -v ra3-runs:/runs -v ra3-cache:/cache ra3-repro table1 --scale small
#
# The default command is `table1` at the tiny scale. Volumes: /runs (every run directory) and /cache (the
# Hugging Face cache, EvalPlus releases and the suite's data: what `ra3-repro fetch --cache /cache` fills).
# The EvalPlus releases are fetched into /cache at build time and verified by sha256; a named volume
# starts with them, a bind-mounted cache gets them from `ra3-repro fetch`. RA3_IMAGE_DIGEST, set by
# whoever starts the container, and /opt/ra3-repro/image.json, written here, go into every run record.
#
# CUDA comes as Python wheels: the GPU lock's torch is PyPI's Linux build for CUDA 13.0 with its nvidia-*-cu13
# runtime libraries beside it (the lock vLLM 0.30.0 is built against), so the base needs no CUDA and the host
# only a driver that runs CUDA 13 (R580 or newer) and the NVIDIA container toolkit.
# CI builds the same file on a Debian bookworm made with debootstrap, with LOCK_FILE=requirements.lock (no
# torch, no vLLM) and the CPU build of torch (.ci/image).
# The digest is the one a public build log of 2026-09 resolved `debian:bookworm-slim` to; it was not pulled
# here (no registry is reachable from the development machines): .github/workflows/image.yml pulls it.
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim@sha256:3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251
FROM ${BASE_IMAGE}

ARG BASE_IMAGE
# The hash-checked lock pip installs with --no-deps: requirements-gpu.lock (vLLM, DeepSpeed, torch 2.13.0 for
# CUDA 13) or requirements.lock (neither, nor torch: CI's CPU image).
ARG LOCK_FILE=requirements-gpu.lock
# Empty: torch comes with the lock. Otherwise what pip installs as torch after it (CI: the CPU wheel, from a
# directory mounted into the build).
ARG TORCH_REQUIREMENT=""
# 1: fetch the EvalPlus releases from GitHub into /cache and verify them; 0 where GitHub cannot be reached.
ARG FETCH_BENCHMARKS=1
# The suite's source commit and whether the tree had changes (`git status --porcelain` non-empty).
ARG SOURCE_COMMIT=unknown
ARG SOURCE_DIRTY=unknown
# A CA bundle for pip, where the build reaches PyPI through a TLS-inspecting proxy (CI); unset elsewhere.
ARG PIP_CERT

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# bubblewrap isolates untrusted code. gcc, libc6-dev and python3-dev: Triton (under vLLM and torch.compile)
# compiles a small C launcher against Python.h the first time a kernel runs; a runtime image without them fails
# at the first model load on a GPU (.ci/image compiles such a module in the image to check). Versions are those
# of the base's distribution release, fixed by the base's digest.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap ca-certificates gcc libc6-dev python3 python3-dev \
       python3-venv \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

COPY requirements.lock requirements-gpu.lock /opt/ra3-repro/
RUN pip install --no-cache-dir --require-hashes --no-deps -r "/opt/ra3-repro/${LOCK_FILE}"

# hadolint ignore=DL3013
RUN if [ -n "$TORCH_REQUIREMENT" ]; then pip install --no-cache-dir --no-deps "$TORCH_REQUIREMENT"; fi \
    && python -c "import torch; v = torch.__version__; assert v.split('+')[0] == '2.13.0', f'torch {v}, not 2.13.0'"

COPY . /opt/ra3-repro/src
RUN pip install --no-cache-dir --no-deps --no-build-isolation /opt/ra3-repro/src \
    && pip check \
    && python -c "import json, os, torch; print(json.dumps({'base_image': os.environ['BASE_IMAGE'], \
'source_commit': os.environ['SOURCE_COMMIT'], 'source_dirty': os.environ['SOURCE_DIRTY'], \
'lock_file': os.environ['LOCK_FILE'], 'torch': torch.__version__, \
'torch_requirement': os.environ['TORCH_REQUIREMENT'] or 'from the lock'}))" \
    > /opt/ra3-repro/image.json

RUN useradd --create-home --uid 10001 --shell /bin/bash ra3 \
    && mkdir -p /runs /cache \
    && chown ra3:ra3 /runs /cache

# What `--cache /cache` sets (repro/core/hub.py cache_env; tests/unit/test_image.py keeps the two equal).
ENV RA3_RUNS_DIR=/runs \
    XDG_CACHE_HOME=/cache \
    HF_HOME=/cache/huggingface \
    HF_HUB_CACHE=/cache/huggingface/hub \
    HF_DATASETS_CACHE=/cache/huggingface/datasets \
    RA3_DATA_DIR=/cache/ra3-repro

USER 10001
WORKDIR /runs
RUN if [ "$FETCH_BENCHMARKS" = 1 ]; then ra3-repro fetch --scale paper --only humaneval+ --only mbpp; fi

LABEL org.opencontainers.image.title="ra3-repro" \
      org.opencontainers.image.description="Reproduction suite for RA3 (arXiv:2509.25810)" \
      org.opencontainers.image.revision="${SOURCE_COMMIT}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

VOLUME ["/runs", "/cache"]
ENTRYPOINT ["ra3-repro"]
CMD ["table1"]
