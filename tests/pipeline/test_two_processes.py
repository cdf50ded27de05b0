"""Rank-safe stages: the tiny pipeline's stages under `torchrun --nproc_per_node 2` (gloo on the CPU:
accelerate picks MULTI_CPU when WORLD_SIZE > 1 and `cpu=True`) return the same paths on every rank,
write each file from one rank only, mark a stage done once and after its weights, keep every rank's
RNG state in a checkpoint, and evaluate to the metrics a one-process evaluation gives."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import two_ranks

from repro.core.runs import read_done
from repro.eval import benchmarks, score

pytestmark = pytest.mark.slow  # about a minute on 2 cores: world, 2 x 20 training steps, one evaluation

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("ranks_runner.py")
MODEL_FILES = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
               "tokenizer_config.json"}


def torchrun(root: Path, **environment: str):
    return two_ranks.torchrun(RUNNER, [str(root)], 900, **environment)


ONE_PROCESS_RA3 = """
import sys
from pathlib import Path

import torch

sys.path.insert(0, sys.argv[3])
from ranks_runner import scale_and_generation

from repro import pipeline

torch.set_num_threads(1)
root = Path(sys.argv[1])
print(pipeline.ra3_stage(scale_and_generation(root)[0], sys.argv[2], root / "one-process-runs"))
"""


def one_process_ra3(root: Path, base: str) -> Path:
    """The runner's RA3 stage in a fresh single process (accelerate's process-wide state is this pytest
    process's, set by earlier tests, so the stage gets a process of its own, as a user's run does)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", ONE_PROCESS_RA3, str(root), base, str(RUNNER.parent)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return Path(result.stdout.strip().splitlines()[-1])


def test_stages_under_two_processes_have_one_writer_and_match_one_process(tmp_path):
    two_ranks.assert_succeeded(torchrun(tmp_path))

    paths = [json.loads((tmp_path / f"paths-{rank}.json").read_text()) for rank in (0, 1)]
    assert paths[0] == paths[1]
    writes = {rank: [json.loads(line) for line in open(tmp_path / f"writes-{rank}.jsonl")]
              if (tmp_path / f"writes-{rank}.jsonl").exists() else [] for rank in (0, 1)}
    # Rank 1's only files: its shard of each round's infused corpus, which rank 0 merges and removes.
    assert all(Path(w["path"]).name == "infused-rank1.jsonl" for w in writes[1]), writes[1]
    assert len(writes[1]) == 2
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

    generation = scale_and_generation(tmp_path)[1]
    config = benchmarks.load_eval_config()
    alone = score.evaluate_model(paths[0]["ntp"], benchmarks.load_benchmark("tiny-heldout", config), config,
                                 generation, tmp_path / "one-process")
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert (metrics["pass@1"], metrics["n_samples"]) == (alone["pass@1"], alone["n_samples"])
    keep = ("task_id", "sample", "passed", "status")
    rows = [[{k: row[k] for k in keep} for row in map(json.loads, open(folder / "outcomes.jsonl"))]
            for folder in (evaluation, tmp_path / "one-process")]
    assert rows[0] == rows[1]

    # RA3: each file once, by rank 0 (the shards aside), DONE after both rounds' weights.
    stage = Path(paths[0]["ra3"])
    for r in (0, 1):
        round_dir = stage / f"round-{r}"
        for name in ("estep.jsonl", "infused.jsonl", "DONE.json"):
            assert written.count(str(round_dir / name)) == 1, (r, name)
        assert not list(round_dir.glob("infused-rank*.jsonl"))
    assert written.count(str(stage / "diagnostics.json")) == 1
    assert read_done(stage)["finished_at"] >= (stage / "round-1" / "model" / "model.safetensors").stat().st_mtime
    # The same E-step and infusion in one process: the rows are split, the generators are not, and the
    # ranks' gradients are summed, so round 0 (before any M-step, whose global batch doubles with two
    # ranks) matches. Tolerance: the update is a sum in another order (float32, ~1e-7 relative), which
    # could flip a sample whose uniform draw lies that close to its threshold; none did when written.
    one = one_process_ra3(tmp_path, paths[0]["base"])
    two_rows = [json.loads(line) for line in open(stage / "round-0" / "infused.jsonl")]
    one_rows = [json.loads(line) for line in open(one / "round-0" / "infused.jsonl")]
    assert len(two_rows) == len(one_rows) == 200
    assert sum(a != b for a, b in zip(two_rows, one_rows, strict=True)) <= 2
    assert sum(len(row["thoughts"]) for row in two_rows) > 0
    two_steps = [json.loads(line) for line in open(stage / "round-0" / "estep.jsonl")]
    one_steps = [json.loads(line) for line in open(one / "round-0" / "estep.jsonl")]
    for a, b in zip(two_steps, one_steps, strict=True):
        assert a["think_rate"] == b["think_rate"] and a["mean_reward"] == pytest.approx(b["mean_reward"], rel=1e-5)

    # GRPO: TRL splits the steps' completions over the ranks; rank 0 alone evaluates the curve after training
    # and writes it, while rank 1 waits for the stage's DONE.json.
    rlvr = Path(paths[0]["rlvr"])
    assert written.count(str(rlvr / "curve.json")) == 1 and written.count(str(rlvr / "DONE.json")) == 1
    assert json.loads((rlvr / "curve.json").read_text())["steps"] == [0, 1, 2]
    assert (rlvr / "run.log").read_text().count("RLVR done") == 1

    # A rank killed mid-stage: rank 0 dies right after marking the NTP stage's checkpoint at step 10; the
    # same command again resumes from it and ends with the uninterrupted run's weights, bit for bit.
    again = tmp_path / "killed-run"
    again.mkdir()
    for stage in ("world", "pretrain"):  # the same finished stages, so only NTP runs
        shutil.copytree(tmp_path / stage, again / stage)
    shutil.copy(tmp_path / "world.yaml", again / "world.yaml")
    killed = torchrun(again, RA3_TEST_KILL_AT_CHECKPOINT="10", RA3_TEST_STOP_AFTER_NTP="1")
    assert killed.returncode != 0 and (again / "killed").exists()
    ntp_stage = Path((again / "killed").read_text()).parent
    assert (ntp_stage / "checkpoint-10" / "COMPLETE").exists() and not (ntp_stage / "DONE.json").exists()
    two_ranks.assert_succeeded(torchrun(again, RA3_TEST_STOP_AFTER_NTP="1"))
    resumed = json.loads((again / "paths-0.json").read_text())["ntp"]
    assert "resuming" in (ntp_stage / "run.log").read_text()
    weights = [(Path(folder) / "model.safetensors").read_bytes() for folder in (resumed, paths[0]["ntp"])]
    assert weights[0] == weights[1]
