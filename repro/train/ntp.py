"""Next-token-prediction training on texts: NTP mid-training, tiny pretraining, and the RA3 M-step.

One loop for every scale: `train_causal_lm(model, tokenizer, texts, cfg, run_dir)` writes the texts'
tokens (each text followed by EOS) once into a token file that every process memory-maps
(`repro.train.tokens`), reads fixed-length rows of it and trains with AdamW, linear warm-up and cosine
decay, through `accelerate` (the CPU at tiny scale; bf16 and DeepSpeed ZeRO-2/3 from a JSON under
`configs/deepspeed/` on GPUs, or on CPUs through DeepSpeed's CPU backend, as
tests/pipeline/test_deepspeed_stages.py rehearses it), with optional gradient checkpointing. The loss
covers every token, so an RA3 M-step on thought-infused code also learns to write the comments.

Resumable and deterministic: the rows of step s are a function of (seed, s) alone, so a run
killed mid-way restarts from its newest complete checkpoint (model, optimizer, scheduler and RNG
state via `accelerator.save_state`) and ends where an uninterrupted run ends. Per-step metrics go
to `metrics.jsonl`; the final model is saved with `save_pretrained` in `<run_dir>/model`.

Several calls in one process (pretraining, NTP, then every M-step round) work with or without
DeepSpeed: a DeepSpeed run owns accelerate's process-wide state while it trains and gives the model back
as a plain module holding the trained fp32 weights, its engine freed (`repro.train.zero`).
"""

import json
import logging
import math
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from repro.core import ranks, runs
from repro.core.scale import TrainConfig
from repro.eval.barrier import barrier
from repro.train import tokens, zero

log = logging.getLogger(__name__)

OPTIMIZER_STATE = "optimizer.pt"
"""What a schedule window leaves for the next (`train_causal_lm(steps=...)`): optimizer and scheduler
state. Under DeepSpeed ZeRO-3 the optimizer's state is partitioned: each rank's part lies beside this
file in `optimizer-rank<r>.pt` (`_zero_shard`), and this file says how many there are."""

TOKENS = "tokens.bin"
"""The run's token file (`repro.train.tokens`) unless the caller names one; removed once the model is
saved (4 GB a stage at the paper scale; only a resumed run reads it again)."""


def pack(texts: Iterable[str], tokenizer, seq_len: int) -> np.ndarray:
    """Token ids of all texts, each followed by EOS, cut into rows of `seq_len` (the tail dropped), in memory.

    Held-out texts only (`cross_entropy`): training reads the same ids from a memory-mapped token file
    (`repro.train.tokens`). Stored as int32, 4 bytes per token (a Python list of ints, as this once
    built, holds about 36); a batch is made int64 where it goes to the model (`batch_rows`)."""
    chunks = [ids.astype(np.int32) for ids in tokens.encoded_batches(texts, tokenizer)]
    ids = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
    rows = len(ids) // seq_len
    if rows == 0:
        raise ValueError(f"{len(ids)} tokens do not fill one row of {seq_len}")
    return ids[: rows * seq_len].reshape(rows, seq_len)


def batch_rows(data: np.ndarray, rows, device) -> torch.Tensor:
    """Rows of packed token ids (`pack`'s array, or a token file's memory map, of which only these rows
    are read) as the model takes them: int64 ids on `device`."""
    index = rows.numpy() if isinstance(rows, torch.Tensor) else rows
    return torch.from_numpy(data[index].astype(np.int64)).to(device)


def rows_for_step(n_rows: int, step: int, batch: int, seed: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """Row indices of one process's batch at `step`: epochs are seeded permutations, read in order."""
    per_step = batch * world
    start = (step * per_step + rank * batch)
    indices = []
    while len(indices) < batch:
        epoch, offset = divmod(start + len(indices), n_rows)
        order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        take = min(batch - len(indices), n_rows - offset)
        indices.extend(order[offset: offset + take].tolist())
    return torch.tensor(indices)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _optimizer(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2))


