"""Claim `synthetic_reasoning`: comments distilled from an external LLM into the expert corpus, then NTP
(the synthetic-reasoning baseline), does worse than RA3 mid-training.

Where: RA3 (arXiv:2509.25810), Fig. 7 (RA3 against NTP on LLM-commented code).

Commands (what a run costs: `COST` below, also printed by `ra3-repro list`):
    ra3-repro synthetic_reasoning [--scale tiny|small|paper] [--seeds N] [--set section.key=value ...] [--out DIR]
    ra3-repro verify DIR
For every base model of the scale and seed s: NTP, the synthetic baseline (NTP with seed s on the expert
corpus as a teacher commented it, `repro.pipeline.teacher_stage`) and RA3 (both shared with `table1`'s
cached stages), each evaluated on the claim's benchmarks for the scale.
- tiny: the teacher is the tiny world itself, which writes every block's true intent at its start: a
  perfect teacher, so this baseline is the ceiling of what thoughts at those places can give, and RA3
  matching it would be the most the tiny world can show.
- small/paper: the teacher is the scale's `synthetic:` model at a pinned revision; it may only add
  comments (answers that change the code leave the snippet uncommented, and the record counts them).

Checks: RA3 - synthetic, per model on each benchmark and their average, pass@1 (and pass@5 with at least
5 samples per task): per-task differences averaged over seeds, stratified bootstrap over problems, PASS
when the interval lies above 0 (the paper's direction), FAIL below, INCONCLUSIVE when it covers 0.
Regression guards (OK / DRIFT / STALE) where calibrated (configs/claims/synthetic_reasoning.yaml).
"""

import dataclasses
import logging
import sys
import time
from pathlib import Path

from repro.claims import preflight
from repro.claims.record import per_task, publish, record_fields
from repro.claims.verdicts import Guard, Verdict, direction_verdict, guard_verdict, interval_se
from repro.core.config import CONFIG_DIR, ConfigError, load
from repro.core.scale import ScaleConfig
from repro.core.stats import stratified_paired_bootstrap

log = logging.getLogger(__name__)

CLAIM = "synthetic_reasoning"
CONFIG = CONFIG_DIR / "claims" / "synthetic_reasoning.yaml"
METHODS = ("ntp", "synthetic", "ra3")
NEEDS = ("ntp", "ra3", "generation")  # and `synthetic`, the teacher model, where the corpus comes from the hub
COST = {"tiny": "6 min 50 s for 3 seeds once table1's stages exist (a teacher NTP stage and evaluation per seed)",
        "small": "a teacher model commenting 50k snippets, then NTP, on one GPU (not run here)",
        "paper": "the teacher over 3.5M snippets and NTP per model (not run here)"}


@dataclasses.dataclass(frozen=True)
class SyntheticReasoningConfig:
    benchmarks: dict[str, tuple[str, ...]]
    """Scale -> benchmarks the three methods are compared on."""
    bootstrap_resamples: int
    confidence: float
    guard_z: float
    """Regression guards: width in standard errors."""
    guards: tuple[Guard, ...] = ()
    """Regression guards calibrated from multi-seed runs (repro/claims/verdicts.py)."""
    predictions: str = ""
    """What the current code was expected to show, written down before the calibration runs."""


def load_config(path: Path | None = None) -> SyntheticReasoningConfig:
    return load(SyntheticReasoningConfig, path or CONFIG)


