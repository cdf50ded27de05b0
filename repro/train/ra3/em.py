"""RA3's EM loop: the E-step (self-supervised RL over thoughts) and the M-step (NTP on infused code).

E-step: a decision at boundary t is credited with its return-to-go sum_{t' >= t} r_t', normalised
within the G samples of the snippet (group-relative advantage, per boundary). The update is PPO's
clipped surrogate on the decision and thought log-probabilities, with an optional k3 KL penalty to
the model as it was before the E-step. Expert lines are never trained in the E-step.

M-step: the infused corpus (each expert snippet with thoughts from the final E-step policy) is
trained with `repro.train.ntp.train_causal_lm`, whose loss covers the comment tokens, for NTP's step
budget split over the rounds. With a penalty so large that no thought is ever taken, the infused
corpus is the raw corpus and RA3 is NTP.

Under several processes (torchrun) every rank holds a full replica and the work is sharded: in an
E-step step each rank rolls out, scores and back-propagates its share of the step's snippets (whole
groups, so advantages stay local), the loss is normalised by the whole step's counts and gradients are
summed across ranks, so every replica takes the single-process update; the infusion gives each rank
every `world`-th batch, each rank writes its shard and rank 0 merges them in snippet order. Every
row's random generator is drawn from the round's generator for the whole step or corpus, on every
rank, so the thoughts do not depend on the number of processes (up to floating-point ties).

When the M-step trains under DeepSpeed (the paper scale's ZeRO-3), so does the E-step's update, on an engine
of its own made and freed within each E-step (`_zero_estep`): no rank then holds a full fp32 replica with
its Adam moments, only a plain copy of the weights for the rollouts and scoring.
tests/pipeline/test_deepspeed_em.py rehearses it on 2 CPU processes against the replica path.
"""

import contextlib
import copy
import dataclasses
import functools
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from repro.core import ranks, runs
from repro.core.files import atomic_write
from repro.core.scale import RA3Config, TrainConfig
from repro.train import precision
from repro.train.ntp import OPTIMIZER_STATE, count_tokens, train_causal_lm
from repro.train.ra3.rollout import rollout, row_generators
from repro.train.ra3.scoring import Scored, returns_to_go, rewards, score_samples
from repro.train.ra3.thoughts import Infused, build_infused, comment_token_ids, segment_lines

log = logging.getLogger(__name__)

VLLM_ROWS_PER_CALL = 4096
"""Rows per vLLM rollout call when infusing: its lockstep rounds want thousands of requests in flight
(`rollout_batch_size` is sized for the transformers backend's one KV cache)."""


