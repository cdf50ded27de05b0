"""Completions from a causal LM for benchmark prompts: batched HF `generate` on CPU, vLLM on GPUs.

Base models are prompted as base models (no chat template): each benchmark kind says what the model
continues and where a completion stops (`repro/eval/benchmarks/<kind>.py`), one rule for every
method compared; this module samples `n` completions per prompt and cuts each at the earliest stop.
torch is imported when generating, not with this module, so scoring alone starts fast.
"""

import importlib.util
import logging
from collections.abc import Sequence

from tqdm import tqdm

from repro.core.scale import GenerationConfig

log = logging.getLogger(__name__)


def truncate(text: str, stops: Sequence[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


def generate(model_id: str, prompts: Sequence[str], gen: GenerationConfig, stops: Sequence[str],
             revision: str | None = None) -> list[list[str]]:
    """`gen.n` raw completions per prompt, truncated at the stop strings."""
    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None:
        outputs = _generate_vllm(model_id, prompts, gen, stops, revision)
    else:
        outputs = _generate_hf(model_id, prompts, gen, stops, revision)
    return [[truncate(text, stops) for text in texts] for texts in outputs]


def _generate_hf(model_id, prompts, gen, stops, revision) -> list[list[str]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32  # CPUs are slow at bf16 matmuls
    model = AutoModelForCausalLM.from_pretrained(model_id, revision=revision, dtype=dtype).to(device).eval()
    # Requests sorted by prompt length so a batch pads little; the order is fixed, so reruns match.
    requests = sorted(((i, j) for i in range(len(prompts)) for j in range(gen.n)),
                      key=lambda r: (len(prompts[r[0]]), r))
    outputs: list[list[str]] = [[""] * gen.n for _ in prompts]
    batches = [requests[k: k + gen.batch_size] for k in range(0, len(requests), gen.batch_size)]
    for number, batch in enumerate(tqdm(batches, desc="generating", unit="batch")):
        torch.manual_seed(gen.seed * 1_000_003 + number)
        encoded = tokenizer([prompts[i] for i, _ in batch], return_tensors="pt", padding=True).to(device)
        sampling = {"do_sample": True, "temperature": gen.temperature, "top_p": gen.top_p} \
            if gen.temperature > 0 else {"do_sample": False}
        with torch.no_grad():
            tokens = model.generate(**encoded, max_new_tokens=gen.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                    stop_strings=list(stops), tokenizer=tokenizer, **sampling)
        new = tokens[:, encoded["input_ids"].shape[1]:]
        for (i, j), text in zip(batch, tokenizer.batch_decode(new, skip_special_tokens=True), strict=True):
            outputs[i][j] = text
    return outputs


def _generate_vllm(model_id, prompts, gen, stops, revision) -> list[list[str]]:
    from vllm import LLM, SamplingParams

    llm = LLM(model=model_id, revision=revision, dtype="bfloat16", seed=gen.seed)
    params = SamplingParams(n=gen.n, temperature=gen.temperature, top_p=gen.top_p,
                            max_tokens=gen.max_new_tokens, stop=list(stops), seed=gen.seed)
    return [[o.text for o in result.outputs] for result in llm.generate(list(prompts), params)]
