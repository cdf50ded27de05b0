"""Teacher-forced terms of infused snippets: the E-step's rewards and the policy's log-probabilities.

r_t = log pi(expert line t | prefix with the inserted thoughts) - c * 1[think at t], all lines of a
batch of infused texts in one forward pass. The action log-probability at a boundary is log q(act),
or log q(think) plus the thought's token log-probabilities (at the E-step temperature). The ELBO
estimate is the total reward: log-likelihood of the expert lines minus c per thought.
`naive_line_logp` re-encodes every prefix, as the reference for tests and the throughput benchmark.
"""

import dataclasses
from collections.abc import Sequence

import torch
import torch.utils.checkpoint

from repro.train.ra3.thoughts import Infused

HEAD_CHUNK_ELEMENTS = 2**26
"""Logits computed at once by `next_token_terms`: positions per chunk = this / vocabulary size (64M
floats, 256 MB in fp32), so memory does not grow with rows x length x vocabulary (29 GB for 32 rows of
1,500 tokens at Qwen's 152k vocabulary)."""


@dataclasses.dataclass
class Scored:
    """Teacher-forced terms of one sample (tensors carry gradients when asked)."""
    line_logp: torch.Tensor
    """log pi of each expert segment's tokens at temperature 1 (the reward's likelihood term)."""
    action_logp: dict[int, torch.Tensor]
    """Boundary k -> log q(decision) (+ the thought's token log-probs when it thinks), at the E-step
    temperature: the log-probability of the whole action taken at k."""
    decision_logp: dict[int, torch.Tensor]
    """Boundary k -> log q(think) when it thinks, log q(act) when it acts: the decision alone (the
    thought's content is action_logp - decision_logp)."""
    thought_tokens: dict[int, int]
    expert_tokens: int
    """Tokens of the expert segments (the denominator of a per-token expert likelihood)."""


def next_token_terms(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, comment_ids: torch.Tensor,
                     temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every position j of every row, the terms of the token at j + 1: its log-prob at temperature
    1, at `temperature`, and log q(think) at `temperature` (the comment tokens' total probability).
    Each is rows x (length - 1). The LM head runs on chunks of positions (`HEAD_CHUNK_ELEMENTS`), under
    activation checkpointing when gradients are on, so only these three numbers per position are kept."""
    hidden = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    head = model.get_output_embeddings()
    rows, length, width = hidden.shape
    states = hidden[:, :-1].reshape(-1, width)
    targets = input_ids[:, 1:].reshape(-1)
    comment_ids = comment_ids.to(input_ids.device)

    def terms(chunk: torch.Tensor, chunk_targets: torch.Tensor) -> torch.Tensor:
        logits = head(chunk).float()
        scaled = logits / temperature
        lse_one, lse_temp = torch.logsumexp(logits, -1), torch.logsumexp(scaled, -1)
        target = logits.gather(1, chunk_targets[:, None])[:, 0]
        think = torch.logsumexp(scaled[:, comment_ids], -1) - lse_temp
        return torch.stack([target - lse_one, target / temperature - lse_temp, think])

    step = max(1, HEAD_CHUNK_ELEMENTS // head.weight.shape[0])
    parts = []
    for start in range(0, states.shape[0], step):
        args = (states[start: start + step], targets[start: start + step])
        parts.append(torch.utils.checkpoint.checkpoint(terms, *args, use_reentrant=False)
                     if torch.is_grad_enabled() else terms(*args))
    one, temp, think = torch.cat(parts, 1).view(3, rows, length - 1)
    return one, temp, think


def score_samples(model, tokenizer, samples: Sequence[Infused], n_segments: Sequence[int],
                  comment_ids: torch.Tensor, temperature: float) -> list[Scored]:
    """One batched teacher-forced pass over the infused texts (right-padded), on the model's device."""
    encoded = tokenizer([s.text for s in samples], return_offsets_mapping=True, add_special_tokens=False,
                        padding=True, return_tensors="pt")
    device = next(model.parameters()).device
    ids, mask = encoded["input_ids"].to(device), encoded["attention_mask"].to(device)
    one, temp, think = next_token_terms(model, ids, mask, comment_ids, temperature)
    return [_terms(sample, encoded["offset_mapping"][i], int(encoded["attention_mask"][i].sum()), one[i], temp[i],
                   think[i], n_segments[i])
            for i, sample in enumerate(samples)]


def _terms(sample: Infused, offsets, length: int, token_one, token_temp, think, n_segments) -> Scored:
    """Token j (j >= 1) is predicted at position j - 1: `token_*[j - 1]`; token 0 has no prediction."""
    offsets = offsets[:length].tolist()
    owner = torch.tensor([sample.owner[end - 1] for _, end in offsets], device=token_one.device)
    expert = owner[1:] >= 0
    line_logp = token_one.new_zeros(n_segments).index_add(0, owner[1:][expert], token_one[: length - 1][expert])
    starts = {start: j for j, (start, _) in enumerate(offsets)}
    action_logp, decision_logp, thought_tokens = {}, {}, {}
    owners = owner.tolist()
    for k, char in sample.decisions.items():
        j = starts.get(char)
        if j is None or j == 0:
            continue  # no token starts exactly at this boundary: not a decision point for this tokenizer
        if k in sample.thoughts:
            end = j
            while end < length and owners[end] == -1:
                end += 1
            # log q(think) + log q(first token | think) + the rest = the tokens' own log-probs.
            action_logp[k] = token_temp[j - 1: end - 1].sum()
            decision_logp[k] = think[j - 1]
            thought_tokens[k] = end - j
        else:
            action_logp[k] = decision_logp[k] = torch.log1p(-think[j - 1].exp().clamp(max=1 - 1e-6))
    return Scored(line_logp, action_logp, decision_logp, thought_tokens, int(expert.sum()))


def rewards(scored: Scored, sample: Infused, penalty: float) -> torch.Tensor:
    """r_t = log pi(expert line t | infused prefix) - c * 1[think at t]."""
    r = scored.line_logp.detach().clone()
    for k in sample.thoughts:
        r[k] -= penalty
    return r


def returns_to_go(r: torch.Tensor) -> torch.Tensor:
    return torch.flip(torch.cumsum(torch.flip(r, [0]), 0), [0])


@torch.no_grad()
def naive_line_logp(model, tokenizer, sample: Infused, n_segments: int) -> torch.Tensor:
    """log pi of each expert segment, re-encoding the prefix once per segment (the reference for
    `score_samples`' single teacher-forced pass)."""
    enc = tokenizer(sample.text, return_offsets_mapping=True, add_special_tokens=False)
    ids = enc["input_ids"]
    owner = [sample.owner[end - 1] for _, end in enc["offset_mapping"]]
    device = next(model.parameters()).device
    out = torch.zeros(n_segments)
    for k in range(n_segments):
        tokens = [j for j in range(1, len(ids)) if owner[j] == k]
        if not tokens:
            continue
        prefix = torch.tensor([ids[: tokens[-1] + 1]], device=device)
        logp = torch.log_softmax(model(input_ids=prefix).logits[0].float(), -1).cpu()
        out[k] = sum(float(logp[j - 1, ids[j]]) for j in tokens)
    return out
