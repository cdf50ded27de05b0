"""`ra3-repro`: the command line. One verb per capability, plus one verb per claim (`repro.claims.CLAIMS`);
the set of verbs is pinned by a test.

Errors in what the user gave (a bad file, key, benchmark or option) print one line and exit 2;
a check that ran and failed (a claim's verdicts, the scoring self-check) exits 1.
"""

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from repro import __version__
from repro.claims import CLAIMS, claim_summary, module
from repro.claims.verdicts import claims_of, counts, guard_counts, guards_of
from repro.core import ranks
from repro.core.config import ConfigError
from repro.core.eval_config import EVAL_CONFIG
from repro.core.files import DataError

log = logging.getLogger("repro")


def cmd_env(args: argparse.Namespace) -> int:
    import torch  # noqa: F401 (loaded, so that the environment lists the GPUs it sees)

    from repro.core.provenance import environment

    print(json.dumps(environment(), indent=2))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from repro.eval import benchmarks, score

    config = benchmarks.load_eval_config(args.config)
    benchmark = benchmarks.load_benchmark(args.benchmark, config, args.data)
    samples = score.read_samples(args.samples, benchmark)
    rows, metrics, details = score.score(benchmark, samples, config, args.workers)
    score.write_results(args.out, rows, metrics, details)
    print(_summary_line(metrics, args.out))
    return 0


def cmd_selfcheck(args: argparse.Namespace) -> int:
    """Canonical solutions must all pass and `pass`-bodied functions must all fail."""
    from repro.eval import benchmarks, score

    config = benchmarks.load_eval_config(args.config)
    benchmark = benchmarks.load_benchmark(args.benchmark, config, args.data)
    if not all(task.get("canonical_solution") for task in benchmark.tasks.values()):
        raise ConfigError(f"selfcheck needs canonical solutions; {args.benchmark} has none "
                          "(choose a benchmark whose tasks carry them, such as humaneval or mbpp+)")
    expected = {"canonical": 1.0, "pass_body": 0.0}
    failed = []
    for variant, target in expected.items():
        samples = [benchmarks.Sample(task_id, 0, task["prompt"] + (
            task["canonical_solution"] if variant == "canonical" else "    pass\n"))
            for task_id, task in benchmark.tasks.items()]
        rows, metrics, details = score.score(benchmark, samples, config, args.workers)
        out = Path(args.out) / variant
        score.write_results(out, rows, metrics, details)
        print(f"{variant:10s} {_summary_line(metrics, out)}  (expected pass@1 = {target:.0%})")
        if metrics["pass@1"] != target:
            failed.append(variant)
    if failed:
        print(f"selfcheck FAILED for: {', '.join(failed)}; see details.jsonl in {args.out}")
        return 1
    print("selfcheck passed")
    return 0


def _cpu_bf16_is_emulated() -> bool:
    """Whether bf16 autocast here would run on a CPU without native bf16 (AVX-512 BF16 or AMX), which oneDNN
    emulates an order of magnitude slower than fp32 (`repro.train.precision.bf16_is_native`). Unknown: no."""
    import torch

    from repro.train.precision import bf16_is_native

    return not torch.cuda.is_available() and bf16_is_native() is False


def _warn_if_bf16_is_emulated(scale) -> None:
    """One warning before training when the scale forces bf16 autocast (`mixed_precision: bf16`, not `auto`,
    which picks fp32 on such a CPU) and this CPU can only emulate it."""
    sections = sorted(f.name for f in dataclasses.fields(scale)
                      if getattr(getattr(scale, f.name), "mixed_precision", None) == "bf16")
    if sections and _cpu_bf16_is_emulated():
        fp32 = " ".join(f"--set {name}.mixed_precision=no" for name in sections)
        log.warning("this CPU has no native bf16 (AVX-512 BF16 or AMX): the bf16 autocast of %s is emulated, "
                    "an order of magnitude slower than fp32 (the tiny table1 takes hours, not minutes). `%s` "
                    "trains in fp32, as `mixed_precision: auto` (the tiny scale's setting) does on this CPU",
                    ", ".join(sections), fp32)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from repro import pipeline
    from repro.core.scale import load_scale

    scale = load_scale(args.scale)
    if scale.pretrain is None:
        raise ConfigError(f"scale {args.scale} starts from hub models; only a scale that builds its model pretrains")
    _warn_if_bf16_is_emulated(scale)
    print(pipeline.pretrain_stage(scale))
    return 0


