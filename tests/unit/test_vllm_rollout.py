"""The vLLM rollout backend (repro/train/ra3/vllm_rollout.py) on the CPU, against a fake `vllm` whose engine
samples from a small transformers model (tests/fake_vllm.py): decisions at the rate q(think) the model
gives, thoughts as the transformers backend writes them, the prompts it would feed, weights pushed,
seeds that make a row's thoughts its own. What only vLLM on a GPU can show is in the module docstring."""

import contextlib
import copy
import dataclasses
import math
import random
import sys

import pytest
import torch
from fake_vllm import LLM, install

from repro.core.scale import RA3Config, TinyModelConfig, TokenizerConfig, TrainConfig
from repro.train.ntp import train_causal_lm
from repro.train.pretrain import init_model, train_tokenizer
from repro.train.ra3 import rollout, thoughts, vllm_rollout

CFG = RA3Config(rounds=1, group_size=4, max_thought_tokens=8, temperature=1.0, penalty=0.05, estep_steps=1,
                snippets_per_step=2, estep_lr=1e-3)


def make_texts(n: int, seed: int = 0, comment: bool = False) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        k, t = rng.randint(2, 9), rng.randint(0, 5)
        texts.append(f"def f{i}(xs):\n    out = []\n" + ("    # keep the big ones\n" if comment else "")
                     + f"    for x in xs:\n        if x > {t}:\n            out.append(x * {k})\n    return out\n")
    return texts


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny model trained on code that always comments its loop: at T=1 it thinks before the loop about
    half of the time and rarely elsewhere; at T=0.05 always there and nowhere else (checked below)."""
    texts = make_texts(400, comment=True)
    tokenizer = train_tokenizer(texts, TokenizerConfig(vocab_size=300), tmp_path_factory.mktemp("tok"))
    model = init_model(tokenizer, TinyModelConfig(32, 1, 2, 64, 128), seed=0)
    train = TrainConfig(seq_len=64, batch_size=8, lr=5e-3, max_steps=80, warmup_steps=5, checkpoint_every=0)
    train_causal_lm(model, tokenizer, texts, train, tmp_path_factory.mktemp("train"))
    return model.eval(), tokenizer


@pytest.fixture
def vllm(monkeypatch):
    return install(monkeypatch)


def run(engine, tokenizer, texts, cfg, seeds, greedy=False, stats=None):
    segmented = [thoughts.segment_lines(t) for t in texts]
    return vllm_rollout.rollout(engine, tokenizer, texts, segmented, cfg, thoughts.comment_token_ids(tokenizer),
                                [torch.Generator().manual_seed(s) for s in seeds], greedy_thoughts=greedy, stats=stats)


def decision_prefixes(tokenizer, text: str) -> dict[int, list[int]]:
    """Boundary -> the snippet's token ids before its decision token (no thought before it)."""
    segments = thoughts.segment_lines(text)
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    starts = {s: j for j, (s, _) in enumerate(enc["offset_mapping"])}
    return {k: enc["input_ids"][: starts[thoughts.decision_point(text, segments[k])]] for k in range(1, len(segments))}


@torch.no_grad()
def think_probability(model, ids: list[int], comment_ids: torch.Tensor, temperature: float) -> float:
    logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
    return float(torch.log_softmax(logits / temperature, dim=-1)[comment_ids].logsumexp(0).exp())


def kind(params) -> str:
    if params.allowed_token_ids is not None:
        return "first"
    return "continue" if params.stop_token_ids is not None else "decide"


def test_decisions_are_drawn_with_the_models_think_probability(world, vllm):
    """Where the first thought of a row falls, over 400 seeded rows of one snippet: P(first at k) =
    q_k * prod_{j<k} (1 - q_j) with q from the model itself, each count within 4 binomial standard
    deviations (+1) of its expectation (a false alarm about once in 10^4 per category)."""
    model, tokenizer = world
    text = make_texts(1, seed=5)[0]
    comment_ids = thoughts.comment_token_ids(tokenizer)
    q = {k: think_probability(model, ids, comment_ids, CFG.temperature)
         for k, ids in decision_prefixes(tokenizer, text).items()}
    assert 0.3 < q[2] < 0.7 and max(q.values()) == q[2]  # this model: about half the time before the loop
    expected, still = {}, 1.0
    for k in sorted(q):
        expected[k], still = still * q[k], still * (1 - q[k])
    expected[None] = still
    n = 400
    cfg = dataclasses.replace(CFG, max_thought_tokens=2)  # short thoughts: the decisions are what is tested
    found = run(LLM(model), tokenizer, [text] * n, cfg, range(n))
    counts = {k: 0 for k in expected}
    for row in found:
        counts[min(row, default=None)] += 1
    for k, p in expected.items():
        assert abs(counts[k] - n * p) <= 4 * math.sqrt(n * p * (1 - p)) + 1, (k, counts, expected)


