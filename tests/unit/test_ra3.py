"""RA3's pieces: line segmentation, infusion, rewards, cached vs naive rollouts, and RA3 -> NTP as c -> inf."""

import copy
import dataclasses
import json
import math
import random

import pytest
import torch

from repro.core.scale import RA3Config, TinyModelConfig, TokenizerConfig, TrainConfig
from repro.train.ntp import train_causal_lm
from repro.train.pretrain import init_model, train_tokenizer
from repro.train.ra3 import em, rollout, scoring, thoughts


def make_texts(n: int, seed: int = 0, comments: bool = True) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        k, t = rng.randint(2, 9), rng.randint(0, 5)
        comment = comments and rng.random() < 0.5
        texts.append(f"def f{i}(xs):\n    out = []\n" + ("    # keep the big ones\n" if comment else "")
                     + f"    for x in xs:\n        if x > {t}:\n            out.append(x * {k})\n    return out\n")
    return texts


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model that has learned to write a comment before the loop about half of the time."""
    texts = make_texts(400)
    tokenizer = train_tokenizer(texts, TokenizerConfig(vocab_size=420), tmp_path_factory.mktemp("tok"))
    model = init_model(tokenizer, TinyModelConfig(32, 1, 2, 64, 128), seed=0)
    cfg = TrainConfig(seq_len=64, batch_size=8, lr=5e-3, max_steps=80, warmup_steps=5, checkpoint_every=0)
    train_causal_lm(model, tokenizer, texts, cfg, tmp_path_factory.mktemp("train"))
    return model.eval(), tokenizer


# A high temperature makes this small model think often enough for the tests to exercise thinking.
CFG = RA3Config(rounds=1, group_size=8, max_thought_tokens=8, temperature=2.5, penalty=0.05,
                    estep_steps=2, snippets_per_step=3, estep_lr=1e-3)


def test_segments_keep_logical_lines_whole():
    text = ('def f(a,\n      b):\n    """Doc\n\n    more."""\n    x = [1,\n         2]\n\n    # note\n'
            '    if a:\n        return b\n    return x\n')
    segments = thoughts.segment_lines(text)
    lines = [text[s.start: s.end] for s in segments]
    assert "".join(lines) == text
    assert lines[0] == "def f(a,\n      b):\n" and lines[1] == '    """Doc\n\n    more."""\n'
    assert lines[2] == "    x = [1,\n         2]\n"
    assert lines[3] == "\n    # note\n    if a:\n" and text[segments[3].code_start:].startswith("    if a:")
    assert [s.indent for s in segments] == ["", "    ", "    ", "    ", "        ", "    "]


def test_untokenizable_text_falls_back_to_physical_lines():
    segments = thoughts.segment_lines("x = (\n  y\n")
    assert len(segments) == 2 and segments[1].indent == "  "


def test_infusion_inserts_an_indented_comment_and_marks_owners():
    text = "def f(xs):\n    out = []\n\n    for x in xs:\n        out.append(x)\n    return out\n"
    segments = thoughts.segment_lines(text)
    infused = thoughts.build_infused(text, segments, {2: " loop over the values", 3: " keep"})
    assert infused.text == ("def f(xs):\n    out = []\n\n    # loop over the values\n    for x in xs:\n"
                            "        # keep\n        out.append(x)\n    return out\n")
    assert infused.text[infused.decisions[2]:].startswith(" # loop")
    assert infused.text[infused.decisions[4]:].startswith(" return")
    assert infused.owner[infused.text.index("# loop")] == -1 and infused.owner[infused.text.index("for")] == 2
    assert thoughts.build_infused(text, segments, {}).text == text


def test_comment_tokens(trained):
    _, tokenizer = trained
    ids = thoughts.comment_token_ids(tokenizer)
    assert all(tokenizer.decode([int(i)]).lstrip(" ").startswith("#") for i in ids)


def test_teacher_forced_rewards_match_per_line_recomputation(trained):
    model, tokenizer = trained
    text = make_texts(1, seed=5, comments=False)[0]
    segments = thoughts.segment_lines(text)
    sample = thoughts.build_infused(text, segments, {2: " keep the big ones"})
    comment_ids = thoughts.comment_token_ids(tokenizer)
    with torch.no_grad():
        scored = scoring.score_samples(model, tokenizer, [sample], [len(segments)], comment_ids, 1.0)[0]
    assert torch.allclose(scored.line_logp, scoring.naive_line_logp(model, tokenizer, sample, len(segments)), atol=1e-4)
    r = scoring.rewards(scored, sample, penalty=0.5)
    assert r[2] == pytest.approx(float(scored.line_logp[2]) - 0.5) and r[3] == pytest.approx(float(scored.line_logp[3]))
    assert torch.allclose(scoring.returns_to_go(torch.tensor([1.0, 2.0, 3.0])), torch.tensor([6.0, 5.0, 3.0]))
    assert set(scored.action_logp) == {1, 2, 3, 4, 5} and scored.thought_tokens[2] >= 2
    assert all(float(v) <= 0 for v in scored.action_logp.values())


def test_batched_cached_rollout_takes_the_same_thoughts_as_the_naive_one(trained):
    """Rows of different snippets and lengths in one batch, each with its own generator: the same
    thoughts as re-encoding every prefix one row at a time, and independent of the batch."""
    model, tokenizer = trained
    comment_ids = thoughts.comment_token_ids(tokenizer)
    texts = [t for t in make_texts(6, seed=9, comments=False) for _ in range(8)]
    texts[3] = "def g(a):\n    return a\n"  # a short row: finishes while others still think
    segmented = [thoughts.segment_lines(t) for t in texts]
    cfg = dataclasses.replace(CFG, temperature=1.0)  # this model's thoughts are rarer but longer at T=1
    batched = rollout.rollout(model, tokenizer, texts, segmented, cfg, comment_ids,
                          [torch.Generator().manual_seed(i) for i in range(len(texts))])
    naive = [rollout.naive_rollout(model, tokenizer, t, s, cfg, comment_ids, torch.Generator().manual_seed(i))
             for i, (t, s) in enumerate(zip(texts, segmented, strict=True))]
    assert batched == naive
    assert sum(len(t) for t in batched) >= 10 and sum(len(t) > 1 for t in batched) >= 1  # several, and repeated
    alone = rollout.rollout(model, tokenizer, texts[5:6], segmented[5:6], cfg, comment_ids,
                        [torch.Generator().manual_seed(5)])
    assert alone[0] == batched[5]


@pytest.mark.parametrize("window", [1, 3, 16])
def test_windowed_rollout_feeds_each_token_once_and_matches_the_naive_one(trained, window):
    """At any window the thoughts equal the naive rollout's, and the slots fed stay near the infused
    texts' own token count: a row never feeds a token twice."""
    model, tokenizer = trained
    comment_ids = thoughts.comment_token_ids(tokenizer)
    model = copy.deepcopy(model)
    # Thinks more often (a much larger bias makes byte garbage, whose re-tokenization differs).
    bias = torch.zeros(len(tokenizer)).index_fill(0, comment_ids, 3.0)
    head = model.lm_head
    model.lm_head = torch.nn.Module()
    model.lm_head.forward = lambda hidden: head(hidden) + bias
    texts = [t for t in make_texts(6, seed=5, comments=False) for _ in range(8)]
    segmented = [thoughts.segment_lines(t) for t in texts]
    cfg = dataclasses.replace(CFG, rollout_window=window)
    cost: dict = {}
    batched = rollout.rollout(model, tokenizer, texts, segmented, cfg, comment_ids,
                              [torch.Generator().manual_seed(i) for i in range(len(texts))], stats=cost)
    naive = [rollout.naive_rollout(model, tokenizer, t, s, cfg, comment_ids, torch.Generator().manual_seed(i))
             for i, (t, s) in enumerate(zip(texts, segmented, strict=True))]
    assert batched == naive
    n_thoughts = sum(len(t) for t in batched)
    assert n_thoughts >= 12, n_thoughts
    # The old rollout fed 2-4 slots per real token at such rates (the rest of a snippet again after every
    # thought). "Real" tokens are the infused texts' own tokenization, a few tokens per thought line off
    # the pieces the rollout feeds, hence the margin.
    assert cost["slots"] <= 1.1 * cost["tokens"], (cost, n_thoughts)