def _base_model(args: argparse.Namespace, scale) -> str:
    """--model, or the scale's own tiny base model (pretrained on first use)."""
    from repro import pipeline

    if args.model:
        return args.model
    if scale.pretrain is None:
        raise ConfigError(f"scale {args.scale} has several hub models: pass --model")
    return str(pipeline.pretrain_stage(scale))


def cmd_ntp(args: argparse.Namespace) -> int:
    from repro import pipeline
    from repro.core.scale import resolve_scale

    scale = resolve_scale(args.scale, args.set)
    _warn_if_bf16_is_emulated(scale)
    model = pipeline.ntp_stage(scale, _base_model(args, scale))
    if ranks.is_main():  # under torchrun every rank ends here with the same folder
        print(model)
    return 0


def cmd_ra3(args: argparse.Namespace) -> int:
    from repro import pipeline
    from repro.core.scale import resolve_scale

    scale = resolve_scale(args.scale, args.set)
    if scale.ra3 is None:
        raise ConfigError(f"scale {args.scale} has no `ra3` settings in configs/scales/{args.scale}.yaml")
    _warn_if_bf16_is_emulated(scale)
    model = pipeline.ra3_model(pipeline.ra3_stage(scale, _base_model(args, scale)))
    if ranks.is_main():
        print(model)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from repro.core.scale import load_scale
    from repro.eval import benchmarks, score

    gen = load_scale(args.scale).generation
    overrides = {k: getattr(args, k) for k in ("n", "temperature", "top_p", "max_new_tokens", "batch_size", "seed")
                 if getattr(args, k) is not None}
    try:
        gen = dataclasses.replace(gen, **overrides)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    config = benchmarks.load_eval_config(args.config)
    benchmark = benchmarks.load_benchmark(args.benchmark, config, args.data)
    metrics = score.evaluate_model(args.model, benchmark, config, gen, args.out, revision=args.revision,
                                   limit=args.limit, workers=args.workers)
    print(_summary_line(metrics, args.out) + "".join(
        f", pass@{k} = {metrics[f'pass@{k}']:.4f} +- {metrics['stderr'][f'pass@{k}']:.4f}" for k in (1, 5)
        if f"pass@{k}" in metrics))
    return 0


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
    """A claim at a scale: train and evaluate (cached), write the record, print the verdicts."""
    from repro.claims.record import load_record
    from repro.core.runs import stage_dir
    from repro.core.scale import resolve_scale

    if args.seeds is not None and args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {args.seeds}")
    claim = module(args.verb)
    scale = resolve_scale(args.scale, args.set)
    seeds = list(range(args.seeds)) if args.seeds is not None else None
    if args.plan:
        from repro import plan

        print(f"# {args.verb} at scale {scale.name}, seeds {seeds or 'the claim default'}: the plan (nothing runs)\n")
        print(plan.table(claim.plan(scale, seeds), scale))
        return 0
    out = args.out or stage_dir(f"claims/{args.verb}", {"scale": scale, "seeds": seeds})
    _warn_if_bf16_is_emulated(scale)
    claim.run(scale, seeds, out, args.set)
    if ranks.world_size() == 1:
        return _print_claim(args.verb, out, claim.check(load_record(out)))
    # torchrun: rank 0 wrote the record; every rank reads it and exits with its verdicts' code, rank 0
    # prints them, and the others wait until it has (torchrun stops the other ranks when one exits 1).
    from repro.eval.barrier import barrier

    barrier()
    verdicts = claim.check(load_record(out))
    code = _print_claim(args.verb, out, verdicts) if ranks.is_main() else 1 if counts(verdicts)["FAIL"] else 0
    barrier()
    return code


def _print_claim(verb: str, out: Path, verdicts) -> int:
    tables = Path(out) / f"{verb}.md"
    if tables.exists():
        print(tables.read_text())
    print(f"{verb}: record.json and outcome files in {out}")
    return _print_verdicts(verdicts)


def _claim_of(record_file: Path) -> str | None:
    try:
        return json.loads(record_file.read_text()).get("claim")
    except (OSError, ValueError, AttributeError):
        return None


def cmd_list(args: argparse.Namespace) -> int:
    """Each claim: its id, the claim's first line, its cost per scale, and the last run's verdicts."""
    from repro.claims.record import load_record
    from repro.core.runs import RUNS_ROOT

    for claim in CLAIMS:
        mod = module(claim)
        records = sorted((p for p in RUNS_ROOT.glob("**/record.json") if _claim_of(p) == claim),
                         key=lambda p: p.stat().st_mtime)
        status = "never run here"
        if records:
            try:
                verdicts = mod.check(load_record(records[-1].parent))
                status = f"last run {records[-1].parent}: " + ", ".join(
                    f"{n} {s}" for s, n in counts(verdicts).items())
            except (ConfigError, DataError, KeyError) as exc:
                status = f"last run {records[-1].parent}: unreadable ({exc})"
        print(f"{claim}\n  claim: {claim_summary(mod)}\n  cost: " + "; ".join(f"{k} {v}" for k, v in mod.COST.items())
              + f"\n  estimate (--plan, default seeds): {_estimates(mod)}\n  status: {status}")
    return 0


