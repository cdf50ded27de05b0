"""Tensors on the model's device: RA3's rollout, scoring, infusion and EM round run on the CPU as if the
model were on a GPU (`VirtualAccelerator`), and fail where a GPU would: a host tensor fed to the model or
mixed with its tensors, a model value written into a host tensor, a host generator drawing for the model."""

import dataclasses
import weakref

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from repro.core.scale import RA3Config, TinyModelConfig, TokenizerConfig, TrainConfig
from repro.train.pretrain import init_model, train_tokenizer
from repro.train.ra3 import em, rollout, scoring, thoughts
from repro.train.ra3.thoughts import build_infused, segment_lines


class WrongDevice(AssertionError):
    pass


class VirtualAccelerator(TorchFunctionMode):
    """The CPU as if the model's parameters lived on an accelerator. A tensor is on the host when it was
    made without `device=` (torch.tensor(...), torch.zeros(n), a tokenizer's return_tensors="pt"), by
    `.cpu()`, or computed from host tensors only; it is on the accelerator when it is a parameter or
    buffer (made before entering), was made with `device=` or moved with `.to(device)`, or computed from
    one that is. An operation that mixes a host tensor of more than one element with an accelerator
    tensor (the model's forward included), writes accelerator values into a host tensor in place, or
    draws for accelerator tensors from a generator made without `device=`, raises WrongDevice: on a GPU
    it would fail. Host scalars (0-dim) and host indices are allowed where PyTorch allows them. Only
    tensors and generators made while the mode is on can be on the host, and any `device=` counts as
    the model's (on the CPU the two cannot be told apart)."""

    MIXING_ALLOWED = ("__getitem__", "__setitem__")

    def __init__(self):
        super().__init__()
        self.host: dict[int, weakref.ref] = {}  # id -> the host tensor (tensors compare by value, not identity)
        self.host_generators: dict[int, weakref.ref] = {}
        self.patch = pytest.MonkeyPatch()

    @staticmethod
    def _has(table: dict[int, weakref.ref], item) -> bool:
        return item is not None and id(item) in table and table[id(item)]() is item

    def _mark(self, tensor: torch.Tensor, on_host: bool) -> None:
        if on_host:
            self.host[id(tensor)] = weakref.ref(tensor)
        else:
            self.host.pop(id(tensor), None)

    def __enter__(self):
        mode = self

        class Generator(torch.Generator):  # remembers whether it was made for a device
            def __init__(self, device=None):  # torch.Generator.__new__ makes it
                if device is None:
                    mode.host_generators[id(self)] = weakref.ref(self)

        self.patch.setattr(torch, "Generator", Generator)
        return super().__enter__()

    def __exit__(self, *exc):
        self.patch.undo()
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", repr(func))
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        generator = kwargs.get("generator")
        if name in ("to", "cuda", "cpu"):
            on_host = self._moved_to_host(name, args, kwargs)
        elif generator is not None and not inputs:  # a random factory: on its generator's device
            on_host = self._has(self.host_generators, generator)
        elif not inputs:  # a factory: on the device it names, else on the host
            on_host = kwargs.get("device") is None
        else:
            host = [t for t in inputs if self._has(self.host, t)]
            accelerated = [t for t in inputs if not self._has(self.host, t)]
            in_place = name.endswith("_") or name.startswith("__i")  # the first argument is the result
            if accelerated and in_place and self._has(self.host, args[0]):
                raise WrongDevice(f"{name}: writes the model's device's values into a host tensor")
            if accelerated and any(t.dim() > 0 for t in host) and name not in self.MIXING_ALLOWED:
                raise WrongDevice(f"{name}: a host tensor of shape {tuple(next(t for t in host if t.dim()).shape)} "
                                  "meets the model's device")
            on_host = not accelerated
        if self._has(self.host_generators, generator) and not on_host:
            raise WrongDevice(f"{name}: a generator made without `device=` draws for the model's device")
        for tensor in (t for t in tree_leaves(out) if isinstance(t, torch.Tensor)):
            self._mark(tensor, on_host)
        return out

    def _moved_to_host(self, name: str, args, kwargs) -> bool:
        if name == "cpu":
            return True
        if name == "cuda":
            return False
        target = next((a for a in args[1:] if isinstance(a, torch.Tensor)), kwargs.get("other"))
        if target is not None:
            return self._has(self.host, target)
        device = torch._C._nn._parse_to(*args[1:], **kwargs)[0]
        return self._has(self.host, args[0]) if device is None else False


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
