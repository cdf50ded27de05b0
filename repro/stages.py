"""The cached stages every claim composes: world -> pretrain (tiny) -> NTP, each in its run directory.

Each stage's directory is keyed by the hash of its config and of its inputs' identities
(`repro.runs`); a finished stage is reused, an unfinished one resumes from its checkpoints.
"""

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

from repro import runs
from repro.config import CONFIG_DIR, load
from repro.data import read_jsonl
from repro.scale import ScaleConfig

log = logging.getLogger(__name__)


def world_stage(scale: ScaleConfig, root: Path | None = None) -> Path:
    """The tiny code world's files (pretrain/expert corpora, RL and held-out tasks)."""
    from repro.world import WorldConfig, build_world

    cfg = load(WorldConfig, CONFIG_DIR / scale.world)
    path = runs.stage_dir("world", cfg, root)
    if not runs.is_done(path):
        with runs.stage_log(path):
            log.info("building the tiny world in %s", path)
            manifest = build_world(cfg, path)
        runs.mark_done(path, {"files": manifest["files"], "counts": manifest["counts"]})
    return path


def model_identity(model: str) -> str:
    """A local model's weights sha256 (short), or a hub id as given (with its pinned revision)."""
    path = Path(model)
    if not path.is_dir():
        return model
    digest = hashlib.sha256()
    for file in sorted(path.glob("*.safetensors")):
        digest.update(file.read_bytes())
    return f"local:{digest.hexdigest()[:16]}"


def pretrain_stage(scale: ScaleConfig, root: Path | None = None) -> Path:
    """The tiny base model (a `save_pretrained` folder with its tokenizer)."""
    from repro.ntp import train_causal_lm
    from repro.pretrain import init_model, train_tokenizer

    world = world_stage(scale, root)
    identity = {"world": runs.read_done(world)["files"], "tokenizer": scale.tokenizer,
                "model": scale.tiny_model, "train": scale.pretrain}
    path = runs.stage_dir("pretrain", identity, root)
    if runs.is_done(path):
        return path / "model"
    with runs.stage_log(path):
        texts = [row["text"] for row in read_jsonl(world / "pretrain.jsonl")]
        tokenizer = train_tokenizer(texts, scale.tokenizer, path / "tokenizer")  # deterministic: redo on resume
        model = init_model(tokenizer, scale.tiny_model, scale.pretrain.seed)
        summary = train_causal_lm(model, tokenizer, texts, scale.pretrain, path, desc="pretraining")
        log.info("pretraining done: %s", json.dumps(summary))
    runs.mark_done(path, summary)
    return path / "model"


def expert_texts(scale: ScaleConfig, tokenizer, root: Path | None = None) -> tuple[list[str], object]:
    """The mid-training corpus and its identity: the tiny world's expert split, or the pinned corpus."""
    if scale.corpus is None:
        world = world_stage(scale, root)
        texts = [row["text"] for row in read_jsonl(world / "expert.jsonl")]
        return texts, runs.read_done(world)["files"]["expert.jsonl"]
    from repro.corpus import load_corpus

    return load_corpus(scale.corpus, tokenizer)


def ntp_stage(scale: ScaleConfig, base_model: str, root: Path | None = None, seed: int | None = None) -> Path:
    """NTP mid-training of `base_model` on the scale's expert corpus (`seed`: the data order's seed,
    default the config's)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from repro.ntp import train_causal_lm

    train = scale.ntp if seed is None else dataclasses.replace(scale.ntp, seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    texts, corpus_identity = expert_texts(scale, tokenizer, root)
    identity = {"base": model_identity(base_model), "corpus": corpus_identity, "train": train}
    path = runs.stage_dir("ntp", identity, root)
    if runs.is_done(path):
        return path / "model"
    with runs.stage_log(path):
        model = AutoModelForCausalLM.from_pretrained(base_model)
        summary = train_causal_lm(model, tokenizer, texts, train, path, desc=f"NTP (seed {train.seed})")
        log.info("NTP done: %s", json.dumps(summary))
    runs.mark_done(path, summary)
    return path / "model"


def ra3_settings(scale: ScaleConfig, seed: int | None = None, penalty: float | None = None):
    """The scale's RA3 and M-step settings with a run's seed (E-step sampling and M-step data order)
    and, for the penalty ablation, its penalty c."""
    if scale.ra3 is None:
        raise ValueError(f"scale {scale.name} has no `ra3` settings")
    ra3, mstep = scale.ra3, scale.ntp
    if seed is not None:
        ra3, mstep = dataclasses.replace(ra3, seed=seed), dataclasses.replace(mstep, seed=seed)
    if penalty is not None:
        ra3 = dataclasses.replace(ra3, penalty=penalty)
    return ra3, mstep


def ra3_stage(scale: ScaleConfig, base_model: str, root: Path | None = None, seed: int | None = None,
              penalty: float | None = None) -> Path:
    """RA3 mid-training of `base_model`: the EM loop on the scale's expert corpus. Returns the final
    round's model; the stage directory (its parent's parent) holds every round and the diagnostics."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from repro.ra3 import em_loop

    ra3, mstep = ra3_settings(scale, seed, penalty)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    texts, corpus_identity = expert_texts(scale, tokenizer, root)
    identity = {"base": model_identity(base_model), "corpus": corpus_identity, "ra3": ra3, "mstep": mstep}
    path = runs.stage_dir("ra3", identity, root)
    final = path / f"round-{ra3.rounds - 1}" / "model"
    if runs.is_done(path):
        return final
    with runs.stage_log(path):
        model = AutoModelForCausalLM.from_pretrained(base_model)
        summaries = em_loop(model, tokenizer, texts, ra3, mstep, path,
                            on_estep=lambda m: log.info("E-step %s", json.dumps(m)))
        rows = read_jsonl(world_stage(scale, root) / "expert.jsonl") if scale.corpus is None else None
        diagnostics = ra3_diagnostics(path, rows)
        log.info("RA3 diagnostics: %s", json.dumps(diagnostics["rounds"]))
    runs.mark_done(path, {"rounds": summaries, "diagnostics": diagnostics["rounds"]})
    return final