def _estimates(claim_module) -> str:
    """Each scale's total estimated device-hours of a claim (repro/plan.py)."""
    from repro.core.scale import SCALES, load_scale

    parts = []
    for name in SCALES:
        scale = load_scale(name)
        if scale.hardware is None:
            continue
        hours = sum(stage.hours for stage in claim_module.plan(scale, None))
        parts.append(f"{name} {hours:.3g} {scale.hardware.device}-hours")
    return "; ".join(parts)


def cmd_fetch(args: argparse.Namespace) -> int:
    from repro import fetch
    from repro.core.scale import resolve_scale
    from repro.eval.benchmarks import load_eval_config

    manifest = fetch.fetch(resolve_scale(args.scale, args.set), load_eval_config(args.config), tuple(args.only))
    for entry in manifest["artifacts"]:
        print(f"{entry['kind']:10s} {entry['name']}: {len(entry['files'])} files verified")
    print(f"manifest: {fetch.manifest_path(args.scale)}")
    return 0


def _print_verdicts(verdicts) -> int:
    """The claim verdicts (they decide the exit code: 1 when one failed), then the regression guards."""
    for v in claims_of(verdicts):
        print(f"{v.status:12s} {v.claim} | {v.cell} | measured {v.measured} | reference {v.reference} | "
              f"band {v.band} | {v.statistic} | {v.reason}")
    n = counts(verdicts)
    summary = f"{n['PASS']} passed, {n['FAIL']} failed, {n['INCONCLUSIVE']} inconclusive"
    if guards_of(verdicts):
        print("regression guards (not verdicts: does this run behave like the calibrated runs of this code?):")
        for v in guards_of(verdicts):
            print(f"  {v.status:6s} {v.claim} | {v.cell} | measured {v.measured} | calibrated {v.reference} | "
                  f"band {v.band} | {v.reason}")
        g = guard_counts(verdicts)
        summary += f"; guards: {g['OK']} ok, {g['DRIFT']} drifted, {g['STALE']} stale"
    print(summary)
    return 1 if n["FAIL"] else 0


def _summary_line(metrics: dict, out: Path) -> str:
    passed = round(metrics["pass@1"] * metrics["n_samples"])
    return (f"{metrics['benchmark']}: pass@1 = {metrics['pass@1']:.4f} ({passed}/{metrics['n_samples']} samples, "
            f"{metrics['n_tasks']} tasks, statuses {metrics['status_counts']}, sandbox {metrics['sandbox']}) -> {out}")


# Options shared by several verbs, each added by one function.

def _scoring_options(sub, verb: str) -> None:
    sub.add_argument("--benchmark", required=verb != "selfcheck", default="humaneval",
                     help="benchmark name from configs/eval.yaml (selfcheck default: humaneval)")
    sub.add_argument("--data", type=Path, help="benchmark data file to use instead of the configured one")
    sub.add_argument("--config", type=Path, default=EVAL_CONFIG, help="evaluation config (YAML)")
    sub.add_argument("--workers", type=int, default=None, help="parallel programs (default: usable cores)")


def _scale_option(sub, verb: str) -> None:
    sub.add_argument("--scale", default="tiny", help="tiny, small or paper (default: tiny)")


def _stage_set_option(sub, verb: str) -> None:
    sub.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override a scale value, as a claim run does (the stage is cached under the values "
                          "it ran with), e.g. ntp.max_steps=100 (repeatable)")


def _base_model_option(sub, verb: str) -> None:
    sub.add_argument("--model", help="base model (path or hub id; default: the scale's tiny base model)")


def _out_option(sub, verb: str) -> None:
    sub.add_argument("--out", type=Path, required=True, help="directory for outcomes.jsonl and metrics.json")


def _score_options(sub, verb: str) -> None:
    sub.add_argument("--samples", type=Path, required=True, help="EvalPlus-style samples JSONL")


