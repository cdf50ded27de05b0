"""RA3 rollouts on vLLM: the E-step's and the corpus infusion's sampler at the paper scale (3.5M
snippets), behind the interface of the transformers backend (`repro/train/ra3/rollout.py`): the same
inputs with a vLLM engine in place of the model, the same output (one {boundary: thought text} per row).

What is sampled is what `rollout.naive_rollout` samples. At each line boundary k (its decision token
starts at `thoughts.decision_point`) the model thinks with q(think), its total probability at
`cfg.temperature` of the comment-opening tokens (`thoughts.comment_token_ids`); a thought's first token
is one of those tokens, drawn from the model restricted to them, and it goes on until a token
containing a newline (not kept) or `cfg.max_thought_tokens` tokens; its text is the decoded tokens after
the first `#`, as `thoughts.build_infused` writes it.

How (one design among several; why this one below):
- Rows advance in lockstep rounds. In each round every unfinished row sends exactly one request, all
  in one `LLM.generate` call, each prompt the row's token ids so far (a `TokensPrompt`, tokenized as the
  transformers backend cuts its chunks: the snippet's tokens, a thought's sampled tokens, then the
  tokens of "\\n" + the rest of the snippet), so both backends condition on the same ids.
- A decision request samples one token at `cfg.temperature` where boundary k's decision token would
  be. That token is a comment token with probability exactly q(think), and given that it is one, it
  is distributed as the model restricted to the comment tokens: one draw gives both the decision and
  the thought's first token. Any other token means "act": the row's next request is its next boundary.
- A continuation request (prompt: the decision prefix and the first token) samples the rest of the
  thought, stopping at any token that contains a newline (`stop_token_ids`) or after
  `max_thought_tokens - 1` tokens. With `greedy_thoughts`, the decision is still sampled, then one
  request at temperature 0 restricted to the comment tokens (`allowed_token_ids`) takes the most
  likely first token and a continuation at temperature 0 the most likely rest.
- vLLM's automatic prefix caching (`enable_prefix_caching=True`) keeps the keys and values of every
  full block (16 tokens) it computed, so a request prefills only what is new since the row's previous
  one: about a line, and less than a block of what it had already. `push_weights` empties that cache,
  whose blocks were computed with the old weights.
- Every request carries its own seed, drawn from its row's generator in the row's own order, so a
  row's thoughts do not depend on its batch (vLLM samples a seeded request with its own generator; its
  kernels are not batch-invariant, so up to floating-point differences).
- Sampling settings are vLLM's neutral ones (top_p 1, no top_k, min_p or penalties, and the model's
  generation_config.json ignored), end-of-sequence ignored as the transformers backend ignores it, and
  no detokenization: thought texts are decoded here with the tokenizer the transformers path uses.

Why this design: vLLM samples from the last position only, so a decision needs a request whose prompt
ends at it; `prompt_logprobs` would give every boundary's logits in one request but only the top-k
tokens of each, not the comment tokens' total mass. Lockstep rounds keep the code one loop and
reproducible; their cost is a round as long as its longest continuation (`max_thought_tokens` decode
steps) while the other rows wait, which vLLM's async engine would remove. The requests are many: about
one per line of every snippet, ~1e8 for an infusion of the paper corpus at ~30 lines each, so vLLM's
per-request overhead (tens to hundreds of microseconds of CPU, unmeasured here) may cost as much as its
prefill.

Use: build one engine with `rollout_engine` from the model folder the E-step starts from, call
`rollout(engine, ...)` where `rollout.rollout(model, ...)` is called (E-step steps and
`infuse_corpus`, with thousands of rows per call rather than `rollout_batch_size`'s 64), and
`push_weights(engine, model)` after every optimizer step of the E-step. The engine is built in process as
TRL 1.16's colocate mode builds it (`distributed_executor_backend="external_launcher"`), with the
settings evaluation uses (`repro.eval.generate`: `vllm_engine_settings`, `release_engine`), so that
`push_weights` can load weights the way TRL 1.16 does (`trl/generation/vllm_generation.py`,
`sync_weights`): each parameter under its Hugging Face name through the engine model's `load_weights`,
then `reset_prefix_cache`.

What ran: only the tests on the CPU (`tests/unit/test_vllm_rollout.py`), against a fake `vllm` whose
engine samples from a small transformers model (`tests/fake_vllm.py`). vLLM itself never ran: it does
not install on this CPU-only machine. The vLLM names used (TokensPrompt; SamplingParams's `max_tokens`,
`seed`, `stop_token_ids`, `allowed_token_ids`, `ignore_eos`, `detokenize`; `RequestOutput.num_cached_tokens`;
the in-process `llm_engine.model_executor.driver_worker.model_runner.model`; `reset_prefix_cache`; the LLM
arguments) come from reading vLLM 0.30's and TRL 1.16's sources. Only a GPU with vLLM shows that they
hold, that the think rate matches the transformers backend's on the same weights (vLLM samples from
bf16 logits, so its q differs from the learner's by rounding), what the requests cost (the
per-request overhead; `stop_token_ids` holds every newline token, thousands in a 150k vocabulary, and
vLLM's scheduler tests each sampled token against that list), and how `ENGINE_FREE_SHARE` should be set.
"""

