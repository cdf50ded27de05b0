"""Evaluation: benchmarks (one module per kind in `benchmarks/`), generation (`generate.py`) and
sandboxed scoring into samples, outcomes and metrics files (`score.py`)."""
