"""Claim `rlvr_curves`: RLVR (GRPO) started from an RA3 mid-trained model converges faster and to a
higher final score than started from the base model or from NTP mid-training.

Where: RA3 (arXiv:2509.25810), the RLVR figure (GRPO with the DeepCoder recipe on
AReaL-boba-2-RL-Code; curves on HumanEval+, MBPP+, LiveCodeBench, Codeforces). No curve values are
published: the checks are orderings and convergence statistics.

Commands (what a run costs: `COST` below, also printed by `ra3-repro list`):
    ra3-repro rlvr_curves [--scale tiny|small|paper] [--seeds N] [--set rlvr.KEY=VALUE ...] [--out DIR]
    ra3-repro verify DIR
- tiny (default; 2 CPU cores, offline): 3 inits x N seeds GRPO runs of the tiny scale's `rlvr` block
  (30 steps of 32 completions; pass@1 on the 200 tiny-heldout tasks, one sample each, at steps 0,
  10, 20, 30). It needs NTP and RA3 of each mid-training seed (`table1`'s cached stages; built
  first if absent).
- small/paper: the same on GPUs with vLLM generation (paper: DeepSpeed ZeRO-3), AReaL-boba-2-RL-Code
  and the four benchmarks; untested here.

Method: for each base model of the scale and each seed s, GRPO (`repro.pipeline.rlvr_stage`) from the
base model, from NTP of mid-training seed s and from RA3 of mid-training seed s, with RL seed s
(data order, rollouts, and the curves' sampling: the inits of one seed share their random numbers).
The run directory holds record.json, rlvr_curves.png (mean and min-max range over seeds, one panel
per model and benchmark) and, under evals/, the outcome files of every curve point, from which
`check` recomputes the curves.

Statistics (repro/stats.py), per run and benchmark: the area under the pass@1 curve (its mean
height over the step budget), the final pass@1, and the steps until pass@1 first reaches a threshold
(`threshold_fraction` x the highest seed-mean pass@1 any init reaches on that benchmark). A run that
never reaches it counts as reaching it one evaluation interval after the budget: this censoring can
only shrink a lead of the init that got there, so it never manufactures "RA3 is faster".

Checks: for each model, benchmark, other init and statistic, the paired difference over seeds (RA3 -
other for the area and final value; other - RA3 for the steps, so positive means RA3 is better), with
a two-sided Student-t interval over seeds. PASS when the interval lies above 0, FAIL when below,
INCONCLUSIVE when it covers 0, with fewer than `min_seeds` seeds, or when every seed gives the same
difference (the interval collapses to a point; no sign test on so few seeds could decide). The
t-interval assumes roughly normal seed-to-seed spread; there is no correction for the several checks.
"""

import dataclasses
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

from repro.claims import preflight
from repro.claims.record import publish, record_fields
from repro.claims.verdicts import Verdict, side_of_zero
from repro.core import ranks
from repro.core.config import CONFIG_DIR, ConfigError, from_dict, load
from repro.core.scale import ScaleConfig
from repro.core.stats import area_under_curve, seed_interval, steps_to_threshold

log = logging.getLogger(__name__)

CLAIM = "rlvr_curves"
CONFIG = CONFIG_DIR / "claims" / "rlvr_curves.yaml"
NEEDS = ("ntp", "ra3", "rlvr", "generation")
COST = {"tiny": "9 min 33 s measured for 3 inits x 1 seed on 2 shared CPU cores, once NTP and RA3 of the seed exist",
        "small": "9 GRPO runs of one 1.5B model on one GPU", "paper": "9 GRPO runs per model on 8 GPUs"}
STATISTICS = ("area", "final", "steps_to_threshold")