def run(scale: ScaleConfig, seeds: list[int] | None, out_dir: Path, sets: list[str] | tuple[str, ...] = (),
        root: Path | None = None) -> dict:
    """NTP, synthetic and RA3 per model and seed, evaluated; record.json last. Default seeds: [0]."""
    from repro import pipeline  # torch and the training stack: only when running, so `check` stays light

    seeds = seeds or [0]
    cfg = load_config()
    teacher = ()
    if scale.corpus is not None:
        if scale.synthetic is None:
            raise ConfigError(f"claim {CLAIM} at scale {scale.name} needs a `synthetic` teacher model in "
                              f"configs/scales/{scale.name}.yaml (or --set synthetic='{{...}}')")
        teacher = (("synthetic.teacher", scale.synthetic.teacher.hub_id, scale.synthetic.teacher.revision),)
    preflight(sys.modules[__name__], scale, teacher)
    if scale.name not in cfg.benchmarks:
        raise ConfigError(f"{CONFIG}: `benchmarks` has no entry for scale {scale.name}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    entries, outcome_files, used = [], {}, {}
    for name, base in pipeline.base_models(scale, root):
        for seed in seeds:
            generation = dataclasses.replace(scale.generation, seed=seed)
            models = {"ntp": str(pipeline.ntp_stage(scale, base, root, seed=seed)),
                      "synthetic": str(pipeline.teacher_stage(scale, base, root, seed=seed)),
                      "ra3": str(pipeline.ra3_model(pipeline.ra3_stage(scale, base, root, seed=seed)))}
            for method, model in models.items():
                used[f"{name}/{method}/s{seed}"] = model
                for benchmark in cfg.benchmarks[scale.name]:
                    label = f"{name}/{method}/s{seed}/{benchmark}"
                    link, metrics = pipeline.evaluate_into(out_dir, label, model, benchmark, generation, root)
                    outcome_files[label] = link
                    entries.append({"model": name, "method": method, "seed": seed, "benchmark": benchmark,
                                    **{k: metrics[k] for k in ("pass@1", "pass@5") if k in metrics},
                                    "stderr": metrics["stderr"]})
    record = {**record_fields(CLAIM, scale, seeds, sets), "benchmarks": list(cfg.benchmarks[scale.name]),
              "teacher": "the tiny world's true intents (a perfect teacher)" if scale.corpus is None
              else dataclasses.asdict(scale.synthetic.teacher),
              "entries": entries, "outcome_files": outcome_files, "stages": used,
              "seconds": round(time.monotonic() - start, 1)}
    record["tables"] = {"synthetic_reasoning": markdown_table(record)}
    return publish(out_dir, record, "Synthetic reasoning vs RA3")


def plan(scale: ScaleConfig, seeds: list[int] | None):
    """The stages `run` composes (NTP, the teacher's corpus and its NTP, RA3, each evaluated)."""
    from repro import plan as p

    cfg, stages = load_config(), p.pretrain(scale)
    for model in p.parameters(scale):
        for seed in seeds or [0]:
            stages += [p.ntp(scale, model, seed), *p.teacher(scale, model, seed), p.ra3(scale, model, seed)]
            stages += [p.evaluation(scale, model, f"{model} {method} s{seed}", cfg.benchmarks[scale.name],
                                    p.BENCHMARK_TASKS) for method in METHODS]
    return stages


def markdown_table(record: dict) -> str:
    head = ["model", "method", *[f"{b} {m}" for b in record["benchmarks"] for m in ("pass@1", "pass@5")]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model in dict.fromkeys(e["model"] for e in record["entries"]):
        for method in METHODS:
            cells = []
            for benchmark in record["benchmarks"]:
                rows = [e for e in record["entries"] if (e["model"], e["method"], e["benchmark"]) == (
                    model, method, benchmark)]
                for metric in ("pass@1", "pass@5"):
                    values = [r[metric] for r in rows if metric in r]
                    cells.append(f"{100 * sum(values) / len(values):.1f}" if values else "-")
            lines.append(f"| {model} | {method} | " + " | ".join(cells) + " |")
    lines += ["", f"Points, mean over seeds {record['seeds']}; `synthetic`: NTP on the teacher-commented corpus "
              f"(teacher: {record['teacher']})."]
    return "\n".join(lines)


def check(record: dict) -> list[Verdict]:
    if record.get("claim") != CLAIM:
        raise ConfigError(f"not a {CLAIM} record (claim = {record.get('claim')!r})")
    if "outcomes" not in record:
        raise ConfigError("check needs the record with its outcomes: load it with repro.claims.record.load_record")
    cfg = load_config()
    benchmarks = record["benchmarks"]
    samples = min(len(v) for outcomes in record["outcomes"].values() for v in outcomes.values())
    verdicts = []
    for model in dict.fromkeys(e["model"] for e in record["entries"]):
        for k in (k for k in (1, 5) if k <= samples):
            pairs = {b: (per_task(record, model, "ra3", b, k)[1], per_task(record, model, "synthetic", b, k)[1])
                     for b in benchmarks}
            groups = [([b], b) for b in benchmarks] if len(benchmarks) > 1 else []
            groups.append((benchmarks, "avg" if len(benchmarks) > 1 else benchmarks[0]))
            for keys, where in groups:
                interval = stratified_paired_bootstrap([pairs[b] for b in keys], n_resamples=cfg.bootstrap_resamples,
                                                       confidence=cfg.confidence)
                cell = f"ra3-synthetic {model} {where} pass@{k}"
                statistic = (f"mean per-task pass@{k} difference, {cfg.confidence:.0%} stratified bootstrap "
                             f"[{interval['low']:+.4f}, {interval['high']:+.4f}] over {interval['n_problems']} "
                             f"problems, {len(record['seeds'])} seed(s)")
                verdicts.append(direction_verdict(CLAIM, cell, interval, +1, statistic, "RA3 > synthetic (the claim)"))
                verdicts += guard_verdict(CLAIM, cell, interval["mean"], statistic, cfg.guards, record, cfg.guard_z,
                                          interval_se(interval))
    return verdicts
