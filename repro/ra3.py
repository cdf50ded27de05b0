"""RA3 mid-training: an EM loop whose E-step learns, by self-supervised RL, where to write comment
thoughts into expert code, and whose M-step trains next-token prediction on the infused code.

Paper: arXiv:2509.25810, section 2 (summarised in ../shared/paper/RA3.md). The line-level MDP:
each logical line of an expert snippet is an action; at every line boundary (not before the
first line) the model either acts (the expert line follows) or thinks (a comment line `# ...` at
the next line's indentation, at most `max_thought_tokens` tokens, then the expert line).

The posterior q shares its weights with pi: the decision is the model's own next-token choice at
the point where the next line's content begins. With byte-level BPE a line's leading whitespace
token ends one space short (`"\\n   "`), and the next token is either `" #"` (think) or the
line's first code token (act); so q(think) is the model's total probability (at the E-step
temperature) of the comment tokens there, and the thought is sampled from the model, token by
token, until its newline. Expert lines are never trained in the E-step.

Rewards: r_t = log pi(expert line t | prefix with the inserted thoughts) - c * 1[think at t], by
teacher forcing on the infused text. A decision at t is credited with its return-to-go
sum_{t' >= t} r_t', normalised within the G samples of the snippet (group-relative advantage, per
boundary). The update is PPO's clipped surrogate on the decision and thought log-probabilities,
with an optional k3 KL penalty to the model as it was before the E-step. The ELBO estimate is the
mean total reward: log-likelihood of the expert lines minus c per thought.

Rollouts are batched (all snippets x G samples of an E-step step; `rollout_batch_size` snippets
when infusing the corpus) through one shared KV cache: one prefill of every row's snippet gives
every decision up to the row's first thought; rows that think then generate their thoughts
together, token by token, from the cached prefix, and the rest of each such snippet is prefilled
once after its thought. Rows advance by different amounts, so a row's unused or discarded cache
slots are holes in the attention mask and position ids count its real tokens only; generation
only happens where a think was sampled. Each row draws from its own random generator, so its
thoughts do not depend on its batch. `naive_rollout` re-encodes the whole prefix at every line
and every thought token, one row at a time, as a reference for tests and
`benchmarks/estep_throughput.py`.

Paper scale and vLLM: the E-step samples with this batched HF rollout on whatever device the model
is on (a GPU at small/paper scale); it does not use vLLM yet. What vLLM would need, so that the
next engineer can add it: (1) the decision at each boundary is the model's total probability of
the comment tokens after a forced prefix, so each boundary is a 1-token request with
`allowed_token_ids` = the comment tokens plus the line's first expert token and `logprobs` over
them (automatic prefix caching makes the forced prefixes cheap); (2) a thought is an ordinary
sampled continuation stopped at "\n" or L tokens; (3) after every E-step update the policy weights
must be pushed to the vLLM engine (as TRL's GRPO does with `vllm_mode="colocate"`), or the rollouts
go off-policy. The M-step trains with `repro.ntp`, so DeepSpeed ZeRO-2/3 applies as in NTP.

M-step: the infused corpus (each expert snippet with thoughts from the final E-step policy) is
trained with `repro.ntp.train_causal_lm`, whose loss covers the comment tokens. With a penalty so
large that no thought is ever taken, the infused corpus is the raw corpus and RA3 is NTP.
"""

import copy
import dataclasses
import io
import logging
import math
import tokenize
from collections.abc import Sequence

import torch

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RA3Config:
    rounds: int
    """EM rounds K."""
    group_size: int
    """Samples G per snippet for group-relative advantages."""
    max_thought_tokens: int
    """L: the longest thought, in tokens, before the forced newline."""
    temperature: float
    """Sampling temperature of decisions and thoughts in the E-step and for the infused corpus."""
    penalty: float
    """c: the reward cost of starting a thought (the paper's default is 0.05)."""
    estep_steps: int
    """Policy-gradient steps per E-step."""
    snippets_per_step: int
    """Expert snippets per E-step step (each sampled G times)."""
    estep_lr: float
    """Learning rate of the E-step's AdamW."""
    clip_eps: float = 0.2
    """PPO ratio clipping."""
    ppo_epochs: int = 1
    """Updates per batch of rollouts (1: plain on-policy policy gradient)."""
    kl_weight: float = 0.0
    """Weight of the KL penalty to the pre-E-step model on decisions and thoughts (0: off)."""
    rollout_batch_size: int = 64
    """Snippets rolled out together when infusing the corpus (a speed knob: results do not depend on it)."""
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Segment:
    """A logical line: `start`..`end` (with its blank lines before, its newline after)."""
    start: int
    code_start: int
    """Where the line's own first physical line starts (after blank or comment lines)."""
    end: int
    indent: str


