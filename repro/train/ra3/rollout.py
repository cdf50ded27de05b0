"""RA3 rollouts: sampling where to think and what, for a batch of snippets through one packed KV cache.

Rollouts are batched (all snippets x G samples of an E-step step; `rollout_batch_size` snippets when
infusing the corpus). Every row reads its snippet in windows of `rollout_window` tokens; the decisions
whose logits a window gives are drawn in order, and at a think the window's tokens after the decision
are discarded and the row generates its thought one token per forward (rows thinking feed together,
rows reading feed together), then reads on from the newline after its thought. So a row never feeds a
token twice and discards less than a window per thought: about 1.1-1.3 token slots per real token at
think rates 0.1-0.4 (`benchmarks/estep_throughput.py`), where prefilling each row's whole rest after
every thought cost 3.7 / 6.0 / 10.8. The cache keeps each row's real tokens only, packed (no hole for
discarded tokens, no column for rows that sat out a forward), so its memory is the batch's real tokens.
Position ids count a row's real tokens; the LM head runs only at decisions and thought tokens. Each row
draws from its own random generator, so its thoughts do not depend on its batch. `naive_rollout`
re-encodes the whole prefix at every line and every thought token, one row at a time, as a reference
for tests and `benchmarks/estep_throughput.py`.
"""

import dataclasses
from collections.abc import Sequence

import torch
from transformers.cache_utils import Cache, DynamicLayer

from repro.core.scale import RA3Config
from repro.train.ra3.thoughts import Segment, build_infused, decision_point, decision_tokens, rest_after_thought


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


@dataclasses.dataclass
class _Row:
    """One rollout in a batch: its snippet, what it still has to feed, and the thoughts taken so far."""
    text: str
    segments: Sequence[Segment]
    chars: dict[int, int]
    generator: torch.Generator
    chunk: list[int]
    """Expert tokens to feed: the snippet, or its rest after a thought (starting with the newline)."""
    positions: dict[int, int]
    """Boundary -> index in `chunk` of its decision token (only those with a token before them)."""
    fed: int = 0
    """Tokens of `chunk` fed so far."""
    thought: list[int] | None = None
    """While thinking: the thought's tokens sampled so far (the last one not fed yet)."""
    thinking_at: int = 0
    thoughts: dict[int, str] = dataclasses.field(default_factory=dict)


class _RaggedLayer(DynamicLayer):
    """One decoder layer's view of a `_RaggedCache` for one forward: `update` returns the members' cached
    keys and values (gathered, `past` columns, each row's own tokens first) followed by the new ones, and
    writes the new real tokens into the store right after each row's own. The mask sizes are those of
    that gathered layout."""

    def __init__(self, store: "_RaggedCache", index: int):
        super().__init__()
        self.store, self.index = store, index

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        return self.store.exchange(self.index, key_states, value_states)

    def get_seq_length(self) -> int:
        return self.store.past

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.store.past + query_length, 0