def test_a_model_without_mass_on_comment_tokens_never_thinks(world, vllm):
    model, tokenizer = world
    comment_ids = thoughts.comment_token_ids(tokenizer)
    silent = copy.deepcopy(model)
    bias = torch.zeros(len(tokenizer))
    bias[comment_ids] = float("-inf")
    silent.lm_head.register_forward_hook(lambda module, inputs, logits: logits + bias)
    text = make_texts(1, seed=5)[0]
    assert all(think_probability(silent, ids, comment_ids, 2.5) == 0.0
               for ids in decision_prefixes(tokenizer, text).values())
    engine = LLM(silent)
    found = run(engine, tokenizer, [text] * 50, dataclasses.replace(CFG, temperature=2.5), range(50))
    assert found == [{}] * 50
    assert {kind(params) for _, params in engine.requests} == {"decide"}


@pytest.mark.parametrize("greedy", [False, True])
@pytest.mark.parametrize("max_thought_tokens", [8, 3])
def test_deterministic_rollouts_equal_the_reference(world, vllm, greedy, max_thought_tokens):
    """At T=0.05 this model's decisions and thoughts are all but certain, so the vLLM backend and the
    transformers reference (`naive_rollout`) must agree exactly: a thought before the loop and nowhere
    else, ended at its newline (8 tokens) or cut at 3 tokens, in the same text format."""
    model, tokenizer = world
    cfg = dataclasses.replace(CFG, temperature=0.05, max_thought_tokens=max_thought_tokens)
    texts = make_texts(3, seed=9)
    found = run(LLM(model), tokenizer, texts, cfg, range(3), greedy=greedy)
    comment_ids = thoughts.comment_token_ids(tokenizer)
    reference = [rollout.naive_rollout(model, tokenizer, t, thoughts.segment_lines(t), cfg, comment_ids,
                                       torch.Generator().manual_seed(0), greedy_thoughts=greedy) for t in texts]
    assert found == reference
    full = " keep the big ones"
    for row in found:
        assert list(row) == [2]
        if max_thought_tokens == 8:
            assert row[2] == full  # stopped at the newline, which is not kept
        else:
            assert full.startswith(row[2]) and len(tokenizer(" #" + row[2])["input_ids"]) == 3
    infused = thoughts.build_infused(texts[0], thoughts.segment_lines(texts[0]), found[0]).text
    if max_thought_tokens == 8:
        assert infused == make_texts(3, seed=9, comment=True)[0]  # the comment the model was trained on
    else:
        assert f"    #{found[0][2]}\n    for x in xs:" in infused


def test_greedy_thoughts_are_the_most_likely_continuation(world, vllm):
    """Decisions sampled at T=1, thoughts greedy: each thought is the argmax over the comment tokens
    followed by argmax tokens until a newline token or max_thought_tokens, computed here with the model
    from the prompt the engine got."""
    model, tokenizer = world
    comment_ids = thoughts.comment_token_ids(tokenizer)
    newline = {i for i in range(len(tokenizer)) if "\n" in tokenizer.decode([i])}
    thinking = 0
    for seed in range(12):
        engine = LLM(model)
        [found] = run(engine, tokenizer, make_texts(1, seed=seed)[:1], CFG, [seed], greedy=True)
        firsts = [ids for ids, params in engine.requests if kind(params) == "first"]
        assert len(firsts) == len(found)
        assert all(params.temperature == 0.0 for _, params in engine.requests if kind(params) != "decide")
        for ids, k in zip(firsts, sorted(found), strict=True):
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
                tokens = [int(comment_ids[logits[comment_ids].argmax()])]
                while len(tokens) < CFG.max_thought_tokens:
                    token = int(model(input_ids=torch.tensor([ids + tokens])).logits[0, -1].argmax())
                    if token in newline:
                        break
                    tokens.append(token)
            decoded = tokenizer.decode(tokens)
            assert found[k] == decoded[decoded.index("#") + 1:]
            thinking += 1
    assert thinking >= 4


