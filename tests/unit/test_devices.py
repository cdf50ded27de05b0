"""Tensors on the model's device: RA3's rollout, scoring, infusion and EM round run on the CPU as if the
model were on a GPU (`VirtualAccelerator`), and fail where a GPU would: a host tensor fed to the model or
mixed with its tensors, a model value written into a host tensor, a host generator drawing for the model."""

import dataclasses

import pytest
import torch
from transformers import AutoModelForCausalLM
from virtual_accelerator import VirtualAccelerator, WrongDevice

from repro.core.scale import RA3Config, TinyModelConfig, TokenizerConfig, TrainConfig
from repro.train.pretrain import init_model, train_tokenizer
from repro.train.ra3 import em, rollout, scoring, thoughts
from repro.train.ra3.thoughts import build_infused, segment_lines

CFG = RA3Config(rounds=1, group_size=2, max_thought_tokens=4, temperature=1.0, penalty=0.05, estep_steps=1,
                snippets_per_step=2, estep_lr=1e-3, expert_lm_weight=1.0, rollout_batch_size=3, policy_micro_batch=2)
TEXTS = [f"def f{i}(xs):\n    out = [x for x in xs if x > {i}]\n    return out\n" for i in range(4)]


def thinking_model(tokenizer, seed: int):
    """A tiny Llama whose output head has a bias towards the comment tokens, so that its rollouts think."""
    model = init_model(tokenizer, TinyModelConfig(32, 1, 2, 64, 128), seed=seed)
    head = torch.nn.Linear(32, len(tokenizer))
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[thoughts.comment_token_ids(tokenizer)] = 4.0
    model.lm_head = head
    return model


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_tokenizer([t.replace("    out", "    # keep the big ones\n    out") for t in TEXTS] * 4,
                           TokenizerConfig(vocab_size=300, min_frequency=1), tmp_path_factory.mktemp("tok"))


def test_the_checker_fails_where_a_gpu_would(tokenizer):
    model = thinking_model(tokenizer, 0).eval()
    device = next(model.parameters()).device
    with VirtualAccelerator(), torch.no_grad():
        with pytest.raises(WrongDevice, match="host tensor of shape \\(1, 3\\)"):
            model(input_ids=torch.tensor([[1, 2, 3]]))
        model(input_ids=torch.tensor([[1, 2, 3]], device=device))
        logits = model(input_ids=torch.tensor([[1, 2, 3]]).to(device)).logits[0, -1]
        with pytest.raises(WrongDevice, match="a host tensor"):
            logits + torch.zeros(logits.shape)
        assert float(logits.sum() + torch.tensor(1.0)) == pytest.approx(float(logits.sum()) + 1)  # a host scalar mixes
        total = torch.zeros(())
        with pytest.raises(WrongDevice, match="into a host tensor"):
            total += logits.sum()
        probs = torch.softmax(logits, -1)
        with pytest.raises(WrongDevice, match="generator made without `device=`"):
            torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(0))
        torch.multinomial(probs, 1, generator=torch.Generator(device=device).manual_seed(0))


def test_a_model_loaded_inside_is_on_the_host_until_moved(tokenizer, tmp_path):
    thinking_model(tokenizer, 0).save_pretrained(tmp_path)
    with VirtualAccelerator(), torch.no_grad():
        model = AutoModelForCausalLM.from_pretrained(tmp_path)
        with pytest.raises(WrongDevice, match="runs on the host"):
            model(input_ids=torch.tensor([[1, 2, 3]]))
        model.to(torch.device("cpu"))
        with pytest.raises(WrongDevice, match="host tensor of shape \\(1, 3\\)"):
            model(input_ids=torch.tensor([[1, 2, 3]]))
        model(input_ids=torch.tensor([[1, 2, 3]]).to(model.device))


def test_ra3_makes_its_tensors_on_the_model_device(tokenizer, tmp_path):
    """Rollout (sampled and greedy thoughts), teacher-forced scoring, the three infusions, and a whole EM
    round (E-step with the KL reference, backward and AdamW; infusion; the M-step through accelerate):
    every tensor they make inside the mode."""
    model = thinking_model(tokenizer, 0).eval()  # parameters made outside the mode: on the device
    trained, reference = thinking_model(tokenizer, 1), thinking_model(tokenizer, 1).eval()
    device = next(model.parameters()).device
    with VirtualAccelerator():
        comment_ids = thoughts.comment_token_ids(tokenizer)
        segmented = [segment_lines(t) for t in TEXTS]
        generators = rollout.row_generators(torch.Generator().manual_seed(0), len(TEXTS), device)
        sets = rollout.rollout(model, tokenizer, TEXTS, segmented, CFG, comment_ids, generators)
        assert sum(map(len, sets)) > 0  # it thought, so the thought-generation path ran
        rollout.rollout(model, tokenizer, TEXTS, segmented, CFG, comment_ids, generators, greedy_thoughts=True)
        samples = [build_infused(t, s, th) for t, s, th in zip(TEXTS, segmented, sets, strict=True)]
        scored = scoring.score_samples(model, tokenizer, samples, [len(s) for s in segmented], comment_ids, 1.0)
        assert all(s.line_logp.shape == (len(seg),) for s, seg in zip(scored, segmented, strict=True))
        for infusion in ("sample", "greedy_thoughts", "best_of_group"):
            em.infuse_corpus(model, tokenizer, TEXTS, dataclasses.replace(CFG, infusion=infusion), comment_ids,
                             torch.Generator().manual_seed(1))
        history = em.estep(trained, reference, tokenizer, TEXTS, dataclasses.replace(CFG, kl_weight=0.1),
                           comment_ids, torch.Generator().manual_seed(0))
        assert history[-1]["think_rate"] > 0
        mstep = TrainConfig(seq_len=32, batch_size=2, lr=1e-3, max_steps=2, warmup_steps=1, checkpoint_every=0)
        em.em_loop(trained, tokenizer, TEXTS, CFG, mstep, tmp_path)


def test_a_host_generator_in_the_rollout_is_caught(tokenizer):
    """What the mode catches in RA3 itself: rows drawing from generators not made on the model's device."""
    model = thinking_model(tokenizer, 0).eval()
    with VirtualAccelerator(), pytest.raises(WrongDevice, match="generator made without `device=`"):
        rollout.rollout(model, tokenizer, TEXTS, [segment_lines(t) for t in TEXTS], CFG,
                        thoughts.comment_token_ids(tokenizer), [torch.Generator().manual_seed(i) for i in range(4)])