import contextlib
import dataclasses
import functools
import logging
import os
import socket
from collections.abc import Iterator, Sequence

import torch

from repro.core.scale import RA3Config
from repro.eval.generate import release_engine, vllm_engine_settings
from repro.train.ra3.thoughts import Segment, build_infused, decision_point, decision_tokens, rest_after_thought

log = logging.getLogger(__name__)

ENGINE_FREE_SHARE = 0.5
"""The share of the accelerator memory free when the engine starts that its settings are computed from
(`vllm_engine_settings` then takes 0.9 of it): the rest is left to the E-step's training of the same
model on the same GPU (its activations and optimizer state). Not measured: a GPU run sizes it."""


def _vllm():
    try:
        import vllm
    except ImportError as error:
        raise ImportError("the vLLM rollout backend needs vLLM 0.30 and a CUDA GPU: "
                          "pip install 'ra3-repro[gpu]' (the `gpu` extra)") from error
    return vllm


@functools.cache
def _newline_ids(tokenizer) -> tuple[int, ...]:
    """Tokens that end a thought: every token whose text contains a newline (the transformers backend's
    test). Cached per tokenizer: decoding a 150k vocabulary one token at a time takes seconds."""
    return tuple(i for i in range(len(tokenizer)) if "\n" in tokenizer.decode([i]))


def _decisions(tokens: tuple[list[int], dict[int, int]]) -> tuple[list[int], list[tuple[int, int]]]:
    """`thoughts.decision_tokens`' result as this backend walks it: ids, and (decision index, boundary) in order."""
    ids, positions = tokens
    return ids, sorted((j, k) for k, j in positions.items())


@dataclasses.dataclass
class _Row:
    """One rollout: its snippet, the tokens it has so far, and where it decides next."""
    text: str
    segments: Sequence[Segment]
    chars: dict[int, int]
    """Boundary -> character in `text` where its decision token starts."""
    generator: torch.Generator
    head: list[int]
    """Tokens before `chunk`: the snippet up to its last thought, that thought included."""
    chunk: list[int]
    """Expert tokens read since: the snippet, or its rest after the last thought (from its newline)."""
    due: list[tuple[int, int]]
    """(index in `chunk` of the decision token, boundary) still to decide, in order; the first one is
    being decided, or thought at."""
    thought: list[int] | None = None
    """While thinking at `due[0]`: the thought's tokens so far (empty until a greedy first token)."""
    thoughts: dict[int, str] = dataclasses.field(default_factory=dict)
    last: list[int] = dataclasses.field(default_factory=list)
    """The previous request's prompt and output, for the cache estimate when vLLM reports none."""

    def prefix(self) -> list[int]:
        return self.head + self.chunk[: self.due[0][0]]


def _seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))


def _request(row: _Row, cfg: RA3Config, comment: list[int], newline: list[int], greedy: bool, sampling):
    """The row's next request: its kind, prompt ids and sampling parameters; None once it has decided at
    every boundary."""
    if row.thought is None:
        if not row.due:
            return None
        return "decide", row.prefix(), sampling(temperature=cfg.temperature, max_tokens=1, seed=_seed(row.generator),
                                                ignore_eos=True, detokenize=False)
    if not row.thought:  # greedy: the most likely comment token opens the thought
        return "first", row.prefix(), sampling(temperature=0.0, max_tokens=1, allowed_token_ids=comment,
                                               ignore_eos=True, detokenize=False)
    return "continue", row.prefix() + row.thought, sampling(
        temperature=0.0 if greedy else cfg.temperature, max_tokens=cfg.max_thought_tokens - len(row.thought),
        seed=None if greedy else _seed(row.generator), stop_token_ids=newline, ignore_eos=True, detokenize=False)