def segment_lines(text: str) -> list[Segment]:
    """Logical lines of Python source: continuation lines and multi-line strings stay whole."""
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    segments, seg_start, first_row = [], 0, None
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        tokens = []
    if not tokens:  # not Python we can tokenize: fall back to physical lines
        return [Segment(offsets[i], offsets[i], offsets[i + 1], _indent(lines[i])) for i in range(len(lines))]
    for token in tokens:
        if token.type in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT,
                          tokenize.ENCODING, tokenize.ENDMARKER):
            continue
        if first_row is None:
            first_row = token.start[0]
        if token.type == tokenize.NEWLINE:
            end = offsets[min(token.end[0], len(lines))]
            code_start = offsets[first_row - 1]
            segments.append(Segment(seg_start, code_start, end, _indent(lines[first_row - 1])))
            seg_start, first_row = end, None
    return segments


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def comment_token_ids(tokenizer) -> torch.Tensor:
    """Ids of tokens that open a comment at a decision point (`#` or ` #`, possibly longer)."""
    ids = [i for i in range(len(tokenizer))
           if tokenizer.decode([i]).lstrip(" ").startswith("#") and "\n" not in tokenizer.decode([i])]
    if not ids:
        raise ValueError("the tokenizer has no token that starts a comment")
    return torch.tensor(ids)


def decision_point(text: str, segment: Segment) -> int:
    """Character offset where a thought is inserted: the line's content start, minus one space of
    indentation (that space travels with the next token, `" #"` or `" for"`)."""
    return segment.code_start + max(0, len(segment.indent) - 1)


@dataclasses.dataclass
class Infused:
    """One sample: the snippet with its thoughts, and where every part sits in the infused text."""
    text: str
    thoughts: dict[int, str]
    owner: list[int]
    """Per character: the expert segment it belongs to, or -1 inside a thought line."""
    decisions: dict[int, int]
    """Boundary k (k >= 1) -> character offset in `text` where its decision token starts."""


def build_infused(text: str, segments: Sequence[Segment], thoughts: dict[int, str]) -> Infused:
    out, owner, decisions = [], [], {}
    for k, seg in enumerate(segments):
        lead = text[seg.start: seg.code_start]
        out.append(lead)
        owner.extend([k] * len(lead))
        if k >= 1:
            decisions[k] = len(owner) + max(0, len(seg.indent) - 1)
        if k in thoughts:
            line = f"{seg.indent}#{thoughts[k]}\n"
            out.append(line)
            owner.extend([-1] * len(line))
        body = text[seg.code_start: seg.end]
        out.append(body)
        owner.extend([k] * len(body))
    tail = text[segments[-1].end:] if segments else text
    out.append(tail)
    owner.extend([len(segments) - 1] * len(tail))
    return Infused("".join(out), dict(thoughts), owner, decisions)


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