def eval_stage(model: str, benchmark: str, generation, root: Path | None = None, workers: int | None = None) -> Path:
    """`model`'s completions on `benchmark`, scored in the sandbox: a directory with samples,
    outcomes.jsonl and metrics.json, cached by (model weights, benchmark data, decoding settings)."""
    from repro import data, evaluate

    config = data.load_eval_config()
    bench = data.load_benchmark(benchmark, config)
    identity = {"model": model_identity(model), "benchmark": benchmark, "data_sha256": bench.sha256,
                "generation": generation, "sandbox": config.sandbox, "scoring": bench.config}
    path = runs.stage_dir("eval", identity, root)
    if runs.is_done(path):
        return path
    with runs.stage_log(path):
        metrics = evaluate.evaluate_model(model, bench, config, generation, path, workers=workers)
        log.info("%s on %s: pass@1 %.4f", model, benchmark, metrics["pass@1"])
    runs.mark_done(path, {k: metrics[k] for k in metrics if k.startswith("pass@")} | {"model": model})
    return path


def ra3_diagnostics(ra3_dir: Path, expert_rows: list[dict] | None = None, examples: int = 3) -> dict:
    """What an RA3 run shows, from its round directories: E-step curves (estep.png), and for the
    tiny world (whose rows record skill-block starts) the share of thoughts at block starts plus a
    few printed infused examples (examples.md). Returns the numbers it wrote to diagnostics.json."""
    from repro.evaluate import atomic_write
    from repro.ra3 import segment_lines

    rounds = sorted(Path(ra3_dir).glob("round-*"), key=lambda p: int(p.name.split("-")[1]))
    curves = [json.loads(line) for r in rounds for line in open(r / "estep.jsonl")]
    result: dict = {"estep": curves, "rounds": []}
    shown = []
    for r in rounds:
        infused = [json.loads(line) for line in open(r / "infused.jsonl")]
        entry = {"round": r.name, "thoughts_per_snippet": sum(len(x["thoughts"]) for x in infused) / len(infused)}
        if expert_rows is not None:
            at, total = 0, 0
            for row, x in zip(expert_rows, infused, strict=True):
                segments = segment_lines(row["text"])
                for k in map(int, x["thoughts"]):
                    total += 1
                    at += row["text"][: segments[k].code_start].count("\n") in set(row["block_starts"])
            entry["thoughts_at_block_starts"] = at / total if total else None
        result["rounds"].append(entry)
        shown = [x["text"] for x in infused if x["thoughts"]][:examples]
    atomic_write(Path(ra3_dir) / "diagnostics.json", json.dumps(result, indent=2) + "\n")
    atomic_write(Path(ra3_dir) / "examples.md", "".join(
        f"### Example {i + 1} (final round)\n\n```python\n{text}```\n\n" for i, text in enumerate(shown)))
    if curves:
        _plot_estep(curves, Path(ra3_dir) / "estep.png")
    return result


def _plot_estep(curves: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("mean_reward", "mean reward (ELBO estimate, nats)"), ("think_rate", "think rate"),
              ("thought_tokens", "mean thought length (tokens)"), ("lines_per_thought", "lines per thought"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    x = list(range(1, len(curves) + 1))
    for ax, (key, title) in zip(axes, panels, strict=True):
        ax.plot(x, [c[key] if c[key] is not None else float("nan") for c in curves], marker=".")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("E-step step (all rounds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
