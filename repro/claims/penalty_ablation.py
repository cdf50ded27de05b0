"""Claim `penalty_ablation`: the penalty c trades compute against quality. c=0.01 thinks at almost
every line (costly, no gain over NTP); c=0.05 (the default) gives a mean thought length under 6
tokens and under 40% of steps needing a full rollout, and the best HumanEval+MBPP score; c=0.2
almost never thinks (close to NTP).

Where: RA3 (arXiv:2509.25810), the penalty ablation figure.

Commands (what a run costs: `COST` below, also printed by `ra3-repro list`):
    ra3-repro penalty_ablation [--scale tiny|small|paper] [--seeds N] [--set section.key=value ...] [--out DIR]
    ra3-repro verify DIR
One RA3 run per penalty and seed (the default c is shared with `table1`'s cached stage) and one
evaluation of each on the scale's ablation benchmarks, plus NTP's for reference.

Measured per penalty (the final EM round's E-step, its last `tail_steps` steps): the think rate
(share of decision points where a thought was sampled, i.e. that needed a full rollout: the
paper's "steps needing a full rollout"), the mean thought length in tokens, lines per thought, the
thoughts per snippet of the final infused corpus, and pass@1 on the ablation benchmarks.

Checks:
- Ordering (the mechanism, at every scale): the think rate falls as c grows, per seed, each step
  by more than 2 standard errors of the E-step's sampling noise (the spread of the last steps);
  INCONCLUSIVE when a step is within the noise.
- small/paper: the paper's thresholds at c=0.05 (thought length < 6 tokens, rollout share < 40%),
  c=0.05 scoring at least as well as c=0.01 and c=0.2 (paired bootstrap over problems).
- tiny: the thresholds are the paper's numbers for real Python (tiny-world intents are 5-10 tokens),
  so the tiny scale (no paper values) reports them under regression guards only.
Regression guards (OK / DRIFT / STALE) where calibrated (configs/claims/penalty_ablation.yaml).
"""

import dataclasses
import logging
import sys
import time
from pathlib import Path

import numpy as np

from repro.claims import preflight
from repro.claims.record import compares_with_paper, per_task, publish, record_fields
from repro.claims.verdicts import Guard, Verdict, direction_verdict, guard_verdict, interval_se
from repro.core.config import CONFIG_DIR, ConfigError, load
from repro.core.files import read_jsonl
from repro.core.scale import ScaleConfig
from repro.core.stats import stratified_paired_bootstrap

log = logging.getLogger(__name__)

CLAIM = "penalty_ablation"
CONFIG = CONFIG_DIR / "claims" / "penalty_ablation.yaml"
NEEDS = ("ntp", "ra3", "generation")
COST = {"tiny": "56 min for 3 seeds on 2 shared CPU cores once table1's stages exist (6 extra RA3 runs)",
        "small": "two extra RA3 runs on one GPU",
        "paper": "two extra RA3 runs per model"}


@dataclasses.dataclass(frozen=True)
class PenaltyAblationConfig:
    penalties: tuple[float, ...]
    """The c values compared; the scale's own c is the default."""
    benchmarks: dict[str, tuple[str, ...]]
    """Scale -> benchmarks scored for each penalty."""
    tail_steps: int
    """E-step steps (at the end of the final round) averaged into the compute statistics."""
    max_thought_tokens_at_default: float
    """Paper: mean thought length < 6 tokens at c=0.05."""
    max_rollout_share_at_default: float
    """Paper: < 40% of steps need a full rollout at c=0.05."""
    bootstrap_resamples: int
    confidence: float
    guard_z: float
    """Regression guards: width in standard errors."""
    guards: tuple[Guard, ...] = ()
    """Regression guards calibrated from multi-seed runs (repro/claims/verdicts.py)."""
    predictions: str = ""
    """What the current code was expected to show, written down before the calibration runs."""


def load_config(path: Path | None = None) -> PenaltyAblationConfig:
    return load(PenaltyAblationConfig, path or CONFIG)