def hf_prompt(tokenizer, text: str, segments, thought_tokens: dict[int, list[int]], k: int) -> list[int]:
    """The ids the transformers backend has fed when it decides at boundary k (`thoughts.decision_tokens`'
    cut): the snippet's tokens up to the first thought's decision token, that thought's tokens, then the
    tokens of "\\n" + the rest of the snippet (from the thought's line) up to the next one, and so on."""
    ids, start, shift = [], 0, 0
    for b in [*sorted(b for b in thought_tokens if b < k), k]:
        piece = ("\n" if shift else "") + text[start:]
        chars = {b: thoughts.decision_point(text, segments[b]) - start + shift}
        chunk, positions = thoughts.decision_tokens(tokenizer, piece, chars)
        ids += chunk[: positions[b]]
        if b == k:
            return ids
        ids += thought_tokens[b]
        start, shift = segments[b].code_start, 1
    raise AssertionError("unreachable")


def test_prompts_are_the_token_ids_of_the_infused_prefix(world, vllm):
    """Every decision request's prompt is the HF path's ids up to the decision token, with the thoughts
    sampled so far, and decodes to the infused text up to the decision; every continuation's prompt is
    that plus the thought's first token, a comment token."""
    model, tokenizer = world
    comment = set(thoughts.comment_token_ids(tokenizer).tolist())
    newline = set(vllm_rollout._newline_ids(tokenizer))
    cfg = dataclasses.replace(CFG, max_thought_tokens=4)
    checked, thought_count = 0, 0
    for seed in range(16):
        text = make_texts(1, seed=seed)[0]
        segments = thoughts.segment_lines(text)
        engine = LLM(model)
        [found] = run(engine, tokenizer, [text], cfg, [seed])
        boundaries, thought_tokens, k, decided = iter(range(1, len(segments))), {}, None, None
        for (ids, params), output in zip(engine.requests, engine.answers, strict=True):
            if kind(params) == "decide":
                k, decided = next(boundaries), ids
                assert ids == hf_prompt(tokenizer, text, segments, thought_tokens, k)
                earlier = {b: th for b, th in found.items() if b < k}
                infused = thoughts.build_infused(text, segments, earlier)
                assert tokenizer.decode(ids) == infused.text[: infused.decisions[k]]
                checked += 1
            else:
                assert ids[: len(decided)] == decided and ids[len(decided)] in comment
                cut = next((i for i, t in enumerate(output) if t in newline), len(output))
                thought_tokens[k] = ids[len(decided):] + output[:cut]
                thought_count += 1
        assert next(boundaries, None) is None  # one decision per boundary
        assert sorted(thought_tokens) == sorted(found)
    assert checked == 16 * 5 and thought_count >= 6, thought_count


def test_same_seeds_give_the_same_thoughts_in_any_batch(world, vllm):
    model, tokenizer = world
    texts = make_texts(8, seed=3)
    texts[2] = "def g(a):\n    return a\n"  # a short row that finishes in the first rounds
    batched = run(LLM(model), tokenizer, texts, CFG, range(8))
    alone = [run(LLM(model), tokenizer, [t], CFG, [i])[0] for i, t in enumerate(texts)]
    shuffled = run(LLM(model), tokenizer, texts[::-1], CFG, range(7, -1, -1))[::-1]
    assert batched == alone == shuffled
    assert sum(map(len, batched)) >= 2  # some thoughts
    assert run(LLM(model), tokenizer, texts, CFG, range(8, 16)) != batched  # other seeds, other thoughts


def test_every_sampled_request_is_seeded_and_neutral(world, vllm):
    model, tokenizer = world
    engine = LLM(model)
    run(engine, tokenizer, make_texts(6, seed=1), CFG, range(6))
    newline = sorted(vllm_rollout._newline_ids(tokenizer))
    for _, params in engine.requests:
        assert params.ignore_eos and not params.detokenize
        if params.temperature > 0:
            assert params.seed is not None
        if kind(params) == "continue":
            assert sorted(params.stop_token_ids) == newline
    seeds = [params.seed for _, params in engine.requests if params.seed is not None]
    assert len(set(seeds)) == len(seeds)  # no two draws share a stream