def _end_thought(row: _Row, tokenizer) -> None:
    """Record the finished thought; the row reads on from the newline after it."""
    _, k = row.due[0]
    decoded = tokenizer.decode(row.thought)
    row.thoughts[k] = decoded[decoded.index("#") + 1:].replace("\n", " ")
    row.head = row.prefix() + row.thought
    row.chunk, row.due = _decisions(rest_after_thought(tokenizer, row.text, row.segments, row.chars, k))
    row.thought = None


def _take(row: _Row, kind: str, tokens: list[int], tokenizer, cfg: RA3Config, comment: set[int],
          newline: set[int], greedy: bool) -> None:
    """Advance the row by its request's output."""
    if kind == "decide" and tokens[0] not in comment:
        row.due.pop(0)  # act: the expert line follows
        return
    if kind == "decide":
        row.thought = [] if greedy else [tokens[0]]
    elif kind == "first":
        row.thought = [tokens[0]]
    else:
        cut = next((i for i, t in enumerate(tokens) if t in newline), len(tokens))  # the newline is not kept
        row.thought += tokens[:cut]
    if kind == "continue" or (row.thought and len(row.thought) >= cfg.max_thought_tokens):
        _end_thought(row, tokenizer)


def _count(stats: dict, row: _Row, prompt: list[int], output, tokens: list[int]) -> None:
    """Prefill accounting of one request: `cached_tokens` as the engine reports them
    (`num_cached_tokens`); where it reports none, assumed to be everything the row's previous request
    computed (an ideal cache: no block rounding, no eviction), and counted in `cache_assumed`."""
    cached = output.num_cached_tokens
    if cached is None:
        stats["cache_assumed"] = stats.get("cache_assumed", 0) + 1
        seen = row.last[:-1]  # the last sampled token was never fed
        common = next((i for i, (a, b) in enumerate(zip(prompt, seen, strict=False)) if a != b),
                      min(len(prompt), len(seen)))
        cached = min(common, len(prompt) - 1)  # the last prompt token is always computed, for its logits
    row.last = prompt + tokens
    for key, value in (("requests", 1), ("prompt_tokens", len(prompt)), ("cached_tokens", cached),
                       ("generated_tokens", len(tokens)), ("slots", len(prompt) - cached + len(tokens))):
        stats[key] = stats.get(key, 0) + value


def rollout(engine, tokenizer, texts: Sequence[str], segmented: Sequence[Sequence[Segment]], cfg: RA3Config,
            comment_ids: torch.Tensor, generators: Sequence[torch.Generator],
            greedy_thoughts: bool = False, stats: dict | None = None) -> list[dict[int, str]]:
    """One thought set per row, sampled by a vLLM `engine` (see the module docstring): the interface of
    `repro.train.ra3.rollout.rollout`. Where to think is always sampled; with `greedy_thoughts` what
    to think is the most likely text. Row b's request seeds come from `generators[b]`.

    `stats`, when given, accumulates `slots` (token positions the engine computed: prompt tokens not
    served by its prefix cache, plus tokens it sampled), `tokens` (the rows' own tokens: snippet and
    thoughts; `slots / tokens` is the transformers backend's cost measure), `prompt_tokens` (what an
    engine without prefix caching would prefill), `cached_tokens`, `generated_tokens`, `requests`,
    `rounds` and `cache_assumed` (see `_count`)."""
    vllm = _vllm()
    comment, newline = comment_ids.tolist(), list(_newline_ids(tokenizer))
    comment_set, newline_set = set(comment), set(newline)
    rows = []
    for text, segments, generator in zip(texts, segmented, generators, strict=True):
        chars = {k: decision_point(text, segments[k]) for k in range(1, len(segments))}
        rows.append(_Row(text, segments, chars, generator, [], *_decisions(decision_tokens(tokenizer, text, chars))))
    rounds = 0
    while True:
        requests = [(row, _request(row, cfg, comment, newline, greedy_thoughts, vllm.SamplingParams)) for row in rows]
        requests = [(row, request) for row, request in requests if request is not None]
        if not requests:
            break
        rounds += 1
        outputs = engine.generate([vllm.TokensPrompt(prompt_token_ids=prompt) for _, (_, prompt, _) in requests],
                                  [params for _, (_, _, params) in requests], use_tqdm=False)
        log.debug("rollout round %d: %d requests", rounds, len(requests))
        for (row, (kind, prompt, _)), output in zip(requests, outputs, strict=True):
            tokens = list(output.outputs[0].token_ids)
            if stats is not None:
                _count(stats, row, prompt, output, tokens)
            _take(row, kind, tokens, tokenizer, cfg, comment_set, newline_set, greedy_thoughts)
    if stats is not None:
        infused = [build_infused(row.text, row.segments, row.thoughts).text for row in rows]
        stats["rounds"] = stats.get("rounds", 0) + rounds
        stats["tokens"] = stats.get("tokens", 0) + sum(
            len(ids) for ids in tokenizer(infused, add_special_tokens=False)["input_ids"])
    return [row.thoughts for row in rows]


