"""RA3 rollouts: sampling where to think and what, for a batch of snippets through one KV cache.

Rollouts are batched (all snippets x G samples of an E-step step; `rollout_batch_size` snippets when
infusing the corpus) through one shared KV cache: one prefill of every row's snippet gives every
decision up to the row's first thought; rows that think then generate their thoughts together, token
by token, from the cached prefix, and the rest of each such snippet is prefilled once after its
thought. Rows advance by different amounts, so a row's unused or discarded cache slots are holes in
the attention mask and position ids count its real tokens only; generation only happens where a think
was sampled. Each row draws from its own random generator, so its thoughts do not depend on its
batch. `naive_rollout` re-encodes the whole prefix at every line and every thought token, one row at a
time, as a reference for tests and `benchmarks/estep_throughput.py`.
"""

import dataclasses
from collections.abc import Sequence

import torch

from repro.core.scale import RA3Config
from repro.train.ra3.thoughts import Segment, build_infused, decision_point


def _sample(logits: torch.Tensor, temperature: float, generator: torch.Generator, greedy: bool = False) -> int:
    """A token from `logits` (on the generator's device): drawn at `temperature`, or the most likely one."""
    if greedy:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def _think_probability(logits: torch.Tensor, comment_ids: torch.Tensor, temperature: float) -> float:
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return float(torch.logsumexp(logp[comment_ids], dim=0).exp())


def _uniform(generator: torch.Generator) -> float:
    return float(torch.rand((), generator=generator, device=generator.device))


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
        self.decoder, self.rows, self.pad_id = model.get_decoder(), rows, pad_id
        self.device = next(model.parameters()).device
        self.members = list(range(len(rows)))
        self.cache, self.mask = None, torch.zeros(len(rows), 0, dtype=torch.long, device=self.device)
        self.slots = 0
        """Token slots fed so far (rows x width of every forward): the rollout's cost in token positions."""

    def feed(self, tokens: dict[int, list[int]]) -> dict[int, torch.Tensor]:
        """Append each given row's tokens (member rows not given get masked slots); returns each
        given row's final hidden states for its tokens (the LM head runs only where a caller needs
        logits: decisions and the next thought token, never over every position)."""
        width = max(len(t) for t in tokens.values())
        ids = torch.full((len(self.members), width), self.pad_id)
        mask = torch.zeros(len(self.members), width, dtype=torch.long)
        for i, b in enumerate(self.members):
            if b in tokens:
                ids[i, : len(tokens[b])] = torch.tensor(tokens[b])
                mask[i, : len(tokens[b])] = 1
        position_ids = torch.tensor([self.rows[b].length for b in self.members])[:, None] + torch.arange(width)[None]
        self.mask = torch.cat([self.mask, mask.to(self.device)], dim=1)
        self.slots += ids.numel()
        out = self.decoder(input_ids=ids.to(self.device), attention_mask=self.mask,
                           position_ids=position_ids.to(self.device), cache=self.cache, use_cache=True)
        self.cache = out.cache
        hidden = {}
        for i, b in enumerate(self.members):
            if b in tokens:
                self.rows[b].length += len(tokens[b])
                hidden[b] = out.last_hidden_state[i, : len(tokens[b])]
        return hidden

    def void_last(self, b: int, count: int) -> None:
        """Forget the last `count` tokens row `b` fed (they came after its decision to think)."""
        if count:
            i = self.members.index(b)
            real = self.mask[i].nonzero()[:, 0]
            self.mask[i, real[-count:]] = 0
            self.rows[b].length -= count

    def retain(self, rows: list[int]) -> None:
        if rows != self.members:
            index = torch.tensor([self.members.index(b) for b in rows], dtype=torch.long, device=self.device)
            self.cache.batch_select_indices(index)
            self.mask, self.members = self.mask[index], list(rows)


