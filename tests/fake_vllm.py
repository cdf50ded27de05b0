"""A stand-in for the part of vLLM 0.30 that `repro/train/ra3/vllm_rollout.py` uses, for tests on the CPU.

`install(monkeypatch)` puts a `vllm` module in sys.modules with `SamplingParams` (only the fields the
rollout sets; an unknown one is a TypeError), `TokensPrompt` and `LLM`. The LLM samples from a Hugging
Face causal LM, one request at a time and each with its own generator (seeded from the request's
seed), in fp32: `max_tokens`, `temperature` (below 1e-5 greedy, vLLM's threshold), `allowed_token_ids`,
`stop_token_ids` (the stop token is kept in `token_ids`, as vLLM keeps it) and end-of-sequence unless
`ignore_eos`. It keeps a prefix cache of 16-token blocks, as vLLM's automatic prefix caching does, and
reports `num_cached_tokens`; its model sits where TRL's colocate mode loads weights
(`llm_engine.model_executor.driver_worker.model_runner.model.load_weights`). `events` records loads,
cache resets, generate calls and shutdowns in order; `requests` every (prompt ids, params) served and
`answers` the token ids sampled for each.
It shows what the rollout asks of vLLM and does with the answers, not how vLLM behaves.
"""

import copy
import dataclasses
import sys
import typing
from types import ModuleType, SimpleNamespace

import torch
from transformers import AutoModelForCausalLM

BLOCK = 16
"""vLLM's default KV-cache block: the prefix cache holds full blocks only."""


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    max_tokens: int = 16
    seed: int | None = None
    stop_token_ids: list[int] | None = None
    allowed_token_ids: list[int] | None = None
    ignore_eos: bool = False
    detokenize: bool = True

    def __post_init__(self):
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}.")  # as vLLM says


class TokensPrompt(typing.TypedDict):
    prompt_token_ids: list[int]


class _EngineModel:
    """The model inside the engine: `load_weights` takes (Hugging Face name, tensor) pairs."""

    def __init__(self, module, events: list):
        self.module, self.events = module, events

    def load_weights(self, weights) -> set[str]:
        params = dict(self.module.named_parameters())
        names = set()
        for name, tensor in weights:
            params[name].data.copy_(tensor)
            self.events.append(("load", name))
            names.add(name)
        return names


class LLM:
    def __init__(self, model, report_cache: bool = True, **kwargs):
        """`model`: a model folder (as vLLM takes it) or a loaded causal LM (copied: the engine holds
        its own weights). `report_cache=False`: `num_cached_tokens` is None, as an engine that does not
        count them."""
        self.model = (AutoModelForCausalLM.from_pretrained(model) if isinstance(model, str)
                      else copy.deepcopy(model)).float().eval()
        self.kwargs, self.report_cache = kwargs, report_cache
        self.events: list[tuple] = []
        self.requests: list[tuple[list[int], SamplingParams]] = []
        self.answers: list[list[int]] = []
        self.blocks: set[tuple[int, ...]] = set()
        runner = SimpleNamespace(model=_EngineModel(self.model, self.events))
        worker = SimpleNamespace(model_runner=runner)
        self.llm_engine = SimpleNamespace(model_executor=SimpleNamespace(driver_worker=worker))

    def generate(self, prompts, sampling_params, use_tqdm=True):
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        self.events.append(("generate", len(prompts)))
        return [self._serve(prompt, p) for prompt, p in zip(prompts, params, strict=True)]

    def _serve(self, prompt: dict, params: SamplingParams):
        assert set(prompt) == {"prompt_token_ids"} and params.n == 1
        ids = list(prompt["prompt_token_ids"])
        self.requests.append((ids, params))
        if params.detokenize:
            raise NotImplementedError("this fake engine has no tokenizer")
        cached = 0
        for end in range(BLOCK, len(ids), BLOCK):  # at most len - 1: the last prompt token is always computed
            if tuple(ids[:end]) not in self.blocks:
                break
            cached = end
        tokens, reason = self._sample(ids, params)
        self.answers.append(tokens)
        computed = ids + tokens[:-1]
        self.blocks.update(tuple(computed[:end]) for end in range(BLOCK, len(computed) + 1, BLOCK))
        completion = SimpleNamespace(index=0, token_ids=tokens, text="", finish_reason=reason)
        return SimpleNamespace(prompt_token_ids=ids, outputs=[completion], finished=True,
                               num_cached_tokens=cached if self.report_cache else None)

    @torch.no_grad()
    def _sample(self, ids: list[int], params: SamplingParams) -> tuple[list[int], str]:
        generator = torch.Generator().manual_seed(params.seed if params.seed is not None else 0)
        tokens: list[int] = []
        while len(tokens) < params.max_tokens:
            logits = self.model(input_ids=torch.tensor([ids + tokens])).logits[0, -1].float()
            if params.allowed_token_ids is not None:
                allowed = torch.full_like(logits, float("-inf"))
                allowed[params.allowed_token_ids] = 0.0
                logits = logits + allowed
            if params.temperature < 1e-5:
                token = int(logits.argmax())
            else:
                probs = torch.softmax(logits / params.temperature, dim=-1)
                token = int(torch.multinomial(probs, 1, generator=generator))
            tokens.append(token)
            if token in (params.stop_token_ids or ()) or (
                    not params.ignore_eos and token == self.model.config.eos_token_id):
                return tokens, "stop"
        return tokens, "length"

    def reset_prefix_cache(self) -> bool:
        self.blocks.clear()
        self.events.append(("reset",))
        return True

    def shutdown(self) -> None:
        self.events.append(("shutdown",))


def install(monkeypatch) -> ModuleType:
    """Make `import vllm` give this fake for the test's duration."""
    module = ModuleType("vllm")
    module.SamplingParams, module.TokensPrompt, module.LLM = SamplingParams, TokensPrompt, LLM
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module
