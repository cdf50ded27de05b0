"""Rank-safe stages: the tiny pipeline's stages under `torchrun --nproc_per_node 2` (gloo on the CPU:
accelerate picks MULTI_CPU when WORLD_SIZE > 1 and `cpu=True`) return the same paths on every rank,
write each file from one rank only, mark a stage done once and after its weights, keep every rank's
RNG state in a checkpoint, and evaluate to the metrics a one-process evaluation gives."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from repro.core.runs import read_done
from repro.eval import benchmarks, score

pytestmark = pytest.mark.slow  # about a minute on 2 cores: world, 2 x 20 training steps, one evaluation

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("ranks_runner.py")
MODEL_FILES = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
               "tokenizer_config.json"}


def test_stages_under_two_processes_have_one_writer_and_match_one_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(RUNNER), str(tmp_path)], capture_output=True, text=True, env=env, timeout=900)
    errors = [line for line in result.stderr.splitlines() if "Error" in line and "ChildFailedError" not in line]
    assert result.returncode == 0, "\n".join(errors[-20:]) or result.stderr[-4000:]

    paths = [json.loads((tmp_path / f"paths-{rank}.json").read_text()) for rank in (0, 1)]
    assert paths[0] == paths[1]
    writes = {rank: [json.loads(line) for line in open(tmp_path / f"writes-{rank}.jsonl")]
              if (tmp_path / f"writes-{rank}.jsonl").exists() else [] for rank in (0, 1)}
    assert not writes[1], f"rank 1 wrote {[w['path'] for w in writes[1]]}"
    written = [w["path"] for w in writes[0]]
    assert len(written) == len(set(written)), "a file written twice"

    for stage, model_dir, done_line in ((Path(paths[0]["base"]).parent, Path(paths[0]["base"]), "pretraining done"),
                                        (Path(paths[0]["ntp"]).parent, Path(paths[0]["ntp"]), "NTP done")):
        assert {p.name for p in model_dir.iterdir()} >= MODEL_FILES
        assert read_done(stage)["finished_at"] >= (model_dir / "model.safetensors").stat().st_mtime
        assert (stage / "run.log").read_text().count(done_line) == 1, "run.log written by two ranks"
    checkpoint = Path(paths[0]["ntp"]).parent / "checkpoint-10"
    assert {"COMPLETE", "random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in checkpoint.iterdir()}

    evaluation = Path(paths[0]["eval"])
    assert (evaluation / "run.log").read_text().count("pass@1") == 1
    for name in ("samples.jsonl", "outcomes.jsonl", "metrics.json", "DONE.json"):
        assert written.count(str(evaluation / name)) == 1, name
    sys.path.insert(0, str(RUNNER.parent))
    from ranks_runner import scale_and_generation

    config = benchmarks.load_eval_config()
    alone = score.evaluate_model(paths[0]["ntp"], benchmarks.load_benchmark("tiny-heldout", config), config,
                                 scale_and_generation()[1], tmp_path / "one-process")
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert (metrics["pass@1"], metrics["n_samples"]) == (alone["pass@1"], alone["n_samples"])
    keep = ("task_id", "sample", "passed", "status")
    rows = [[{k: row[k] for k in keep} for row in map(json.loads, open(folder / "outcomes.jsonl"))]
            for folder in (evaluation, tmp_path / "one-process")]
    assert rows[0] == rows[1]
