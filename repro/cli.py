"""`ra3-repro`: the command line. One verb per capability; the set of verbs is pinned by a test.

Errors in what the user gave (a bad file, key, benchmark or option) print one line and exit 2;
a check that ran and failed (the scoring self-check) exits 1.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

from repro import __version__
from repro.config import ConfigError
from repro.data import EVAL_CONFIG, DataError

log = logging.getLogger("repro")


def cmd_env(args: argparse.Namespace) -> int:
    from repro.record import environment

    print(json.dumps(environment(with_gpu=True), indent=2))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from repro import data, evaluate

    config = data.load_eval_config(args.config)
    benchmark = data.load_benchmark(args.benchmark, config, args.data)
    samples = evaluate.read_samples(args.samples, benchmark)
    rows, metrics, details = evaluate.score(benchmark, samples, config, args.workers)
    evaluate.write_results(args.out, rows, metrics, details)
    print(_summary_line(metrics, args.out))
    return 0


def cmd_selfcheck(args: argparse.Namespace) -> int:
    """Canonical solutions must all pass and `pass`-bodied functions must all fail."""
    from repro import data, evaluate

    config = data.load_eval_config(args.config)
    benchmark = data.load_benchmark(args.benchmark, config, args.data)
    if benchmark.config.kind not in ("humaneval", "evalplus"):
        raise ConfigError(f"selfcheck needs canonical solutions; {args.benchmark} has none "
                          "(choose a humaneval or evalplus benchmark)")
    expected = {"canonical": 1.0, "pass_body": 0.0}
    failed = []
    for variant, target in expected.items():
        samples = [evaluate.Sample(task_id, 0, task["prompt"] + (
            task["canonical_solution"] if variant == "canonical" else "    pass\n"))
            for task_id, task in benchmark.tasks.items()]
        rows, metrics, details = evaluate.score(benchmark, samples, config, args.workers)
        out = Path(args.out) / variant
        evaluate.write_results(out, rows, metrics, details)
        print(f"{variant:10s} {_summary_line(metrics, out)}  (expected pass@1 = {target:.0%})")
        if metrics["pass@1"] != target:
            failed.append(variant)
    if failed:
        print(f"selfcheck FAILED for: {', '.join(failed)}; see details.jsonl in {args.out}")
        return 1
    print("selfcheck passed")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from repro import stages
    from repro.scale import load_scale

    scale = load_scale(args.scale)
    if scale.pretrain is None:
        raise ConfigError(f"scale {args.scale} starts from hub models; only a scale that builds its model pretrains")
    print(stages.pretrain_stage(scale))
    return 0


def _base_model(args: argparse.Namespace, scale) -> str:
    """--model, or the scale's own tiny base model (pretrained on first use)."""
    from repro import stages

    if args.model:
        return args.model
    if scale.pretrain is None:
        raise ConfigError(f"scale {args.scale} has several hub models: pass --model")
    return str(stages.pretrain_stage(scale))


def cmd_ntp(args: argparse.Namespace) -> int:
    from repro import stages
    from repro.scale import load_scale

    scale = load_scale(args.scale)
    print(stages.ntp_stage(scale, _base_model(args, scale)))
    return 0


def cmd_ra3(args: argparse.Namespace) -> int:
    from repro import stages
    from repro.scale import load_scale

    scale = load_scale(args.scale)
    if scale.ra3 is None:
        raise ConfigError(f"scale {args.scale} has no `ra3` settings in configs/scales/{args.scale}.yaml")
    print(stages.ra3_stage(scale, _base_model(args, scale)))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import dataclasses

    from repro import data, evaluate
    from repro.scale import load_scale

    gen = load_scale(args.scale).generation
    overrides = {k: getattr(args, k) for k in ("n", "temperature", "top_p", "max_new_tokens", "batch_size", "seed")
                 if getattr(args, k) is not None}
    try:
        gen = dataclasses.replace(gen, **overrides)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    config = data.load_eval_config(args.config)
    benchmark = data.load_benchmark(args.benchmark, config, args.data)
    metrics = evaluate.evaluate_model(args.model, benchmark, config, gen, args.out, revision=args.revision,
                                      limit=args.limit, workers=args.workers)
    print(_summary_line(metrics, args.out) + "".join(
        f", pass@{k} = {metrics[f'pass@{k}']:.4f} +- {metrics['stderr'][f'pass@{k}']:.4f}" for k in (1, 5)
        if f"pass@{k}" in metrics))
    return 0


def cmd_theory(args: argparse.Namespace) -> int:
    from repro.claims import module
    from repro.runs import stage_dir

    claim = module("theory")
    cfg = claim.load_config(args.config)
    out = args.out or stage_dir("theory", cfg)
    record = claim.run(cfg, out)
    print(f"theory: record, pruning.png and convergence.png in {out}")
    return _print_verdicts(claim.check(record))


