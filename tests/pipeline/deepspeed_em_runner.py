"""Run by tests/pipeline/test_deepspeed_em.py under `torchrun --nproc_per_node 2` (gloo, DeepSpeed's CPU
backend): `repro.train.ra3.em.em_loop`, two EM rounds on a tiny Llama that writes a comment before its loop
about half of the time, once with the M-step under ZeRO-3 (configs/deepspeed/zero3.json, so the E-step
trains on its own ZeRO-3 engine) and once without DeepSpeed (the E-step's replica path, DDP M-steps).

`em.estep` and `em.train_causal_lm` are wrapped to record, on each rank: the weights before and after every
E-step (`estep-<mode>-<rank>.pt`) and, in `report-<rank>.json`, per E-step the DeepSpeed engines created
during it and alive after it, what DeepSpeed left behind, the hash of the weights after it and after the
round's M-step, and the gradient norm of every E-step update (DeepSpeed's, or the replica's clip). Every
file written through `atomic_write` goes to `writes-<rank>.jsonl`.

    OMP_NUM_THREADS=1 python -m torch.distributed.run --standalone --nproc_per_node 2 \\
        tests/pipeline/deepspeed_em_runner.py ROOT
"""

import dataclasses
import gc
import json
import os
import sys
import time
from pathlib import Path

import torch

from repro.core import ranks
from repro.core.scale import RA3Config, TinyModelConfig, TokenizerConfig, TrainConfig
from repro.eval.barrier import barrier
from repro.train.ntp import train_causal_lm
from repro.train.pretrain import init_model, train_tokenizer
from repro.train.ra3 import em

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from deepspeed_runner import weights_sha256
from ranks_runner import record_writes
from test_ra3 import make_texts

TEXTS = make_texts(300)
SNIPPETS = make_texts(40, seed=1)
MODEL = TinyModelConfig(32, 1, 2, 64, 128)
BASE = TrainConfig(seq_len=64, batch_size=8, lr=5e-3, max_steps=60, warmup_steps=5, checkpoint_every=0)
"""Pretraining (DDP over the 2 ranks) until the model writes the comment about half of the time."""
MSTEP = TrainConfig(seq_len=64, batch_size=4, lr=3e-3, max_steps=4, warmup_steps=1, checkpoint_every=0,
                    log_every=2)
RA3 = RA3Config(rounds=2, group_size=4, max_thought_tokens=6, temperature=2.5, penalty=0.05, estep_steps=2,
                snippets_per_step=3, estep_lr=1e-3, expert_lm_weight=0.1, policy_micro_batch=4,
                rollout_batch_size=16)
"""3 snippets a step: rank 0 rolls out 2 (8 rows, 2 micro-batches of 4), rank 1 one (4 rows), so under ZeRO-3
rank 1 runs an empty micro-batch to match rank 0's collectives. A high temperature makes the model think."""
HEAD_CHUNK_ELEMENTS = 420 * 48
"""48 positions per call of the output head when scoring (`repro.train.ra3.scoring`), so each rank calls it as
many times as its rows need, a different number on each rank, as at the paper scale's vocabulary (the
tiny vocabulary would otherwise fit a whole micro-batch in one call). It changes no result."""
MODES = {"zero3": "configs/deepspeed/zero3.json", "replica": None}


def engines_alive() -> int:
    gc.collect()
    return sum(type(o).__name__ in ("DeepSpeedEngine", "DeepSpeedZeroOptimizer_Stage3") for o in gc.get_objects())


def left_behind() -> dict:
    """What DeepSpeed left in this process: accelerate's state, transformers' ZeRO-3 flag, the environment."""
    from accelerate.state import AcceleratorState
    from transformers.integrations import is_deepspeed_zero3_enabled

    return {"zero3_flag": is_deepspeed_zero3_enabled(), "accelerate_state_kept": AcceleratorState._shared_state != {},
            "use_deepspeed_env": os.environ.get("ACCELERATE_USE_DEEPSPEED")}