def _save_checkpoint(accelerator, run_dir: Path, step: int) -> None:
    """save_state into checkpoint-<step>, marked COMPLETE last; older checkpoints are then removed.

    Every rank writes its own RNG state (`random_states_<rank>.pkl`; the weights, optimizer and
    scheduler come from the main process, or under DeepSpeed from each rank's ZeRO partition), so the
    main process clears the folder before anyone writes and marks it only after every rank has written:
    a resumed run restores each rank's RNG. A checkpoint resumes only under the same number of
    processes (accelerate reads `random_states_<rank>.pkl` of each rank)."""
    path = run_dir / f"checkpoint-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(path, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(path))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        runs.mark_checkpoint(path, step)
        for old in run_dir.glob("checkpoint-*"):
            if old != path:
                shutil.rmtree(old, ignore_errors=True)


def _zero_shard(state: Path, rank: int) -> Path:
    return Path(state).with_name(f"optimizer-rank{rank}.pt")


def _save_window(accelerator, optimizer, scheduler, run_dir: Path) -> None:
    """What the next schedule window continues from: the optimizer's moments and step counts and the
    scheduler's position (not the weights: the next window trains the model it is given)."""
    path = run_dir / OPTIMIZER_STATE
    if zero.stage(accelerator) is None:
        if accelerator.is_main_process:
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, path)
        return
    # ZeRO-3 keeps each rank's share of the Adam state: each rank writes its own.
    torch.save({"optimizer": zero.optimizer_state(optimizer)}, _zero_shard(path, accelerator.process_index))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        torch.save({"scheduler": scheduler.state_dict(), "zero_shards": accelerator.num_processes}, path)


def _load_window(accelerator, optimizer, scheduler, path: Path) -> None:
    """Continue the optimizer and scheduler of the window that left `path`; the weights stay this model's."""
    # Read to the host: loading moves every state onto its parameter's device, and torch.load cannot map
    # to the device accelerate names `cpu:0` on CPUs under several processes (gloo, DeepSpeed's backend).
    state = torch.load(path, map_location="cpu", weights_only=True)
    shards = state.get("zero_shards")
    if (shards is None) != (zero.stage(accelerator) is None):
        raise ValueError(f"{path} was written {'without' if shards is None else 'under'} DeepSpeed; this window "
                         f"runs {'under' if shards is None else 'without'} it: the optimizer states do not carry over")
    if shards is None:
        optimizer.load_state_dict(state["optimizer"])
    elif shards != accelerator.num_processes:
        raise ValueError(f"{path} holds ZeRO partitions of {shards} processes; this run has "
                         f"{accelerator.num_processes}: run the next window with the same number of processes")
    else:
        shard = torch.load(_zero_shard(path, accelerator.process_index), map_location="cpu", weights_only=True)
        zero.load_optimizer_state(optimizer, shard["optimizer"], accelerator.num_processes)
    scheduler.load_state_dict(state["scheduler"])


def _resume(accelerator, optimizer, scheduler, run_dir: Path, first: int, optimizer_state: Path | None,
            desc: str) -> int:
    """Load what this run continues from and return its first step: its own newest checkpoint, else the
    previous window's optimizer state (`optimizer_state`), else nothing (step `first` = 0)."""
    if (found := runs.latest_checkpoint(run_dir)) is not None:
        accelerator.load_state(str(found))
        log.info("resuming %s from %s", desc, found)
        return runs.checkpoint_step(found)
    if optimizer_state is not None:  # the model is this window's own; the optimizer continues the schedule
        _load_window(accelerator, optimizer, scheduler, Path(optimizer_state))
    elif first:
        raise ValueError(f"{desc}: a window from step {first} needs the optimizer state the previous one left")
    return first


