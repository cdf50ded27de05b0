"""The leaves every other layer stands on; nothing here imports torch or any other part of the suite.

- `config.py`: YAML into frozen dataclasses, failing loudly (the loader every config goes through);
- `scale.py`: the scales' schema (every training, decoding and RL section) and `--set` overrides;
- `eval_config.py`: the evaluation config's schema (sandbox limits, benchmarks);
- `files.py`: atomic writes, JSON Lines, content hashes, the data directory;
- `runs.py`: run directories keyed by config hash, completion markers, checkpoints;
- `hub.py`: the Hugging Face cache (`--cache`, offline snapshots);
- `provenance.py`: commit, versions, hardware, image: what every record embeds;
- `stats.py`: pass@k, bootstrap intervals, curve statistics;
- `sandbox.py` (+ `sandbox_driver.py`): the only way untrusted code runs.
"""
