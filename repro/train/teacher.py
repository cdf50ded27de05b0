"""Synthetic reasoning, the paper's Fig. 7 baseline: comments written into the expert corpus by a
teacher, then plain NTP on the commented corpus (no E-step, no EM).

At the tiny scale the teacher is the world itself: every skill block gets its true intent as a
comment at its first line (`true_intent_corpus`), the perfect teacher and so also the ceiling of what
thoughts placed there can give. At small and paper scale an instruction-tuned model at a pinned revision
(the scale's `synthetic:` settings) comments each snippet (`teacher_corpus`); only comments are taken
from its answer, never changed code (`merge_comments`). `insert_comments` is the one way comments enter
a snippet, whoever wrote them.
"""

from collections.abc import Iterable


def insert_comments(text: str, comments: dict[int, str]) -> str:
    """`text` with `# comment` lines inserted before the given line indices (of `text.splitlines()`),
    each at the indentation of the line it precedes."""
    lines = text.splitlines(keepends=True)
    out = []
    for index, line in enumerate(lines):
        if index in comments:
            indent = line[: len(line) - len(line.lstrip(" \t"))]
            out.append(f"{indent}# {comments[index]}\n")
        out.append(line)
    return "".join(out)


def true_intent_corpus(rows: Iterable[dict]) -> list[str]:
    """The tiny world's expert functions with each block's true intent at its start (rows of
    `expert.jsonl`: `text`, `block_starts`, `intents`)."""
    return [insert_comments(row["text"], dict(zip(row["block_starts"], row["intents"], strict=True)))
            for row in rows]


def merge_comments(original: str, answer: str) -> str | None:
    """`original` with the full-line comments the teacher's `answer` added, or None when the answer
    changed anything else (a line of code added, dropped or edited): a teacher may comment the expert's
    code, never rewrite it. Blank lines may differ; comments the original had stay."""
    lines = original.splitlines()
    comments: dict[int, list[str]] = {}
    pending: list[str] = []
    i = 0
    for line in answer.splitlines():
        while i < len(lines) and not lines[i].strip():
            i += 1
        if not line.strip():
            continue
        if i < len(lines) and line.rstrip() == lines[i].rstrip():
            if pending:
                comments[i] = pending
                pending = []
            i += 1
        elif line.strip().startswith("#"):
            pending.append(line.strip()[1:].strip())
        else:
            return None
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i != len(lines) or pending:
        return None
    return insert_comments(original, {k: " / ".join(v) for k, v in comments.items()})


def teacher_corpus(snippets: list[str], model_path: str, cfg) -> tuple[list[str], dict]:
    """Each snippet commented by the teacher (`SyntheticConfig`): asked with its chat template, greedy,
    the Python block of its answer merged by `merge_comments`; a snippet whose answer changed its code
    stays uncommented. Returns the texts and counts for the record."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(device).eval()
    texts, accepted = [], 0
    for start in tqdm(range(0, len(snippets), cfg.batch_size), desc="teacher comments", unit="batch"):
        batch = snippets[start: start + cfg.batch_size]
        prompts = [_chat(tokenizer, f"{cfg.instruction}\n\n```python\n{code}```") for code in batch]
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.no_grad():
            out = model.generate(**encoded, max_new_tokens=cfg.max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        answers = tokenizer.batch_decode(out[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
        for code, answer in zip(batch, answers, strict=True):
            merged = merge_comments(code, _code_block(answer))
            accepted += merged is not None
            texts.append(merged if merged is not None else code)
    return texts, {"snippets": len(snippets), "commented": accepted,
                   "rejected_as_rewritten": len(snippets) - accepted}


def _chat(tokenizer, request: str) -> str:
    if tokenizer.chat_template is None:  # a base model: the request as plain text
        return request + "\n\n```python\n"
    return tokenizer.apply_chat_template([{"role": "user", "content": request}], tokenize=False,
                                         add_generation_prompt=True)


def _code_block(answer: str) -> str:
    """The first ```python block of an answer (or what follows an opened one), else the answer."""
    if "```python" in answer:
        answer = answer.split("```python", 1)[1]
    return answer.split("```", 1)[0].lstrip("\n")
