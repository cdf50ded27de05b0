"""RA3's EM loop: the E-step (self-supervised RL over thoughts) and the M-step (NTP on infused code).

E-step: a decision at boundary t is credited with its return-to-go sum_{t' >= t} r_t', normalised
within the G samples of the snippet (group-relative advantage, per boundary). The update is PPO's
clipped surrogate on the decision and thought log-probabilities, with an optional k3 KL penalty to
the model as it was before the E-step. Expert lines are never trained in the E-step.

M-step: the infused corpus (each expert snippet with thoughts from the final E-step policy) is
trained with `repro.train.ntp.train_causal_lm`, whose loss covers the comment tokens, for NTP's step
budget split over the rounds. With a penalty so large that no thought is ever taken, the infused
corpus is the raw corpus and RA3 is NTP.
"""

import copy
import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from repro.core import runs
from repro.core.files import atomic_write
from repro.core.scale import RA3Config
from repro.train.ntp import train_causal_lm
from repro.train.ra3.rollout import rollout, row_generators
from repro.train.ra3.scoring import Scored, returns_to_go, rewards, score_samples
from repro.train.ra3.thoughts import Infused, build_infused, comment_token_ids, segment_lines

log = logging.getLogger(__name__)


def _group_advantages(returns: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per boundary, the G samples' returns-to-go normalised by their mean and std (GRPO-style)."""
    stacked = torch.stack(returns)
    mean, std = stacked.mean(0, keepdim=True), stacked.std(0, keepdim=True, unbiased=False)
    return list((stacked - mean) / (std + 1e-6))


def _step_metrics(batch: list[tuple[Infused, Scored, torch.Tensor]]) -> dict[str, float]:
    """What an E-step step shows. `think_rate` is the share of decision points that needed a full
    rollout (a generated thought: the paper's "steps needing a full rollout"); `reprefill_rate` the
    share whose decision came from a prefill after an earlier thought (the cache-reuse cost)."""
    decisions = [k for _, scored, _ in batch for k in scored.action_logp]
    thoughts = [(sample, k) for sample, _, _ in batch for k in sample.thoughts]
    lengths = [scored.thought_tokens[k] for sample, scored, _ in batch for k in sample.thoughts
               if k in scored.thought_tokens]
    lines = sum(len(scored.line_logp) for _, scored, _ in batch)
    reprefilled = sum(1 for sample, scored, _ in batch if sample.thoughts
                      for k in scored.action_logp if k > min(sample.thoughts))
    totals = [float(r.sum()) for _, _, r in batch]
    return {
        "mean_reward": sum(totals) / len(batch),
        "elbo": sum(totals) / len(batch),
        "expert_logp": sum(float(scored.line_logp.sum()) for _, scored, _ in batch) / len(batch),
        "think_rate": len(thoughts) / max(1, len(decisions)),
        "thought_tokens": sum(lengths) / max(1, len(lengths)),
        "lines_per_thought": lines / len(thoughts) if thoughts else None,
        "reprefill_rate": reprefilled / max(1, len(decisions)),
    }


def estep(model, reference, tokenizer, snippets: Sequence[str], cfg: RA3Config, comment_ids: torch.Tensor,
          generator: torch.Generator, on_step=None) -> list[dict[str, float]]:
    """`cfg.estep_steps` policy-gradient steps on the thought policy; returns per-step metrics."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.estep_lr, weight_decay=0.0)
    segmented = [segment_lines(text) for text in snippets]
    history = []
    for step in range(cfg.estep_steps):
        chosen = torch.randperm(len(snippets), generator=generator)[: cfg.snippets_per_step].tolist()
        model.eval()
        advantages = []
        texts = [snippets[i] for i in chosen for _ in range(cfg.group_size)]
        segments = [segmented[i] for i in chosen for _ in range(cfg.group_size)]
        thought_sets = rollout(model, tokenizer, texts, segments, cfg, comment_ids,
                               row_generators(generator, len(texts)))
        samples = [build_infused(t, s, th) for t, s, th in zip(texts, segments, thought_sets, strict=True)]
        with torch.no_grad():
            scored = score_samples(model, tokenizer, samples, [len(s) for s in segments], comment_ids,
                                   cfg.temperature)
        rewards_ = [rewards(s, x, cfg.penalty) for s, x in zip(scored, samples, strict=True)]
        for g in range(0, len(samples), cfg.group_size):  # advantages are relative within a snippet's group
            advantages += _group_advantages([returns_to_go(r) for r in rewards_[g: g + cfg.group_size]])
        batch = list(zip(samples, scored, rewards_, strict=True))
        old = [{k: v.detach() for k, v in s.action_logp.items()} for s in scored]
        model.train()
        for _ in range(cfg.ppo_epochs):
            loss = _policy_loss(model, reference, tokenizer, batch, advantages, old, cfg, comment_ids)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        metrics = {"step": step + 1, **_step_metrics(batch), "loss": float(loss.detach())}
        history.append(metrics)
        if on_step is not None:
            on_step(metrics)
    return history


def _policy_loss(model, reference, tokenizer, batch, advantages, old, cfg: RA3Config, comment_ids) -> torch.Tensor:
    samples = [sample for sample, _, _ in batch]
    n_segments = [len(scored.line_logp) for _, scored, _ in batch]
    new = score_samples(model, tokenizer, samples, n_segments, comment_ids, cfg.temperature)
    if cfg.kl_weight > 0:
        with torch.no_grad():
            ref = score_samples(reference, tokenizer, samples, n_segments, comment_ids, cfg.temperature)
    terms = []
    for i, scored in enumerate(new):
        for k, logp in scored.action_logp.items():
            ratio = torch.exp(logp - old[i][k])
            advantage = advantages[i][k]
            term = -torch.min(ratio * advantage, ratio.clamp(1 - cfg.clip_eps, 1 + cfg.clip_eps) * advantage)
            if cfg.kl_weight > 0:  # k3 estimator of KL(q || q_ref) on the action taken
                log_ratio = ref[i].action_logp[k] - logp
                term = term + cfg.kl_weight * (log_ratio.exp() - 1 - log_ratio)
            terms.append(term)
    return torch.stack(terms).mean() if terms else torch.zeros((), requires_grad=True)


def infuse_corpus(model, tokenizer, snippets: Sequence[str], cfg: RA3Config, comment_ids: torch.Tensor,
                  generator: torch.Generator) -> list[Infused]:
    """Each snippet with one thought set from the current policy, `cfg.rollout_batch_size` snippets
    per batched rollout (none at all when c is infinite: the limit alpha -> 1 where no new latent is
    ever started, and RA3 is NTP)."""
    segmented = [segment_lines(text) for text in snippets]
    if math.isinf(cfg.penalty):
        return [build_infused(t, s, {}) for t, s in zip(snippets, segmented, strict=True)]
    generators = row_generators(generator, len(snippets))
    order = sorted(range(len(snippets)), key=lambda i: len(snippets[i]))  # similar lengths batch with little padding
    out: list[Infused | None] = [None] * len(snippets)
    with tqdm(total=len(snippets), desc="infusing", unit="snippet", leave=False) as progress:
        for start in range(0, len(order), cfg.rollout_batch_size):
            batch = order[start: start + cfg.rollout_batch_size]
            thought_sets = rollout(model, tokenizer, [snippets[i] for i in batch], [segmented[i] for i in batch], cfg,
                                   comment_ids, [generators[i] for i in batch])
            for i, thoughts in zip(batch, thought_sets, strict=True):
                out[i] = build_infused(snippets[i], segmented[i], thoughts)
            progress.update(len(batch))
    return out


def em_loop(model, tokenizer, snippets: Sequence[str], cfg: RA3Config, mstep, run_dir, on_estep=None) -> list[dict]:
    """K rounds of E-step (thought policy) then M-step (NTP on the infused corpus), resumable by round.

    The M-step budget is NTP's (`mstep.max_steps`) split evenly over the rounds, so RA3 and NTP see
    the same number of training tokens. Returns one summary per round.
    """
    from transformers import AutoModelForCausalLM

    run_dir = Path(run_dir)
    comment_ids = comment_token_ids(tokenizer)
    if tokenizer.pad_token is None:  # hub base models often have none; batched scoring pads on the right
        tokenizer.pad_token = tokenizer.eos_token
    summaries = []
    for r in range(cfg.rounds):
        round_dir = run_dir / f"round-{r}"
        if runs.is_done(round_dir):
            model = AutoModelForCausalLM.from_pretrained(round_dir / "model")
            summaries.append(runs.read_done(round_dir))
            continue
        round_dir.mkdir(parents=True, exist_ok=True)
        generator = torch.Generator().manual_seed(cfg.seed * 1009 + r)  # per round, so a resumed round repeats
        history = []
        if not math.isinf(cfg.penalty):
            reference = copy.deepcopy(model).eval() if cfg.kl_weight > 0 else None
            history = estep(model, reference, tokenizer, snippets, cfg, comment_ids, generator, on_estep)
        model.eval()
        infused = infuse_corpus(model, tokenizer, snippets, cfg, comment_ids, generator)
        atomic_write(round_dir / "estep.jsonl", "".join(json.dumps(h) + "\n" for h in history))
        atomic_write(round_dir / "infused.jsonl", "".join(
            json.dumps({"text": x.text, "thoughts": {str(k): v for k, v in x.thoughts.items()}}) + "\n"
            for x in infused))
        budget = dataclasses.replace(mstep, max_steps=max(1, mstep.max_steps // cfg.rounds))
        summary = train_causal_lm(model, tokenizer, [x.text for x in infused], budget, round_dir,
                                  desc=f"M-step {r + 1}/{cfg.rounds}")
        summary = {"round": r, "mstep": summary, "estep": history,
                   "thoughts_per_snippet": sum(len(x.thoughts) for x in infused) / len(infused)}
        runs.mark_done(round_dir, summary)
        summaries.append(summary)
    return summaries
