"""The cached stages every claim composes, in the order data flows through them:

    world (tiny) -> pretrain (tiny) -> base models -> NTP / RA3 -> eval -> RLVR

Each stage's directory is `runs/<stage>/<hash>/`, keyed by the hash of its config and of its inputs'
identities (`repro.core.runs`); a finished stage is reused, an unfinished one resumes from its
checkpoints. Claims never read a stage's folder layout themselves: they call these functions.

Under torchrun every rank calls the same stage and gets the same path back: training stages train on
every rank, evaluation runs on rank 0 while the others wait; rank 0 alone writes a stage's files, and
`finish` marks a stage done only once every rank's part is on disk (repro.core.runs).
"""

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from repro.core import ranks, runs
from repro.core.config import CONFIG_DIR, ConfigError, load
from repro.core.files import DataError, atomic_write, read_jsonl
from repro.core.hub import cached_snapshot, hub_cache, offline
from repro.core.scale import ScaleConfig
from repro.eval import benchmarks, score
from repro.eval.barrier import barrier
from repro.rlvr import eval_benchmarks, evaluate_point, keep_weights, read_point, train, train_tasks
from repro.train import precision
from repro.train.corpus import load_corpus
from repro.train.ntp import train_causal_lm
from repro.train.pretrain import init_model, train_tokenizer
from repro.train.ra3.diagnostics import ra3_diagnostics, reference_thoughts
from repro.train.ra3.em import em_loop
from repro.train.teacher import teacher_corpus, true_intent_corpus
from repro.world import WorldConfig, world_dir

log = logging.getLogger(__name__)


def finish(path: Path, summary: dict) -> None:
    """Mark a stage done: after every rank's part of it is on disk, and before any rank goes on."""
    barrier()
    runs.mark_done(path, summary)
    barrier()


def world_stage(scale: ScaleConfig, root: Path | None = None) -> Path:
    """The tiny code world's files (pretrain/expert corpora, RL and held-out tasks)."""
    return world_dir(load(WorldConfig, CONFIG_DIR / scale.world), root)


def world_path(scale: ScaleConfig, root: Path | None = None) -> Path:
    """Where the world's files are (or will be), without building them."""
    return runs.stage_path("world", load(WorldConfig, CONFIG_DIR / scale.world), root)


def built_base_model(scale: ScaleConfig, root: Path | None = None) -> str | None:
    """The tiny base model's folder if world and pretraining are already finished, else None."""
    world = world_path(scale, root)
    if not runs.is_done(world):
        return None
    path = runs.stage_path("pretrain", pretrain_identity(scale, world), root)
    return str(path / "model") if runs.is_done(path) else None


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
    world = world_stage(scale, root)
    path = runs.stage_dir("pretrain", pretrain_identity(scale, world), root)
    if runs.is_done(path):
        return path / "model"
    with runs.stage_log(path):
        texts = [row["text"] for row in read_jsonl(world / "pretrain.jsonl")]
        tokenizer = train_tokenizer(texts, scale.tokenizer, path / "tokenizer")  # deterministic: redo on resume
        model = init_model(tokenizer, scale.tiny_model, scale.pretrain.seed)
        summary = train_causal_lm(model, tokenizer, texts, scale.pretrain, path, desc="pretraining")
        log.info("pretraining done: %s", json.dumps(summary))
    finish(path, summary)
    return path / "model"


def pretrain_identity(scale: ScaleConfig, world: Path) -> dict:
    return {"world": runs.read_done(world)["files"], "tokenizer": scale.tokenizer, "model": scale.tiny_model,
            "train": precision.effective(scale.pretrain)}


def ntp_identity(base_model: str, corpus_identity, train) -> dict:
    return {"base": model_identity(base_model), "corpus": corpus_identity, "train": precision.effective(train)}


def ra3_identity(base_model: str, corpus_identity, ra3, mstep) -> dict:
    return {"base": model_identity(base_model), "corpus": corpus_identity, "ra3": ra3,
            "mstep": precision.effective(mstep)}


