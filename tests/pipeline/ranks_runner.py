"""Run by tests/pipeline/test_two_processes.py under `torchrun --nproc_per_node 2` (gloo, CPU): a small tiny
world (200 expert snippets), a 20-step pretraining, a 20-step NTP stage (checkpoint at step 10), an
evaluation of its model on tiny-heldout (n=1), an RA3 stage of two EM rounds (2 E-step steps of 4
snippets x G=4 each, infusion of the 200 snippets, 20-step M-steps) and 2 GRPO steps from the NTP
model. Each rank writes `paths-<rank>.json` (the paths the stages returned to it) and
`writes-<rank>.jsonl` (every file it wrote through `atomic_write`, and when), for the test to read.

Environment, for the kill-and-resume test: RA3_TEST_KILL_AT_CHECKPOINT=N makes rank 0 die (os._exit)
right after it marks the NTP stage's checkpoint N complete (once: it leaves `killed` in ROOT), and
RA3_TEST_STOP_AFTER_NTP=1 ends the run after the NTP stage.

    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 tests/pipeline/ranks_runner.py ROOT
"""

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch
import yaml

from repro import pipeline
from repro.core import files, runs
from repro.core.config import CONFIG_DIR
from repro.core.scale import load_scale

SHORT = {"max_steps": 20, "checkpoint_every": 10, "log_every": 5, "warmup_steps": 2}
GENERATION = {"n": 1, "max_new_tokens": 48}
WORLD = {"n_pretrain": 4000, "n_expert": 200, "n_rl": 50}
RA3 = {"estep_steps": 2, "snippets_per_step": 4, "group_size": 4, "rollout_batch_size": 32, "policy_micro_batch": 8}
"""Two micro-batches of the E-step's 16 rows in one process, one per rank in two: the same update."""
RLVR = {"max_steps": 2, "eval_every": 1, "eval_tasks": 20, "per_device_train_batch_size": 8,
        "max_completion_length": 48, "torch_threads": 1}
"""Two GRPO steps of 2 x 8 completions (4 prompts x G=4), a curve of 3 points on 20 held-out tasks."""


def scale_and_generation(root: Path):
    """The tiny scale with short stages and a smaller world (its config written to `root/world.yaml`)."""
    tiny = load_scale("tiny")
    world = yaml.safe_load((CONFIG_DIR / tiny.world).read_text()) | WORLD
    (root / "world.yaml").write_text(yaml.safe_dump(world))
    scale = dataclasses.replace(tiny, world=str(root / "world.yaml"),
                                pretrain=dataclasses.replace(tiny.pretrain, **SHORT),
                                ntp=dataclasses.replace(tiny.ntp, **SHORT), ra3=dataclasses.replace(tiny.ra3, **RA3),
                                rlvr=dataclasses.replace(tiny.rlvr, **RLVR))
    return scale, dataclasses.replace(tiny.generation, **GENERATION)


def record_writes(log_file: Path) -> None:
    """Every module holding `atomic_write` gets a copy that also logs (path, time) to `log_file`."""
    original = files.atomic_write

    def logged(path, text):
        original(path, text)
        with open(log_file, "a") as f:
            f.write(json.dumps({"path": str(path), "time": time.time()}) + "\n")

    for module in list(sys.modules.values()):
        if getattr(module, "atomic_write", None) is original:
            module.atomic_write = logged


def kill_after_checkpoint(root: Path, step: int) -> None:
    """Rank 0 dies the first time it has marked checkpoint `step` complete (torchrun then ends rank 1)."""
    mark = runs.mark_checkpoint

    def marked_then_killed(path, at):
        mark(path, at)
        if at == step and not (root / "killed").exists():
            (root / "killed").write_text(str(path))
            os._exit(9)

    runs.mark_checkpoint = marked_then_killed


def main(root: Path) -> None:
    torch.set_num_threads(1)
    rank = os.environ.get("RANK", "0")
    record_writes(root / f"writes-{rank}.jsonl")
    if "RA3_TEST_KILL_AT_CHECKPOINT" in os.environ:
        kill_after_checkpoint(root, int(os.environ["RA3_TEST_KILL_AT_CHECKPOINT"]))
    scale, generation = scale_and_generation(root)
    base = pipeline.pretrain_stage(scale, root)
    ntp = pipeline.ntp_stage(scale, str(base), root)
    if os.environ.get("RA3_TEST_STOP_AFTER_NTP"):
        (root / f"paths-{rank}.json").write_text(json.dumps({"base": str(base), "ntp": str(ntp)}))
        return
    evaluation = pipeline.eval_stage(str(ntp), "tiny-heldout", generation, root)
    ra3 = pipeline.ra3_stage(scale, str(base), root)
    rlvr = pipeline.rlvr_stage(scale, str(ntp), 0, root)
    (root / f"paths-{rank}.json").write_text(json.dumps({"base": str(base), "ntp": str(ntp),
                                                         "eval": str(evaluation), "ra3": str(ra3),
                                                         "rlvr": str(rlvr)}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