def _eval_options(sub, verb: str) -> None:
    sub.add_argument("--model", required=True, help="a save_pretrained folder or a hub id")
    sub.add_argument("--revision", help="hub revision (commit) of the model")
    sub.add_argument("--limit", type=int, help="only the first K tasks (quick looks)")
    for option, kind in (("n", int), ("temperature", float), ("top-p", float), ("max-new-tokens", int),
                         ("batch-size", int), ("seed", int)):
        sub.add_argument(f"--{option}", type=kind, help="overrides the scale's generation config")


def _selfcheck_options(sub, verb: str) -> None:
    sub.add_argument("--out", type=Path, default=Path("runs/selfcheck"), help="output directory")


def _run_dir_argument(sub, verb: str) -> None:
    sub.add_argument("run_dir", type=Path, help="a claim run directory holding record.json"
                     + (", or a directory of them" if verb in ("verify", "report") else ""))
    if verb == "report":
        sub.add_argument("--out", type=Path, help="where report.md and report.html go (default: RUN_DIR)")


def _fetch_options(sub, verb: str) -> None:
    sub.add_argument("--scale", required=True, help="tiny, small or paper")
    sub.add_argument("--config", type=Path, default=EVAL_CONFIG, help="evaluation config (YAML)")
    sub.add_argument("--only", action="append", default=[], metavar="KIND_OR_NAME",
                     help="only these artifacts: a kind (model, corpus, rlvr, benchmark) or a name, e.g. "
                          "humaneval+ (repeatable; default: all)")
    sub.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override a scale value as the claim runs will, e.g. rlvr.train_data={revision: <commit>} "
                          "to fetch the RL set at the commit a run pins (repeatable)")


def _claim_options(sub, verb: str) -> None:
    sub.add_argument("--scale", default="tiny", help="tiny, small or paper (default: tiny)")
    sub.add_argument("--seeds", type=int, default=None,
                     help="seeds 0..N-1 of mid-training and sampling (default: the claim's own, see `ra3-repro list` "
                          "for what a run costs)")
    sub.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override a scale value, e.g. ra3.rounds=1 (repeatable)")
    sub.add_argument("--out", type=Path, help="run directory (default runs/claims/<claim>/<hash>)")
    sub.add_argument("--plan", action="store_true",
                     help="print each stage with what it reads and writes, whether it is cached, its tokens and "
                          "its estimated device-hours on the scale's hardware, and train nothing")


VERBS = {
    "env": (cmd_env, "print versions, hardware, git commit and sandbox mode as JSON", ()),
    "score": (cmd_score, "score a samples.jsonl file against a benchmark in the sandbox",
              (_scoring_options, _score_options, _out_option)),
    "selfcheck": (cmd_selfcheck, "check the scorer: canonical solutions pass, empty bodies fail",
                  (_scoring_options, _selfcheck_options)),
    "pretrain": (cmd_pretrain, "build the tiny world and pretrain the tiny base model (cached in runs/)",
                 (_scale_option,)),
    "ntp": (cmd_ntp, "NTP mid-training of a base model on the scale's expert corpus (cached in runs/)",
            (_scale_option, _base_model_option, _stage_set_option)),
    "ra3": (cmd_ra3, "RA3 mid-training (EM: E-step RL over comment thoughts, M-step NTP), cached in runs/",
            (_scale_option, _base_model_option, _stage_set_option)),
    "eval": (cmd_eval, "generate completions with a model and score them on a benchmark",
             (_scoring_options, _scale_option, _eval_options, _out_option)),
    "verify": (cmd_verify, "re-check a claim run from its record.json: PASS/FAIL/INCONCLUSIVE per check",
               (_run_dir_argument,)),
    "report": (cmd_report, "write report.md and a self-contained report.html of a claim run (or a directory of runs)",
               (_run_dir_argument,)),
    "list": (cmd_list, "the claims: what each says, its cost per scale, the status of its last run here", ()),
    "fetch": (cmd_fetch, "download and verify a scale's pinned models, data sets and benchmarks, for offline runs",
              (_fetch_options,)),
    **{claim: (cmd_claim, f"claim {claim}: {claim_summary(module(claim))}", (_claim_options,)) for claim in CLAIMS},
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ra3-repro", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ra3-repro {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, (_, help_text, options) in VERBS.items():
        escaped = help_text.replace("%", "%%")  # argparse formats help texts with %
        sub = verbs.add_parser(name, help=escaped, description=escaped)
        sub.add_argument("--cache", type=Path, help="cache directory made by `ra3-repro fetch` (sets HF_HOME, "
                         "XDG_CACHE_HOME, RA3_DATA_DIR under it; add HF_HUB_OFFLINE=1 to forbid downloads)")
        for add in options:
            add(sub, name)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cache is not None:  # before any library that reads these variables is imported
        from repro.core.hub import use_cache

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