def eval_identity(model: str, benchmark, config, generation, thoughts: str = "free") -> dict:
    """`benchmark`: the loaded Benchmark; `config`: the EvalConfig."""
    identity = {"model": model_identity(model), "benchmark": benchmark.name, "data_sha256": benchmark.sha256,
                "generation": generation, "sandbox": config.sandbox, "scoring": benchmark.config}
    if thoughts != "free":
        identity["thoughts"] = thoughts
    return identity


def expert_texts(scale: ScaleConfig, tokenizer, root: Path | None = None) -> tuple[list[str], object]:
    """The mid-training corpus and its identity: the tiny world's expert split, or the pinned corpus."""
    if scale.corpus is None:
        world = world_stage(scale, root)
        texts = [row["text"] for row in read_jsonl(world / "expert.jsonl")]
        return texts, runs.read_done(world)["files"]["expert.jsonl"]
    return load_corpus(scale.corpus, tokenizer)


def device() -> torch.device:
    """The accelerator this process was given (its local rank's GPU), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def load_trainable(model: str):
    """A model to train: fp32 master weights whatever the checkpoint's dtype (bf16 runs as autocast or
    mixed precision, never as bf16 optimizer updates), on this process's device."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).to(device())


def base_models(scale: ScaleConfig, root: Path | None = None) -> list[tuple[str, str]]:
    """(table name, local model folder) of each base model: the tiny model pretrained here, or each
    hub model at its pinned revision (from the Hugging Face cache; `ra3-repro fetch` fills it)."""
    if not scale.models:
        return [("tiny", str(pretrain_stage(scale, root)))]
    return [(spec.name, hub_snapshot(spec.hub_id, spec.revision, "model", scale.name)) for spec in scale.models]


