"""E-step rollout cost: the windowed rollout (`repro.train.ra3.rollout.rollout`) against the batched
rollout it replaced (commit cd8405b: the rest of a snippet prefilled after every thought) and against
re-encoding every prefix one row at a time (`repro.train.ra3.rollout.naive_rollout`), side by side.

On the tiny base model and the tiny world's expert snippets. The think rate is set by adding a bias to
the comment tokens' logits (found by bisection; the base model itself thinks at about 0.09), so the cost
is measured at think rates 0.1, 0.2 and 0.4. Every rollout samples G thought sets per snippet, row b
from generator seed b, so they take the same decisions and thoughts. Prints per think rate: token slots
fed per real token of the infused text (target: at most 1.5 at think rate 0.2), forwards, rollouts/s
and the speed-up over the previous batched rollout, and whether the sampled thoughts agree; then, at the
base model's own rate, the naive rollout and the rewards (one batched teacher-forced pass vs per-line
re-encoding: the largest reward difference, target float tolerance).

    python benchmarks/estep_throughput.py [--snippets 12] [--group 4] [--rates 0.1 0.2 0.4] [--window 32]

The previous rollout is read from git (`git show cd8405b:repro/train/ra3/rollout.py`), so this needs
the repository's history; `--no-baseline` skips it.
"""

import argparse
import dataclasses
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from repro import pipeline
from repro.core.files import read_jsonl
from repro.core.scale import load_scale
from repro.train.ra3 import rollout, scoring, thoughts

BASELINE_COMMIT = "cd8405b"
ROOT = Path(__file__).resolve().parents[1]


class BiasedHead(torch.nn.Module):
    """The LM head plus a constant on the comment tokens' logits: a model that thinks more often."""

    def __init__(self, head: torch.nn.Module, comment_ids: torch.Tensor, bias: float):
        super().__init__()
        self.head = head
        self.register_buffer("bias", torch.zeros(head.weight.shape[0]).index_fill(0, comment_ids, bias))

    @property
    def weight(self) -> torch.Tensor:
        return self.head.weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden) + self.bias


def previous_rollout():
    """The batched rollout as of BASELINE_COMMIT, imported from git (None when git cannot show it)."""
    try:
        source = subprocess.run(["git", "show", f"{BASELINE_COMMIT}:repro/train/ra3/rollout.py"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError) as error:
        print(f"no baseline: git show {BASELINE_COMMIT} failed ({error})", file=sys.stderr)
        return None
    path = Path(tempfile.mkdtemp()) / "previous_rollout.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("previous_rollout", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(function, model, tokenizer, rows, cfg, comment_ids) -> tuple[list[dict], dict, float]:
    cost: dict = {}
    start = time.perf_counter()
    sampled = function(model, tokenizer, [t for t, _ in rows], [s for _, s in rows], cfg, comment_ids,
                       [torch.Generator().manual_seed(b) for b in range(len(rows))], stats=cost)
    return sampled, cost, time.perf_counter() - start


def think_rate(sampled: list[dict], rows) -> float:
    return sum(len(th) for th in sampled) / sum(len(s) - 1 for _, s in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snippets", type=int, default=12)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--rates", type=float, nargs="*", default=[0.1, 0.2, 0.4])
    parser.add_argument("--window", type=int, default=None, help="rollout_window (default: the tiny scale's)")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    scale = load_scale("tiny")
    model_path = pipeline.pretrain_stage(scale)  # cached after the first run
    texts = [row["text"] for row in read_jsonl(pipeline.world_stage(scale) / "expert.jsonl")][: args.snippets]
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    cfg = scale.ra3 if args.window is None else dataclasses.replace(scale.ra3, rollout_window=args.window)
    comment_ids = thoughts.comment_token_ids(tokenizer)
    segmented = [thoughts.segment_lines(t) for t in texts]
    rows = [(t, s) for t, s in zip(texts, segmented, strict=True) for _ in range(args.group)]
    previous = None if args.no_baseline else previous_rollout()
    head = model.lm_head
    run(rollout.rollout, model, tokenizer, rows, cfg, comment_ids)  # warm-up: the first forwards are slower
    print(f"{args.snippets} snippets x G={args.group} = {len(rows)} rows, rollout_window {cfg.rollout_window}, "
          f"threads {torch.get_num_threads()}")
    print(f"{'think rate':>10} {'bias':>6} | {'slots/token':>11} {'forwards':>8} {'rollouts/s':>10} | "
          f"{'previous: slots/token':>21} {'rollouts/s':>10} | speed-up  same thoughts")
    for target in args.rates:
        low, high = -5.0, 20.0
        for _ in range(20):  # bisection on the bias for the target think rate
            bias = (low + high) / 2
            model.lm_head = BiasedHead(head, comment_ids, bias)
            sampled, cost, seconds = run(rollout.rollout, model, tokenizer, rows, cfg, comment_ids)
            rate = think_rate(sampled, rows)
            if abs(rate - target) < 0.01:
                break
            low, high = (bias, high) if rate < target else (low, bias)
        line = (f"{rate:10.3f} {bias:6.2f} | {cost['slots'] / cost['tokens']:11.2f} {cost['forwards']:8d} "
                f"{len(rows) / seconds:10.1f} | ")
        if previous is not None:
            old, old_cost, old_seconds = run(previous.rollout, model, tokenizer, rows, cfg, comment_ids)
            line += (f"{old_cost['slots'] / old_cost['tokens']:21.2f} {len(rows) / old_seconds:10.1f} | "
                     f"{old_seconds / seconds:7.1f}x  {old == sampled}")
        print(line)
    model.lm_head = head

    sampled, cost, seconds = run(rollout.rollout, model, tokenizer, rows, cfg, comment_ids)
    start = time.perf_counter()
    naive = [rollout.naive_rollout(model, tokenizer, t, s, cfg, comment_ids, torch.Generator().manual_seed(b))
             for b, (t, s) in enumerate(rows)]
    naive_seconds = time.perf_counter() - start
    samples = [(thoughts.build_infused(t, s, th), len(s)) for (t, s), th in zip(rows, sampled, strict=True)]
    start = time.perf_counter()
    with torch.no_grad():
        batched = [sc.line_logp for sc in scoring.score_samples(model, tokenizer, [x for x, _ in samples],
                                                                [n for _, n in samples], comment_ids, 1.0)]
    batched_seconds = time.perf_counter() - start
    start = time.perf_counter()
    per_line = [scoring.naive_line_logp(model, tokenizer, x, n) for x, n in samples]
    per_line_seconds = time.perf_counter() - start
    print(f"base model (think rate {think_rate(sampled, rows):.3f}): rollout {seconds:.2f} s, naive rollout "
          f"{naive_seconds:.2f} s ({naive_seconds / seconds:.1f}x), same thoughts as naive: {sampled == naive}")
    print(f"rewards: batched {batched_seconds:.2f} s, per line {per_line_seconds:.2f} s "
          f"({per_line_seconds / batched_seconds:.1f}x); largest difference "
          f"{max(float((a - b).abs().max()) for a, b in zip(batched, per_line, strict=True)):.2e} nats")


if __name__ == "__main__":
    main()