def _group_advantages(returns: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per boundary, the G samples' returns-to-go normalised by their mean and std (GRPO-style): the
    credit of the decision to think or act there."""
    stacked = torch.stack(returns)
    mean, std = stacked.mean(0, keepdim=True), stacked.std(0, keepdim=True, unbiased=False)
    return list((stacked - mean) / (std + 1e-6))


def _content_advantages(returns: list[torch.Tensor], samples: list[Infused]) -> list[dict[int, torch.Tensor]]:
    """Per boundary, the credit of what was thought there: a thinking sample's return-to-go against the
    other samples of its group that thought at the same boundary (normalised among them), so a good
    thought is preferred to a worse one rather than to acting. Needs two thinkers at the boundary."""
    out: list[dict[int, torch.Tensor]] = [{} for _ in samples]
    for k in {k for sample in samples for k in sample.thoughts}:
        thinkers = [i for i, sample in enumerate(samples) if k in sample.thoughts]
        if len(thinkers) < 2:
            continue
        values = torch.stack([returns[i][k] for i in thinkers])
        normalised = (values - values.mean()) / (values.std(unbiased=False) + 1e-6)
        for i, value in zip(thinkers, normalised, strict=True):
            out[i][k] = value
    return out


def _step_counts(batch: list[tuple[Infused, Scored, torch.Tensor]], references: list[dict[int, str]] | None) -> dict:
    """The sums and counts an E-step step's metrics are made of, over some rows (a rank's share)."""
    lengths = [scored.thought_tokens[k] for sample, scored, _ in batch for k in sample.thoughts
               if k in scored.thought_tokens]
    counts = {
        "rows": len(batch),
        "decisions": sum(len(scored.action_logp) for _, scored, _ in batch),
        "thoughts": sum(len(sample.thoughts) for sample, _, _ in batch),
        "thought_tokens": sum(lengths), "measured_thoughts": len(lengths),
        "lines": sum(len(scored.line_logp) for _, scored, _ in batch),
        "reward": sum(float(r.sum()) for _, _, r in batch),
        "expert_logp": sum(float(scored.line_logp.sum()) for _, scored, _ in batch),
    }
    if references is not None:
        counts.update(_thought_counts(batch, references))
    return counts


def _step_metrics(counts: dict) -> dict:
    """What an E-step step shows, from the whole step's counts. `think_rate` is the share of decision
    points that needed a full rollout (a generated thought: the paper's "steps needing a full rollout").
    With reference thoughts (the tiny world's true intents at block starts): `thought_accuracy`, the
    share of thoughts that equal the reference at their boundary, and `reference_recall`, the share of
    reference boundaries where a thought was taken."""
    thoughts = counts["thoughts"]
    metrics = {
        "mean_reward": counts["reward"] / counts["rows"],
        "elbo": counts["reward"] / counts["rows"],
        "expert_logp": counts["expert_logp"] / counts["rows"],
        "think_rate": thoughts / max(1, counts["decisions"]),
        "thought_tokens": counts["thought_tokens"] / max(1, counts["measured_thoughts"]),
        "lines_per_thought": counts["lines"] / thoughts if thoughts else None,
    }
    if "right" in counts:
        metrics["thought_accuracy"] = counts["right"] / thoughts if thoughts else None
        metrics["reference_recall"] = counts["covered"] / max(1, counts["reference_blocks"])
    return metrics


def _thought_counts(batch, references: list[dict[int, str]]) -> dict:
    return {"right": sum(_same(sample.thoughts[k], ref.get(k))
                         for (sample, _, _), ref in zip(batch, references, strict=True) for k in sample.thoughts),
            "covered": sum(k in sample.thoughts for (sample, _, _), ref in zip(batch, references, strict=True)
                           for k in ref),
            "reference_blocks": sum(len(ref) for ref in references)}


def thought_match(batch, references: list[dict[int, str]]) -> dict:
    """Thoughts against reference thoughts (boundary -> text) of the same rows."""
    counts = _thought_counts(batch, references)
    total = sum(len(sample.thoughts) for sample, _, _ in batch)
    return {"thought_accuracy": counts["right"] / total if total else None,
            "reference_recall": counts["covered"] / max(1, counts["reference_blocks"])}


def _summed(counts: dict, device) -> dict:
    """`counts` summed over the ranks (as they are in a single process)."""
    if ranks.world_size() == 1:
        return counts
    keys = sorted(counts)
    values = _all_reduce(torch.tensor([float(counts[k]) for k in keys], dtype=torch.float64, device=device))
    return dict(zip(keys, values.tolist(), strict=True))


def _all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over the run's processes in place (gloo on CPUs, NCCL on GPUs: accelerate's group)."""
    from accelerate import PartialState

    PartialState(cpu=not torch.cuda.is_available())  # joins the process group if nothing has yet
    torch.distributed.all_reduce(tensor)
    return tensor


def _shard(n: int) -> list[int]:
    """This rank's indices of n items (every world-th, from its rank)."""
    return list(range(ranks.rank(), n, ranks.world_size()))


def _same(thought: str, reference: str | None) -> bool:
    return reference is not None and " ".join(thought.split()) == " ".join(reference.split())


def _rollout(model, engine, tokenizer, texts, segments, cfg: RA3Config, comment_ids, generators,
             greedy_thoughts: bool = False, stats: dict | None = None) -> list[dict[int, str]]:
    """Thought sets from the configured backend: the model itself, or the vLLM `engine` when given."""
    if engine is None:
        return rollout(model, tokenizer, texts, segments, cfg, comment_ids, generators, greedy_thoughts, stats)
    from repro.train.ra3 import vllm_rollout

    return vllm_rollout.rollout(engine, tokenizer, texts, segments, cfg, comment_ids, generators, greedy_thoughts,
                                stats)


def _push(engine, model) -> None:
    if engine is not None:
        from repro.train.ra3 import vllm_rollout

        vllm_rollout.push_weights(engine, model)


def estep(model, reference, tokenizer, snippets: Sequence[str], cfg: RA3Config, comment_ids: torch.Tensor,
          generator: torch.Generator, on_step=None, reference_thoughts: Sequence[dict[int, str]] | None = None,
          autocast: bool = False, engine=None, deepspeed: TrainConfig | None = None) -> list[dict[str, float]]:
    """`cfg.estep_steps` policy-gradient steps on the thought policy; returns per-step metrics (of the
    whole step, on every rank). `autocast`: rollouts, scoring and the policy loss's forward in bf16
    autocast (fp32 master weights stay). Under several processes each rank takes its share of a step's
    snippets (see the module docstring). With a vLLM `engine` (holding the model's current weights) it
    samples the rollouts and receives the weights after every update. With `deepspeed` (the M-step's
    TrainConfig, naming a DeepSpeed JSON) the update runs on a ZeRO engine of its own (`_zero_estep`)."""
    if deepspeed is not None and deepspeed.deepspeed_config:
        return _zero_estep(model, reference, tokenizer, snippets, cfg, comment_ids, generator, on_step,
                           reference_thoughts, autocast, engine, deepspeed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.estep_lr, weight_decay=0.0)
    device = next(model.parameters()).device
    segmented = [segment_lines(text) for text in snippets]
    history = []
    for step in range(cfg.estep_steps):
        model.eval()
        chosen, rows, batch, decision_adv, content_adv, old, cost = _step_batch(
            model, engine, tokenizer, snippets, segmented, cfg, comment_ids, generator, autocast, device)
        model.train()
        # Terms are averaged over the whole step's batch (all ranks); micro-batches only bound memory
        # (gradients accumulate), and ranks' gradients are summed, so the update is the whole batch's.
        n_terms, n_rows = _step_sizes(batch, content_adv, cfg, device)
        for _ in range(cfg.ppo_epochs):
            optimizer.zero_grad(set_to_none=True)
            loss = torch.zeros((), device=device)
            for start in range(0, len(batch), cfg.policy_micro_batch):
                part = slice(start, start + cfg.policy_micro_batch)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    terms, nll = _policy_terms(model, reference, tokenizer, batch[part], decision_adv[part],
                                               content_adv[part], old[part], cfg, comment_ids)
                part_loss = terms / max(1, n_terms) + cfg.expert_lm_weight * nll / n_rows
                part_loss.backward()
                loss += part_loss.detach()
            if ranks.world_size() > 1:
                for parameter in (p for p in model.parameters() if p.requires_grad):
                    if parameter.grad is None:  # a rank whose rows never reached a parameter adds zeros
                        parameter.grad = torch.zeros_like(parameter)
                    _all_reduce(parameter.grad)
                _all_reduce(loss)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            _push(engine, model)
        history.append(_record(step, batch, chosen, rows, cost, loss, cfg, reference_thoughts, device, on_step))
    # No gradient outlives the E-step: the M-step's first backward would add the last one in, and it holds
    # a model's worth of memory through the infusion.
    optimizer.zero_grad(set_to_none=True)
    return history


def _step_batch(model, engine, tokenizer, snippets, segmented, cfg: RA3Config, comment_ids, generator,
                autocast: bool, device):
    """One E-step step's rollouts and their scores from `model` (this rank's share of the step's snippets):
    the chosen snippets, this rank's rows, (sample, scored, rewards) per row, the decision and content
    advantages, the old log-probabilities of the surrogate, and the rollouts' cost."""
    chosen = torch.randperm(len(snippets), generator=generator)[: cfg.snippets_per_step].tolist()
    generators = row_generators(generator, len(chosen) * cfg.group_size, device)  # the whole step's, every rank
    mine = _shard(len(chosen))
    rows = [n * cfg.group_size + g for n in mine for g in range(cfg.group_size)]
    texts = [snippets[chosen[r // cfg.group_size]] for r in rows]
    segments = [segmented[chosen[r // cfg.group_size]] for r in rows]
    cost: dict = {}
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        thought_sets = _rollout(model, engine, tokenizer, texts, segments, cfg, comment_ids,
                                [generators[r] for r in rows], stats=cost)
        samples = [build_infused(t, s, th) for t, s, th in zip(texts, segments, thought_sets, strict=True)]
        with torch.no_grad():
            scored = score_samples(model, tokenizer, samples, [len(s) for s in segments], comment_ids,
                                   cfg.temperature)
    rewards_ = [rewards(s, x, cfg.penalty) for s, x in zip(scored, samples, strict=True)]
    decision_adv, content_adv = [], []
    for g in range(0, len(samples), cfg.group_size):  # credit is relative within a snippet's group
        returns = [returns_to_go(r) for r in rewards_[g: g + cfg.group_size]]
        decision_adv += _group_advantages(returns)
        content_adv += _content_advantages(returns, samples[g: g + cfg.group_size])
    batch = list(zip(samples, scored, rewards_, strict=True))
    old = [({k: v.detach() for k, v in s.decision_logp.items()},
            {k: (s.action_logp[k] - s.decision_logp[k]).detach() for k in s.thought_tokens}) for s in scored]
    return chosen, rows, batch, decision_adv, content_adv, old, cost


def _step_sizes(batch, content_adv, cfg: RA3Config, device) -> tuple[int, int]:
    """The whole step's (all ranks') surrogate terms and rows, which normalise the loss."""
    n_terms = sum(len(s.decision_logp) * (2 if cfg.kl_weight > 0 else 1) + len(c)
                  for (_, s, _), c in zip(batch, content_adv, strict=True))
    totals = _summed({"terms": n_terms, "rows": len(batch)}, device)
    return int(totals["terms"]), int(totals["rows"])


def _record(step: int, batch, chosen, rows, cost: dict, loss: torch.Tensor, cfg: RA3Config, reference_thoughts,
            device, on_step) -> dict:
    """The step's metrics over all ranks, handed to `on_step`."""
    references = [reference_thoughts[chosen[r // cfg.group_size]] for r in rows] \
        if reference_thoughts is not None else None
    counts = _summed(_step_counts(batch, references) | {"slots": cost["slots"], "tokens": cost["tokens"]}, device)
    metrics = {"step": step + 1, **_step_metrics(counts), "loss": float(loss.detach()),
               "slots_per_token": counts["slots"] / max(1, counts["tokens"])}
    if on_step is not None:
        on_step(metrics)
    return metrics


def _zero_estep(model, reference, tokenizer, snippets: Sequence[str], cfg: RA3Config, comment_ids, generator,
                on_step, reference_thoughts, autocast: bool, engine, mstep: TrainConfig) -> list[dict[str, float]]:
    """`estep` with the update on a DeepSpeed engine of its own (the M-step's ZeRO JSON, the E-step's AdamW at
    `estep_lr` without weight decay, clipping at 1.0), so no rank holds the whole model's fp32 weights and Adam
    moments (16 bytes a parameter: ~128 GB for Llama-3.1-8B).

    Rollouts and no-grad scoring run many small forwards: on the partitioned model each would all-gather
    every layer, so they use a plain copy of the weights (`zero.plain_copy`), refreshed from the fp32
    partitions once after every update (`zero.copy_fp32_into`, a collective). The copy is bf16 when the
    E-step runs under bf16 autocast (on GPUs: autocast feeds bf16 weights to the matmuls anyway, and it
    halves the copy: 16 GB for 8B), else fp32 (on CPUs: the rollouts are then those of the replica path).
    Only the policy loss's forward and backward go through the engine, which reduces the gradients. That
    forward calls the decoder and the output head apart, the head once per chunk of positions
    (`scoring.next_token_terms`), as many chunks as the rank's rows make, a different number on each rank,
    which ZeRO-3's per-module hooks refuse (and their gathers, one collective per call, would hang). So the
    engine hooks the model as one leaf (`zero.whole_model_leaf`) whose forward is the micro-batch's loss
    (`_zero_part_loss`): its whole weights are gathered by an update's first forward and kept until its step
    (`zero.hold_until_step`: 2 bytes a parameter under bf16, the layer-by-layer gathering given up for a
    fixed number of collectives), its gradients are reduced after each backward (`zero.reduce_gradients`),
    and every rank runs as many micro-batches as the rank with the most rows (an empty one backs a zero
    loss). The model comes back as a plain fp32 module holding the trained weights on every rank, the engine
    freed (`repro.train.zero`)."""
    from repro.train import zero

    if reference is not None or cfg.kl_weight > 0:
        raise ValueError(f"ra3.kl_weight={cfg.kl_weight}: the KL reference (a copy of the model before the E-step) "
                         "is not supported when the E-step trains under DeepSpeed (ntp.deepspeed_config); set "
                         "ra3.kl_weight: 0")
    world = ranks.world_size()
    micro = cfg.policy_micro_batch
    # Every rank runs the micro-batches of the largest share (rank 0's: shards are every world-th snippet).
    n_micro = math.ceil(len(range(0, cfg.snippets_per_step, world)) * cfg.group_size / micro)
    device = next(model.parameters()).device  # where the M-step gave the model back (accelerate's device)
    sampler = zero.plain_copy(model, torch.bfloat16 if autocast else torch.float32).eval()
    train_cfg = dataclasses.replace(mstep, lr=cfg.estep_lr, weight_decay=0.0, max_grad_norm=1.0, grad_accum_steps=1,
                                    batch_size=micro)
    segmented = [segment_lines(text) for text in snippets]
    history = []
    with zero.accelerator(train_cfg, overrides={"gradient_clipping": 1.0, "gradient_accumulation_steps": 1,
                                                "train_micro_batch_size_per_gpu": micro}) as accelerator:
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.estep_lr, weight_decay=0.0)
        before = zero.module_state(model)
        zero.whole_model_leaf(model)  # before the engine hooks the modules
        # The engine's forward then runs whatever it is given, as the whole model's forward (`give_back`
        # removes this attribute too).
        model.forward = lambda compute: compute()
        trainer, _ = accelerator.prepare(model, optimizer)
        zero.leaf_hooks_off(trainer)
        zero.hold_until_step(model)
        for step in range(cfg.estep_steps):
            chosen, rows, batch, decision_adv, content_adv, old, cost = _step_batch(
                sampler, engine, tokenizer, snippets, segmented, cfg, comment_ids, generator, autocast, device)
            n_terms, n_rows = _step_sizes(batch, content_adv, cfg, device)
            trainer.train()
            for _ in range(cfg.ppo_epochs):
                loss = torch.zeros((), device=device)
                for m in range(n_micro):
                    part = slice(m * micro, (m + 1) * micro)
                    trainer.set_gradient_accumulation_boundary(m == n_micro - 1)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                        part_loss = trainer(functools.partial(
                            _zero_part_loss, model, tokenizer, batch[part], decision_adv[part], content_adv[part],
                            old[part], cfg, comment_ids, n_terms, n_rows, device))
                    # DeepSpeed averages the ranks' gradients; the replica path sums them (the loss is
                    # normalised by the whole step's counts), hence the factor.
                    trainer.backward(part_loss * world)
                    zero.reduce_gradients(trainer, model)
                    loss += part_loss.detach()
                trainer.step()
                if world > 1:
                    _all_reduce(loss)
                zero.copy_fp32_into(model, sampler)
                _push(engine, sampler)
            history.append(_record(step, batch, chosen, rows, cost, loss, cfg, reference_thoughts, device, on_step))
        del trainer, optimizer, sampler
        weights = zero.gather_fp32(model)
    zero.give_back(model, weights, before, device)
    return history


def _zero_part_loss(model, tokenizer, batch, decision_adv, content_adv, old, cfg: RA3Config, comment_ids,
                    n_terms: int, n_rows: int, device) -> torch.Tensor:
    """One micro-batch's share of the E-step loss, run as the forward of the whole model under ZeRO-3
    (`_zero_estep`): its weights are whole here, whatever the decoder and head are called on."""
    if not batch:  # a rank with fewer rows still joins the collectives, with no gradient
        ids = torch.tensor([[tokenizer.eos_token_id]], device=device)
        return model.get_output_embeddings()(model.get_decoder()(input_ids=ids).last_hidden_state).float().sum() * 0.0
    terms, nll = _policy_terms(model, None, tokenizer, batch, decision_adv, content_adv, old, cfg, comment_ids)
    return terms / max(1, n_terms) + cfg.expert_lm_weight * nll / n_rows


def _clipped(logp: torch.Tensor, old: torch.Tensor, advantage: torch.Tensor, clip: float) -> torch.Tensor:
    ratio = torch.exp(logp - old)
    return -torch.min(ratio * advantage, ratio.clamp(1 - clip, 1 + clip) * advantage)


def _policy_terms(model, reference, tokenizer, batch, decision_adv, content_adv, old, cfg: RA3Config,
                  comment_ids) -> tuple[torch.Tensor, torch.Tensor]:
    """Of some rows of a batch: the sum of PPO's clipped surrogate on each decision (credited against
    the whole group) and on each thought's content (credited against the group's other thoughts at that
    boundary), plus the k3 KL to the pre-E-step model on each action taken (`kl_weight`); and the sum
    over rows of the expert tokens' mean negative log-likelihood (the `expert_lm_weight` anchor)."""
    samples = [sample for sample, _, _ in batch]
    n_segments = [len(scored.line_logp) for _, scored, _ in batch]
    new = score_samples(model, tokenizer, samples, n_segments, comment_ids, cfg.temperature)
    if cfg.kl_weight > 0:
        with torch.no_grad():
            ref = score_samples(reference, tokenizer, samples, n_segments, comment_ids, cfg.temperature)
    terms = []
    for i, scored in enumerate(new):
        old_decision, old_content = old[i]
        for k, logp in scored.decision_logp.items():
            terms.append(_clipped(logp, old_decision[k], decision_adv[i][k], cfg.clip_eps))
            if k in content_adv[i]:
                content = scored.action_logp[k] - logp
                terms.append(_clipped(content, old_content[k], content_adv[i][k], cfg.clip_eps))
            if cfg.kl_weight > 0:  # k3 estimator of KL(q || q_ref) on the action taken
                log_ratio = ref[i].action_logp[k] - scored.action_logp[k]
                terms.append(cfg.kl_weight * (log_ratio.exp() - 1 - log_ratio))
    device = new[0].line_logp.device
    nll = torch.stack([-scored.line_logp.sum() / max(1, scored.expert_tokens) for scored in new]).sum()
    return (torch.stack(terms).sum() if terms else torch.zeros((), device=device)), nll


def infuse_corpus(model, tokenizer, snippets: Sequence[str], cfg: RA3Config, comment_ids: torch.Tensor,
                  generator: torch.Generator, autocast: bool = False, sharded: bool = True,
                  engine=None) -> dict[int, Infused]:
    """Each snippet with one thought set from the current policy (none at all when c is infinite: the
    limit alpha -> 1 where no new latent is ever started, and RA3 is NTP), `cfg.rollout_batch_size`
    snippets per batched rollout. Which thought set is `cfg.infusion`: one sample (`sample`), one
    sample of where to think with the most likely thoughts (`greedy_thoughts`), or the best of
    `group_size` samples by the E-step's reward (`best_of_group`, group_size times the rollouts).
    Returns snippet index -> infused sample for this rank's batches (every batch in one process, or
    with `sharded=False`). A vLLM `engine` (holding the model's weights) samples, if given."""
    segmented = [segment_lines(text) for text in snippets]
    if math.isinf(cfg.penalty):
        return {i: build_infused(snippets[i], segmented[i], {})
                for i in (_shard(len(snippets)) if sharded else range(len(snippets)))}
    draws = cfg.group_size if cfg.infusion == "best_of_group" else 1
    device = next(model.parameters()).device
    generators = row_generators(generator, len(snippets) * draws, device)  # the whole corpus's, on every rank
    order = sorted(range(len(snippets)), key=lambda i: len(snippets[i]))  # similar lengths batch with little padding
    size = cfg.rollout_batch_size if engine is None else VLLM_ROWS_PER_CALL
    starts = list(range(0, len(order), size))
    out: dict[int, Infused] = {}
    mine = [starts[b] for b in _shard(len(starts))] if sharded else starts
    with tqdm(total=sum(len(order[s: s + size]) for s in mine), desc="infusing", unit="snippet",
              leave=False, disable=not ranks.is_main()) as progress, \
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        for start in mine:
            batch = order[start: start + size]
            rows = [(i, d) for i in batch for d in range(draws)]
            thought_sets = _rollout(model, engine, tokenizer, [snippets[i] for i, _ in rows],
                                    [segmented[i] for i, _ in rows], cfg, comment_ids,
                                    [generators[i * draws + d] for i, d in rows],
                                    greedy_thoughts=cfg.infusion == "greedy_thoughts")
            candidates = [build_infused(snippets[i], segmented[i], th) for (i, _), th in zip(rows, thought_sets,
                                                                                            strict=True)]
            if draws > 1:
                with torch.no_grad():
                    scored = score_samples(model, tokenizer, candidates, [len(segmented[i]) for i, _ in rows],
                                           comment_ids, cfg.temperature)
                totals = [float(rewards(s, x, cfg.penalty).sum()) for s, x in zip(scored, candidates, strict=True)]
                for n, i in enumerate(batch):
                    best = max(range(draws), key=lambda d: totals[n * draws + d])
                    out[i] = candidates[n * draws + best]
            else:
                for i, candidate in zip(batch, candidates, strict=True):
                    out[i] = candidate
            progress.update(len(batch))
    return out


def _infused_line(x: Infused) -> str:
    return json.dumps({"text": x.text, "thoughts": {str(k): v for k, v in x.thoughts.items()}}) + "\n"


def write_infused(round_dir: Path, infused: dict[int, Infused], n: int) -> list[dict]:
    """The round's infused corpus in snippet order, `round_dir/infused.jsonl`, written once: in one
    process directly; under several, each rank writes its shard (`infused-rank<r>.jsonl`, each line with
    its snippet index), rank 0 merges them once all are on disk, and every rank reads the result.
    Returns the rows ({"text", "thoughts"}) as every rank sees them."""
    path = round_dir / "infused.jsonl"
    if ranks.world_size() == 1:
        lines = [_infused_line(infused[i]) for i in range(n)]
        atomic_write(path, "".join(lines))
        return [json.loads(line) for line in lines]
    from repro.eval.barrier import barrier

    shard = round_dir / f"infused-rank{ranks.rank()}.jsonl"
    atomic_write(shard, "".join(json.dumps({"index": i}) + "\t" + _infused_line(x) for i, x in sorted(infused.items())))
    barrier()
    if ranks.is_main():
        lines: dict[int, str] = {}
        for r in range(ranks.world_size()):
            part = round_dir / f"infused-rank{r}.jsonl"
            for line in open(part):
                head, row = line.split("\t", 1)
                lines[json.loads(head)["index"]] = row
        missing = [i for i in range(n) if i not in lines]
        if missing:
            raise RuntimeError(f"{round_dir}: the ranks' shards lack {len(missing)} snippets (first: {missing[:5]})")
        atomic_write(path, "".join(lines[i] for i in range(n)))
        for r in range(ranks.world_size()):
            (round_dir / f"infused-rank{r}.jsonl").unlink()
    barrier()
    return [json.loads(line) for line in open(path)]


@contextlib.contextmanager
def _engine(cfg: RA3Config, model_path: str | None, tokenizer, snippets: Sequence[str]):
    """The vLLM rollout engine the EM loop shares across rounds, or None for the transformers backend."""
    if cfg.rollout_backend != "vllm":
        yield None
        return
    if model_path is None:
        raise ValueError("the vLLM rollout backend needs the model's folder to start its engine from")
    from repro.train.ra3 import vllm_rollout

    with vllm_rollout.rollout_engine(model_path, tokenizer, snippets, cfg) as engine:
        yield engine


def em_loop(model, tokenizer, snippets: Sequence[str], cfg: RA3Config, mstep: TrainConfig, run_dir,
            on_estep=None, reference_thoughts: Sequence[dict[int, str]] | None = None,
            model_path: str | None = None) -> list[dict]:
    """K rounds of E-step (thought policy) then M-step (NTP on the infused corpus), resumable by round.

    The M-step trains on as many expert tokens as NTP (`mstep.max_steps` steps of raw code): one
    learning-rate schedule of ceil(max_steps x infused/raw tokens of round 0's corpus) steps, split
    evenly over the rounds, with the optimizer's state carried from round to round. Returns one
    summary per round. `reference_thoughts` (per snippet, boundary -> text; the tiny world's true
    intents) only feed the diagnostics. With `cfg.rollout_backend: vllm` one engine, started from
    `model_path` (the model's folder), samples every rollout and gets the weights at each round's start
    and after every E-step update.
    """
    from transformers import AutoModelForCausalLM

    run_dir = Path(run_dir)
    device = next(model.parameters()).device
    comment_ids = comment_token_ids(tokenizer)
    if tokenizer.pad_token is None:  # hub base models often have none; batched scoring pads on the right
        tokenizer.pad_token = tokenizer.eos_token
    autocast = precision.effective(mstep).mixed_precision == "bf16" and device.type == "cuda"
    summaries, schedule = [], None
    with _engine(cfg, model_path, tokenizer, snippets) as engine:
        for r in range(cfg.rounds):
            round_dir = run_dir / f"round-{r}"
            if runs.is_done(round_dir):
                model = AutoModelForCausalLM.from_pretrained(round_dir / "model", dtype=torch.float32).to(device)
                summaries.append(runs.read_done(round_dir))
                schedule = summaries[-1]["schedule"]
                continue
            round_dir.mkdir(parents=True, exist_ok=True)
            generator = torch.Generator().manual_seed(cfg.seed * 1009 + r)  # per round, so a resumed round repeats
            history = []
            if not math.isinf(cfg.penalty):
                if mstep.gradient_checkpointing:  # the M-step's memory settings hold for the E-step's backward too
                    model.gradient_checkpointing_enable()
                # Under DeepSpeed `estep` refuses a reference (a copy would be a whole replica again).
                reference = copy.deepcopy(model).eval() if cfg.kl_weight > 0 and not mstep.deepspeed_config \
                    else None
                _push(engine, model)  # the weights this round starts from (the last M-step's)
                history = estep(model, reference, tokenizer, snippets, cfg, comment_ids, generator, on_estep,
                                reference_thoughts, autocast=autocast, engine=engine, deepspeed=mstep)
            model.eval()
            infused = write_infused(round_dir, infuse_corpus(model, tokenizer, snippets, cfg, comment_ids, generator,
                                                             autocast, engine=engine), len(snippets))
            if ranks.is_main():
                atomic_write(round_dir / "estep.jsonl", "".join(json.dumps(h) + "\n" for h in history))
            if schedule is None:  # fixed once, from round 0's thought density
                ratio = count_tokens([x["text"] for x in infused], tokenizer) / count_tokens(snippets, tokenizer)
                schedule = {"steps": math.ceil(mstep.max_steps * ratio), "infused_to_raw_tokens": ratio}
            window = (r * schedule["steps"] // cfg.rounds, (r + 1) * schedule["steps"] // cfg.rounds)
            previous = run_dir / f"round-{r - 1}" / OPTIMIZER_STATE if r else None
            summary = train_causal_lm(model, tokenizer, [x["text"] for x in infused],
                                      dataclasses.replace(mstep, max_steps=schedule["steps"]), round_dir,
                                      desc=f"M-step {r + 1}/{cfg.rounds}", steps=window, optimizer_state=previous)
            summary = {"round": r, "mstep": summary, "estep": history, "schedule": schedule, "window": list(window),
                       "thoughts_per_snippet": sum(len(x["thoughts"]) for x in infused) / len(infused)}
            runs.mark_done(round_dir, summary)
            summaries.append(summary)
    return summaries
