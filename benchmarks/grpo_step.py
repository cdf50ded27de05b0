"""Time of one GRPO step at tiny scale, split into generation, reward and update.

Runs `repro.rlvr.train` with the tiny scale's `rlvr` settings (TRL's GRPOTrainer, the sandboxed
reward) from the tiny base model (pretrained on first use, cached in runs/) on the tiny world's RL
tasks, twice: rewards on one sandbox worker, then on every usable core (the scale's setting).
- generation: time inside TRL's `_generate_single_turn` (transformers' `generate`);
- reward: time inside the reward function (post-processing and the sandboxed tests, in parallel);
- update: the rest of TRL's `step_time` (tokenisation, advantages, forward, backward, optimizer).
The first step of each run is a warm-up and is left out.

    python benchmarks/grpo_step.py [--steps 8]
"""

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import torch


def timed_run(scale, base: str, steps: int, workers: int | None) -> dict:
    from trl import GRPOTrainer

    from repro import rlvr
    from repro.eval.benchmarks import load_eval_config

    cfg = dataclasses.replace(scale.rlvr, max_steps=steps, eval_every=steps, reward_workers=workers)
    eval_config = load_eval_config()
    tasks = rlvr.train_tasks(cfg, eval_config)
    generation: list[float] = []
    original = GRPOTrainer._generate_single_turn

    def timed_generate(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            generation.append(time.perf_counter() - start)

    GRPOTrainer._generate_single_turn = timed_generate
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rlvr.train(base, tasks, cfg, Path(tmp), seed=0, eval_config=eval_config)
            rows = [json.loads(line) for line in open(Path(tmp) / "metrics.jsonl")]
    finally:
        GRPOTrainer._generate_single_turn = original
    rows, generation = rows[1:], generation[1:]  # the first step warms up
    step = sum(r["step_time"] for r in rows) / len(rows)
    gen = sum(generation) / len(generation)
    reward = sum(r["reward/seconds"] for r in rows) / len(rows)
    return {"reward_workers": workers or len(os.sched_getaffinity(0)), "steps_timed": len(rows),
            "completions_per_step": cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps,
            "mean_completion_tokens": round(sum(r["completions/mean_length"] for r in rows) / len(rows), 1),
            "step_seconds": round(step, 3), "generation_seconds": round(gen, 3), "reward_seconds": round(reward, 3),
            "update_seconds": round(step - gen - reward, 3), "generation_share": round(gen / step, 3),
            "reward_share": round(reward / step, 3), "update_share": round((step - gen - reward) / step, 3)}


def main() -> None:
    from repro import pipeline
    from repro.core.provenance import hardware
    from repro.core.sandbox import sandbox_mode
    from repro.core.scale import load_scale

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="GRPO steps per run (the first is not timed)")
    args = parser.parse_args()
    scale = load_scale("tiny")
    if scale.rlvr.torch_threads is not None:
        torch.set_num_threads(scale.rlvr.torch_threads)
    base = str(pipeline.pretrain_stage(scale))
    print(json.dumps({"hardware": hardware(), "sandbox": sandbox_mode(), "torch_threads": torch.get_num_threads(),
                      "load_average_before": os.getloadavg()}))
    for workers in (1, None):
        print(json.dumps(timed_run(scale, base, args.steps, workers)))
    print(json.dumps({"load_average_after": os.getloadavg()}))


if __name__ == "__main__":
    main()