@torch.no_grad()
def push_weights(engine, model) -> int:
    """Load `model`'s current parameters into `engine` as TRL 1.16 does in colocate mode: one tensor at
    a time (no second copy of the model) under its Hugging Face name, through the in-process vLLM
    model's `load_weights` (which maps the names onto its fused layers and casts to its dtype), then
    the prefix cache emptied. Returns the number of tensors pushed."""
    executor = getattr(engine.llm_engine, "model_executor", None)  # only an in-process engine core has one
    if executor is None:
        raise RuntimeError("this vLLM engine runs its core in another process, so its weights cannot be loaded in "
                           "place: build it with rollout_engine (external launcher, in process)")
    target = executor.driver_worker.model_runner.model
    count = 0
    for name, param in model.named_parameters():
        target.load_weights([(name, param.data)])
        count += 1
    engine.reset_prefix_cache()  # its blocks hold keys and values computed with the old weights
    log.debug("pushed %d tensors to the vLLM engine", count)
    return count


def _launcher_environment() -> None:
    """The external launcher joins the torch.distributed group that torchrun describes in the
    environment; a plain process is rank 0 of 1 on a free local port."""
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "localhost")):
        os.environ.setdefault(key, value)
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as probe:
            probe.bind(("localhost", 0))
            os.environ["MASTER_PORT"] = str(probe.getsockname()[1])


def _longest_prompt(tokenizer, snippets: Sequence[str], cfg: RA3Config, batch: int = 4096) -> int:
    """The longest prompt a snippet can give: its tokens plus, per line, a thought and its re-tokenized
    newline (`max_thought_tokens` + 1) and one token of slack for a merge across the cut. Tokenized in
    batches, keeping only lengths: the paper corpus's ids would take tens of GB as Python lists."""
    longest = 0
    for start in range(0, len(snippets), batch):
        part = list(snippets[start: start + batch])
        for ids, text in zip(tokenizer(part, add_special_tokens=False)["input_ids"], part, strict=True):
            longest = max(longest, len(ids) + text.count("\n") * (cfg.max_thought_tokens + 2))
    return longest


@contextlib.contextmanager
def rollout_engine(model_id: str, tokenizer, snippets: Sequence[str], cfg: RA3Config, revision: str | None = None,
                   free_share: float = ENGINE_FREE_SHARE) -> Iterator:
    """A vLLM engine for `rollout` on this process's GPU, shut down on leaving (`release_engine`): prefix
    caching on, the core in process (so `push_weights` reaches its model), `max_model_len` the longest
    prompt the snippets can give plus a thought, and its memory from `free_share` of the memory free now
    (`vllm_engine_settings`). `model_id` is a model folder or hub id whose weights it starts from; the
    E-step's updates reach it through `push_weights`."""
    vllm = _vllm()
    free, total = torch.cuda.mem_get_info()
    settings = vllm_engine_settings([_longest_prompt(tokenizer, snippets, cfg)], cfg.max_thought_tokens,
                                    int(free * free_share), total)
    log.info("vLLM rollout engine for %s: %s", model_id, settings)
    _launcher_environment()
    llm = vllm.LLM(model=model_id, revision=revision, dtype="bfloat16", seed=cfg.seed, enable_prefix_caching=True,
                   distributed_executor_backend="external_launcher", generation_config="vllm", **settings)
    try:
        yield llm
    finally:
        release_engine(llm)