def test_group_advantages_are_centred_per_boundary():
    advantages = em._group_advantages([torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.0])])
    assert torch.allclose(torch.stack(advantages).sum(0), torch.zeros(2), atol=1e-5)
    assert float(advantages[1][0]) > 0 > float(advantages[0][0])


def test_an_estep_updates_the_policy_and_reports(trained):
    model, tokenizer = trained
    model = copy.deepcopy(model)  # the shared model stays as trained for the other tests
    policy = [p.detach().clone() for p in model.parameters()]
    metrics = em.estep(model, None, tokenizer, make_texts(8, seed=3, comments=False), CFG,
                        thoughts.comment_token_ids(tokenizer), torch.Generator().manual_seed(0))
    assert len(metrics) == CFG.estep_steps
    assert {"mean_reward", "think_rate", "thought_tokens", "lines_per_thought", "elbo"} <= set(metrics[0])
    assert any(not torch.equal(a, b) for a, b in zip(policy, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())  # none left for the M-step to add in


def test_with_infinite_penalty_ra3_is_exactly_ntp(trained, tmp_path):
    _, tokenizer = trained
    texts = make_texts(60, seed=11, comments=False)
    mstep = TrainConfig(seq_len=64, batch_size=4, lr=3e-3, max_steps=12, warmup_steps=2, checkpoint_every=0)
    ntp_model = init_model(tokenizer, TinyModelConfig(32, 1, 2, 64, 128), seed=1)
    ra3_model = init_model(tokenizer, TinyModelConfig(32, 1, 2, 64, 128), seed=1)
    train_causal_lm(ntp_model, tokenizer, texts, mstep, tmp_path / "ntp")
    cfg = dataclasses.replace(CFG, penalty=math.inf)
    em.em_loop(ra3_model, tokenizer, texts, cfg, mstep, tmp_path / "ra3")
    infused = [json.loads(line)["text"] for line in open(tmp_path / "ra3" / "round-0" / "infused.jsonl")]
    assert infused == texts
    assert all(torch.equal(a, b) for a, b in zip(ntp_model.parameters(), ra3_model.parameters(), strict=True))


def test_diagnostics_count_thoughts_at_block_starts_and_plot(tmp_path):
    from repro.train.ra3.diagnostics import ra3_diagnostics

    text = "def f(xs):\n    out = []\n    for x in xs:\n        out.append(x)\n    total = 0\n    return total\n"
    rows = [{"text": text, "block_starts": [1, 4], "intents": ["make a list", "add up"]}]  # where blocks start
    segments = thoughts.segment_lines(text)
    round_dir = tmp_path / "round-0"
    round_dir.mkdir()
    infused = thoughts.build_infused(text, segments, {1: " make a list", 3: " inside", 4: " add up"})
    (round_dir / "infused.jsonl").write_text(json.dumps({"text": infused.text, "thoughts": {
        "1": " make a list", "3": "inside", "4": "add it"}}) + "\n")
    (round_dir / "estep.jsonl").write_text("".join(json.dumps(
        {"mean_reward": -3.0 + i, "think_rate": 0.1, "thought_tokens": 5.0, "lines_per_thought": None}) + "\n"
        for i in range(3)))
    result = ra3_diagnostics(tmp_path, rows)
    assert result["rounds"][0]["thoughts_at_block_starts"] == pytest.approx(2 / 3)
    assert result["rounds"][0]["thought_accuracy"] == pytest.approx(1 / 3)  # "make a list" only
    assert result["rounds"][0]["intent_recall"] == 1.0
    assert (tmp_path / "estep.png").stat().st_size > 0 and "# make a list" in (tmp_path / "examples.md").read_text()


def test_with_infinite_penalty_ra3_over_rounds_is_exactly_ntp(trained, tmp_path):
    """Three M-step windows of one schedule, the optimizer carried between them: the same weights as
    one uninterrupted NTP run (the fair budget: RA3's M-step sees NTP's expert tokens and schedule)."""
    _, tokenizer = trained
    texts = make_texts(60, seed=11, comments=False)
    mstep = TrainConfig(seq_len=64, batch_size=4, lr=3e-3, max_steps=12, warmup_steps=2, checkpoint_every=0)
    ntp_model = init_model(tokenizer, TinyModelConfig(32, 1, 2, 64, 128), seed=1)
    ra3_model = init_model(tokenizer, TinyModelConfig(32, 1, 2, 64, 128), seed=1)
    train_causal_lm(ntp_model, tokenizer, texts, mstep, tmp_path / "ntp")
    summaries = em.em_loop(ra3_model, tokenizer, texts, dataclasses.replace(CFG, penalty=math.inf, rounds=3), mstep,
                           tmp_path / "ra3")
    assert [s["window"] for s in summaries] == [[0, 4], [4, 8], [8, 12]]
    assert all(torch.equal(a, b) for a, b in zip(ntp_model.parameters(), ra3_model.parameters(), strict=True))


def test_content_credit_compares_thoughts_at_the_same_boundary_only():
    samples = [thoughts.Infused("", th, [], {}) for th in ({1: "a"}, {1: "b"}, {}, {2: "c"})]
    returns = [torch.tensor([0.0, 5.0, 1.0]), torch.tensor([0.0, 1.0, 1.0]), torch.tensor([0.0, 9.0, 9.0]),
               torch.tensor([0.0, 3.0, 2.0])]
    content = em._content_advantages(returns, samples)
    assert float(content[0][1]) > 0 > float(content[1][1])  # the acting sample's 9.0 does not enter
    assert content[2] == {} and content[3] == {}  # one thinker at boundary 2: no content credit


def test_greedy_thoughts_match_the_naive_rollout_and_draw_fewer_numbers(trained):
    model, tokenizer = trained
    comment_ids = thoughts.comment_token_ids(tokenizer)
    texts = make_texts(3, seed=4, comments=False) * 6  # each snippet six times, each row its own generator
    segmented = [thoughts.segment_lines(t) for t in texts]
    cfg = dataclasses.replace(CFG, temperature=2.5)
    batched = rollout.rollout(model, tokenizer, texts, segmented, cfg, comment_ids,
                              [torch.Generator().manual_seed(i) for i in range(len(texts))], greedy_thoughts=True)
    naive = [rollout.naive_rollout(model, tokenizer, t, s, cfg, comment_ids, torch.Generator().manual_seed(i),
                                   greedy_thoughts=True) for i, (t, s) in enumerate(zip(texts, segmented, strict=True))]
    assert batched == naive
    by_place: dict = {}
    for row, th in enumerate(batched):
        for k, text in th.items():
            by_place.setdefault((texts[row], k), set()).add(text)
    repeated = [place for place in by_place if sum(k == place[1] and texts[r] == place[0]
                                                   for r, th in enumerate(batched) for k in th) > 1]
    assert repeated and all(len(by_place[place]) == 1 for place in repeated)  # where rows think alike, same words


def test_best_of_group_infusion_keeps_the_highest_reward(trained):
    model, tokenizer = trained
    comment_ids = thoughts.comment_token_ids(tokenizer)
    texts = make_texts(6, seed=5, comments=False)
    cfg = dataclasses.replace(CFG, temperature=2.5, infusion="best_of_group", group_size=4)
    best = em.infuse_corpus(model, tokenizer, texts, cfg, comment_ids, torch.Generator().manual_seed(0))
    assert sorted(best) == list(range(len(texts)))
    # The same draws, all kept: the chosen one is the maximum of its snippet's candidates.
    generators = rollout.row_generators(torch.Generator().manual_seed(0), len(texts) * 4)
    segmented = [thoughts.segment_lines(t) for t in texts]
    for i, text in enumerate(texts):
        candidates = [thoughts.build_infused(text, segmented[i], th) for th in rollout.rollout(
            model, tokenizer, [text] * 4, [segmented[i]] * 4, cfg, comment_ids, generators[i * 4: i * 4 + 4])]
        scored = scoring.score_samples(model, tokenizer, candidates, [len(segmented[i])] * 4, comment_ids,
                                       cfg.temperature)
        totals = [float(scoring.rewards(s, x, cfg.penalty).sum()) for s, x in zip(scored, candidates, strict=True)]
        assert best[i].thoughts == candidates[max(range(4), key=totals.__getitem__)].thoughts


def test_the_expert_anchor_keeps_expert_likelihood(trained):
    """The same E-step at a high learning rate, with and without next-token prediction on the expert
    tokens: the anchored one loses less expert log-likelihood."""
    model, tokenizer = trained
    texts = make_texts(16, seed=6, comments=False)
    comment_ids = thoughts.comment_token_ids(tokenizer)
    samples = [thoughts.build_infused(t, thoughts.segment_lines(t), {}) for t in texts]
    n_segments = [len(thoughts.segment_lines(t)) for t in texts]

    def expert_logp(net) -> float:
        with torch.no_grad():
            return sum(float(s.line_logp.sum()) for s in scoring.score_samples(net, tokenizer, samples, n_segments,
                                                                               comment_ids, 1.0))

    before = expert_logp(model)
    losses = {}
    for weight in (0.0, 1.0):
        net = init_model(tokenizer, TinyModelConfig(32, 1, 2, 64, 128), seed=0)
        net.load_state_dict(model.state_dict())
        cfg = dataclasses.replace(CFG, estep_lr=3e-2, estep_steps=4, expert_lm_weight=weight, temperature=2.5)
        em.estep(net, None, tokenizer, texts, cfg, comment_ids, torch.Generator().manual_seed(1))
        losses[weight] = before - expert_logp(net)
    assert losses[1.0] < losses[0.0]


def test_micro_batches_of_the_policy_loss_give_the_same_update(trained):
    """Gradients accumulated over micro-batches of rows equal one backward over the whole batch."""
    model, tokenizer = trained
    texts = make_texts(6, seed=8, comments=False)
    comment_ids = thoughts.comment_token_ids(tokenizer)
    results = []
    for micro in (1, 64):
        net = copy.deepcopy(model)
        cfg = dataclasses.replace(CFG, estep_steps=1, policy_micro_batch=micro, kl_weight=0.1, expert_lm_weight=0.5)
        em.estep(net, copy.deepcopy(model).eval(), tokenizer, texts, cfg, comment_ids, torch.Generator().manual_seed(2))
        results.append([p.detach().clone() for p in net.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*results, strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(results[0], model.parameters(), strict=True))
