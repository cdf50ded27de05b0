"""Claim `table1`: RA3 mid-training beats the base model and NTP mid-training on HumanEval, MBPP,
HumanEval+ and MBPP+ (pass@1, and the average pass@5) for Llama-3.2-1B, Qwen-2.5-1.5B and
Llama-3.1-8B; averaged over the three models about +7.7 average pass@1 over base and +3.5 over NTP.
One cell goes the other way (Llama-3.1-8B MBPP: RA3 48.0 < NTP 48.6).

Where: RA3 (arXiv:2509.25810), the main mid-training table. The paper's numbers are data in
`paper_tables/table1.csv` (a secondary transcription: check the PDF).

Commands (what a run costs: `COST` below, also printed by `ra3-repro list`):
    ra3-repro table1 [--scale tiny|small|paper] [--seeds N] [--set section.key=value ...] [--out DIR]
    ra3-repro verify DIR
- tiny (default; offline, CPU): the tiny world, its base model pretrained here, NTP and RA3 for each
  seed, each evaluated on the scale's benchmarks (n=5 samples, pass@1 and pass@5). Stages are cached
  in runs/, so a rerun is seconds.
- small: Qwen-2.5-1.5B on a 50k-snippet corpus, one GPU; paper: the three models.

Method: for every base model of the scale and every seed s, NTP and RA3 mid-training with seed s
(data order, E-step sampling), and every method evaluated with sampling seed s (the base model is
one checkpoint: its seeds differ in sampling only). The run directory holds record.json, table1.md,
and under evals/ the outcome and sample files of every evaluation (the evidence `verify` reads).

Checks (`check`):
- Paired differences RA3 - NTP and RA3 - base, per model and benchmark, on the average over
  benchmarks, and averaged over models: per-task pass@1 (mean over seeds) differences with a
  stratified percentile bootstrap over problems. The paper's difference gives the direction: PASS
  when the interval lies on the paper's side of 0, FAIL when it lies on the other side,
  INCONCLUSIVE when it covers 0.
- small/paper: absolute cells against the paper's value, band = z * sqrt(se_paper^2 + se^2), with
  se_paper the binomial standard error of the paper's value on the benchmark's size and se ours
  (sampling pooled with the seed spread, `repro.core.stats.seed_summary`).
- tiny (`verdicts: calibrated` in its scale config): there is no paper number; the differences are
  checked against expectations calibrated from real runs (configs/claims/table1.yaml: mean and seed
  spread of each difference, the command that measured them), band = mean +- guard_z *
  max(sqrt(sd^2 / seeds + sd^2 / calibration seeds), the bootstrap interval's standard error)
  (`repro.claims.verdicts.guard_verdict`). Each says whether the tiny world reproduces the paper's
  direction.
"""

import csv
import dataclasses
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from repro.claims import preflight
from repro.claims.record import compares_with_paper, per_task, publish, record_fields
from repro.claims.verdicts import Guard, Verdict, direction_verdict, guard_verdict, interval_se
from repro.core import ranks
from repro.core.config import CONFIG_DIR, PAPER_TABLES, ConfigError, load
from repro.core.scale import ScaleConfig
from repro.core.stats import seed_summary, stratified_paired_bootstrap

log = logging.getLogger(__name__)

CLAIM = "table1"
METHODS = ("base", "ntp", "ra3")
BOUNDS = ("forced", "banned")
"""The RA3 model's ceiling and floor at a built world (repro.eval.generate.THOUGHT_MODES)."""
BOUND_METHODS = tuple(f"ra3-{mode}" for mode in BOUNDS)
ESTEP_KEYS = ("step", "mean_reward", "think_rate", "thought_accuracy", "reference_recall")
BOUND_LABELS = {"ra3-forced": "[ra3, true intents forced]", "ra3-banned": "[ra3, thoughts banned]"}
COMPARISONS = (("ra3", "ntp"), ("ra3", "base"))
CONFIG = CONFIG_DIR / "claims" / "table1.yaml"
PAPER_TABLE = PAPER_TABLES / "table1.csv"
AVERAGE = "avg"
"""The benchmark name of the average over a scale's benchmarks (the paper's `all4`)."""