def test_stats_count_what_the_prefix_cache_saved(world, vllm):
    """Snippets of four functions (about 180 tokens): the engine re-prefills about a line per request,
    not the whole prefix; where it reports no cache counts, an ideal cache is assumed and said."""
    model, tokenizer = world
    texts = ["\n".join(make_texts(4, seed=s)) for s in range(4)]
    engine, stats = LLM(model), {}
    found = run(engine, tokenizer, texts, CFG, range(4), stats=stats)
    served = engine.requests
    assert stats["requests"] == len(served) and stats["prompt_tokens"] == sum(len(ids) for ids, _ in served)
    assert stats["generated_tokens"] == sum(map(len, engine.answers))
    assert stats["rounds"] == sum(1 for event in engine.events if event[0] == "generate")
    assert stats["slots"] == stats["prompt_tokens"] - stats["cached_tokens"] + stats["generated_tokens"]
    infused = [thoughts.build_infused(t, thoughts.segment_lines(t), th).text
               for t, th in zip(texts, found, strict=True)]
    assert stats["tokens"] == sum(len(tokenizer(t)["input_ids"]) for t in infused)
    assert "cache_assumed" not in stats
    prefilled = stats["prompt_tokens"] - stats["cached_tokens"]
    assert stats["prompt_tokens"] > 5 * prefilled  # the cache pays

    assumed = {}
    run(LLM(model, report_cache=False), tokenizer, texts, CFG, range(4), stats=assumed)
    assert assumed["cache_assumed"] == assumed["requests"] == stats["requests"]
    ideal = assumed["prompt_tokens"] - assumed["cached_tokens"]
    # An ideal cache prefills each token once, and a thought's last token again when it hit the length limit;
    # vLLM's full 16-token blocks cost less than a block more per request.
    assert ideal <= assumed["tokens"] + assumed["requests"]
    assert ideal <= prefilled < ideal + 16 * stats["requests"]


def test_pushed_weights_reach_the_engine(world, vllm):
    """push_weights loads every parameter under its HF name, then empties the prefix cache; afterwards the
    engine samples from the new weights (an untrained model's rollouts), before it from the old ones."""
    model, tokenizer = world
    cfg = dataclasses.replace(CFG, temperature=0.05)
    texts = make_texts(2, seed=7)
    engine = LLM(model)
    before = run(engine, tokenizer, texts, cfg, [0, 1], greedy=True)
    assert before == [{2: " keep the big ones"}] * 2
    fresh = init_model(tokenizer, TinyModelConfig(32, 1, 2, 64, 128), seed=3).eval()
    assert vllm_rollout.push_weights(engine, fresh) == len(list(fresh.named_parameters()))
    loads = [event[1] for event in engine.events if event[0] == "load"]
    assert loads == [name for name, _ in fresh.named_parameters()]
    assert engine.events[-1] == ("reset",) and not engine.blocks
    for name, param in fresh.named_parameters():
        assert torch.equal(dict(engine.model.named_parameters())[name], param)
    comment_ids = thoughts.comment_token_ids(tokenizer)
    after = run(engine, tokenizer, texts, cfg, [0, 1], greedy=True)
    assert after == [rollout.naive_rollout(fresh, tokenizer, t, thoughts.segment_lines(t), cfg, comment_ids,
                                           torch.Generator().manual_seed(0), greedy_thoughts=True) for t in texts]
    assert after != before


def test_push_weights_needs_an_in_process_engine(world):
    model, _ = world
    engine = LLM(model)
    engine.llm_engine = object()  # vLLM's default: the engine core in another process
    with pytest.raises(RuntimeError, match="rollout_engine"):
        vllm_rollout.push_weights(engine, model)


