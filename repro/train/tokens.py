"""Token files: a corpus tokenized once, on disk, and memory-mapped by every process that trains on it.

`repro.train.ntp.train_causal_lm` trains on rows of `seq_len` token ids, every text followed by EOS
(the order and content `repro.train.ntp.pack` produces in memory). At the paper scale that is about 1B
tokens per stage, 4 GB as int32 on every rank, tokenized again by every rank of every stage. Here the
main rank writes them once into a flat binary file, in batches of texts, so that no process ever holds
more than one batch's tokens; every rank then opens the file as a read-only `numpy.memmap` and the
rows are a view of it: the operating system pages in what a batch reads and shares the pages among
the ranks of a node.

The file holds unsigned integers: uint16 (2 bytes a token) when the tokenizer's ids fit in 65,536
values (the tiny scale's 1k BPE), else uint32 (Qwen-2.5's ~151k and Llama-3's ~128k vocabularies
need it: 4 bytes a token). Beside it, `<file>.json`, written last, says what it holds: dtype, token
count, EOS id, the tokenizer's identity (`repro.train.corpus.tokenizer_identity`), the sha256 of the
texts (each text's UTF-8 bytes preceded by their length as 8 little-endian bytes, the corpus
identity's scheme in `repro.train.corpus`) and the sha256 of the token bytes. A resumed run reuses a
file whose sidecar matches its texts and tokenizer and whose bytes hash as recorded; anything else (a
file without sidecar, another corpus, a corrupted file) is written anew.
"""

import hashlib
import itertools
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from repro.core import ranks
from repro.core.files import atomic_write, sha256_of
from repro.eval.barrier import barrier
from repro.train.corpus import stream_sha256, tokenizer_identity

log = logging.getLogger(__name__)

ENCODE_BATCH = 1024
"""Texts tokenized per call (a fast tokenizer encodes a list in one call, in parallel); it also bounds
the Python objects alive at once to one batch's."""

FORMAT = 1
"""Version of the file layout and sidecar fields; a sidecar of another version is rebuilt."""


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits in 16 bits (vocabularies up to 65,536), else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def sidecar_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".json")


def encoded_batches(texts: Iterable[str], tokenizer, batch_size: int | None = None) -> Iterator[np.ndarray]:
    """The token ids of the texts, each followed by EOS, as one int64 array per batch of texts."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos token; set eos_token before training")
    batch_size = batch_size or ENCODE_BATCH
    texts = iter(texts)
    while batch := list(itertools.islice(texts, batch_size)):
        encoded = tokenizer(batch, add_special_tokens=False)["input_ids"]
        yield np.fromiter(itertools.chain.from_iterable((*ids, eos) for ids in encoded), dtype=np.int64)


def expected_identity(texts: Sequence[str], tokenizer) -> dict[str, Any]:
    """The sidecar fields that a file for these texts and this tokenizer must carry."""
    return {"format": FORMAT, "dtype": token_dtype(len(tokenizer)).name, "eos_token_id": tokenizer.eos_token_id,
            "tokenizer": tokenizer_identity(tokenizer), "texts": len(texts), "texts_sha256": stream_sha256(texts)}


def write(texts: Sequence[str], tokenizer, path: Path) -> dict[str, Any]:
    """Tokenize `texts` into `path` and write its sidecar last; returns the sidecar.

    The tokens go to a temporary file beside `path`, renamed over it once whole; the old sidecar is
    removed first, so a crash at any point leaves no sidecar that describes other bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar_path(path).unlink(missing_ok=True)
    identity = expected_identity(texts, tokenizer)
    dtype, limit = np.dtype(identity["dtype"]), np.iinfo(identity["dtype"]).max
    digest, count = hashlib.sha256(), 0
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            for ids in encoded_batches(texts, tokenizer):
                if ids.size and (ids.min() < 0 or ids.max() > limit):
                    raise ValueError(f"token id {ids.max()} does not fit {dtype.name} (the tokenizer has "
                                     f"{len(tokenizer)} tokens); its length must cover every id it produces")
                chunk = ids.astype(dtype)
                digest.update(chunk.data)
                chunk.tofile(f)
                count += chunk.size
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sidecar = {**identity, "tokens": count, "sha256": digest.hexdigest()}
    atomic_write(sidecar_path(path), json.dumps(sidecar, indent=2) + "\n")
    return sidecar


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar of `path` if both exist and the file's size is the sidecar's token count, else None."""
    path = Path(path)
    try:
        sidecar = json.loads(sidecar_path(path).read_text())
        size = path.stat().st_size
    except (OSError, ValueError):
        return None
    if not isinstance(sidecar, dict) or not {"tokens", "dtype", "sha256"} <= sidecar.keys():
        return None
    if size != sidecar["tokens"] * np.dtype(sidecar["dtype"]).itemsize:
        return None
    return sidecar


def _reusable(path: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    sidecar = read_sidecar(path)
    if sidecar is None or any(sidecar.get(k) != v for k, v in identity.items()):
        return None
    if sha256_of(path) != sidecar["sha256"]:
        log.warning("token file %s does not hash as its sidecar says: rebuilding it", path)
        return None
    return sidecar


def build(texts: Sequence[str], tokenizer, path: Path, poll_seconds: float = 1.0) -> dict[str, Any]:
    """The token file of `texts` at `path`, written by the main rank unless a matching one is there;
    every rank returns its sidecar once it exists.

    The main rank decides (removing a sidecar that does not match) before a first barrier, so that after
    it a sidecar on disk is this build's; the other ranks then wait for the sidecar on the file system,
    since tokenizing 1B tokens may outlast a process group's timeout (as `repro.core.runs.wait_done`)."""
    path = Path(path)
    sidecar = None
    if ranks.is_main():
        sidecar = _reusable(path, expected_identity(texts, tokenizer))
        if sidecar is None:
            sidecar_path(path).unlink(missing_ok=True)
    barrier()
    if ranks.is_main():
        if sidecar is None:
            started = time.monotonic()
            sidecar = write(texts, tokenizer, path)
            log.info("token file %s: %d tokens (%s) in %.1f s", path, sidecar["tokens"], sidecar["dtype"],
                     time.monotonic() - started)
        else:
            log.info("token file %s reused: %d tokens (%s)", path, sidecar["tokens"], sidecar["dtype"])
        return sidecar
    while (sidecar := read_sidecar(path)) is None:
        time.sleep(poll_seconds)
    return sidecar


def open_rows(path: Path, seq_len: int) -> np.ndarray:
    """The token file as rows of `seq_len` ids (the tail that fills no row dropped): a read-only memory
    map, so the rows are a view of the file and nothing is copied until a batch indexes them."""
    sidecar = read_sidecar(path)
    if sidecar is None:
        raise FileNotFoundError(f"{path} is not a complete token file (no matching {sidecar_path(path).name})")
    rows = sidecar["tokens"] // seq_len
    if rows == 0:
        raise ValueError(f"{sidecar['tokens']} tokens do not fill one row of {seq_len}")
    return np.memmap(path, dtype=sidecar["dtype"], mode="r", shape=(rows, seq_len))
