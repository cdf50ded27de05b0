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

from repro.train.ra3.thoughts import Infused


@dataclasses.dataclass
class Scored:
    """Teacher-forced terms of one sample (tensors carry gradients when asked)."""
    line_logp: torch.Tensor
    """log pi of each expert segment's tokens at temperature 1 (the reward's likelihood term)."""
    action_logp: dict[int, torch.Tensor]
    """Boundary k -> log q(decision) (+ the thought's token log-probs when it thinks), at the E-step
    temperature: the log-probability of the whole action taken at k."""
    thought_tokens: dict[int, int]


def score_samples(model, tokenizer, samples: Sequence[Infused], n_segments: Sequence[int],
                  comment_ids: torch.Tensor, temperature: float) -> list[Scored]:
    """One batched teacher-forced pass over the infused texts (right-padded)."""
    encoded = tokenizer([s.text for s in samples], return_offsets_mapping=True, add_special_tokens=False,
                        padding=True, return_tensors="pt")
    logits = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).logits.float()
    logp_one = torch.log_softmax(logits, dim=-1)
    logp_temp = torch.log_softmax(logits / temperature, dim=-1)
    return [_terms(sample, encoded["input_ids"][i], encoded["offset_mapping"][i], encoded["attention_mask"][i],
                   logp_one[i], logp_temp[i], n_segments[i], comment_ids)
            for i, sample in enumerate(samples)]


def _terms(sample: Infused, ids, offsets, mask, logp_one, logp_temp, n_segments, comment_ids) -> Scored:
    length = int(mask.sum())
    ids, offsets = ids[:length], offsets[:length].tolist()
    owner = torch.tensor([sample.owner[end - 1] for _, end in offsets])
    # Token j (j >= 1) is predicted at position j - 1; token 0 has no prediction.
    token_logp = logp_one[: length - 1].gather(1, ids[1:, None])[:, 0]
    expert = owner[1:] >= 0
    line_logp = logp_one.new_zeros(n_segments).index_add(0, owner[1:][expert], token_logp[expert])
    thought_logp = logp_temp[: length - 1].gather(1, ids[1:, None])[:, 0]
    starts = {start: j for j, (start, _) in enumerate(offsets)}
    action_logp, thought_tokens = {}, {}
    for k, char in sample.decisions.items():
        j = starts.get(char)
        if j is None or j == 0:
            continue  # no token starts exactly at this boundary: not a decision point for this tokenizer
        think = torch.logsumexp(logp_temp[j - 1, comment_ids], dim=0)
        if k in sample.thoughts:
            end = j
            while end < length and owner[end] == -1:
                end += 1
            # log q(think) + log q(first token | think) + the rest = the tokens' own log-probs.
            action_logp[k] = thought_logp[j - 1: end - 1].sum()
            thought_tokens[k] = end - j
        else:
            action_logp[k] = torch.log1p(-think.exp().clamp(max=1 - 1e-6))
    return Scored(line_logp, action_logp, thought_tokens)


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
    out = torch.zeros(n_segments)
    for k in range(n_segments):
        tokens = [j for j in range(1, len(ids)) if owner[j] == k]
        if not tokens:
            continue
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids[: tokens[-1] + 1]])).logits[0].float(), -1)
        out[k] = sum(float(logp[j - 1, ids[j]]) for j in tokens)
    return out