def plain_fp32(model) -> bool:
    return all(p.dtype == torch.float32 and not hasattr(p, "ds_id") for p in model.parameters()) \
        and all(type(m._parameters) is dict for m in model.modules())


def copied(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Recorder:
    """Wraps `em.estep`, `em.train_causal_lm`, DeepSpeed's engine and the replica's clipping for one mode."""

    def __init__(self):
        from deepspeed.runtime.engine import DeepSpeedEngine

        self.created = 0
        self.calls, self.weights, self.grad_norms = [], [], []
        estep, train, clip = em.estep, em.train_causal_lm, torch.nn.utils.clip_grad_norm_
        init, step = DeepSpeedEngine.__init__, DeepSpeedEngine.step

        def counted_init(engine, *args, **kwargs):
            self.created += 1
            init(engine, *args, **kwargs)

        def noted_step(engine, *args, **kwargs):
            out = step(engine, *args, **kwargs)
            if self.in_estep:
                self.grad_norms.append(float(engine.get_global_grad_norm()))
            return out

        def noted_clip(parameters, *args, **kwargs):
            norm = clip(parameters, *args, **kwargs)
            if self.in_estep:
                self.grad_norms.append(float(norm))
            return norm

        def recorded_estep(model, *args, **kwargs):
            before = copied(model)
            created, self.in_estep = self.created, True
            started = time.monotonic()
            history = estep(model, *args, **kwargs)
            self.in_estep = False
            self.weights.append({"before": before, "after": copied(model)})
            self.calls.append({"seconds": round(time.monotonic() - started, 1),
                               "engines_created": self.created - created, "engines_alive": engines_alive(),
                               "plain_fp32": plain_fp32(model),
                               "grads_left": sum(p.grad is not None for p in model.parameters()),
                               "after_estep": weights_sha256(model), "history": history, **left_behind()})
            return history

        def recorded_train(model, *args, **kwargs):
            summary = train(model, *args, **kwargs)
            self.calls[-1]["after_round"] = weights_sha256(model)
            return summary

        self.in_estep = False
        DeepSpeedEngine.__init__, DeepSpeedEngine.step = counted_init, noted_step
        em.estep, em.train_causal_lm, torch.nn.utils.clip_grad_norm_ = recorded_estep, recorded_train, noted_clip
        self.restore = lambda: (setattr(DeepSpeedEngine, "__init__", init), setattr(DeepSpeedEngine, "step", step),
                                setattr(em, "estep", estep), setattr(em, "train_causal_lm", train),
                                setattr(torch.nn.utils, "clip_grad_norm_", clip))


def main(root: Path) -> None:
    torch.set_num_threads(1)
    from transformers import AutoTokenizer

    from repro.train.ra3 import scoring

    scoring.HEAD_CHUNK_ELEMENTS = HEAD_CHUNK_ELEMENTS

    rank = ranks.rank()
    record_writes(root / f"writes-{rank}.jsonl")
    if ranks.is_main():
        train_tokenizer(TEXTS, TokenizerConfig(vocab_size=420), root / "tokenizer")
    barrier()
    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
    base = init_model(tokenizer, MODEL, seed=0)
    train_causal_lm(base, tokenizer, TEXTS, BASE, root / "base")
    report = {}
    for mode, deepspeed in MODES.items():
        model = init_model(tokenizer, MODEL, seed=0)
        model.load_state_dict(base.state_dict())
        recorder = Recorder()
        started = time.monotonic()
        em.em_loop(model, tokenizer, SNIPPETS, RA3, dataclasses.replace(MSTEP, deepspeed_config=deepspeed),
                   root / "runs" / mode)
        recorder.restore()
        report[mode] = {"seconds": round(time.monotonic() - started, 1), "estep": recorder.calls,
                        "grad_norms": recorder.grad_norms}
        torch.save(recorder.weights, root / f"estep-{mode}-{rank}.pt")
    (root / f"report-{rank}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