def cmd_verify(args: argparse.Namespace) -> int:
    """Re-check a run from its record and outcome files: one line per check, exit 1 if any fails.
    A directory of claim runs (RUN_DIR/<name>/record.json) is checked run by run."""
    from repro.report import find_runs  # the discovery and record checks `report` uses

    verdicts = [v for run in find_runs(Path(args.run_dir)) for v in run.verdicts]
    return _print_verdicts(verdicts)


def cmd_report(args: argparse.Namespace) -> int:
    from repro.report import write_report

    markdown, html = write_report(args.run_dir, args.out)
    print(f"report: {markdown} and {html}")
    return 0


def cmd_claim(args: argparse.Namespace) -> int:
    """A mid-training claim at a scale: train and evaluate (cached), write the record, print the verdicts."""
    from repro.claims import common, load_record, module
    from repro.runs import stage_dir

    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {args.seeds}")
    claim = module(args.verb)
    scale = common.resolve_scale(args.scale, args.set)
    seeds = list(range(args.seeds))
    out = args.out or stage_dir(f"claims/{args.verb}", {"scale": scale, "seeds": seeds})
    claim.run(scale, seeds, out, args.set)
    tables = Path(out) / f"{args.verb}.md"
    if tables.exists():
        print(tables.read_text())
    print(f"{args.verb}: record.json and outcome files in {out}")
    return _print_verdicts(claim.check(load_record(out)))


def _claim_of(record_file: Path) -> str | None:
    try:
        return json.loads(record_file.read_text()).get("claim")
    except (OSError, ValueError, AttributeError):
        return None