def train_causal_lm(model, tokenizer, texts: Sequence[str], cfg: TrainConfig, run_dir: Path,
                    desc: str = "training", steps: tuple[int, int] | None = None,
                    optimizer_state: Path | None = None, tokens_path: Path | None = None) -> dict:
    """Train `model` on `texts` for `cfg.max_steps` steps, resuming from `run_dir`'s checkpoints.

    `steps` = (a, b) trains only steps a..b-1 of that schedule (an RA3 M-step round), starting from
    the optimizer and scheduler state another window left in `optimizer_state`; a window that ends
    before the schedule does leaves its own in `<run_dir>/optimizer.pt` for the next one. The texts'
    tokens go to `tokens_path` (default `<run_dir>/tokens.bin`, removed at the end), reused when a
    matching file is there. Returns a summary (final loss, tokens seen, seconds, tokens/s, the token
    file's identity); the model is trained in place and saved with the tokenizer in `<run_dir>/model`.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    first, last = steps or (0, cfg.max_steps)
    if not 0 <= first < last <= cfg.max_steps:
        raise ValueError(f"steps {steps} is not a window of the {cfg.max_steps}-step schedule")
    token_file = Path(tokens_path) if tokens_path else run_dir / TOKENS
    token_info = tokens.build(texts, tokenizer, token_file)
    data = tokens.open_rows(token_file, cfg.seq_len)
    with zero.accelerator(cfg) as accelerator:
        stage = zero.stage(accelerator)
        if stage not in (None, 3) and last - first < cfg.max_steps:
            raise ValueError(f"{desc}: schedule windows under DeepSpeed hand their optimizer state on under "
                             f"ZeRO-3 only (configs/deepspeed/zero3.json); {cfg.deepspeed_config} is stage {stage}")
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        optimizer = _optimizer(model, cfg)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
        before = zero.module_state(model) if stage is not None else None
        model.zero_grad(set_to_none=True)  # a caller's leftover gradients (an E-step's) are not this run's
        prepared, optimizer = accelerator.prepare(model, optimizer)
        # Not prepared: accelerate would step a scheduler once per process; ours counts optimizer steps.
        accelerator.register_for_checkpointing(scheduler)
        start_step = _resume(accelerator, optimizer, scheduler, run_dir, first, optimizer_state, desc)
        recent, seconds, tokens_per_step = _run_steps(accelerator, prepared, optimizer, scheduler, data, cfg,
                                                      (first, start_step, last), run_dir, desc)
        if last < cfg.max_steps:
            _save_window(accelerator, optimizer, scheduler, run_dir)
        weights = zero.gather_fp32(model) if stage is not None else None
        device = accelerator.device
    if weights is not None:
        zero.give_back(model, weights, before, device)
    if ranks.is_main():  # the caller's module holds the trained weights (in place, or given back by `zero`)
        model.save_pretrained(run_dir / "model")
        tokenizer.save_pretrained(run_dir / "model")
    barrier()  # no rank returns (and marks its stage done) before the model is saved
    if tokens_path is None and ranks.is_main():
        token_file.unlink()
        tokens.sidecar_path(token_file).unlink()
    trained_steps = last - start_step
    return {"final_loss": sum(recent) / max(1, len(recent)), "steps": last - first, "window": [first, last],
            "rows": len(data), "tokens_seen": tokens_per_step * (last - first),
            "seconds_this_session": round(seconds, 1),
            "tokens_per_second": round(tokens_per_step * trained_steps / seconds, 1) if seconds > 0 else None,
            "resumed_from_step": start_step,
            "token_file": {k: token_info[k] for k in ("tokens", "dtype", "sha256", "texts_sha256")}}


def _run_steps(accelerator, model, optimizer, scheduler, data: np.ndarray, cfg: TrainConfig,
               window: tuple[int, int, int], run_dir: Path, desc: str) -> tuple[list[float], float, int]:
    """Steps start..last-1 of the window (first, start, last), with metrics and checkpoints; returns the
    recent losses, the seconds taken and the tokens of one step (all processes)."""
    first, start_step, last = window
    metrics_file = run_dir / "metrics.jsonl"
    if start_step == first and accelerator.is_main_process:
        metrics_file.unlink(missing_ok=True)
    model.train()
    tokens_per_step = cfg.batch_size * cfg.grad_accum_steps * cfg.seq_len * accelerator.num_processes
    progress = tqdm(range(start_step, last), desc=desc, initial=start_step - first, total=last - first,
                    unit="step", disable=not accelerator.is_main_process)
    started, recent = time.monotonic(), []
    for step in progress:
        loss_sum = 0.0
        for micro in range(cfg.grad_accum_steps):
            rows = rows_for_step(len(data), step * cfg.grad_accum_steps + micro, cfg.batch_size, cfg.seed,
                                 accelerator.process_index, accelerator.num_processes)
            batch = batch_rows(data, rows, accelerator.device)
            # `accumulate` scales the loss and steps the optimizer (and DeepSpeed's engine) once per
            # `grad_accum_steps` micro-batches; the prepared optimizer skips the others.
            with accelerator.accumulate(model):
                loss = model(input_ids=batch, labels=batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.item() / cfg.grad_accum_steps
        recent = (recent + [loss_sum])[-50:]
        done = step + 1
        if done % cfg.log_every == 0 or done == last:
            elapsed = time.monotonic() - started
            rate = tokens_per_step * (done - start_step) / elapsed
            progress.set_postfix(loss=f"{loss_sum:.3f}", tok_s=f"{rate:,.0f}")
            if accelerator.is_main_process:
                with open(metrics_file, "a") as f:
                    f.write(json.dumps({"step": done, "loss": loss_sum, "lr": scheduler.get_last_lr()[0],
                                        "tokens_per_second": rate, "elapsed_seconds": round(elapsed, 3)}) + "\n")
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < last:
            _save_checkpoint(accelerator, run_dir, done)
    seconds = time.monotonic() - started
    accelerator.wait_for_everyone()
    return recent, seconds, tokens_per_step


def count_tokens(texts: Iterable[str], tokenizer) -> int:
    """Tokens of the texts as `pack` counts them (each followed by EOS), encoded in the token file's batches,
    which a fast tokenizer spreads over the cores: the RA3 M-step's schedule counts a whole corpus twice
    (3.5M snippets at the paper scale), and one call per text took 1.4x as long on 2 cores (16.0 s against
    11.7 s for 80,000 tiny-world snippets, 14M tokens) and more with more cores."""
    return sum(len(batch) for batch in tokens.encoded_batches(texts, tokenizer))


def cross_entropy(model, tokenizer, texts: Iterable[str], seq_len: int, batch_size: int = 16) -> float:
    """Mean next-token cross-entropy (nats) of `model` on the packed texts, without training."""
    data = pack(texts, tokenizer, seq_len)
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            batch = batch_rows(data, slice(start, start + batch_size), device)
            total += model(input_ids=batch, labels=batch).loss.item() * len(batch)
            count += len(batch)
    return total / count


def text_nll(model, tokenizer, texts: list[str], batch_size: int = 32) -> list[tuple[float, int]]:
    """(summed next-token negative log-likelihood in nats, predicted tokens) of each text on its own,
    followed by EOS as in training: per-text numbers that pair up across models."""
    model.eval()
    device = next(model.parameters()).device
    eos = tokenizer.eos_token or ""
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = texts[start: start + batch_size]
            encoded = [tokenizer(t + eos, add_special_tokens=False)["input_ids"] for t in batch]
            width = max(len(ids) for ids in encoded)
            ids = torch.zeros(len(encoded), width, dtype=torch.long)
            mask = torch.zeros(len(encoded), width, dtype=torch.long)
            for i, row in enumerate(encoded):
                ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:].to(device),
                                                    reduction="none") * mask[:, 1:].to(device)
            out += [(float(nll[i].sum()), int(mask[i, 1:].sum())) for i in range(len(encoded))]
    return out