def _sample(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> int:
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def _think_probability(logits: torch.Tensor, comment_ids: torch.Tensor, temperature: float) -> float:
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return float(torch.logsumexp(logp[comment_ids], dim=0).exp())


def _token_positions(tokenizer, text: str, chars: dict[int, int], shift: int = 0) -> tuple[list[int], dict[int, int]]:
    """Token ids of `text` and, for each boundary, the index of the token starting at its character
    (offsets relative to `text` + `shift`); boundaries without such a token are left out."""
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    starts = {s + shift: j for j, (s, _) in enumerate(enc["offset_mapping"])}
    return enc["input_ids"], {k: starts[c] for k, c in chars.items() if c in starts}


@dataclasses.dataclass
class _Row:
    """One rollout in a batch: its snippet, what it still has to feed, and the thoughts taken so far."""
    text: str
    segments: Sequence[Segment]
    chars: dict[int, int]
    generator: torch.Generator
    chunk: list[int]
    """Tokens to prefill next (the snippet, or its rest after a thought)."""
    positions: dict[int, int]
    """Boundary -> index in `chunk` of its decision token."""
    length: int = 0
    """Real tokens in the cache so far (the next token's position id)."""
    thoughts: dict[int, str] = dataclasses.field(default_factory=dict)


class _BatchCache:
    """A KV cache shared by a batch of rollouts that advance by different amounts: every forward
    appends one column per token slot to all member rows, and a row's unused or discarded slots
    become holes in the attention mask (position ids count only a row's real tokens), so no row
    ever re-encodes its prefix. Rows that finished leave the batch (`retain`), so later waves cost
    only what the rows still thinking need."""

    def __init__(self, model, rows: list[_Row], pad_id: int):
        self.model, self.rows, self.pad_id = model, rows, pad_id
        self.members = list(range(len(rows)))
        self.cache, self.mask = None, torch.zeros(len(rows), 0, dtype=torch.long)

    def feed(self, tokens: dict[int, list[int]]) -> dict[int, torch.Tensor]:
        """Append each given row's tokens (member rows not given get masked slots); returns each
        given row's logits for its tokens."""
        width = max(len(t) for t in tokens.values())
        ids = torch.full((len(self.members), width), self.pad_id)
        mask = torch.zeros(len(self.members), width, dtype=torch.long)
        for i, b in enumerate(self.members):
            if b in tokens:
                ids[i, : len(tokens[b])] = torch.tensor(tokens[b])
                mask[i, : len(tokens[b])] = 1
        position_ids = torch.tensor([self.rows[b].length for b in self.members])[:, None] + torch.arange(width)[None]
        self.mask = torch.cat([self.mask, mask], dim=1)
        out = self.model(input_ids=ids, attention_mask=self.mask, position_ids=position_ids, cache=self.cache,
                         use_cache=True)
        self.cache = out.cache
        logits = {}
        for i, b in enumerate(self.members):
            if b in tokens:
                self.rows[b].length += len(tokens[b])
                logits[b] = out.logits[i, : len(tokens[b])]
        return logits

    def void_last(self, b: int, count: int) -> None:
        """Forget the last `count` tokens row `b` fed (they came after its decision to think)."""
        if count:
            i = self.members.index(b)
            real = self.mask[i].nonzero()[:, 0]
            self.mask[i, real[-count:]] = 0
            self.rows[b].length -= count

    def retain(self, rows: list[int]) -> None:
        if rows != self.members:
            index = torch.tensor([self.members.index(b) for b in rows], dtype=torch.long)
            self.cache.batch_select_indices(index)
            self.mask, self.members = self.mask[index], list(rows)


@torch.no_grad()
def rollout(model, tokenizer, texts: Sequence[str], segmented: Sequence[Sequence[Segment]], cfg: RA3Config,
            comment_ids: torch.Tensor, generators: Sequence[torch.Generator]) -> list[dict[int, str]]:
    """One thought set per row, all rows batched through one KV cache (see the module docstring).

    Row b draws every random number from `generators[b]`, in the order `naive_rollout` does, so a
    row's thoughts do not depend on the other rows of its batch (up to floating-point ties)."""
    rows = []
    for text, segments, generator in zip(texts, segmented, generators, strict=True):
        chars = {k: decision_point(text, segments[k]) for k in range(1, len(segments))}
        ids, positions = _token_positions(tokenizer, text, chars)
        rows.append(_Row(text, segments, chars, generator, ids, positions))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    cache = _BatchCache(model, rows, pad_id)
    while any(row.chunk for row in rows):
        fed = {b: row.chunk for b, row in enumerate(rows) if row.chunk}
        logits = cache.feed(fed)
        thinking = {}
        for b, chunk in fed.items():
            row, row_logits = rows[b], logits[b]
            row.chunk = []
            for k in sorted(row.positions, key=row.positions.get):
                j = row.positions[k]
                if j == 0:
                    continue
                if torch.rand((), generator=row.generator) < _think_probability(row_logits[j - 1], comment_ids,
                                                                                 cfg.temperature):
                    cache.void_last(b, len(chunk) - j)  # the expert tokens after the decision give way to a thought
                    thinking[b] = (k, row_logits[j - 1])
                    break
        if not thinking:
            break
        cache.retain(sorted(thinking))  # rows that acted to their end are finished
        tokens = {}
        for b, (_, decision_logits) in thinking.items():
            allowed = torch.full_like(decision_logits, float("-inf"))
            allowed[comment_ids] = decision_logits[comment_ids]
            tokens[b] = [_sample(allowed, cfg.temperature, rows[b].generator)]
        active = set(tokens)
        while active:
            step_logits = cache.feed({b: [tokens[b][-1]] for b in active})
            for b in sorted(active):
                if len(tokens[b]) >= cfg.max_thought_tokens:
                    active.discard(b)
                    continue
                token = _sample(step_logits[b][-1], cfg.temperature, rows[b].generator)
                if "\n" in tokenizer.decode([token]):
                    active.discard(b)
                    continue
                tokens[b].append(token)
        for b, (k, _) in thinking.items():
            row = rows[b]
            decoded = tokenizer.decode(tokens[b])
            row.thoughts[k] = decoded[decoded.index("#") + 1:].replace("\n", " ")
            rest_start = row.segments[k].code_start
            rest_chars = {kk: row.chars[kk] - rest_start + 1 for kk in row.chars if kk > k}
            row.chunk, row.positions = _token_positions(tokenizer, "\n" + row.text[rest_start:], rest_chars)
    return [row.thoughts for row in rows]


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


@torch.no_grad()
def naive_rollout(model, tokenizer, text: str, segments: Sequence[Segment], cfg: RA3Config,
                  comment_ids: torch.Tensor, generator: torch.Generator) -> dict[int, str]:
    """The reference rollout of one row: the whole infused prefix is re-encoded for every decision
    and every thought token (no cache, no batch). Same random draws in the same order as a row of
    `rollout`, so a shared generator gives the same thoughts up to floating-point ties. Only for
    tests and `benchmarks/estep_throughput.py`."""
    thoughts: dict[int, str] = {}
    for k in range(1, len(segments)):
        infused = build_infused(text, segments, thoughts)
        enc = tokenizer(infused.text, return_offsets_mapping=True, add_special_tokens=False)
        starts = {s: j for j, (s, _) in enumerate(enc["offset_mapping"])}
        j = starts.get(infused.decisions[k])
        if j is None or j == 0:
            continue
        prefix = enc["input_ids"][:j]
        logits = model(input_ids=torch.tensor([prefix])).logits[0, -1]
        if torch.rand((), generator=generator) >= _think_probability(logits, comment_ids, cfg.temperature):
            continue
        allowed = torch.full_like(logits, float("-inf"))
        allowed[comment_ids] = logits[comment_ids]
        tokens = [_sample(allowed, cfg.temperature, generator)]
        while len(tokens) < cfg.max_thought_tokens:
            token = _sample(model(input_ids=torch.tensor([prefix + tokens])).logits[0, -1], cfg.temperature,
                            generator)
            if "\n" in tokenizer.decode([token]):
                break
            tokens.append(token)
        decoded = tokenizer.decode(tokens)
        thoughts[k] = decoded[decoded.index("#") + 1:].replace("\n", " ")
    return thoughts


def row_generators(generator: torch.Generator, n: int) -> list[torch.Generator]:
    """`n` independent generators seeded from `generator`: one per rollout row."""
    seeds = torch.randint(0, 2**62, (n,), generator=generator).tolist()
    return [torch.Generator().manual_seed(s) for s in seeds]


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


def infuse_corpus(model, tokenizer, snippets: Sequence[str], cfg: RA3Config, comment_ids: torch.Tensor,
                  generator: torch.Generator) -> list[Infused]:
    """Each snippet with one thought set from the current policy, `cfg.rollout_batch_size` snippets
    per batched rollout (none at all when c is infinite: the limit alpha -> 1 where no new latent is
    ever started, and RA3 is NTP)."""
    from tqdm import tqdm

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
    import json
    from pathlib import Path

    from repro.evaluate import atomic_write
    from repro.ntp import train_causal_lm

    run_dir = Path(run_dir)
    comment_ids = comment_token_ids(tokenizer)
    if tokenizer.pad_token is None:  # hub base models often have none; batched scoring pads on the right
        tokenizer.pad_token = tokenizer.eos_token
    summaries = []
    for r in range(cfg.rounds):
        round_dir = run_dir / f"round-{r}"
        if (round_dir / "DONE.json").exists():
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(round_dir / "model")
            summaries.append(json.loads((round_dir / "DONE.json").read_text()))
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
        atomic_write(round_dir / "DONE.json", json.dumps(summary, indent=2) + "\n")
        summaries.append(summary)
    return summaries