@dataclasses.dataclass(frozen=True)
class RLVRCurvesConfig:
    inits: tuple[str, ...]
    """Starting points of GRPO: base, ntp, ra3 (RA3 is compared with each other one)."""
    threshold_fraction: float
    """Steps to threshold: until pass@1 reaches this fraction of the best seed-mean level of any init."""
    confidence: float
    """Two-sided level of the Student-t intervals over seeds."""
    min_seeds: int
    """Fewer seeds than this is INCONCLUSIVE."""

    def __post_init__(self):
        unknown = set(self.inits) - {"base", "ntp", "ra3"}
        if unknown or "ra3" not in self.inits or len(self.inits) < 2:
            raise ValueError(f"inits must be ra3 and at least one of base, ntp (nothing else), got {self.inits}")
        if not 0 < self.threshold_fraction <= 1 or not 0 < self.confidence < 1 or self.min_seeds < 2:
            raise ValueError("threshold_fraction must lie in (0, 1], confidence in (0, 1), min_seeds >= 2")


def load_config(path: Path | None = None) -> RLVRCurvesConfig:
    return load(RLVRCurvesConfig, path or CONFIG)


def init_model(scale: ScaleConfig, init: str, base: str, seed: int, root: Path | None = None) -> str:
    from repro import pipeline

    if init == "base":
        return base
    if init == "ntp":
        return str(pipeline.ntp_stage(scale, base, root, seed=seed))
    return str(pipeline.ra3_model(pipeline.ra3_stage(scale, base, root, seed=seed)))


def run(scale: ScaleConfig, seeds: list[int] | None, out_dir: Path, sets: list[str] | tuple[str, ...] = (),
        root: Path | None = None) -> dict:
    """Every (model, seed, init) GRPO run, its curve points copied in as evidence; record.json last.
    Default seeds: [0]."""
    import json
    import shutil

    from repro import pipeline  # torch, TRL: only when running, so `check` stays light

    seeds = seeds or [0]
    preflight(sys.modules[__name__], scale)
    cfg = load_config()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    entries, outcome_files, seconds, stages = [], {}, {}, {}
    for model, base in pipeline.base_models(scale, root):
        for seed in seeds:  # seed-major: an interrupted claim run has every init of its first seeds
            for init in cfg.inits:
                started = time.monotonic()
                initial = init_model(scale, init, base, seed, root)
                mid = time.monotonic()
                stage = pipeline.rlvr_stage(scale, initial, seed, root)
                seconds[f"{model}/{init}/s{seed}"] = {"mid_training": round(mid - started, 1),
                                                      "rlvr": round(time.monotonic() - mid, 1)}
                curve = json.loads((stage / "curve.json").read_text())
                for step in curve["steps"]:
                    for benchmark in scale.rlvr.eval_benchmarks:
                        label = f"{model}/{init}/s{seed}/step{step}/{benchmark}"
                        dest = out_dir / "evals" / label
                        source = stage / "curve" / f"step-{step}" / benchmark
                        if ranks.is_main():  # one writer under torchrun
                            dest.mkdir(parents=True, exist_ok=True)
                            for name in ("outcomes.jsonl", "metrics.json", "generation.json"):
                                shutil.copyfile(source / name, dest / name)
                        outcome_files[label] = str((dest / "outcomes.jsonl").relative_to(out_dir))
                entries.append({"model": model, "init": init, "seed": seed, "init_model": initial,
                                "stage": str(stage), "steps": curve["steps"], "pass@1": curve["pass@1"],
                                "train": curve["train"]})
                stages[f"{model}/{init}/s{seed}"] = str(stage)
                log.info("%s %s seed %d: %s", model, init, seed, json.dumps(curve["pass@1"]))
    record = {**record_fields(CLAIM, scale, seeds, sets), "claim_config": dataclasses.asdict(cfg),
              "benchmarks": list(scale.rlvr.eval_benchmarks), "inits": list(cfg.inits), "entries": entries,
              "outcome_files": outcome_files, "stages": stages, "stage_seconds": seconds,
              "seconds": round(time.monotonic() - start, 1)}
    record["tables"] = {"rlvr_curves": markdown_table(record, cfg)}
    return publish(out_dir, record, "RLVR curves", lambda written, path: plot(written, curves(written), path))


def plan(scale: ScaleConfig, seeds: list[int] | None):
    """The stages `run` composes (NTP and RA3 per seed, then one GRPO run and its curve per init and
    seed), with cost estimates."""
    from repro import plan as p

    cfg, stages = load_config(), p.pretrain(scale)
    for model in p.parameters(scale):
        for seed in seeds or [0]:
            stages += [p.ntp(scale, model, seed), p.ra3(scale, model, seed)]
            for init in cfg.inits:
                stages += p.rlvr(scale, model, f"{model} from {init} s{seed}", p.BENCHMARK_TASKS)
    return stages


