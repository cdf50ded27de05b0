"""Claim `mstep_loss`: the M-step cross-entropy on thought-infused data is clearly lower than NTP's
loss on raw data, for all three models.

Where: RA3 (arXiv:2509.25810), Fig. 3 (training loss curves).

Commands (what a run costs: `COST` below, also printed by `ra3-repro list`):
    ra3-repro mstep_loss [--scale tiny|small|paper] [--seeds N] [--set section.key=value ...] [--out DIR]
    ra3-repro verify DIR
It reuses the NTP and RA3 stages of `table1` (cached in runs/); alone it trains them first.

What is measured, per model and seed:
- Training loss (what Fig. 3 plots): NTP's loss on raw code and each M-step round's loss on infused
  code, per logged step (metrics.jsonl), against tokens seen; the claim's training statistic is the
  mean over the last `tail_fraction` of each run's logged steps (the final M-step round for RA3).
- Held-out cross-entropy per token on code neither model trained on (the scale's `heldout`
  benchmark's prompt + canonical solution): NTP's model on the raw code; the final RA3 model on the
  same code infused with thoughts sampled by its own policy; and, for honesty about what a lower
  number means, the RA3 model on the raw code and on the expert tokens alone of its infused code
  (comment tokens are often easy, so an infused CE can be lower without the code being better
  predicted).

Checks: per model, infused (RA3) minus raw (NTP) held-out CE per snippet, paired over the same
snippets with a percentile bootstrap (snippet CE averaged over seeds): PASS when the interval is
below 0 (the paper's direction), FAIL when above, INCONCLUSIVE when it covers 0; the training-loss
tails are compared per seed the same way over seeds (INCONCLUSIVE with fewer than 3 seeds).
"""

import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from repro.claims import preflight
from repro.claims.record import publish, record_fields
from repro.claims.verdicts import Guard, Verdict, direction_verdict, guard_verdict, interval_se
from repro.core.config import CONFIG_DIR, ConfigError, load
from repro.core.scale import ScaleConfig
from repro.core.stats import paired_bootstrap

log = logging.getLogger(__name__)

CLAIM = "mstep_loss"
CONFIG = CONFIG_DIR / "claims" / "mstep_loss.yaml"
NEEDS = ("ntp", "ra3")
COST = {"tiny": "42 s for 3 seeds once table1's stages are cached (held-out infusion and cross-entropy only)",
        "small": "the table1 stages plus minutes of scoring (not run yet)", "paper": "the table1 stages (not run yet)"}


@dataclasses.dataclass(frozen=True)
class MstepLossConfig:
    heldout: dict[str, str]
    """Scale -> benchmark whose prompt + canonical solution is the held-out code."""
    heldout_snippets: int
    """Held-out snippets scored (the first ones of the benchmark)."""
    tail_fraction: float
    """Share of the last logged training steps averaged into a run's final training loss."""
    bootstrap_resamples: int
    confidence: float
    guard_z: float
    """Regression guards: width in standard errors."""
    guards: tuple[Guard, ...] = ()
    """Regression guards calibrated from multi-seed runs (repro/claims/verdicts.py)."""
    predictions: str = ""
    """What the current code was expected to show, written down before the calibration runs."""


def load_config(path: Path | None = None) -> MstepLossConfig:
    return load(MstepLossConfig, path or CONFIG)