def hub_snapshot(repo: str, revision: str, repo_type: str, scale: str) -> str:
    """The local folder of `repo` at `revision` (downloaded unless HF_HUB_OFFLINE=1), or a DataError in
    one line saying what is missing and how to get it."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    fetch = f"`ra3-repro fetch --scale {scale} --cache DIR` where the hub can be reached, then run with --cache DIR"
    try:
        return snapshot_download(repo, repo_type=repo_type, revision=revision, local_files_only=offline(),
                                 allow_patterns=None if repo_type == "model" else ["README.md"],
                                 cache_dir=hub_cache())  # read now: huggingface_hub reads it once, at import
    except LocalEntryNotFoundError:
        raise DataError(f"{repo}@{revision} is not in the hub cache {hub_cache()} and HF_HUB_OFFLINE=1: run "
                        f"{fetch}") from None
    except GatedRepoError:
        raise DataError(f"{repo} is gated: accept its terms at https://huggingface.co/"
                        f"{'datasets/' if repo_type == 'dataset' else ''}{repo} and set HF_TOKEN to a token with "
                        "read access") from None
    except RevisionNotFoundError:
        raise DataError(f"{repo} has no revision {revision}: check its pin in configs/scales/{scale}.yaml") from None
    except RepositoryNotFoundError:
        raise DataError(f"{repo} is not on the hub (or is private: set HF_TOKEN); check "
                        f"configs/scales/{scale}.yaml") from None
    except (HfHubHTTPError, OSError) as exc:
        raise DataError(f"{repo}@{revision}: the hub could not be reached ({type(exc).__name__}); run "
                        f"{fetch}") from None


def check_inputs(scale: ScaleConfig, repos: list[str]) -> None:
    """Every hub model and data set of the scale that `repos` names, reachable at its pinned revision
    (from the cache when offline) before anything trains; raises DataError in one line."""
    pins = {m.hub_id: (m.revision, "model") for m in scale.models}
    if scale.corpus is not None:
        pins[scale.corpus.dataset] = (scale.corpus.revision, "dataset")
    if scale.rlvr is not None and scale.rlvr.train_data is not None:
        pins[scale.rlvr.train_data.dataset] = (scale.rlvr.train_data.revision, "dataset")
    if scale.synthetic is not None:
        pins[scale.synthetic.teacher.hub_id] = (scale.synthetic.teacher.revision, "model")
    for repo in repos:
        revision, repo_type = pins[repo]
        if repo_type == "dataset" and offline():
            cached_snapshot(repo, "dataset", revision)
        else:
            hub_snapshot(repo, revision, repo_type, scale.name)


def ntp_stage(scale: ScaleConfig, base_model: str, root: Path | None = None, seed: int | None = None) -> Path:
    """NTP mid-training of `base_model` on the scale's expert corpus (`seed`: the data order's seed,
    default the config's)."""
    from transformers import AutoTokenizer

    train = scale.ntp if seed is None else dataclasses.replace(scale.ntp, seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    texts, corpus_identity = expert_texts(scale, tokenizer, root)
    path = runs.stage_dir("ntp", ntp_identity(base_model, corpus_identity, train), root)
    if runs.is_done(path):
        return path / "model"
    with runs.stage_log(path):
        model = load_trainable(base_model)
        summary = train_causal_lm(model, tokenizer, texts, train, path, desc=f"NTP (seed {train.seed})")
        log.info("NTP done: %s", json.dumps(summary))
    finish(path, summary)
    return path / "model"


def teacher_stage(scale: ScaleConfig, base_model: str, root: Path | None = None, seed: int | None = None) -> Path:
    """Synthetic reasoning: NTP of `base_model` on the expert corpus with a teacher's comments (a built
    world's true intents at every block start, or the scale's `synthetic` teacher model's comments), with
    NTP's settings and seed. Returns the model folder."""
    from transformers import AutoTokenizer

    train = scale.ntp if seed is None else dataclasses.replace(scale.ntp, seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    if scale.corpus is None:
        world = world_stage(scale, root)
        texts = true_intent_corpus(read_jsonl(world / "expert.jsonl"))
        corpus = {"expert": runs.read_done(world)["files"]["expert.jsonl"],
                  "teacher": "tiny world: true intents at every block start"}
    else:
        if scale.synthetic is None:
            raise ConfigError(f"scale {scale.name} has no `synthetic` teacher in configs/scales/{scale.name}.yaml")
        snippets, identity = expert_texts(scale, tokenizer, root)
        corpus = {"expert": identity, "teacher": scale.synthetic}
        texts = None
    identity = {"base": model_identity(base_model), "corpus": corpus, "train": precision.effective(train)}
    path = runs.stage_dir("teacher", identity, root)
    if runs.is_done(path):
        return path / "model"
    with runs.stage_log(path):
        if texts is None:
            texts = _teacher_texts(scale, snippets, path)
        model = load_trainable(base_model)
        summary = train_causal_lm(model, tokenizer, texts, train, path, desc=f"teacher NTP (seed {train.seed})")
        log.info("teacher NTP done: %s", json.dumps(summary))
    finish(path, summary)
    return path / "model"


def _teacher_texts(scale: ScaleConfig, snippets: list[str], path: Path) -> list[str]:
    """The teacher model's commented corpus, written once to `<stage>/commented.jsonl` (a resumed stage
    reads it back)."""
    file = path / "commented.jsonl"
    if file.exists():
        return [row["text"] for row in read_jsonl(file)]
    teacher = scale.synthetic.teacher
    texts, counts = teacher_corpus(snippets, hub_snapshot(teacher.hub_id, teacher.revision, "model", scale.name),
                                   scale.synthetic)
    log.info("teacher comments: %s", json.dumps(counts))
    if ranks.is_main():
        atomic_write(file, "".join(json.dumps({"text": t}) + "\n" for t in texts))
    return texts


def ra3_settings(scale: ScaleConfig, seed: int | None = None, penalty: float | None = None):
    """The scale's RA3 and M-step settings with a run's seed (E-step sampling and M-step data order)
    and, for the penalty ablation, its penalty c."""
    if scale.ra3 is None:
        raise ConfigError(f"scale {scale.name} has no `ra3` settings in configs/scales/{scale.name}.yaml")
    ra3, mstep = scale.ra3, scale.ntp
    if seed is not None:
        ra3, mstep = dataclasses.replace(ra3, seed=seed), dataclasses.replace(mstep, seed=seed)
    if penalty is not None:
        ra3 = dataclasses.replace(ra3, penalty=penalty)
    return ra3, mstep


def ra3_stage(scale: ScaleConfig, base_model: str, root: Path | None = None, seed: int | None = None,
              penalty: float | None = None) -> Path:
    """RA3 mid-training of `base_model`: the EM loop on the scale's expert corpus. Returns the stage
    directory: every round (`ra3_rounds`, the final model `ra3_model`), diagnostics.json, estep.png
    and examples.md."""
    from transformers import AutoTokenizer

    ra3, mstep = ra3_settings(scale, seed, penalty)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    texts, corpus_identity = expert_texts(scale, tokenizer, root)
    path = runs.stage_dir("ra3", ra3_identity(base_model, corpus_identity, ra3, mstep), root)
    if runs.is_done(path):
        return path
    rows = read_jsonl(world_stage(scale, root) / "expert.jsonl") if scale.corpus is None else None
    with runs.stage_log(path):
        model = load_trainable(base_model)
        summaries = em_loop(model, tokenizer, texts, ra3, mstep, path,
                            on_estep=lambda m: log.info("E-step %s", json.dumps(m)),
                            reference_thoughts=None if rows is None else [reference_thoughts(row) for row in rows],
                            model_path=base_model)
        diagnostics = {"rounds": []}
        if ranks.is_main():  # its files have one writer
            diagnostics = ra3_diagnostics(path, rows)
            log.info("RA3 diagnostics: %s", json.dumps(diagnostics["rounds"]))
    finish(path, {"rounds": summaries, "diagnostics": diagnostics["rounds"]})
    return path


def ra3_rounds(stage: Path) -> list[Path]:
    """The EM round directories of an RA3 stage, in order (each: estep.jsonl, infused.jsonl,
    metrics.jsonl of its M-step, model/)."""
    return sorted(Path(stage).glob("round-*"), key=lambda p: int(p.name.split("-")[1]))


def ra3_model(stage: Path) -> Path:
    """The final round's model of an RA3 stage."""
    return ra3_rounds(stage)[-1] / "model"


def eval_stage(model: str, benchmark: str, generation, root: Path | None = None, workers: int | None = None,
               thoughts: str = "free") -> Path:
    """`model`'s completions on `benchmark`, scored in the sandbox: a directory with samples,
    outcomes.jsonl and metrics.json, cached by (model weights, benchmark data, decoding settings,
    and `thoughts` unless free: repro.eval.generate.THOUGHT_MODES)."""
    config = benchmarks.load_eval_config()
    bench = benchmarks.load_benchmark(benchmark, config)
    path = runs.stage_dir("eval", eval_identity(model, bench, config, generation, thoughts), root)
    if runs.is_done(path):
        return path
    if not ranks.is_main():  # rank 0 evaluates (sharding it is later work); longer than a barrier may wait
        runs.wait_done(path)
        return path
    with runs.stage_log(path):
        metrics = score.evaluate_model(model, bench, config, generation, path, workers=workers, thoughts=thoughts)
        log.info("%s on %s: pass@1 %.4f", model, benchmark, metrics["pass@1"])
    runs.mark_done(path, {k: metrics[k] for k in metrics if k.startswith("pass@")} | {"model": model})
    return path


def evaluate_into(out_dir: Path, label: str, model: str, benchmark: str, generation,
                  root: Path | None = None, thoughts: str = "free") -> tuple[str, dict[str, Any]]:
    """Evaluate (cached in runs/eval) and copy the outcome files into OUT/evals/LABEL/, so a claim's
    run directory carries its evidence. Returns (outcomes.jsonl relative to OUT, metrics)."""
    source = eval_stage(model, benchmark, generation, root, thoughts=thoughts)
    dest = Path(out_dir) / "evals" / label
    if ranks.is_main():
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("outcomes.jsonl", "metrics.json", "generation.json", "samples.jsonl", "samples_raw.jsonl"):
            shutil.copyfile(source / name, dest / name)
    metrics = json.loads((source / "metrics.json").read_text())
    return str((dest / "outcomes.jsonl").relative_to(out_dir)), metrics


def rlvr_stage(scale: ScaleConfig, init_model: str, seed: int, root: Path | None = None) -> Path:
    """One GRPO run from `init_model` with `seed` (data order, rollouts and curve sampling), cached in
    runs/rlvr/<hash>/: `curve.json` holds pass@1 per benchmark at step 0 and every `eval_every` steps."""
    cfg = scale.rlvr
    if cfg is None:
        raise ConfigError(f"scale {scale.name} has no `rlvr` settings in configs/scales/{scale.name}.yaml")
    eval_config = benchmarks.load_eval_config()
    tasks = train_tasks(cfg, eval_config)
    curve_benchmarks = eval_benchmarks(cfg, eval_config)
    gen = dataclasses.replace(scale.generation, n=cfg.eval_n, seed=seed)
    identity = {"init": model_identity(init_model), "rlvr": cfg, "seed": seed,
                "train_tasks": {"name": tasks.name, "sha256": tasks.sha256, "n": len(tasks.tasks)},
                "eval": {name: {"sha256": b.sha256, "tasks": len(b.tasks)} for name, b in curve_benchmarks.items()},
                "generation": gen, "sandbox": eval_config.sandbox,
                "scoring": {name: b.config for name, b in curve_benchmarks.items()}}
    path = runs.stage_dir("rlvr", identity, root)
    if runs.is_done(path):
        return path
    if cfg.torch_threads is not None:
        torch.set_num_threads(cfg.torch_threads)
    curve: dict[int, dict[str, float]] = {}

    def point(step: int, model_dir: Path) -> None:
        evaluation_start = time.monotonic()
        curve[step] = evaluate_point(model_dir, curve_benchmarks, eval_config, gen, path / "curve" / f"step-{step}",
                                     cfg.reward_workers)
        rows = [json.loads(line) for line in open(path / "metrics.jsonl")] if step else []
        recent = [r["reward"] for r in rows if step - cfg.eval_every < r["step"] <= step]
        log.info("step %d: pass@1 %s (evaluated in %.1f s)%s", step, json.dumps(curve[step]),
                 time.monotonic() - evaluation_start, f"; mean training reward of the last {len(recent)} steps "
                 f"{sum(recent) / len(recent):.3f}" if recent else "")

    def keep(step: int, checkpoint: Path) -> None:
        """During training: the checkpoint's weights kept for the evaluation after it (an evaluation
        engine beside the trainer's rollout engine would not fit on one GPU)."""
        keep_weights(checkpoint, path / "curve" / f"step-{step}" / "model")

    started = time.monotonic()
    with runs.stage_log(path):
        log.info("RLVR from %s, seed %d, %d training tasks (%s)", init_model, seed, len(tasks.tasks), tasks.name)
        if ranks.is_main() and (resume := runs.latest_checkpoint(path)) is not None:  # killed before its weights
            keep(runs.checkpoint_step(resume), resume)                                # were kept
        summary = train(init_model, tasks, cfg, path, seed, eval_config, on_checkpoint=keep)
        if not ranks.is_main():  # rank 0 evaluates the curve, for longer than a process group's barrier may wait
            runs.wait_done(path)
            return path
        point(0, Path(init_model))  # after training too, so no rank waits in a collective meanwhile
        kept = sorted(path.glob("curve/step-*/model"), key=lambda p: int(p.parent.name.split("-")[1]))
        for weights in kept:  # after training, whose memory train() gave back
            point(int(weights.parent.name.split("-")[1]), weights)
            shutil.rmtree(weights)
        done_steps = sorted(int(p.name.split("-")[1]) for p in (path / "curve").glob("step-*"))
        # Every point from its files, those evaluated before a kill included.
        curve = {step: read_point(path / "curve" / f"step-{step}", curve_benchmarks) for step in done_steps}
        record = {"init_model": init_model, "seed": seed, "steps": done_steps,
                  "pass@1": {name: [curve[s][name] for s in done_steps] for name in curve_benchmarks},
                  "train": summary, "eval_tasks": {name: len(b.tasks) for name, b in curve_benchmarks.items()},
                  "stage_seconds_this_session": round(time.monotonic() - started, 1)}
        atomic_write(path / "curve.json", json.dumps(record, indent=2) + "\n")
        log.info("RLVR done: %s", json.dumps(summary))
    runs.mark_done(path, record)
    for checkpoint in path.glob("checkpoint-*"):  # optimizer states are not needed once the run is done
        shutil.rmtree(checkpoint, ignore_errors=True)
    return path
