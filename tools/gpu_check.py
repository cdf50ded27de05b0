"""The GPU check: the tiny scale's own stages on one accelerator in bf16 mixed precision, timed.

World, pretraining, NTP, RA3 (E-step, infusion, M-step), evaluation of each model and a few GRPO steps,
all through repro.pipeline with only sizes shortened (below), into a fresh runs directory. Prints and
writes (OUT/gpu_check.json) what only a GPU can show: training tokens/s, E-step rollouts/s, peak GPU
memory, each stage's seconds, and every model's pass@1 on the tiny held-out tasks.

    python tools/gpu_check.py --out DIR [--device cuda|cpu] [--quick]

tools/gpu_check.sh runs it on a lent GPU machine; `--device cpu --quick` is the same code path on the CPU
(tests/pipeline/test_gpu_check.py runs it in CI).
"""

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="minimal sizes (a CPU rehearsal of the code path)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RA3_RUNS_DIR", str(args.out / "runs"))  # before repro.core.runs reads it
    logging.basicConfig(level=logging.WARNING)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device", file=sys.stderr)
        return 2
    if args.device == "cpu":
        torch.cuda.is_available = lambda: False  # the CPU rehearsal: every `cuda if available` choice says CPU

    from repro import pipeline
    from repro.core.scale import resolve_scale

    bf16 = "bf16" if args.device == "cuda" else "no"
    steps = {"pretrain": 40 if args.quick else 1200, "ntp": 20 if args.quick else 250,
             "estep": 2 if args.quick else 10, "grpo": 2 if args.quick else 6}
    scale = resolve_scale("tiny", [
        f"pretrain.max_steps={steps['pretrain']}", f"pretrain.mixed_precision={bf16}",
        f"ntp.max_steps={steps['ntp']}", f"ntp.mixed_precision={bf16}", "ntp.checkpoint_every=0",
        f"ra3.estep_steps={steps['estep']}", f"rlvr.max_steps={steps['grpo']}", f"rlvr.eval_every={steps['grpo']}",
        f"rlvr.bf16={str(args.device == 'cuda').lower()}", "rlvr.eval_tasks=40",
        *(["generation.n=1", "ra3.rounds=1", "ra3.snippets_per_step=2", "ra3.group_size=2"] if args.quick else [])])
    report: dict = {"device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
                    "torch": torch.__version__, "seconds": {}}

    def timed(name, fn):
        start = time.monotonic()
        value = fn()
        report["seconds"][name] = round(time.monotonic() - start, 1)
        print(f"{name}: {report['seconds'][name]} s", flush=True)
        return value

    base = timed("world + pretraining", lambda: str(pipeline.pretrain_stage(scale)))
    ntp = timed("NTP", lambda: str(pipeline.ntp_stage(scale, base)))
    ra3_dir = timed("RA3", lambda: pipeline.ra3_stage(scale, base))
    ra3 = str(pipeline.ra3_model(ra3_dir))
    report["train_tokens_per_second"] = {
        "pretrain": _metrics_rate(Path(base).parent / "metrics.jsonl"),
        "ntp": _metrics_rate(Path(ntp).parent / "metrics.jsonl")}
    estep = [json.loads(line) for r in pipeline.ra3_rounds(ra3_dir) for line in open(r / "estep.jsonl")]
    estep_seconds = json.loads((ra3_dir / "DONE.json").read_text())["rounds"]
    report["estep"] = {"steps": len(estep), "think_rate": estep[-1]["think_rate"] if estep else None,
                       "slots_per_token": estep[-1].get("slots_per_token") if estep else None,
                       "rollouts_per_step": scale.ra3.snippets_per_step * scale.ra3.group_size,
                       "rounds": [{"mstep_tokens_per_second": r["mstep"]["tokens_per_second"]} for r in estep_seconds]}
    report["pass@1"] = {}
    for label, model in (("base", base), ("ntp", ntp), ("ra3", ra3)):
        path = timed(f"evaluate {label}", lambda m=model: pipeline.eval_stage(m, "tiny-heldout", scale.generation))
        report["pass@1"][label] = json.loads((path / "metrics.json").read_text())["pass@1"]
    grpo = timed("GRPO", lambda: pipeline.rlvr_stage(scale, ntp, 0))
    curve = json.loads((grpo / "curve.json").read_text())
    report["pass@1"]["ntp + GRPO"] = curve["pass@1"]["tiny-heldout"][-1]
    report["grpo_mean_step_seconds"] = curve["train"]["mean_step_seconds"]
    if args.device == "cuda":
        report["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


def _metrics_rate(path: Path) -> float | None:
    rows = [json.loads(line) for line in open(path)] if path.exists() else []
    return round(rows[-1]["tokens_per_second"]) if rows else None


if __name__ == "__main__":
    sys.exit(main())
