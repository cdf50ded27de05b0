"""E-step rollout throughput: the batched KV-cache rollout (`repro.train.rollout.rollout.rollout`) vs re-encoding every
prefix one row at a time (`repro.train.rollout.rollout.naive_rollout`).

On the tiny base model and the tiny world's expert snippets, in one run: both rollouts sample G
thought sets per snippet, row b from generator seed b in both (so they take the same decisions and
thoughts; the batched one does all rows in one batch, as an E-step step does), then
rewards are computed by one batched teacher-forced pass and by per-line re-encoding. Prints the
time of each, the speed ratio (target: at least 3x), the batched rollout's token slots per real token
(its cost per token of the infused text), whether the sampled thoughts agree, and the largest reward
difference (target: float tolerance).

    python benchmarks/estep_throughput.py [--snippets 12] [--group 4]
"""

import argparse
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from repro import pipeline
from repro.core.files import read_jsonl
from repro.core.scale import load_scale
from repro.train.ra3 import rollout, scoring, thoughts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snippets", type=int, default=12)
    parser.add_argument("--group", type=int, default=4)
    args = parser.parse_args()
    scale = load_scale("tiny")
    model_path = pipeline.pretrain_stage(scale)  # cached after the first run
    texts = [row["text"] for row in read_jsonl(pipeline.world_stage(scale) / "expert.jsonl")][: args.snippets]
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    cfg = scale.ra3
    comment_ids = thoughts.comment_token_ids(tokenizer)
    segmented = [thoughts.segment_lines(t) for t in texts]

    rows = [(t, s) for t, s in zip(texts, segmented, strict=True) for _ in range(args.group)]
    timings, sampled = {}, {}
    start = time.perf_counter()
    cost: dict = {}
    sampled["cached"] = rollout.rollout(model, tokenizer, [t for t, _ in rows], [s for _, s in rows], cfg, comment_ids,
                                        [torch.Generator().manual_seed(b) for b in range(len(rows))], stats=cost)
    timings["rollout cached"] = time.perf_counter() - start
    start = time.perf_counter()
    sampled["naive"] = [rollout.naive_rollout(model, tokenizer, t, s, cfg, comment_ids,
                                              torch.Generator().manual_seed(b)) for b, (t, s) in enumerate(rows)]
    timings["rollout naive"] = time.perf_counter() - start

    samples = [(thoughts.build_infused(t, s, th), len(s)) for (t, s), th in zip(rows, sampled["cached"], strict=True)]
    start = time.perf_counter()
    with torch.no_grad():
        batched = [sc.line_logp for sc in scoring.score_samples(model, tokenizer, [x for x, _ in samples],
                                                            [n for _, n in samples], comment_ids, 1.0)]
    timings["rewards batched"] = time.perf_counter() - start
    start = time.perf_counter()
    naive = [scoring.naive_line_logp(model, tokenizer, x, n) for x, n in samples]
    timings["rewards naive"] = time.perf_counter() - start

    cached_total = timings["rollout cached"] + timings["rewards batched"]
    naive_total = timings["rollout naive"] + timings["rewards naive"]
    n_thoughts = sum(len(th) for th in sampled["cached"])
    boundaries = sum(len(s) - 1 for _, s in rows)
    print(f"{args.snippets} snippets x G={args.group}, {n_thoughts} thoughts sampled at {boundaries} boundaries "
          f"(think rate {n_thoughts / boundaries:.3f}), threads {torch.get_num_threads()}")
    print(f"batched rollout: {cost['slots']} token slots fed for {cost['tokens']} real tokens: "
          f"{cost['slots'] / cost['tokens']:.2f} slots per real token")
    for name, seconds in timings.items():
        print(f"  {name:16s} {seconds:7.2f} s")
    print(f"speed ratio naive/cached: {naive_total / cached_total:.1f}x "
          f"(rollout {timings['rollout naive'] / timings['rollout cached']:.1f}x, "
          f"rewards {timings['rewards naive'] / timings['rewards batched']:.1f}x)")
    print(f"same thoughts from the same seeds: {sampled['cached'] == sampled['naive']}; largest reward "
          f"difference: {max(float((a - b).abs().max()) for a, b in zip(batched, naive, strict=True)):.2e} nats")


if __name__ == "__main__":
    main()