def test_rollout_engine_is_built_for_rollouts_and_shut_down(world, vllm, monkeypatch, tmp_path):
    model, tokenizer = world
    model.save_pretrained(tmp_path / "model")
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (60 * 2**30, 80 * 2**30))
    texts = make_texts(3, seed=2)
    with vllm_rollout.rollout_engine(str(tmp_path / "model"), tokenizer, texts, CFG) as engine:
        found = run(engine, tokenizer, texts, CFG, range(3))
        vllm_rollout.push_weights(engine, model)
    assert engine.events[-1] == ("shutdown",) and len(found) == 3
    kwargs = engine.kwargs
    assert kwargs["enable_prefix_caching"] and kwargs["distributed_executor_backend"] == "external_launcher"
    assert kwargs["generation_config"] == "vllm" and kwargs["dtype"] == "bfloat16"
    longest = max(len(tokenizer(t)["input_ids"]) + t.count("\n") * (CFG.max_thought_tokens + 2) for t in texts)
    assert kwargs["max_model_len"] == longest + CFG.max_thought_tokens
    assert vllm_rollout._longest_prompt(tokenizer, texts, CFG, batch=2) == longest  # the corpus read in batches
    assert kwargs["gpu_memory_utilization"] == pytest.approx(0.9 * 0.5 * 60 / 80, abs=1e-4)
    assert {key: vllm_rollout.os.environ[key] for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE")} == \
        {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}
    assert int(vllm_rollout.os.environ["MASTER_PORT"]) > 0


def test_without_vllm_the_error_names_the_gpu_extra(world, monkeypatch):
    model, tokenizer = world
    monkeypatch.setitem(sys.modules, "vllm", None)  # what an installation without vLLM gives
    with pytest.raises(ImportError, match=r"ra3-repro\[gpu\]"):
        run(object(), tokenizer, make_texts(1), CFG, [0])


def test_the_em_loop_samples_with_the_engine_and_keeps_its_weights_current(world, vllm, monkeypatch, tmp_path):
    """`rollout_backend: vllm` in the EM loop: one engine for every round, every rollout (E-step and
    infusion) sampled by it, and the weights pushed at each round's start and after every E-step update,
    so the engine always samples the policy being trained."""
    from repro.train.ra3 import em

    model, tokenizer = world
    model = copy.deepcopy(model)
    engines = []

    @contextlib.contextmanager
    def fake_engine(model_id, tokenizer_, snippets, cfg, revision=None, free_share=vllm_rollout.ENGINE_FREE_SHARE):
        engines.append(LLM(model_id))
        yield engines[-1]
        engines[-1].shutdown()

    monkeypatch.setattr(vllm_rollout, "rollout_engine", fake_engine)
    in_sync = []
    infuse = em.infuse_corpus

    def checked_infusion(net, *args, **kwargs):  # the engine holds the very weights being infused with
        current = dict(net.named_parameters())
        in_sync.append(all(torch.equal(p, current[name]) for name, p in kwargs["engine"].model.named_parameters()))
        return infuse(net, *args, **kwargs)

    monkeypatch.setattr(em, "infuse_corpus", checked_infusion)
    model.save_pretrained(tmp_path / "base")
    cfg = dataclasses.replace(CFG, rounds=2, estep_steps=2, rollout_backend="vllm")
    mstep = TrainConfig(seq_len=64, batch_size=2, lr=1e-3, max_steps=4, warmup_steps=1, checkpoint_every=0)
    texts = make_texts(12, seed=4)
    em.em_loop(model, tokenizer, texts, cfg, mstep, tmp_path / "ra3", model_path=str(tmp_path / "base"))

    assert len(engines) == 1 and engines[0].events[-1] == ("shutdown",)
    events = engines[0].events
    n_params = len(list(model.parameters()))
    pushes = [i for i, event in enumerate(events) if event == ("reset",)]
    assert len(pushes) == cfg.rounds * (1 + cfg.estep_steps)  # each round's start, then every update
    assert sum(event[0] == "load" for event in events) == n_params * len(pushes)
    # Every rollout went to the engine: the E-step's rows and the whole corpus in each round.
    served = sum(event[1] for event in events if event[0] == "generate")
    assert served >= cfg.rounds * (cfg.estep_steps * cfg.snippets_per_step * cfg.group_size + len(texts))
    assert in_sync == [True] * cfg.rounds
    for r in range(cfg.rounds):
        assert len((tmp_path / "ra3" / f"round-{r}" / "infused.jsonl").read_text().splitlines()) == len(texts)
