"""The mid-training corpus: Python snippets of a pinned Hugging Face dataset, and their identity.

`load_corpus(spec, tokenizer)` reads the dataset of a `CorpusSpec` (e.g. the `python` directory of
bigcode/starcoderdata at a pinned commit) through `datasets`, keeps the rows of `spec.text_field`
that are non-empty, valid UTF-8 and at most `max_chars` long, and stops at `spec.max_snippets`
snippets or `spec.max_tokens` tokens, whichever comes first. Tokens are counted with the tokenizer
being trained, plus one EOS per snippet, as `repro.train.ntp.pack` counts them. The order is the
dataset's own (files in name order, rows in file order), so the same spec gives the same snippets.

Offline, `local_path` names a directory laid out like the dataset repository (e.g.
`<dir>/python/train-00000-of-00059.parquet`, or JSON Lines in the same schema), for instance
`hf download bigcode/starcoderdata --repo-type dataset --revision <commit> --include 'python/*'
--local-dir <dir>`. With HF_HUB_OFFLINE=1 and no `local_path`, the pinned revision's folder in the hub
cache is read (`datasets` cannot stream a hub dataset offline): what `ra3-repro fetch` put there.

Alongside the snippets comes their identity for the run record: dataset, revision, the split's
data files in reading order, counts, why the stream stopped, and the sha256 of the snippet
stream (each snippet's UTF-8 bytes preceded by their length as 8 little-endian bytes), so two
runs can prove they trained on the same text.
"""

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets

from repro.core.hub import cached_snapshot, offline
from repro.core.scale import CorpusSpec

log = logging.getLogger(__name__)

MAX_CHARS = 6000
"""Longest snippet kept. Not in the paper: its 3.5M snippets in ~1B tokens average ~290 tokens;
6000 characters (~1.5-2k tokens of code) keep a snippet within one 2048-token row and bound the
E-step's line-by-line rollouts, while dropping minified and generated files."""


def load_rows(spec: CorpusSpec, local_path: Path | None = None,
              streaming: bool = True) -> tuple[Iterable[dict], list[str]]:
    """The rows of the spec's split and the data files they come from: `load_dataset`'s own two
    steps (builder, then dataset), so that the files it resolved can be recorded."""
    if local_path is None:
        builder = datasets.load_dataset_builder(spec.dataset, data_dir=spec.data_dir, revision=spec.revision)
    else:
        builder = datasets.load_dataset_builder(str(local_path), data_dir=spec.data_dir)
    files = [str(f) for f in builder.config.data_files[spec.split]]
    if local_path is not None:  # machine-independent names, as in the repository
        files = [os.path.relpath(f, local_path) for f in files]
    if streaming:
        return builder.as_streaming_dataset(split=spec.split), files
    builder.download_and_prepare()
    return builder.as_dataset(split=spec.split), files


def rejection(text: Any, max_chars: int) -> str | None:
    """Why a row is not a snippet, or None when it is one."""
    if not isinstance(text, str) or not text.strip():
        return "empty"
    if len(text) > max_chars:
        return "too_long"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. from a JSON \ud800 escape
        return "invalid_utf8"
    return None


def tokenizer_identity(tokenizer) -> dict[str, Any]:
    """Which tokenizer counted the tokens, the same on every machine: its class and a hash of its
    vocabulary (its `name_or_path` is often a hub cache folder, an absolute path that would make the same
    run hash differently on two machines)."""
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode("utf-8")
    return {"class": type(tokenizer).__name__, "vocab_sha256": hashlib.sha256(vocab).hexdigest()[:16]}


def add_snippet(digest, text: str) -> None:
    """One snippet into a stream's sha256: its UTF-8 bytes preceded by their length (8 little-endian
    bytes), so where each snippet ends is part of what is hashed."""
    data = text.encode("utf-8")
    digest.update(len(data).to_bytes(8, "little") + data)


def stream_sha256(texts: Iterable[str]) -> str:
    """The sha256 of a stream of snippets (`add_snippet`): the corpus identity's `sha256`."""
    digest = hashlib.sha256()
    for text in texts:
        add_snippet(digest, text)
    return digest.hexdigest()


def load_corpus(spec: CorpusSpec, tokenizer, local_path: Path | None = None, streaming: bool = True,
                max_chars: int = MAX_CHARS) -> tuple[list[str], dict[str, Any]]:
    """The snippets of `spec` (hub dataset, or `local_path`) and their identity for the run record."""
    from_cache = local_path is None and offline()
    if from_cache:
        local_path = cached_snapshot(spec.dataset, "dataset", spec.revision)
    rows, files = load_rows(spec, local_path, streaming)
    if from_cache:  # the names the hub gives them online
        files = [f"hf://datasets/{spec.dataset}@{spec.revision}/{f}" for f in files]
    snippets: list[str] = []
    skipped: Counter[str] = Counter()
    digest = hashlib.sha256()
    tokens, stop = 0, "exhausted"
    for row in rows:
        text = row[spec.text_field]
        reason = rejection(text, max_chars)
        if reason is not None:
            skipped[reason] += 1
            continue
        n = len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1  # + the EOS pack() appends
        if tokens + n > spec.max_tokens:
            stop = "max_tokens"
            break
        add_snippet(digest, text)
        snippets.append(text)
        tokens += n
        if len(snippets) == spec.max_snippets:
            stop = "max_snippets"
            break
        if len(snippets) % 100_000 == 0:
            log.info("corpus: %d snippets, %d tokens", len(snippets), tokens)
    identity = {
        "dataset": spec.dataset, "revision": spec.revision, "data_dir": spec.data_dir, "split": spec.split,
        "text_field": spec.text_field, "source": "hub" if local_path is None or from_cache else str(local_path),
        "files": files, "tokenizer": tokenizer_identity(tokenizer), "max_chars": max_chars,
        "max_snippets": spec.max_snippets, "max_tokens": spec.max_tokens, "snippets": len(snippets),
        "tokens": tokens, "stopped_by": stop, "skipped": dict(skipped), "sha256": digest.hexdigest(),
    }
    log.info("corpus %s@%s: %d snippets, %d tokens, stopped by %s, sha256 %s", spec.dataset, spec.revision,
             len(snippets), tokens, stop, identity["sha256"])
    return snippets, identity