def markdown_table(record: dict, cfg: RLVRCurvesConfig) -> str:
    """Per model, benchmark and init: each curve statistic's mean and standard deviation over seeds."""
    head = ["model", "benchmark", "init", "seeds", "pass@1 at step 0", "area under the curve", "final pass@1",
            "steps to threshold (reached)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (model, benchmark), table in run_statistics(record, cfg).items():
        for init in record["inits"]:
            rows = [v for (i, _), v in table["per_run"].items() if i == init]
            starts = [c[1][0] for (m, b, i, _), c in curves(record).items() if (m, b, i) == (model, benchmark, init)]
            cells = [f"{np.mean([r[k] for r in rows]):.3f} +- {np.std([r[k] for r in rows], ddof=1):.3f}"
                     if len(rows) > 1 else f"{rows[0][k]:.3f}" for k in ("area", "final")]
            reached = sum(r["steps_to_threshold"] < table["censored_at"] for r in rows)
            steps = f"{np.mean([r['steps_to_threshold'] for r in rows]):.1f} ({reached}/{len(rows)})"
            lines.append(f"| {model} | {benchmark} | {init} | {len(rows)} | {np.mean(starts):.3f} | "
                         + " | ".join(cells) + f" | {steps} |")
    lines += ["", "Mean +- standard deviation over seeds. The threshold is "
              f"{cfg.threshold_fraction:g} x the best seed-mean pass@1 of any init; a run that never reaches it "
              "counts as one evaluation interval past the budget."]
    return "\n".join(lines)


def curves(record: dict) -> dict[tuple[str, str, str, int], tuple[list[int], list[float]]]:
    """(model, benchmark, init, seed) -> (steps, pass@1 per step), recomputed from the outcome files
    when the record carries them (load_record), else the record's own numbers (right after `run`)."""
    result = {}
    for entry in record["entries"]:
        for benchmark in record["benchmarks"]:
            values = []
            for step, recorded in zip(entry["steps"], entry["pass@1"][benchmark], strict=True):
                label = f"{entry['model']}/{entry['init']}/s{entry['seed']}/step{step}/{benchmark}"
                if "outcomes" in record:
                    per_task = record["outcomes"][label]
                    recorded = float(np.mean([np.mean(v) for v in per_task.values()]))
                values.append(recorded)
            result[entry["model"], benchmark, entry["init"], entry["seed"]] = (entry["steps"], values)
    return result


def run_statistics(record: dict, cfg: RLVRCurvesConfig) -> dict:
    """(model, benchmark) -> {"threshold", "censored_at", "per_run": {(init, seed): {statistic: value}}}."""
    table = {}
    data = curves(record)
    for model, benchmark in dict.fromkeys((m, b) for m, b, _, _ in data):
        runs = {(init, seed): v for (m, b, init, seed), v in data.items() if (m, b) == (model, benchmark)}
        steps = next(iter(runs.values()))[0]
        best = max(np.mean([v[1] for (i, _), v in runs.items() if i == init], axis=0).max()
                   for init in dict.fromkeys(i for i, _ in runs))
        threshold = cfg.threshold_fraction * float(best)
        censored_at = steps[-1] + (steps[-1] - steps[-2])
        per_run = {}
        for key, (run_steps, values) in runs.items():
            reached = steps_to_threshold(run_steps, values, threshold)
            per_run[key] = {"area": area_under_curve(run_steps, values), "final": values[-1],
                            "steps_to_threshold": censored_at if reached is None else reached}
        table[model, benchmark] = {"threshold": threshold, "censored_at": censored_at, "per_run": per_run}
    return table


def check(record: dict) -> list[Verdict]:
    if record.get("claim") != CLAIM:
        raise ConfigError(f"not a {CLAIM} record (claim = {record.get('claim')!r})")
    if "outcomes" not in record:
        raise ConfigError("check needs the record with its outcomes: load it with repro.claims.load_record(RUN_DIR)")
    cfg = from_dict(RLVRCurvesConfig, record["claim_config"], "record.json: claim_config")
    verdicts = []
    for (model, benchmark), table in run_statistics(record, cfg).items():
        per_run = table["per_run"]
        for other in (i for i in cfg.inits if i != "ra3"):
            seeds = sorted(s for i, s in per_run if i == "ra3" and (other, s) in per_run)
            for statistic in STATISTICS:
                sign = -1.0 if statistic == "steps_to_threshold" else 1.0
                diffs = [sign * (per_run["ra3", s][statistic] - per_run[other, s][statistic]) for s in seeds]
                verdicts.append(_verdict(cfg, model, benchmark, other, statistic, diffs, table))
    return verdicts


def _sign_test_seeds(confidence: float) -> int:
    """Fewest seeds for which a two-sided sign test with every seed agreeing reaches `confidence`."""
    return math.ceil(math.log2(2 / (1 - confidence)))


def _verdict(cfg: RLVRCurvesConfig, model, benchmark, other, statistic, diffs, table) -> Verdict:
    what = {"area": f"RA3 - {other} area under the pass@1 curve",
            "final": f"RA3 - {other} final pass@1",
            "steps_to_threshold": f"{other} - RA3 steps to pass@1 >= {table['threshold']:.3f}"}[statistic]
    cell = f"{model} {benchmark}: RA3 vs {other}, {statistic}"
    if not diffs:
        return Verdict(CLAIM, cell, float("nan"), 0.0, (0.0, None), f"no seed has both {other} and RA3", "INCONCLUSIVE",
                       "nothing to compare")
    interval = seed_interval(diffs, cfg.confidence)
    low, high = interval["low"], interval["high"]
    shown = "no interval" if low is None else f"Student-t {cfg.confidence:.0%} interval [{low:+.4f}, {high:+.4f}]"
    censor = (f"; runs that never reach it count as step {table['censored_at']:g}"
              if statistic == "steps_to_threshold" else "")
    text = (f"{what}, paired over {len(diffs)} seeds: mean {interval['mean']:+.4f}, per seed "
            f"{[round(d, 4) + 0.0 for d in diffs]}, {shown}{censor}")
    if len(diffs) < cfg.min_seeds:
        status, why = "INCONCLUSIVE", f"{len(diffs)} seed(s); the check needs at least {cfg.min_seeds}"
    elif max(diffs) == min(diffs) and len(diffs) < _sign_test_seeds(cfg.confidence):
        needed = _sign_test_seeds(cfg.confidence)
        status, why = "INCONCLUSIVE", (f"every seed gives {diffs[0]:+g}: the t-interval collapses to a point, and "
                                       f"a sign test needs {needed} seeds to reach {cfg.confidence:.0%}")
    else:
        status = side_of_zero(low, high, +1)
        why = {"PASS": "RA3 is better: the interval lies above 0",
               "FAIL": f"{other} is better: the interval lies below 0",
               "INCONCLUSIVE": "the interval covers 0"}[status]
    return Verdict(CLAIM, cell, interval["mean"], 0.0, (0.0, None), text, status, why)


def plot(record: dict, data: dict, path: Path) -> None:
    """Mean pass@1 over seeds per init, with the min-max range over seeds as a band."""
    from matplotlib.figure import Figure  # a bare Figure renders PNG with Agg, no global backend

    panels = list(dict.fromkeys((m, b) for m, b, _, _ in data))
    fig = Figure(figsize=(5 * len(panels), 3.8))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (model, benchmark) in zip(axes, panels, strict=True):
        for number, init in enumerate(record["inits"]):
            runs = [v for (m, b, i, _), v in data.items() if (m, b, i) == (model, benchmark, init)]
            steps, values = runs[0][0], np.array([v for _, v in runs])
            ax.plot(steps, values.mean(0), marker="o", color=f"C{number}", label=f"{init} ({len(runs)} seeds)")
            ax.fill_between(steps, values.min(0), values.max(0), color=f"C{number}", alpha=0.2)
        ax.set(xlabel="GRPO step", ylabel="pass@1", title=f"{model}: {benchmark}")
        ax.legend(fontsize=8)
    fig.suptitle("GRPO from base, NTP and RA3\nline: mean over seeds; band: min to max over seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
