"""Token files (repro.train.tokens): the ids `pack` builds in memory, on disk as uint16 or uint32, memory-mapped
rows, rebuilt when stale, and training from them equal to training from the in-memory pack."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from repro.core.scale import TinyModelConfig, TokenizerConfig, TrainConfig
from repro.train import ntp, tokens
from repro.train.pretrain import init_model, train_tokenizer

TEXTS = [f"def f{i}(x):\n    return x * {i} + {i % 7}\n" for i in range(300)]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_tokenizer(TEXTS, TokenizerConfig(vocab_size=320), tmp_path_factory.mktemp("tok"))


class WideTokenizer:
    """A vocabulary the size of Llama-3's (128,256 tokens): the small tokenizer's ids moved past 65,535."""

    eos_token_id = 128_001

    def __init__(self, inner, length: int = 128_256):
        self.inner, self.length = inner, length

    def __len__(self):
        return self.length

    def __call__(self, texts, add_special_tokens=False):
        narrow = self.inner(texts, add_special_tokens=False)["input_ids"]
        return {"input_ids": [[i + 70_000 for i in ids] for ids in narrow]}

    def get_vocab(self):
        return {"<wide>": 0}


def test_the_file_holds_packs_ids_in_uint16_and_its_rows_are_a_read_only_view(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setattr(tokens, "ENCODE_BATCH", 7)  # several batches
    path = tmp_path / "tokens.bin"
    sidecar = tokens.build(TEXTS, tokenizer, path)
    eos = tokenizer.eos_token_id
    expected = [i for t in TEXTS for i in tokenizer(t, add_special_tokens=False)["input_ids"] + [eos]]
    assert sidecar["dtype"] == "uint16" and sidecar["tokens"] == len(expected) == ntp.count_tokens(TEXTS, tokenizer)
    assert ntp.count_tokens(iter(TEXTS), tokenizer) == len(expected)  # a stream, in batches of 7
    assert path.stat().st_size == 2 * len(expected)
    assert sidecar["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert json.loads(tokens.sidecar_path(path).read_text()) == sidecar
    assert sidecar["eos_token_id"] == eos and sidecar["texts"] == len(TEXTS)

    rows = tokens.open_rows(path, 32)
    assert isinstance(rows, np.memmap) and Path(rows.filename) == path.resolve() and not rows.flags.writeable
    assert rows.shape == (len(expected) // 32, 32)
    assert np.array_equal(rows, ntp.pack(TEXTS, tokenizer, 32))
    batch = ntp.batch_rows(rows, torch.tensor([3, 1]), "cpu")
    assert batch.dtype == torch.long and batch.tolist() == rows[[3, 1]].tolist()


def test_a_vocabulary_past_65536_ids_is_stored_as_uint32(tokenizer, tmp_path):
    assert tokens.token_dtype(1024) == np.uint16 and tokens.token_dtype(65_536) == np.uint16
    assert tokens.token_dtype(65_537) == np.uint32 and tokens.token_dtype(151_665) == np.uint32  # Qwen-2.5
    wide = WideTokenizer(tokenizer)
    sidecar = tokens.build(TEXTS[:50], wide, tmp_path / "wide.bin")
    assert sidecar["dtype"] == "uint32" and (tmp_path / "wide.bin").stat().st_size == 4 * sidecar["tokens"]
    narrow = tokens.open_rows(tmp_path / "wide.bin", 16).ravel()
    assert narrow.max() > 65_535 and narrow.tolist() == ntp.pack(TEXTS[:50], wide, 16).ravel().tolist()
    with pytest.raises(ValueError, match="does not fit uint16"):  # a length that undercounts its ids
        tokens.build(TEXTS[:5], WideTokenizer(tokenizer, length=1000), tmp_path / "lying.bin")
    assert not (tmp_path / "lying.bin").exists() and not list(tmp_path.glob(".lying.bin.*"))


def test_a_matching_file_is_reused_and_a_stale_one_rebuilt(tokenizer, tmp_path):
    path = tmp_path / "tokens.bin"
    first = tokens.build(TEXTS, tokenizer, path)
    written = path.stat()
    assert tokens.build(TEXTS, tokenizer, path) == first
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)  # not rewritten

    other = tokens.build(TEXTS[:100], tokenizer, path)  # another corpus
    assert other["texts_sha256"] != first["texts_sha256"] and other["tokens"] < first["tokens"]

    tokens.build(TEXTS, tokenizer, path)
    tokens.sidecar_path(path).unlink()  # killed between the tokens and the sidecar, with half the tokens
    path.write_bytes(path.read_bytes()[: written.st_size // 2])
    assert tokens.read_sidecar(path) is None
    with pytest.raises(FileNotFoundError, match="not a complete token file"):
        tokens.open_rows(path, 32)
    assert tokens.build(TEXTS, tokenizer, path) == first

    data = bytearray(path.read_bytes())  # same size, one token changed: only the hash tells
    data[10] ^= 1
    path.write_bytes(bytes(data))
    assert tokens.build(TEXTS, tokenizer, path) == first
    assert hashlib.sha256(path.read_bytes()).hexdigest() == first["sha256"]


def test_training_from_the_token_file_equals_training_from_the_in_memory_pack(tokenizer, tmp_path, monkeypatch):
    """The same weights, bit for bit, as the loop gave when it trained on `pack`'s rows; the run's own token
    file is gone afterwards, one the caller names stays."""
    cfg = TrainConfig(seq_len=32, batch_size=4, lr=3e-3, max_steps=8, warmup_steps=2, checkpoint_every=0)

    def train(run_dir, **kwargs):
        model = init_model(tokenizer, TinyModelConfig(32, 1, 2, 64, 64), seed=0)
        summary = ntp.train_causal_lm(model, tokenizer, TEXTS, cfg, run_dir, **kwargs)
        return model.state_dict(), summary

    from_file, summary = train(tmp_path / "file")
    assert not (tmp_path / "file" / ntp.TOKENS).exists() and not list((tmp_path / "file").glob("tokens*"))
    assert summary["token_file"]["dtype"] == "uint16"
    named, _ = train(tmp_path / "named", tokens_path=tmp_path / "corpus.bin")
    assert tokens.read_sidecar(tmp_path / "corpus.bin")["sha256"] == summary["token_file"]["sha256"]
    monkeypatch.setattr(tokens, "open_rows", lambda path, seq_len: ntp.pack(TEXTS, tokenizer, seq_len))
    from_pack, _ = train(tmp_path / "pack")
    for weights in (named, from_pack):
        assert weights.keys() == from_file.keys() and all(torch.equal(weights[k], from_file[k]) for k in weights)