def cmd_list(args: argparse.Namespace) -> int:
    """Each claim: its id, the claim's first line, its cost per scale, and the last run's verdicts."""
    from repro.claims import CLAIMS, load_record, module
    from repro.report import counts as report_counts
    from repro.runs import RUNS_ROOT

    for claim in CLAIMS:
        mod = module(claim)
        summary = " ".join(mod.__doc__.split("\n\n")[0].split(":", 1)[1].split())
        records = sorted((p for p in RUNS_ROOT.glob("**/record.json") if _claim_of(p) == claim),
                         key=lambda p: p.stat().st_mtime)
        status = "never run here"
        if records:
            try:
                verdicts = mod.check(load_record(records[-1].parent))
                counts = report_counts(verdicts)
                status = f"last run {records[-1].parent}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
            except (ConfigError, DataError, KeyError) as exc:
                status = f"last run {records[-1].parent}: unreadable ({exc})"
        print(f"{claim}\n  claim: {summary}\n  cost: " + "; ".join(f"{k} {v}" for k, v in mod.COST.items())
              + f"\n  status: {status}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from repro import data, fetch
    from repro.scale import load_scale

    manifest = fetch.fetch(load_scale(args.scale), data.load_eval_config(args.config), tuple(args.only))
    for entry in manifest["artifacts"]:
        print(f"{entry['kind']:10s} {entry['name']}: {len(entry['files'])} files verified")
    print(f"manifest: {fetch.manifest_path(args.scale)}")
    return 0


def _print_verdicts(verdicts) -> int:
    from repro.report import counts as report_counts

    for v in verdicts:
        print(f"{v.status:12s} {v.claim} | {v.cell} | measured {v.measured} | reference {v.reference} | "
              f"band {v.band} | {v.statistic} | {v.reason}")
    counts = report_counts(verdicts)
    print(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['INCONCLUSIVE']} inconclusive")
    return 1 if counts["FAIL"] else 0


def _summary_line(metrics: dict, out: Path) -> str:
    passed = round(metrics["pass@1"] * metrics["n_samples"])
    return (f"{metrics['benchmark']}: pass@1 = {metrics['pass@1']:.4f} ({passed}/{metrics['n_samples']} samples, "
            f"{metrics['n_tasks']} tasks, statuses {metrics['status_counts']}, sandbox {metrics['sandbox']}) -> {out}")


VERBS = {
    "env": (cmd_env, "print versions, hardware, git commit and sandbox mode as JSON"),
    "score": (cmd_score, "score a samples.jsonl file against a benchmark in the sandbox"),
    "selfcheck": (cmd_selfcheck, "check the scorer: canonical solutions pass, empty bodies fail"),
    "pretrain": (cmd_pretrain, "build the tiny world and pretrain the tiny base model (cached in runs/)"),
    "ntp": (cmd_ntp, "NTP mid-training of a base model on the scale's expert corpus (cached in runs/)"),
    "ra3": (cmd_ra3, "RA3 mid-training (EM: E-step RL over comment thoughts, M-step NTP), cached in runs/"),
    "eval": (cmd_eval, "generate completions with a model and score them on a benchmark"),
    "theory": (cmd_theory, "the theory claim: pruning sample complexity and option convergence (seconds)"),
    "verify": (cmd_verify, "re-check a claim run from its record.json: PASS/FAIL/INCONCLUSIVE per check"),
    "report": (cmd_report, "write report.md and a self-contained report.html of a claim run (or a directory of runs)"),
    "list": (cmd_list, "the claims: what each says, its cost per scale, the status of its last run here"),
    "table1": (cmd_claim, "claim table1: base vs NTP vs RA3 pass@1/pass@5 on the scale's benchmarks, with verdicts"),
    "mstep_loss": (cmd_claim, "claim mstep_loss: M-step loss on infused code vs NTP loss on raw code (Fig. 3)"),
    "penalty_ablation": (cmd_claim, "claim penalty_ablation: c in {0.01, 0.05, 0.2}: think rate, thought length, "
                         "rollout share, held-out pass@1"),
    "rlvr_curves": (cmd_claim, "claim rlvr_curves: GRPO from base, NTP and RA3; pass@1 curves, area, final value and "
                    "steps to a threshold over seeds"),
    "fetch": (cmd_fetch, "download and verify a scale's pinned models, data sets and benchmarks, for offline runs"),
}


CLAIM_VERBS = ("table1", "mstep_loss", "penalty_ablation", "rlvr_curves")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ra3-repro", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ra3-repro {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, (_, help_text) in VERBS.items():
        sub = verbs.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--cache", type=Path, help="cache directory made by `ra3-repro fetch` (sets HF_HOME, "
                         "XDG_CACHE_HOME, RA3_DATA_DIR under it; add HF_HUB_OFFLINE=1 to forbid downloads)")
        if name in ("score", "selfcheck", "eval"):
            sub.add_argument("--benchmark", required=name != "selfcheck", default="humaneval",
                             help="benchmark name from configs/eval.yaml (selfcheck default: humaneval)")
            sub.add_argument("--data", type=Path, help="benchmark data file to use instead of the configured one")
            sub.add_argument("--config", type=Path, default=EVAL_CONFIG, help="evaluation config (YAML)")
            sub.add_argument("--workers", type=int, default=None, help="parallel programs (default: usable cores)")
        if name in ("pretrain", "ntp", "ra3", "eval"):
            sub.add_argument("--scale", default="tiny", help="tiny, small or paper (default: tiny)")
        if name == "fetch":
            sub.add_argument("--scale", required=True, help="tiny, small or paper")
            sub.add_argument("--config", type=Path, default=EVAL_CONFIG, help="evaluation config (YAML)")
            sub.add_argument("--only", action="append", default=[], metavar="KIND_OR_NAME",
                             help="only these artifacts: a kind (model, corpus, rlvr, benchmark) or a name, e.g. "
                                  "humaneval+ (repeatable; default: all)")
        if name in ("ntp", "ra3"):
            sub.add_argument("--model", help="base model (path or hub id; default: the scale's tiny base model)")
        if name == "score":
            sub.add_argument("--samples", type=Path, required=True, help="EvalPlus-style samples JSONL")
        if name in ("score", "eval"):
            sub.add_argument("--out", type=Path, required=True, help="directory for outcomes.jsonl and metrics.json")
        if name == "eval":
            sub.add_argument("--model", required=True, help="a save_pretrained folder or a hub id")
            sub.add_argument("--revision", help="hub revision (commit) of the model")
            sub.add_argument("--limit", type=int, help="only the first K tasks (quick looks)")
            for option, kind in (("n", int), ("temperature", float), ("top-p", float), ("max-new-tokens", int),
                                 ("batch-size", int), ("seed", int)):
                sub.add_argument(f"--{option}", type=kind, help="overrides the scale's generation config")
        if name == "selfcheck":
            sub.add_argument("--out", type=Path, default=Path("runs/selfcheck"), help="output directory")
        if name == "theory":
            sub.add_argument("--config", type=Path, default=None,
                             help="claim config (default configs/claims/theory.yaml)")
            sub.add_argument("--out", type=Path, default=None, help="run directory (default runs/theory/<hash>)")
        if name == "verify":
            sub.add_argument("run_dir", type=Path, help="a claim run directory holding record.json")
        if name == "report":
            sub.add_argument("run_dir", type=Path,
                             help="a claim run directory holding record.json, or a directory of them")
            sub.add_argument("--out", type=Path, help="where report.md and report.html go (default: RUN_DIR)")
        if name in CLAIM_VERBS:
            sub.add_argument("--scale", default="tiny", help="tiny, small or paper (default: tiny)")
            sub.add_argument("--seeds", type=int, default=1,
                             help="seeds 0..N-1 of mid-training and sampling (default 1: the 15-minute tiny run; "
                             "the tiny expectations were calibrated with 3)")
            sub.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                             help="override a scale value, e.g. ra3.rounds=1 (repeatable)")
            sub.add_argument("--out", type=Path, help="run directory (default runs/claims/<claim>/<hash>)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cache is not None:  # before any library that reads these variables is imported
        from repro.fetch import use_cache

        use_cache(args.cache)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return VERBS[args.verb][0](args)
    except (ConfigError, DataError) as exc:
        print(f"ra3-repro: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ra3-repro: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