def run(scale: ScaleConfig, seeds: list[int] | None, out_dir: Path, sets: list[str] | tuple[str, ...] = (),
        root: Path | None = None) -> dict:
    """Default seeds: [0]."""
    from repro import pipeline  # torch and the training stack: only when running, so `check` stays light

    seeds = seeds or [0]
    preflight(sys.modules[__name__], scale)
    cfg = load_config()
    if scale.name not in cfg.benchmarks:
        raise ConfigError(f"{CONFIG}: `benchmarks` has no entry for scale {scale.name}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    entries, outcome_files, used = [], {}, {}
    for name, base in pipeline.base_models(scale, root):
        for seed in seeds:
            generation = dataclasses.replace(scale.generation, seed=seed)
            models = {"ntp": str(pipeline.ntp_stage(scale, base, root, seed=seed))}
            ra3_dirs = {f"c={c:g}": pipeline.ra3_stage(scale, base, root, seed=seed, penalty=c) for c in cfg.penalties}
            models |= {label: str(pipeline.ra3_model(path)) for label, path in ra3_dirs.items()}
            for label, model in models.items():
                used[f"{name}/{label}/s{seed}"] = model
                entry = {"model": name, "seed": seed, "variant": label, "pass@1": {}}
                if label != "ntp":
                    final = pipeline.ra3_rounds(ra3_dirs[label])[-1]
                    curve = read_jsonl(final / "estep.jsonl")
                    tail = curve[-cfg.tail_steps:]
                    infused = read_jsonl(final / "infused.jsonl")
                    entry |= {"penalty": float(label[2:]), "estep": curve,
                              "think_rate": _mean(tail, "think_rate"), "thought_tokens": _mean(tail, "thought_tokens"),
                              "lines_per_thought": _mean(tail, "lines_per_thought"),
                              "thoughts_per_snippet": sum(len(x["thoughts"]) for x in infused) / len(infused)}
                for benchmark in cfg.benchmarks[scale.name]:
                    key = f"{name}/{label}/s{seed}/{benchmark}"
                    link, metrics = pipeline.evaluate_into(out_dir, key, model, benchmark, generation, root)
                    outcome_files[key] = link
                    entry["pass@1"][benchmark] = {"value": metrics["pass@1"], "stderr": metrics["stderr"]["pass@1"]}
                entries.append(entry)
    record = {**record_fields(CLAIM, scale, seeds, sets), "penalties": list(cfg.penalties),
              "default_penalty": scale.ra3.penalty, "benchmarks": list(cfg.benchmarks[scale.name]),
              "entries": entries, "outcome_files": outcome_files, "stages": used,
              "seconds": round(time.monotonic() - start, 1)}
    record["tables"] = {"penalty_ablation": markdown_table(record)}
    return publish(out_dir, record, "Penalty ablation", plot)


def plan(scale: ScaleConfig, seeds: list[int] | None):
    """The stages `run` composes (NTP and one RA3 per penalty, each evaluated), with cost estimates."""
    from repro import plan as p

    cfg, stages = load_config(), p.pretrain(scale)
    for model in p.parameters(scale):
        for seed in seeds or [0]:
            stages.append(p.ntp(scale, model, seed))
            stages += [p.ra3(scale, model, seed, c) for c in cfg.penalties]
            stages += [p.evaluation(scale, model, f"{model} {label} s{seed}", cfg.benchmarks[scale.name],
                                    p.BENCHMARK_TASKS) for label in ["ntp", *(f"c={c:g}" for c in cfg.penalties)]]
    return stages


def _tail_se(curve: list[dict], tail_steps: int) -> float:
    """Standard error of the mean think rate over the last `tail_steps` E-step steps."""
    values = [r["think_rate"] for r in curve[-tail_steps:]]
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("inf")


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(values)) if values else None


