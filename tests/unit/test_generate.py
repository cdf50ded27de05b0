"""Generation's engines on one GPU, checked without one: a vLLM evaluation engine gets a window sized to
its prompts and the memory actually free, is shut down when done, and transformers' path gives its
memory back too (a fake `vllm` module and a CUDA that reports its memory stand in for the real ones)."""

import sys
from types import ModuleType, SimpleNamespace

import pytest
import torch

from repro.core.scale import GenerationConfig, TokenizerConfig
from repro.eval import generate
from repro.train.pretrain import train_tokenizer

PROMPTS = ["def add(a, b):\n", "def longest_common_prefix(words):\n    \"\"\"The longest prefix.\"\"\"\n"]
GEN = GenerationConfig(n=2, temperature=0.8, top_p=0.95, max_new_tokens=64, batch_size=4, seed=3)


def test_an_evaluation_engine_fits_its_prompts_and_the_free_memory():
    settings = generate.vllm_engine_settings([12, 40, 7], 64, free_bytes=40 * 2**30, total_bytes=80 * 2**30)
    assert settings == {"max_model_len": 104, "gpu_memory_utilization": 0.45}  # not 131,072 tokens and 0.9 of all


@pytest.fixture
def fake_vllm(monkeypatch):
    """A `vllm` whose LLM records how it was built and whether it was shut down."""
    engines = []

    class LLM:
        def __init__(self, **kwargs):
            self.kwargs, self.shut_down = kwargs, False
            engines.append(self)

        def generate(self, prompts, params):
            return [SimpleNamespace(outputs=[SimpleNamespace(text=f"    return {i}\n```") for i in range(params.n)])
                    for _ in prompts]

        def shutdown(self):
            self.shut_down = True

    module = ModuleType("vllm")
    module.LLM, module.SamplingParams = LLM, lambda **kwargs: SimpleNamespace(**kwargs)
    monkeypatch.setitem(sys.modules, "vllm", module)
    find_spec = generate.importlib.util.find_spec
    monkeypatch.setattr(generate.importlib.util, "find_spec",
                        lambda name, *args: object() if name == "vllm" else find_spec(name, *args))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (60 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    return engines


def test_vllm_evaluation_is_sized_and_shut_down(fake_vllm, tmp_path):
    tokenizer = train_tokenizer(PROMPTS * 4, TokenizerConfig(vocab_size=300, min_frequency=1), tmp_path / "tok")
    tokenizer.save_pretrained(tmp_path / "model")
    out = generate.generate(str(tmp_path / "model"), PROMPTS, GEN, ["\n```"])
    assert out == [["    return 0", "    return 1"]] * 2  # cut at the stop string
    [engine] = fake_vllm
    longest = max(len(tokenizer(p)["input_ids"]) for p in PROMPTS)
    assert engine.kwargs["max_model_len"] == longest + GEN.max_new_tokens
    assert engine.kwargs["gpu_memory_utilization"] == pytest.approx(0.9 * 60 / 80)
    assert engine.shut_down  # before the next engine or trainer starts


def test_forced_thoughts_stay_on_transformers_even_with_vllm(fake_vllm, monkeypatch):
    monkeypatch.setattr(generate, "_generate_hf", lambda *args: [["x"] * GEN.n for _ in PROMPTS])
    released = []
    monkeypatch.setattr(generate, "release_engine", lambda engine=None: released.append(engine))
    generate.generate("unused", PROMPTS, GEN, [], thoughts="banned")
    assert not fake_vllm and released == [None]  # transformers' model was given back
