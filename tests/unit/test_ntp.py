"""The causal-LM training loop: packing, data order, schedule, and exact resumption after a kill."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from repro.core.scale import TinyModelConfig, TokenizerConfig, TrainConfig
from repro.train.ntp import lr_factor, pack, rows_for_step
from repro.train.pretrain import init_model, train_tokenizer

TEXTS = [f"def f{i}(x):\n    return x * {i} + {i % 7}\n" for i in range(300)]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_tokenizer(TEXTS, TokenizerConfig(vocab_size=320), tmp_path_factory.mktemp("tok"))


def test_tokenizer_round_trips_code_exactly(tokenizer):
    code = "def g(xs):\n    out = []\n    for x in xs:\n        out.append(x ** 2)  # é\n    return out\n"
    assert tokenizer.decode(tokenizer(code)["input_ids"]) == code
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.pad_token == "<|pad|>"


def test_pack_appends_eos_and_cuts_rows(tokenizer):
    rows = pack(TEXTS[:20], tokenizer, seq_len=32)
    flat = rows.flatten().tolist()
    assert rows.shape[1] == 32 and flat.count(tokenizer.eos_token_id) >= len(flat) // 40
    first = tokenizer(TEXTS[0], add_special_tokens=False)["input_ids"]
    assert flat[: len(first) + 1] == first + [tokenizer.eos_token_id]


def test_pack_holds_4_bytes_a_token_and_the_same_ids_as_one_text_at_a_time(tokenizer, monkeypatch):
    """Held-out texts are packed in memory as int32, not a Python list (about 36 bytes a token). Texts
    are tokenized in batches (several batches here) and give the ids of one call per text."""
    from repro.train import ntp, tokens

    monkeypatch.setattr(tokens, "ENCODE_BATCH", 7)
    rows = pack(TEXTS[:20], tokenizer, seq_len=32)
    assert rows.dtype == np.int32 and rows.itemsize == 4
    eos = tokenizer.eos_token_id
    one_by_one = [i for t in TEXTS[:20] for i in tokenizer(t, add_special_tokens=False)["input_ids"] + [eos]]
    assert rows.flatten().tolist() == one_by_one[: rows.size]
    batch = ntp.batch_rows(rows, torch.tensor([2, 0]), "cpu")
    assert batch.dtype == torch.long  # what the loss's labels need
    assert batch.tolist() == rows[[2, 0]].tolist()


def test_rows_for_step_is_a_seeded_pass_over_epochs():
    seen = torch.cat([rows_for_step(10, s, 4, seed=1) for s in range(5)]).tolist()
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
    assert torch.equal(rows_for_step(10, 3, 4, seed=1), rows_for_step(10, 3, 4, seed=1))
    assert not torch.equal(rows_for_step(100, 0, 8, seed=1), rows_for_step(100, 0, 8, seed=2))
    ranks = [set(rows_for_step(64, 0, 8, 0, rank, 2).tolist()) for rank in (0, 1)]
    assert not ranks[0] & ranks[1]


def test_schedule_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(seq_len=8, batch_size=1, lr=1.0, max_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1) and lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0) and lr_factor(100, cfg) == pytest.approx(0.1)
    assert lr_factor(55, cfg) == pytest.approx(0.55)


SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import repro.train.ntp as ntp
    from repro.core.scale import TinyModelConfig, TokenizerConfig, TrainConfig
    from repro.train.pretrain import init_model, train_tokenizer

    run_dir, kill_at = Path(sys.argv[1]), int(sys.argv[2])
    texts = [f"def f{i}(x):\\n    return x * {i} + {i % 7}\\n" for i in range(300)]
    tokenizer = train_tokenizer(texts, TokenizerConfig(vocab_size=320), run_dir / "tok")
    model = init_model(tokenizer, TinyModelConfig(32, 1, 2, 64, 64), seed=0)
    cfg = TrainConfig(seq_len=32, batch_size=4, lr=3e-3, max_steps=30, warmup_steps=3, checkpoint_every=10)
    rows_for_step = ntp.rows_for_step

    def killing_rows(n_rows, step, *args):
        if kill_at and step == kill_at and (run_dir / "checkpoint-20" / "COMPLETE").exists():
            os.kill(os.getpid(), signal.SIGKILL)  # mid-run, after the step-20 checkpoint
        return rows_for_step(n_rows, step, *args)

    ntp.rows_for_step = killing_rows
    print(ntp.train_causal_lm(model, tokenizer, texts, cfg, run_dir)["final_loss"])
""")


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    from safetensors.torch import load_file

    def run(run_dir, kill_at):
        return subprocess.run([sys.executable, "-c", SCRIPT, str(run_dir), str(kill_at)],
                              capture_output=True, text=True, timeout=300)

    whole = run(tmp_path / "whole", 0)
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = run(tmp_path / "killed", 24)
    assert killed.returncode == -9 and not (tmp_path / "killed" / "model").exists()
    assert (tmp_path / "killed" / "checkpoint-20" / "COMPLETE").exists()
    resumed = run(tmp_path / "killed", 0)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "20/30" in resumed.stderr  # the progress bar starts at the checkpoint
    a = load_file(tmp_path / "whole" / "model" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    metrics = [json.loads(line) for line in open(tmp_path / "killed" / "metrics.jsonl")]
    assert metrics[-1]["step"] == 30


def test_a_tiny_model_learns(tokenizer, tmp_path):
    from repro.train.ntp import cross_entropy, train_causal_lm

    model = init_model(tokenizer, TinyModelConfig(32, 1, 2, 64, 64), seed=0)
    before = cross_entropy(model, tokenizer, TEXTS[:50], seq_len=32)
    cfg = TrainConfig(seq_len=32, batch_size=8, lr=3e-3, max_steps=60, warmup_steps=5, checkpoint_every=0)
    summary = train_causal_lm(model, tokenizer, TEXTS, cfg, tmp_path)
    after = cross_entropy(model, tokenizer, TEXTS[:50], seq_len=32)
    assert after < before * 0.6 and summary["steps"] == 60 and (tmp_path / "model" / "config.json").exists()


def test_a_callers_leftover_gradients_do_not_enter_training(tokenizer, tmp_path):
    """An RA3 E-step before an M-step once left its last gradients on the model, and the M-step's first
    backward added them in: training must start from no gradient whatever the caller left."""
    from repro.train.ntp import train_causal_lm

    cfg = TrainConfig(seq_len=32, batch_size=4, lr=3e-3, max_steps=3, warmup_steps=1, checkpoint_every=0)
    clean, dirty = (init_model(tokenizer, TinyModelConfig(32, 1, 2, 64, 64), seed=0) for _ in range(2))
    for parameter in dirty.parameters():
        parameter.grad = torch.ones_like(parameter)
    train_causal_lm(clean, tokenizer, TEXTS, cfg, tmp_path / "clean")
    train_causal_lm(dirty, tokenizer, TEXTS, cfg, tmp_path / "dirty")
    assert all(torch.equal(a, b) for a, b in zip(clean.parameters(), dirty.parameters(), strict=True))