def markdown_table(record: dict) -> str:
    head = ["model", "seed", "variant", "think rate (rollout share)", "thought tokens", "lines per thought",
            "thoughts per snippet"] + [f"{b} pass@1" for b in record["benchmarks"]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(v, spec=".3f"):
        return "-" if v is None else format(v, spec)

    for e in record["entries"]:
        cells = [e["model"], str(e["seed"]), e["variant"], fmt(e.get("think_rate")),
                 fmt(e.get("thought_tokens"), ".2f"), fmt(e.get("lines_per_thought"), ".2f"),
                 fmt(e.get("thoughts_per_snippet"), ".2f")]
        cells += [f"{100 * e['pass@1'][b]['value']:.1f} +- {100 * e['pass@1'][b]['stderr']:.1f}"
                  for b in record["benchmarks"]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Compute statistics: mean of the final EM round's last E-step steps; pass@1 in points +- one "
              "standard error; NTP for reference."]
    return "\n".join(lines)


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    penalties = record["penalties"]
    panels = [("think_rate", "think rate (rollout share)"), ("thought_tokens", "mean thought length (tokens)")]
    panels += [(b, f"{b} pass@1") for b in record["benchmarks"]]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2))
    for ax, (key, title) in zip(np.atleast_1d(axes), panels, strict=True):
        for seed in record["seeds"]:
            rows = [next(e for e in record["entries"] if e.get("penalty") == c and e["seed"] == seed)
                    for c in penalties]
            ys = [r["pass@1"][key]["value"] if key in r["pass@1"] else r[key] for r in rows]
            ax.plot(penalties, [np.nan if y is None else y for y in ys], marker="o", label=f"seed {seed}")
            if key in record["benchmarks"]:
                ntp = next(e for e in record["entries"] if e["variant"] == "ntp" and e["seed"] == seed)
                ax.axhline(ntp["pass@1"][key]["value"], color="gray", linestyle="--", linewidth=1,
                           label="NTP" if seed == record["seeds"][0] else None)
        ax.set_xscale("log")
        ax.set_xticks(penalties, [f"{c:g}" for c in penalties])
        ax.set_xlabel("penalty c")
        ax.set_title(title, fontsize=10)
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def check(record: dict) -> list[Verdict]:
    if record.get("claim") != CLAIM:
        raise ConfigError(f"not a {CLAIM} record (claim = {record.get('claim')!r})")
    if "outcomes" not in record:
        raise ConfigError("check needs the record with its outcomes: load it with repro.claims.load_record(RUN_DIR)")
    cfg = load_config()
    penalties = sorted(record["penalties"])
    default = record["default_penalty"]
    verdicts = []
    for model in dict.fromkeys(e["model"] for e in record["entries"]):
        rows = {(e["seed"], e.get("penalty")): e for e in record["entries"] if e["model"] == model}
        rates = {c: [rows[s, c]["think_rate"] for s in record["seeds"]] for c in penalties}
        # Each think rate is a mean over the final round's last E-step steps; their spread gives its
        # standard error, so that a difference within sampling noise is not read as an ordering.
        ses = {c: [_tail_se(rows[s, c]["estep"], cfg.tail_steps) for s in record["seeds"]] for c in penalties}
        margins = [(rates[a][i] - rates[b][i]) / max(np.hypot(ses[a][i], ses[b][i]), 1e-9)
                   for a, b in zip(penalties, penalties[1:], strict=False) for i in range(len(record["seeds"]))]
        means = [float(np.mean(rates[c])) for c in penalties]
        if all(m > 2 for m in margins):
            status, why = "PASS", "decreasing in c for every seed, each step by more than 2 standard errors"
        elif any(m < -2 for m in margins):
            status, why = "FAIL", "increasing in c for some seed by more than 2 standard errors"
        else:
            status, why = "INCONCLUSIVE", ("some step between penalties is within 2 standard errors of the E-step's "
                                           "sampling noise")
        verdicts.append(Verdict(
            CLAIM, f"{model} think rate falls as c grows", means[0] - means[-1], "> 0", (0.0, None),
            "think rate at c=" + ", ".join(f"{c:g}: {m:.3f}" for c, m in zip(penalties, means, strict=True))
            + "; smallest step / se: " + f"{min(margins):+.1f}", status, why))
        if default not in penalties:
            continue
        for key, limit in (("thought_tokens", cfg.max_thought_tokens_at_default),
                           ("think_rate", cfg.max_rollout_share_at_default)):
            values = [rows[s, default][key] for s in record["seeds"]]
            measured = float(np.mean([v for v in values if v is not None])) if any(
                v is not None for v in values) else float("nan")
            cell = f"{model} {key} c={default:g}"
            statistic = f"mean over {len(values)} seed(s)"
            if compares_with_paper(record):  # thresholds in real code's tokens and lines
                status = "PASS" if measured < limit else "FAIL"
                verdicts.append(Verdict(CLAIM, cell, measured, f"< {limit:g}", (None, limit), statistic, status,
                                        "the paper's threshold at c=0.05"))
            verdicts += guard_verdict(CLAIM, cell, measured, statistic, cfg.guards, record, cfg.guard_z, 0.0)
        verdicts += _best_at_default(cfg, record, model, penalties, default)
    return verdicts


def _best_at_default(cfg, record, model, penalties, default) -> list[Verdict]:
    """c = default scores at least as well as each other c (paired over problems, seeds averaged)."""
    out = []
    for c in penalties:
        if c == default:
            continue
        pairs = []
        for benchmark in record["benchmarks"]:
            _, a = per_task(record, model, f"c={default:g}", benchmark)
            _, b = per_task(record, model, f"c={c:g}", benchmark)
            pairs.append((a, b))
        interval = stratified_paired_bootstrap(pairs, n_resamples=cfg.bootstrap_resamples, confidence=cfg.confidence)
        cell = f"{model} pass@1 c={default:g} - c={c:g}"
        statistic = (f"mean per-task pass@1 difference over {', '.join(record['benchmarks'])}, "
                     f"{cfg.confidence:.0%} bootstrap [{interval['low']:+.4f}, {interval['high']:+.4f}]")
        out.append(direction_verdict(CLAIM, cell, interval, +1, statistic, ">= 0", {
            "FAIL": f"c={c:g} scores higher than the default",
            "PASS": "the default scores higher, as the paper reports",
            "INCONCLUSIVE": "the interval covers 0"}))
        out += guard_verdict(CLAIM, cell, interval["mean"], statistic, cfg.guards, record, cfg.guard_z,
                             interval_se(interval))
    return out