@dataclasses.dataclass(frozen=True)
class Table1Config:
    z: float
    """Two-sided normal quantile of the absolute-cell bands (1.96: 95%)."""
    guard_z: float
    """Width, in standard errors, of the regression guards."""
    bootstrap_resamples: int
    confidence: float
    """Confidence of the bootstrap intervals of the paired differences."""
    guards: tuple[Guard, ...] = ()
    """Regression guards calibrated from multi-seed runs (repro/claims/verdicts.py)."""
    predictions: str = ""
    """What the current code and world were expected to show, written down before the runs that
    calibrated the guards (kept beside them to compare)."""


def load_config(path: Path | None = None) -> Table1Config:
    return load(Table1Config, path or CONFIG)


def paper_rows(path: Path = PAPER_TABLE) -> list[dict]:
    """The paper's numbers: model, method, metric, benchmark, value (points), source."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["value"] = float(row["value"])
    return rows


def run(scale: ScaleConfig, seeds: list[int] | None, out_dir: Path, sets: list[str] | tuple[str, ...] = (),
        root: Path | None = None) -> dict:
    """Train (cached), evaluate and tabulate every (model, method, seed, benchmark); writes record.json
    and table1.md into `out_dir`. Default seeds: [0]."""
    from repro import pipeline  # torch and the training stack: only when running, so `check` stays light

    seeds = seeds or [0]
    preflight(sys.modules[__name__], scale)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    rows, bounds, outcome_files, used, data_sha256, diagnostics, estep_curves = [], [], {}, {}, {}, {}, {}
    for name, base in pipeline.base_models(scale, root):
        for seed in seeds:
            ra3_dir = pipeline.ra3_stage(scale, base, root, seed=seed)
            models = {"base": base, "ntp": str(pipeline.ntp_stage(scale, base, root, seed=seed)),
                      "ra3": str(pipeline.ra3_model(ra3_dir))}
            # its E-step curves and thought diagnostics travel along
            for name_in, name_out in (("estep.png", f"estep_{name}_s{seed}.png"),
                                      ("examples.md", f"thoughts_{name}_s{seed}.md")):
                if (ra3_dir / name_in).exists() and ranks.is_main():
                    shutil.copyfile(ra3_dir / name_in, out_dir / name_out)
            found = json.loads((ra3_dir / "diagnostics.json").read_text())
            diagnostics[f"{name}/s{seed}"] = found["rounds"]
            estep_curves[f"{name}/s{seed}"] = [{k: step.get(k) for k in ESTEP_KEYS} for step in found["estep"]]
            generation = dataclasses.replace(scale.generation, seed=seed)
            # A built world knows every task's true intents: the RA3 model with them forced in (the
            # ceiling of what its thoughts can give) and with every thought banned (the floor).
            variants = [(method, model, "free") for method, model in models.items()]
            if scale.world is not None:
                variants += [(f"ra3-{mode}", models["ra3"], mode) for mode in BOUNDS]
            for method, model, thoughts in variants:
                used[f"{name}/{method}/s{seed}"] = model
                for benchmark in scale.benchmarks:
                    label = f"{name}/{method}/s{seed}/{benchmark}"
                    link, metrics = pipeline.evaluate_into(out_dir, label, model, benchmark, generation, root,
                                                           thoughts=thoughts)
                    outcome_files[label] = link
                    data_sha256[benchmark] = metrics["data_sha256"]
                    for metric in ("pass@1", "pass@5"):
                        if metric in metrics:
                            (bounds if thoughts != "free" else rows).append({
                                "model": name, "method": method, "benchmark": benchmark, "metric": metric,
                                "seed": seed, "value": metrics[metric], "stderr": metrics["stderr"][metric],
                                "n_tasks": metrics["n_tasks"]})
    cells = aggregate(rows, scale.benchmarks)
    record = {**record_fields(CLAIM, scale, seeds, sets), "benchmarks": list(scale.benchmarks),
              "rows": rows, "cells": cells, "bounds": aggregate(bounds, scale.benchmarks, BOUND_METHODS),
              "bound_rows": bounds, "outcome_files": outcome_files, "stages": used,
              "data_sha256": data_sha256, "ra3_diagnostics": diagnostics, "estep_curves": estep_curves,
              "paper": [r for r in paper_rows() if r["model"] in {c["model"] for c in cells}],
              "seconds": round(time.monotonic() - start, 1)}
    record["tables"] = {"table1": markdown_table(record)}
    return publish(out_dir, record, f"Table 1 ({scale.name} scale, seeds {seeds})", plot)


def plan(scale: ScaleConfig, seeds: list[int] | None):
    """The stages `run` composes, with their cost estimates (repro/plan.py)."""
    from repro import plan as p

    stages = p.pretrain(scale)
    for model in p.parameters(scale):
        for seed in seeds or [0]:
            stages += [p.ntp(scale, model, seed), p.ra3(scale, model, seed)]
            for method in METHODS + (BOUND_METHODS if scale.world is not None else ()):
                stages.append(p.evaluation(scale, model, f"{model} {method} s{seed}", scale.benchmarks,
                                           p.BENCHMARK_TASKS))
    return stages


def aggregate(rows: list[dict], benchmarks, methods: tuple[str, ...] = METHODS) -> list[dict]:
    """Cells over seeds: per (model, method, benchmark, metric), plus the average over benchmarks."""
    cells = []
    keys = sorted({(r["model"], r["method"], r["metric"]) for r in rows},
                  key=lambda k: (k[0], methods.index(k[1]), k[2]))
    for model, method, metric in keys:
        mine = [r for r in rows if (r["model"], r["method"], r["metric"]) == (model, method, metric)]
        seeds = sorted({r["seed"] for r in mine})
        for benchmark in benchmarks:
            these = [r for r in mine if r["benchmark"] == benchmark]
            if these:
                cells.append({"model": model, "method": method, "benchmark": benchmark, "metric": metric,
                              "n_tasks": these[0]["n_tasks"],
                              **seed_summary([r["value"] for r in these], [r["stderr"] for r in these])})
        per_seed = [[r for r in mine if r["seed"] == s] for s in seeds]
        if all(len(p) == len(benchmarks) for p in per_seed):
            means = [float(np.mean([r["value"] for r in p])) for p in per_seed]
            stderrs = [float(np.sqrt(sum(r["stderr"] ** 2 for r in p))) / len(p) for p in per_seed]
            cells.append({"model": model, "method": method, "benchmark": AVERAGE, "metric": metric, "n_tasks": None,
                          **seed_summary(means, stderrs)})
    return cells


def _paper_value(record: dict, model: str, method: str, benchmark: str, metric: str) -> float | None:
    """The paper's number as a fraction (the CSV has points); `avg` is the paper's `all4`."""
    for row in record.get("paper", []):
        paper_metric, paper_bench = (f"avg_{metric}", "all4") if benchmark == AVERAGE else (metric, benchmark)
        if (row["model"], row["method"], row["metric"], row["benchmark"]) == (model, method, paper_metric, paper_bench):
            return row["value"] / 100
    return None


def markdown_table(record: dict) -> str:
    """Rows: model x method; columns: pass@1 then pass@5 per benchmark, then the average pass@1 and
    pass@5 over benchmarks (the paper's layout has pass@1 per benchmark and both averages); each cell
    `ours +- se` in points, with the paper's value beside it where it has one."""
    benchmarks = record["benchmarks"]
    columns = ([(b, "pass@1") for b in benchmarks] + [(b, "pass@5") for b in benchmarks]
               + [(AVERAGE, "pass@1"), (AVERAGE, "pass@5")])
    head = ["model", "method"] + [f"{b} {m}" if b != AVERAGE else f"avg {m}" for b, m in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    cells = {(c["model"], c["method"], c["benchmark"], c["metric"]): c
             for c in record["cells"] + record.get("bounds", [])}
    for model in dict.fromkeys(c["model"] for c in record["cells"]):
        for method in METHODS + tuple(m for m in BOUND_METHODS if (model, m, benchmarks[0], "pass@1") in cells):
            out = [model, BOUND_LABELS.get(method, method)]
            for benchmark, metric in columns:
                cell = cells.get((model, method, benchmark, metric))
                text = "-" if cell is None else f"{100 * cell['value']:.1f} +- {100 * cell['stderr']:.1f}"
                paper = _paper_value(record, model, method, benchmark, metric)
                out.append(text + (f" (paper {100 * paper:.1f})" if paper is not None else ""))
            lines.append("| " + " | ".join(out) + " |")
    lines.append("")
    lines.append(f"Seeds: {record['seeds']}; values in points, `+-` one standard error (sampling pooled with the "
                 "seed spread); `paper`: paper_tables/table1.csv."
                 + (" The RA3 rows in brackets are bounds, not methods: its model with each task's true intents "
                    "forced in as its thoughts (ceiling), and with thoughts banned (floor)." if record.get("bounds")
                    else ""))
    for key, rounds in record.get("ra3_diagnostics", {}).items():
        accuracy = [r.get("thought_accuracy") for r in rounds]
        if any(a is not None for a in accuracy):
            lines.append(f"Thought accuracy of RA3's infused corpus ({key}), per EM round: "
                         + ", ".join("-" if a is None else f"{100 * a:.1f}%" for a in accuracy)
                         + "; thoughts per snippet: " + ", ".join(f"{r['thoughts_per_snippet']:.2f}" for r in rounds)
                         + ".")
    return "\n".join(lines)


def plot(record: dict, path: Path) -> None:
    """pass@1 and pass@5 of base, NTP and RA3 (and RA3's bounds) with 95% intervals, beside the E-step's
    curves (mean reward and thought accuracy or think rate per step, every run)."""
    from matplotlib.figure import Figure  # a bare Figure renders PNG with Agg, no global backend

    cells = {(c["model"], c["method"], c["metric"]): c for c in record["cells"] + record.get("bounds", [])
             if c["benchmark"] == (record["benchmarks"][0] if len(record["benchmarks"]) == 1 else AVERAGE)}
    models = list(dict.fromkeys(c["model"] for c in record["cells"]))
    fig = Figure(figsize=(13, 3.8 * len(models)))
    axes = fig.subplots(len(models), 3, squeeze=False)
    for row, model in zip(axes, models, strict=True):
        methods = [m for m in METHODS + BOUND_METHODS if (model, m, "pass@1") in cells]
        for ax, metric in zip(row[:2], ("pass@1", "pass@5"), strict=True):
            present = [m for m in methods if (model, m, metric) in cells]
            values = [cells[model, m, metric]["value"] for m in present]
            errors = [1.96 * cells[model, m, metric]["stderr"] for m in present]
            colors = ["tab:gray", "tab:orange", "tab:blue", "tab:green", "tab:red"][: len(present)]
            ax.bar(range(len(present)), values, yerr=errors, capsize=4, color=colors)
            ax.set_xticks(range(len(present)), [BOUND_LABELS.get(m, m) for m in present], fontsize=8)
            ax.set(ylabel=metric, ylim=(0, 1), title=f"{model}: {metric} (95% intervals)")
        curves = row[2]
        for key, estep in record.get("estep_curves", {}).items():
            if key.startswith(f"{model}/"):
                for metric in ("thought_accuracy", "think_rate"):
                    values = [s.get(metric) if s.get(metric) is not None else float("nan") for s in estep]
                    curves.plot(values, label=f"{key.split('/')[1]} {metric.replace('_', ' ')}")
        curves.set(xlabel="E-step step (all rounds)", title="E-step", ylim=(0, 1))
        if curves.lines:
            curves.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def check(record: dict) -> list[Verdict]:
    if record.get("claim") != CLAIM:
        raise ConfigError(f"not a {CLAIM} record (claim = {record.get('claim')!r})")
    if "outcomes" not in record:
        raise ConfigError("check needs the record with its outcomes: load it with repro.claims.load_record(RUN_DIR)")
    cfg = load_config()
    models = list(dict.fromkeys(c["model"] for c in record["cells"]))
    benchmarks = record["benchmarks"]
    samples = min(len(v) for outcomes in record["outcomes"].values() for v in outcomes.values())
    verdicts = []
    for k in (k for k in (1, 5) if k <= samples):
        for first, second in COMPARISONS:
            pairs = {}
            for model in models:
                for benchmark in benchmarks:
                    _, a = per_task(record, model, first, benchmark, k)
                    _, b = per_task(record, model, second, benchmark, k)
                    pairs[model, benchmark] = (a, b)
            groups = [([(m, b)], f"{m} {b}") for m in models for b in benchmarks] if len(benchmarks) > 1 else []
            groups += [([(m, b) for b in benchmarks], f"{m} {benchmarks[0] if len(benchmarks) == 1 else 'avg'}")
                       for m in models]
            if len(models) > 1:
                groups.append(([(m, b) for m in models for b in benchmarks], "all models avg"))
            for keys, cell in groups:
                interval = stratified_paired_bootstrap([pairs[key] for key in keys],
                                                       n_resamples=cfg.bootstrap_resamples, confidence=cfg.confidence)
                benchmark = keys[0][1] if len(keys) == 1 or len(benchmarks) == 1 else AVERAGE
                model = keys[0][0] if len({m for m, _ in keys}) == 1 else None
                verdicts += _difference_verdicts(record, cfg, f"{first}-{second} {cell} pass@{k}", first, second,
                                                 model, benchmark, f"pass@{k}", interval)
    verdicts += _absolute_verdicts(record, cfg)
    return verdicts


def _difference_verdicts(record, cfg: Table1Config, cell: str, first: str, second: str, model: str | None,
                         benchmark: str, metric: str, interval: dict) -> list[Verdict]:
    """The claim verdict on one paired difference (against the paper's own difference where its table
    has the cell, else the claim's direction: RA3 above both), and its regression guard if calibrated."""
    statistic = (f"mean per-task {metric} difference, {interval['confidence']:.0%} stratified bootstrap "
                 f"[{interval['low']:+.4f}, {interval['high']:+.4f}] over {interval['n_problems']} problems, "
                 f"{len(record['seeds'])} seed(s)")
    paper = _paper_difference(record, model, first, second, benchmark, metric)
    direction = -1 if paper is not None and paper < 0 else 1
    reference = f"{paper:+.3f} (paper)" if paper is not None else f"{first.upper()} > {second.upper()} (the claim)"
    claim = direction_verdict(CLAIM, cell, interval, direction, statistic, reference)
    claim = dataclasses.replace(claim, reason=f"{claim.reason} (paired over the same problems; reference {reference})")
    return [claim, *guard_verdict(CLAIM, cell, interval["mean"], statistic, cfg.guards, record, cfg.guard_z,
                                  interval_se(interval))]


def _paper_difference(record, model, first, second, benchmark, metric) -> float | None:
    models = [model] if model else list(dict.fromkeys(c["model"] for c in record["cells"]))
    values = []
    for m in models:
        a = _paper_value(record, m, first, benchmark, metric)
        b = _paper_value(record, m, second, benchmark, metric)
        if a is None or b is None:
            return None
        values.append(a - b)
    return float(np.mean(values))


def _absolute_verdicts(record, cfg: Table1Config) -> list[Verdict]:
    out = []
    for c in record["cells"]:
        paper = _paper_value(record, c["model"], c["method"], c["benchmark"], c["metric"])
        if paper is None or not compares_with_paper(record):
            continue
        n_tasks = c["n_tasks"] or sum(x["n_tasks"] for x in record["cells"] if x["model"] == c["model"]
                                      and x["method"] == c["method"] and x["metric"] == c["metric"]
                                      and x["benchmark"] != AVERAGE) / len(record["benchmarks"])
        se_paper = np.sqrt(paper * (1 - paper) / n_tasks)
        half = cfg.z * float(np.sqrt(se_paper ** 2 + c["stderr"] ** 2))
        band = (paper - half, paper + half)
        status = "PASS" if band[0] <= c["value"] <= band[1] else "FAIL"
        out.append(Verdict(CLAIM, f"{c['model']} {c['method']} {c['benchmark']} {c['metric']}", c["value"], paper,
                           band, f"mean over {c['seeds']} seed(s), se {c['stderr']:.4f}", status,
                           f"band = {cfg.z} x sqrt(binomial se of the paper's value on {n_tasks:.0f} problems "
                           f"({se_paper:.4f})^2 + our se^2)"))
    return out


NEEDS = ("ntp", "ra3", "generation")
COST = {"tiny": "1 seed from nothing: 10 min 34 s on 2 quiet CPU cores (bf16 pretraining; 12 min 22 s inside CI's "
                "test session); 3 seeds: 19 min more for seeds 1 and 2 once seed 0 is cached, on 2 shared cores",
        "small": "not run yet (no GPU here): hours on one 80 GB GPU, see the estimate",
        "paper": "not run yet: GPU-weeks on 8 GPUs (three models, 3.5M snippets), see the estimate"}
