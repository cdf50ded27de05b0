"""Tiny pretraining throughput: tokens/s of the real training loop and its share of matmul peak.

Measures, in one run on this machine: the fp32 and bf16 matmul peak (square matmuls with all
usable threads), then `repro.train.ntp.train_causal_lm` with the tiny scale's model and training
settings on code-like text for a few dozen steps, once in fp32 and once under bf16 autocast (fp32
master weights: what the tiny scale's `mixed_precision: auto` picks where bf16 is native), side by
side with their ratio. Achieved FLOP/s counts 6 x parameters per token plus attention's 12 x layers
x hidden x sequence (Kaplan et al. 2020; PaLM appendix B). The issue's target: at least 25% of the
peak of the precision used.

    python benchmarks/train_throughput.py [--steps 40]
"""

import argparse
import dataclasses
import json
import random
import tempfile
import time
from pathlib import Path

import torch
from accelerate.state import AcceleratorState

from repro.core.scale import load_scale
from repro.train.ntp import train_causal_lm
from repro.train.pretrain import init_model, train_tokenizer


def matmul_peak(dtype: torch.dtype, size: int = 1024, seconds: float = 2.0) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.matmul(a, b)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.matmul(a, b)
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start)


def code_like_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    ops = ["+", "-", "*", "%", "//"]
    texts = []
    for i in range(n):
        k, op = rng.randint(2, 9), rng.choice(ops)
        texts.append(f"def f{i}(xs):\n    out = []\n    for x in xs:\n        if x {op} {k} > {rng.randint(0, 5)}:\n"
                     f"            out.append(x {op} {k})\n    return sorted(out)\n")
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    scale = load_scale("tiny")
    threads = torch.get_num_threads()
    fp32, bf16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16, seconds=1.0)

    texts = code_like_texts(4000)
    measured = {}
    for precision in ("no", "bf16"):
        # accelerate keeps one process-wide precision for plain (non-DeepSpeed) runs and refuses a second
        # one (ValueError): forget the first run's before the second, as transformers' Trainer does.
        AcceleratorState._reset_state()  # as repro.train.zero.owned_state does around a DeepSpeed run
        with tempfile.TemporaryDirectory() as tmp:
            tokenizer = train_tokenizer(texts, scale.tokenizer, Path(tmp) / "tok")
            model = init_model(tokenizer, scale.tiny_model, seed=0)
            params = sum(p.numel() for p in model.parameters())
            cfg = dataclasses.replace(scale.pretrain, max_steps=args.steps, warmup_steps=2, checkpoint_every=0,
                                      log_every=1, mixed_precision=precision)
            train_causal_lm(model, tokenizer, texts, cfg, Path(tmp) / "run", desc=f"throughput ({precision})")
            lines = [json.loads(line) for line in open(Path(tmp) / "run" / "metrics.jsonl")]
        # Steady state: the first steps pay for allocator and thread-pool warm-up.
        first, last = lines[args.steps // 4], lines[-1]
        measured[precision] = cfg.batch_size * cfg.seq_len * (last["step"] - first["step"]) / (
            last["elapsed_seconds"] - first["elapsed_seconds"])
    m = scale.tiny_model
    flops_per_token = 6 * params + 12 * m.num_hidden_layers * m.hidden_size * cfg.seq_len
    print(f"torch threads: {threads}; tiny model: {params / 1e6:.2f}M parameters, seq {cfg.seq_len}, "
          f"batch {cfg.batch_size}, {args.steps} steps each (steady state from step {args.steps // 4})")
    print(f"matmul peak: fp32 {fp32 / 1e9:.1f} GFLOP/s, bf16 {bf16 / 1e9:.1f} GFLOP/s (1024^3, same run)")
    for precision, peak, name in (("no", fp32, "fp32"), ("bf16", bf16, "bf16 autocast")):
        achieved = measured[precision] * flops_per_token
        print(f"training, {name}: {measured[precision]:,.0f} tokens/s, {achieved / 1e9:.1f} GFLOP/s "
              f"= {achieved / peak:.0%} of the {'bf16' if precision == 'bf16' else 'fp32'} peak")
    print(f"bf16 autocast / fp32: {measured['bf16'] / measured['no']:.2f}x tokens/s")


if __name__ == "__main__":
    main()