class _RaggedCache:
    """A KV cache of a batch of rollouts that advance by different amounts, kept packed: row b's real
    tokens fill columns [0, lengths[b]) of every layer's store and nothing else is ever kept (no hole, no
    padding column), so memory is the rows' real tokens. A forward feeds only the rows given to it;
    tokens a row discards after deciding to think are always its last ones, so discarding shortens the
    row. Each forward gathers its members' rows (one layer at a time, inside the layer's attention), the
    copy that keeps rows independent; attention masks out a shorter row's columns past its length."""

    def __init__(self, model, n_rows: int, pad_id: int):
        self.decoder, self.pad_id = model.get_decoder(), pad_id
        self.device = next(model.parameters()).device
        self.lengths = [0] * n_rows
        self.keys: list[torch.Tensor | None] = []
        self.values: list[torch.Tensor | None] = []
        self.past = 0
        self.slots = 0
        """Token slots fed so far (members x width of every forward, padding included): the cost in positions."""

    def feed(self, tokens: dict[int, list[int]]) -> dict[int, torch.Tensor]:
        """Append each given row's tokens (right-padded to the longest); returns each row's final hidden
        states for its tokens (the LM head runs only where a caller needs logits)."""
        members = sorted(tokens)
        width = max(len(tokens[b]) for b in members)
        counts = [len(tokens[b]) for b in members]
        self.past = max(self.lengths[b] for b in members)
        ids = torch.full((len(members), width), self.pad_id)
        mask = torch.zeros(len(members), self.past + width, dtype=torch.long)
        for i, b in enumerate(members):
            ids[i, : counts[i]] = torch.tensor(tokens[b])
            mask[i, : self.lengths[b]] = 1
            mask[i, self.past: self.past + counts[i]] = 1
        position_ids = torch.tensor([self.lengths[b] for b in members])[:, None] + torch.arange(width)[None]
        # Where the new real tokens go: (member, step) -> (row, column) of the store.
        source = [(i, j) for i, n in enumerate(counts) for j in range(n)]
        self._members = torch.tensor(members, device=self.device)
        self._source = (torch.tensor([i for i, _ in source], device=self.device),
                        torch.tensor([j for _, j in source], device=self.device))
        self._target = (torch.tensor([members[i] for i, _ in source], device=self.device),
                        torch.tensor([self.lengths[members[i]] + j for i, j in source], device=self.device))
        self._needed = max(self.lengths[b] + n for b, n in zip(members, counts, strict=True))
        n_layers = len(self.decoder.layers)
        cache = Cache(layers=[_RaggedLayer(self, index) for index in range(n_layers)])
        self.slots += ids.numel()
        out = self.decoder(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                           position_ids=position_ids.to(self.device), cache=cache, use_cache=True)
        for b, n in zip(members, counts, strict=True):
            self.lengths[b] += n
        return {b: out.last_hidden_state[i, : counts[i]] for i, b in enumerate(members)}

    def exchange(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Called by each layer during `feed`: the members' past and new keys/values, and the new ones stored."""
        while len(self.keys) <= layer:
            self.keys.append(None)
            self.values.append(None)
        out = []
        for stores, new in ((self.keys, keys), (self.values, values)):
            store = stores[layer]
            if store is None or store.shape[2] < self._needed:  # grow geometrically: amortised O(1) per token
                capacity = max(self._needed, 2 * store.shape[2] if store is not None else 64)
                grown = new.new_zeros(len(self.lengths), new.shape[1], capacity, new.shape[3])
                if store is not None:
                    grown[:, :, : store.shape[2]] = store
                store = stores[layer] = grown
            past = store.index_select(0, self._members)[:, :, : self.past]
            store[self._target[0], :, self._target[1]] = new[self._source[0], :, self._source[1]]
            out.append(torch.cat([past, new], dim=2))
        return out[0], out[1]

    def discard_last(self, b: int, count: int) -> None:
        """Forget the last `count` tokens row `b` fed (they came after its decision to think)."""
        self.lengths[b] -= count


@torch.no_grad()
def rollout(model, tokenizer, texts: Sequence[str], segmented: Sequence[Sequence[Segment]], cfg: RA3Config,
            comment_ids: torch.Tensor, generators: Sequence[torch.Generator],
            greedy_thoughts: bool = False, stats: dict | None = None) -> list[dict[int, str]]:
    """One thought set per row, all rows batched through one packed KV cache (see the module
    docstring). Where to think is always sampled; with `greedy_thoughts` what to think is the most
    likely text. `stats`, when given, accumulates `slots` (token positions fed, padding and discarded
    ones included), `tokens` (the rows' own tokens: snippet and thoughts), whose ratio is the
    rollout's cost per real token, and `forwards`.

    Row b draws every random number from `generators[b]` (on the model's device), in the order
    `naive_rollout` does, so a row's thoughts do not depend on the other rows of its batch (up to
    floating-point ties)."""
    head = model.get_output_embeddings()
    comment_ids = comment_ids.to(next(model.parameters()).device)
    rows = []
    for text, segments, generator in zip(texts, segmented, generators, strict=True):
        chars = {k: decision_point(text, segments[k]) for k in range(1, len(segments))}
        rows.append(_Row(text, segments, chars, generator, *decision_tokens(tokenizer, text, chars)))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    cache = _RaggedCache(model, len(rows), pad_id)
    window = cfg.rollout_window
    forwards = 0
    while True:
        reading = {b: row.chunk[row.fed: row.fed + window] for b, row in enumerate(rows)
                   if row.thought is None and row.fed < len(row.chunk)}
        if reading:
            forwards += 1
            hidden = cache.feed(reading)
            for b, chunk in reading.items():
                _decide(rows[b], b, chunk, hidden[b], head, comment_ids, cfg, cache, greedy_thoughts)
        thinking = {b: [row.thought[-1]] for b, row in enumerate(rows) if row.thought is not None}
        if not thinking:
            if not reading:
                break
            continue
        forwards += 1
        hidden = cache.feed(thinking)
        for b in thinking:
            row = rows[b]
            token = None
            if len(row.thought) < cfg.max_thought_tokens:
                token = _sample(head(hidden[b][-1]), cfg.temperature, row.generator, greedy_thoughts)
                if "\n" in tokenizer.decode([token]):
                    token = None  # the thought ends; its newline comes with the rest of the snippet
            if token is not None:
                row.thought.append(token)
            else:
                _end_thought(row, tokenizer)
    if stats is not None:
        infused = [build_infused(row.text, row.segments, row.thoughts).text for row in rows]
        stats["slots"] = stats.get("slots", 0) + cache.slots
        stats["forwards"] = stats.get("forwards", 0) + forwards
        stats["tokens"] = stats.get("tokens", 0) + sum(
            len(ids) for ids in tokenizer(infused, add_special_tokens=False)["input_ids"])
    return [row.thoughts for row in rows]


def _decide(row: _Row, b: int, chunk: list[int], hidden: torch.Tensor, head, comment_ids: torch.Tensor,
            cfg: RA3Config, cache: _RaggedCache, greedy_thoughts: bool) -> None:
    """The decisions whose logits this window gave (decision token j, state at j - 1 in the window), in
    order; at the first think, the window's tokens from j on are discarded and the thought begins."""
    start = row.fed
    row.fed += len(chunk)
    due = sorted((j, k) for k, j in row.positions.items() if start <= j - 1 < row.fed)
    if not due:
        return
    decisions = head(hidden[[j - 1 - start for j, _ in due]])  # logits at the decisions only
    for (j, k), logits in zip(due, decisions, strict=True):
        del row.positions[k]
        if _uniform(row.generator) < _think_probability(logits, comment_ids, cfg.temperature):
            cache.discard_last(b, row.fed - j)  # the expert tokens after the decision give way to a thought
            row.fed = j
            allowed = torch.full_like(logits, float("-inf"))
            allowed[comment_ids] = logits[comment_ids]
            row.thought, row.thinking_at = [_sample(allowed, cfg.temperature, row.generator, greedy_thoughts)], k
            return


def _end_thought(row: _Row, tokenizer) -> None:
    """Record the finished thought; the row goes on with the newline and the rest of its snippet."""
    k = row.thinking_at
    decoded = tokenizer.decode(row.thought)
    row.thoughts[k] = decoded[decoded.index("#") + 1:].replace("\n", " ")
    row.chunk, row.positions = rest_after_thought(tokenizer, row.text, row.segments, row.chars, k)
    row.fed, row.thought = 0, None


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