def run(scale: ScaleConfig, seeds: list[int] | None, out_dir: Path, sets: list[str] | tuple[str, ...] = (),
        root: Path | None = None) -> dict:
    """Default seeds: [0]."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from repro import pipeline
    from repro.eval import benchmarks
    from repro.train.ntp import text_nll

    seeds = seeds or [0]
    preflight(sys.modules[__name__], scale)
    cfg = load_config()
    if scale.name not in cfg.heldout:
        raise ConfigError(f"{CONFIG}: `heldout` has no benchmark for scale {scale.name}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    benchmark = benchmarks.load_benchmark(cfg.heldout[scale.name], benchmarks.load_eval_config())
    tasks = list(benchmark.tasks.values())[: cfg.heldout_snippets]
    texts = [t["prompt"] + t["canonical_solution"] for t in tasks]
    runs_, used = [], {}
    device = pipeline.device()
    for name, base in pipeline.base_models(scale, root):
        for seed in seeds:
            ntp_model = pipeline.ntp_stage(scale, base, root, seed=seed)
            ra3_dir = pipeline.ra3_stage(scale, base, root, seed=seed)
            ra3_model = pipeline.ra3_model(ra3_dir)
            used[f"{name}/ntp/s{seed}"], used[f"{name}/ra3/s{seed}"] = str(ntp_model), str(ra3_model)
            tokenizer = AutoTokenizer.from_pretrained(ra3_model)
            # On the device the stages trained on: the infusion's rollouts and the NLLs are the run's heavy part.
            ntp_net = AutoModelForCausalLM.from_pretrained(ntp_model).to(device)
            ra3_net = AutoModelForCausalLM.from_pretrained(ra3_model).to(device).eval()
            ra3_cfg, _ = pipeline.ra3_settings(scale, seed)
            infused = _infused(ra3_net, tokenizer, texts, ra3_cfg, seed)
            rounds = pipeline.ra3_rounds(ra3_dir)
            entry = {
                "model": name, "seed": seed,
                "ntp_curve": _curve(ntp_model.parent / "metrics.jsonl"),
                "mstep_curves": [_curve(r / "metrics.jsonl") for r in rounds],
                "heldout": {
                    "ntp_raw": text_nll(ntp_net, tokenizer, texts),
                    "ra3_infused": text_nll(ra3_net, tokenizer, [x.text for x in infused]),
                    "ra3_raw": text_nll(ra3_net, tokenizer, texts),
                    "ra3_expert_given_thoughts": _expert_nll(ra3_net, tokenizer, infused),
                },
                "thoughts_per_snippet": sum(len(x.thoughts) for x in infused) / len(infused),
            }
            entry["train_tail"] = {"ntp": _tail(entry["ntp_curve"], cfg.tail_fraction),
                                   "mstep_final": _tail(entry["mstep_curves"][-1], cfg.tail_fraction)}
            entry["rounds"] = []  # per EM round: its M-step's training loss and its model's held-out CE
            for k, round_dir in enumerate(rounds):
                net = ra3_net if k == len(rounds) - 1 else AutoModelForCausalLM.from_pretrained(
                    round_dir / "model").to(device)
                texts_k = [x.text for x in infused] if k == len(rounds) - 1 else [
                    x.text for x in _infused(net.eval(), tokenizer, texts, ra3_cfg, seed)]
                entry["rounds"].append({"round": k, "train_tail": _tail(entry["mstep_curves"][k], cfg.tail_fraction),
                                        "heldout_infused_ce": _ce(text_nll(net, tokenizer, texts_k))})
            runs_.append(entry)
            log.info("mstep_loss %s seed %d: held-out CE ntp raw %.4f, ra3 infused %.4f", name, seed,
                     _ce(entry["heldout"]["ntp_raw"]), _ce(entry["heldout"]["ra3_infused"]))
    record = {**record_fields(CLAIM, scale, seeds, sets), "heldout_benchmark": benchmark.name,
              "data_sha256": {benchmark.name: benchmark.sha256}, "heldout_snippets": len(texts),
              "runs": runs_, "stages": used, "seconds": round(time.monotonic() - start, 1)}
    record["tables"] = {"mstep_loss": markdown_table(record)}
    return publish(out_dir, record, "M-step loss vs NTP loss", plot)


def plan(scale: ScaleConfig, seeds: list[int] | None):
    """The stages `run` composes (table1's NTP and RA3, then held-out scoring), with cost estimates."""
    from repro import plan as p

    stages = p.pretrain(scale)
    for model in p.parameters(scale):
        for seed in seeds or [0]:
            stages += [p.ntp(scale, model, seed), p.ra3(scale, model, seed)]
    return stages


def _infused(model, tokenizer, texts: list[str], ra3_cfg, seed: int) -> list:
    """The held-out texts infused by `model` (every text in this process, whatever the number of ranks)."""
    import torch  # the training stack: only when running, so `check` stays light

    from repro.train.ra3.em import infuse_corpus
    from repro.train.ra3.thoughts import comment_token_ids

    infused = infuse_corpus(model, tokenizer, texts, ra3_cfg, comment_token_ids(tokenizer),
                            torch.Generator().manual_seed(seed), sharded=False)
    return [infused[i] for i in range(len(texts))]


def _curve(path: Path) -> list[dict]:
    return [{"step": r["step"], "loss": r["loss"]} for r in map(json.loads, open(path)) if "loss" in r]


def _tail(curve: list[dict], fraction: float) -> float:
    losses = [p["loss"] for p in curve]
    return float(np.mean(losses[-max(1, round(fraction * len(losses))):]))


def _ce(pairs) -> float:
    """Cross-entropy per token over all snippets (summed NLL over summed tokens)."""
    return sum(n for n, _ in pairs) / sum(t for _, t in pairs)


def _expert_nll(model, tokenizer, infused) -> list[tuple[float, int]]:
    """NLL of the expert tokens only (segments' tokens, thoughts excluded), each snippet on its own."""
    import torch

    from repro.train.ra3.scoring import score_samples
    from repro.train.ra3.thoughts import comment_token_ids

    out = []
    comment_ids = comment_token_ids(tokenizer)
    for sample in infused:
        n_segments = max(sample.owner) + 1
        with torch.no_grad():
            scored = score_samples(model, tokenizer, [sample], [n_segments], comment_ids, 1.0)[0]
        offsets = tokenizer(sample.text, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"]
        tokens = sum(1 for _, end in offsets[1:] if sample.owner[end - 1] >= 0)
        out.append((-float(scored.line_logp.sum()), tokens))
    return out


def markdown_table(record: dict) -> str:
    lines = ["| model | seed | NTP train loss (raw) | M-step train loss (infused, final round) | held-out CE: NTP raw "
             "| RA3 infused | RA3 raw | RA3 expert tokens given thoughts | thoughts per snippet |",
             "|" + "---|" * 9]
    for r in record["runs"]:
        h = r["heldout"]
        values = [r["train_tail"]["ntp"], r["train_tail"]["mstep_final"], _ce(h["ntp_raw"]), _ce(h["ra3_infused"]),
                  _ce(h["ra3_raw"]), _ce(h["ra3_expert_given_thoughts"])]
        lines.append(f"| {r['model']} | {r['seed']} | " + " | ".join(f"{v:.4f}" for v in values)
                     + f" | {r['thoughts_per_snippet']:.2f} |")
    lines += ["", "| model | seed | EM round | M-step train loss (infused) | held-out CE of the round's model "
              "(infused by its own policy) | NTP held-out CE (raw) |", "|" + "---|" * 6]
    for r in record["runs"]:
        for k in r["rounds"]:
            lines.append(f"| {r['model']} | {r['seed']} | {k['round']} | {k['train_tail']:.4f} | "
                         f"{k['heldout_infused_ce']:.4f} | {_ce(r['heldout']['ntp_raw']):.4f} |")
    lines += ["", f"Cross-entropy in nats per token; held-out: {record['heldout_snippets']} snippets of "
              f"{record['heldout_benchmark']} (prompt + canonical solution); training losses: mean of the last logged "
              "steps."]
    return "\n".join(lines)


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    for r in record["runs"]:
        ntp = r["ntp_curve"]
        left.plot([p["step"] for p in ntp], [p["loss"] for p in ntp], color="tab:gray", alpha=0.8,
                  label="NTP on raw code" if r is record["runs"][0] else None)
        offset = 0
        for k, curve in enumerate(r["mstep_curves"]):
            left.plot([offset + p["step"] for p in curve], [p["loss"] for p in curve], color="tab:blue", alpha=0.8,
                      label="RA3 M-steps on infused code" if r is record["runs"][0] and k == 0 else None)
            offset += curve[-1]["step"] if curve else 0
    left.set_xlabel("optimizer step (M-step rounds laid end to end)")
    left.set_ylabel("training loss (nats/token)")
    left.legend(fontsize=8)
    left.set_title("training loss (the paper's Fig. 3)", fontsize=10)
    keys = (("ntp_raw", "NTP, raw"), ("ra3_infused", "RA3, infused"), ("ra3_raw", "RA3, raw"),
            ("ra3_expert_given_thoughts", "RA3, expert tokens\ngiven thoughts"))
    values = [[_ce(r["heldout"][k]) for r in record["runs"]] for k, _ in keys]
    right.bar(range(len(keys)), [np.mean(v) for v in values], yerr=[np.std(v) for v in values], capsize=4,
              color=["tab:gray", "tab:blue", "tab:cyan", "tab:purple"])
    right.set_xticks(range(len(keys)), [label for _, label in keys], fontsize=8)
    flat = [x for v in values for x in v]
    right.set_ylim(0.95 * min(flat), 1.02 * max(flat))  # the differences, not the distance from 0, are the point
    right.set_ylabel("held-out CE (nats/token)")
    right.set_title(f"held-out {record['heldout_benchmark']} ({len(record['runs'])} run(s))", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


BELOW_ZERO = {"PASS": "the interval lies below 0: infused-data loss is lower, as the paper reports",
              "FAIL": "the interval lies above 0: infused-data loss is higher than NTP's",
              "INCONCLUSIVE": "the interval covers 0"}


def check(record: dict) -> list[Verdict]:
    if record.get("claim") != CLAIM:
        raise ConfigError(f"not a {CLAIM} record (claim = {record.get('claim')!r})")
    cfg = load_config()
    verdicts = []
    for model in dict.fromkeys(r["model"] for r in record["runs"]):
        mine = [r for r in record["runs"] if r["model"] == model]
        per_snippet = {k: np.mean([[n / t for n, t in r["heldout"][k]] for r in mine], axis=0)
                       for k in ("ntp_raw", "ra3_infused")}
        interval = paired_bootstrap(per_snippet["ra3_infused"], per_snippet["ntp_raw"],
                                    n_resamples=cfg.bootstrap_resamples, confidence=cfg.confidence)
        cell = f"{model} held-out CE: RA3 infused - NTP raw"
        statistic = (f"per-snippet CE difference (nats/token), {cfg.confidence:.0%} bootstrap "
                     f"[{interval['low']:+.4f}, {interval['high']:+.4f}] over {interval['n_problems']} snippets, "
                     f"{len(mine)} seed(s)")
        verdicts.append(direction_verdict(CLAIM, cell, interval, -1, statistic, "< 0", BELOW_ZERO))
        verdicts += guard_verdict(CLAIM, cell, interval["mean"], statistic, cfg.guards, record, cfg.guard_z,
                                  interval_se(interval))
        tails = np.array([r["train_tail"]["mstep_final"] - r["train_tail"]["ntp"] for r in mine])
        cell = f"{model} training loss: M-step (final round) - NTP"
        if len(tails) < 3:
            statistic = f"{len(tails)} seed(s)"
            verdicts.append(Verdict(CLAIM, cell, float(tails.mean()), "< 0", (None, 0.0), statistic,
                                    "INCONCLUSIVE", "fewer than 3 seeds: no interval over seeds"))
        else:
            half = 2.0 * tails.std(ddof=1) / np.sqrt(len(tails))
            interval = {"mean": float(tails.mean()), "low": float(tails.mean() - half),
                        "high": float(tails.mean() + half)}
            statistic = (f"mean over {len(tails)} seeds +- 2 standard errors "
                         f"[{interval['low']:+.4f}, {interval['high']:+.4f}]")
            verdicts.append(direction_verdict(CLAIM, cell, interval, -1, statistic, "< 0", BELOW_ZERO))
        verdicts += guard_verdict(CLAIM, cell, float(tails.mean()), statistic, cfg.guards, record, cfg.guard_z, 0.0)
    return verdicts
