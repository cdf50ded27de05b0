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

from repro.core import ranks
from repro.core.scale import GenerationConfig

log = logging.getLogger(__name__)


def truncate(text: str, stops: Sequence[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


THOUGHT_MODES = ("free", "banned", "forced")
"""How comment lines (thoughts) are treated while generating: as the model writes them (`free`), never
written (`banned`: every token containing `#` is forbidden), or written by the caller (`forced`: each
time the model starts a comment, its text is replaced by the next of the task's given thoughts)."""


def generate(model_id: str, prompts: Sequence[str], gen: GenerationConfig, stops: Sequence[str],
             revision: str | None = None, thoughts: str = "free",
             given: Sequence[Sequence[str]] | None = None) -> list[list[str]]:
    """`gen.n` raw completions per prompt, truncated at the stop strings; `thoughts` and `given` (one
    list of thoughts per prompt, for `forced`) as THOUGHT_MODES says."""
    import torch

    if thoughts not in THOUGHT_MODES:
        raise ValueError(f"thoughts must be one of {THOUGHT_MODES}, got {thoughts!r}")
    if (thoughts == "forced") != (given is not None):
        raise ValueError("forced thoughts need the given thoughts of every prompt, and only they do")
    if torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None and thoughts == "free":
        outputs = _generate_vllm(model_id, prompts, gen, stops, revision)
    else:
        outputs = _generate_hf(model_id, prompts, gen, stops, revision, thoughts, given)
        release_engine()  # the model was _generate_hf's: its memory goes back before the next stage
    return [[truncate(text, stops) for text in texts] for texts in outputs]


def _generate_hf(model_id, prompts, gen, stops, revision, thoughts="free", given=None) -> list[list[str]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", ranks.local_rank()) if cuda else torch.device("cpu")  # this process's GPU
    dtype = torch.bfloat16 if cuda else torch.float32  # CPUs are slow at bf16 matmuls
    model = AutoModelForCausalLM.from_pretrained(model_id, revision=revision, dtype=dtype).to(device).eval()
    extra = {}
    if thoughts == "banned":
        extra["bad_words_ids"] = [[i] for i in range(len(tokenizer)) if "#" in tokenizer.decode([i])]
    # Requests sorted by prompt length so a batch pads little; the order is fixed, so reruns match.
    requests = sorted(((i, j) for i in range(len(prompts)) for j in range(gen.n)),
                      key=lambda r: (len(prompts[r[0]]), r))
    done: dict[tuple[int, int], str] = {}
    written = {r: "" for r in requests}  # forced: the completion so far, given thoughts included
    pending = {r: list(given[r[0]]) for r in requests} if thoughts == "forced" else {}
    for round_ in range(1 + max((len(v) for v in pending.values()), default=0)):
        todo = [r for r in requests if r not in done]
        forcing = [r for r in todo if pending.get(r)]
        for group, group_stops in ((forcing, [*stops, "#"]), ([r for r in todo if not pending.get(r)], list(stops))):
            texts = _sample_batches(model, tokenizer, [prompts[i] + written[(i, j)] for i, j in group], gen,
                                    group_stops, device, seed=gen.seed + 7919 * round_, **extra)
            for r, text in zip(group, texts, strict=True):
                cut = text.find("#")
                if pending.get(r) and cut >= 0 and cut <= len(truncate(text, stops)):
                    indent = text[text.rfind("\n", 0, cut) + 1: cut]
                    # The next line's indentation minus one space: that space travels with its first token.
                    written[r] += f"{text[:cut]}# {pending[r].pop(0)}\n{indent[:-1]}"
                else:
                    done[r] = written[r] + text
    outputs: list[list[str]] = [[""] * gen.n for _ in prompts]
    for (i, j), text in done.items():
        outputs[i][j] = text
    return outputs


def _sample_batches(model, tokenizer, prompts: list[str], gen, stops: list[str], device, seed: int,
                    **extra) -> list[str]:
    """One completion per prompt, `gen.batch_size` at a time, each batch seeded from (seed, batch)."""
    import torch

    out = []
    batches = [list(range(k, min(k + gen.batch_size, len(prompts)))) for k in range(0, len(prompts), gen.batch_size)]
    for number, batch in enumerate(tqdm(batches, desc="generating", unit="batch", disable=not batches)):
        torch.manual_seed(seed * 1_000_003 + number)
        encoded = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True).to(device)
        sampling = {"do_sample": True, "temperature": gen.temperature, "top_p": gen.top_p} \
            if gen.temperature > 0 else {"do_sample": False}
        with torch.no_grad():
            tokens = model.generate(**encoded, max_new_tokens=gen.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                    stop_strings=stops, tokenizer=tokenizer, **sampling, **extra)
        out += tokenizer.batch_decode(tokens[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
    return out


VLLM_MEMORY_SHARE = 0.9
"""The share of the accelerator memory free when an evaluation engine starts that it may take (vLLM's
`gpu_memory_utilization` is a share of the total: 0.9 of it fails when anything else holds memory)."""


def vllm_engine_settings(prompt_lengths: Sequence[int], max_new_tokens: int, free_bytes: int,
                         total_bytes: int) -> dict:
    """An evaluation engine's context and memory, from what it serves and what the device has left:
    `max_model_len` the longest prompt plus `max_new_tokens` (vLLM's default is the model's whole window,
    131,072 tokens for Qwen2.5, whose KV-cache reservation alone can exceed the memory left), and
    `gpu_memory_utilization` VLLM_MEMORY_SHARE of the free memory as a share of the total."""
    return {"max_model_len": max(prompt_lengths, default=0) + max_new_tokens,
            "gpu_memory_utilization": round(VLLM_MEMORY_SHARE * free_bytes / total_bytes, 4)}


def _generate_vllm(model_id, prompts, gen, stops, revision) -> list[list[str]]:
    import torch
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
    lengths = [len(ids) for ids in tokenizer(list(prompts))["input_ids"]]
    settings = vllm_engine_settings(lengths, gen.max_new_tokens, *torch.cuda.mem_get_info())
    log.info("vLLM engine for %s: %s", model_id, settings)
    llm = LLM(model=model_id, revision=revision, dtype="bfloat16", seed=gen.seed, **settings)
    try:
        params = SamplingParams(n=gen.n, temperature=gen.temperature, top_p=gen.top_p,
                                max_tokens=gen.max_new_tokens, stop=list(stops), seed=gen.seed)
        return [[o.text for o in result.outputs] for result in llm.generate(list(prompts), params)]
    finally:
        release_engine(llm)


def release_engine(engine=None) -> None:
    """Give back the accelerator memory a finished engine or trainer held, before the next one starts:
    vLLM's engine shut down (its `shutdown()` where the installed vLLM has one; its engine-core process
    otherwise ends when the object is collected), Python's garbage collected, PyTorch's cached blocks
    returned. A caller drops its own references first; without CUDA only the collection runs."""
    import gc

    import torch

    shutdown = getattr(engine, "shutdown", None)
    if callable(shutdown):
        shutdown()
    del engine
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