@torch.no_grad()
def rollout(model, tokenizer, texts: Sequence[str], segmented: Sequence[Sequence[Segment]], cfg: RA3Config,
            comment_ids: torch.Tensor, generators: Sequence[torch.Generator],
            greedy_thoughts: bool = False, stats: dict | None = None) -> list[dict[int, str]]:
    """One thought set per row, all rows batched through one KV cache (see the module docstring).
    Where to think is always sampled; with `greedy_thoughts` what to think is the most likely text.
    `stats`, when given, accumulates `slots` (token positions fed, padding and discarded ones
    included) and `tokens` (the rows' own tokens: snippet and thoughts), whose ratio is the rollout's
    cost per real token.

    Row b draws every random number from `generators[b]` (on the model's device), in the order
    `naive_rollout` does, so a row's thoughts do not depend on the other rows of its batch (up to
    floating-point ties)."""
    head = model.get_output_embeddings()
    comment_ids = comment_ids.to(next(model.parameters()).device)
    rows = []
    for text, segments, generator in zip(texts, segmented, generators, strict=True):
        chars = {k: decision_point(text, segments[k]) for k in range(1, len(segments))}
        ids, positions = _token_positions(tokenizer, text, chars)
        rows.append(_Row(text, segments, chars, generator, ids, positions))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    cache = _BatchCache(model, rows, pad_id)
    while any(row.chunk for row in rows):
        fed = {b: row.chunk for b, row in enumerate(rows) if row.chunk}
        hidden = cache.feed(fed)
        thinking = {}
        for b, chunk in fed.items():
            row = rows[b]
            row.chunk = []
            order = [k for k in sorted(row.positions, key=row.positions.get) if row.positions[k] > 0]
            if not order:
                continue
            decisions = head(hidden[b][[row.positions[k] - 1 for k in order]])  # logits at the decisions only
            for k, logits in zip(order, decisions, strict=True):
                if _uniform(row.generator) < _think_probability(logits, comment_ids, cfg.temperature):
                    # the expert tokens after the decision give way to a thought
                    cache.void_last(b, len(chunk) - row.positions[k])
                    thinking[b] = (k, logits)
                    break
        if not thinking:
            break
        cache.retain(sorted(thinking))  # rows that acted to their end are finished
        tokens = {}
        for b, (_, decision_logits) in thinking.items():
            allowed = torch.full_like(decision_logits, float("-inf"))
            allowed[comment_ids] = decision_logits[comment_ids]
            tokens[b] = [_sample(allowed, cfg.temperature, rows[b].generator, greedy_thoughts)]
        active = set(tokens)
        while active:
            step = cache.feed({b: [tokens[b][-1]] for b in active})
            for b in sorted(active):
                if len(tokens[b]) >= cfg.max_thought_tokens:
                    active.discard(b)
                    continue
                token = _sample(head(step[b][-1]), cfg.temperature, rows[b].generator, greedy_thoughts)
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
    if stats is not None:
        infused = [build_infused(row.text, row.segments, row.thoughts).text for row in rows]
        stats["slots"] = stats.get("slots", 0) + cache.slots
        stats["tokens"] = stats.get("tokens", 0) + sum(
            len(ids) for ids in tokenizer(infused, add_special_tokens=False)["input_ids"])
    return [row.thoughts for row in rows]


@torch.no_grad()
def naive_rollout(model, tokenizer, text: str, segments: Sequence[Segment], cfg: RA3Config, comment_ids: torch.Tensor,
                  generator: torch.Generator, greedy_thoughts: bool = False) -> dict[int, str]:
    """The reference rollout of one row: the whole infused prefix is re-encoded for every decision
    and every thought token (no cache, no batch). Same random draws in the same order as a row of
    `rollout`, so a shared generator gives the same thoughts up to floating-point ties. Only for
    tests and `benchmarks/estep_throughput.py`."""
    device = next(model.parameters()).device
    comment_ids = comment_ids.to(device)
    thoughts: dict[int, str] = {}
    for k in range(1, len(segments)):
        infused = build_infused(text, segments, thoughts)
        enc = tokenizer(infused.text, return_offsets_mapping=True, add_special_tokens=False)
        starts = {s: j for j, (s, _) in enumerate(enc["offset_mapping"])}
        j = starts.get(infused.decisions[k])
        if j is None or j == 0:
            continue
        prefix = enc["input_ids"][:j]
        logits = model(input_ids=torch.tensor([prefix], device=device)).logits[0, -1]
        if _uniform(generator) >= _think_probability(logits, comment_ids, cfg.temperature):
            continue
        allowed = torch.full_like(logits, float("-inf"))
        allowed[comment_ids] = logits[comment_ids]
        tokens = [_sample(allowed, cfg.temperature, generator, greedy_thoughts)]
        while len(tokens) < cfg.max_thought_tokens:
            token = _sample(model(input_ids=torch.tensor([prefix + tokens], device=device)).logits[0, -1],
                            cfg.temperature, generator, greedy_thoughts)
            if "\n" in tokenizer.decode([token]):
                break
            tokens.append(token)
        decoded = tokenizer.decode(tokens)
        thoughts[k] = decoded[decoded.index("#") + 1:].replace("\n", " ")
    return thoughts


def row_generators(generator: torch.Generator, n: int, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """`n` independent generators on `device` (the model's), seeded from `generator`: one per rollout row."""
    seeds = torch.randint(0, 2**62, (n,), generator=generator).tolist()
    return [torch.Generator(device=device).manual_seed(s) for s in seeds]
