"""Tasks of the tiny code world: 2 to 4 chained skills rendered as one HumanEval-style function.

A task is a chain of skills with sampled parameters and sampled inputs; its expected outputs come
from running the chain block by block (`skills.block_function`), never from the rendered text. It
renders as
- a prompt: `def <name>(<arg>):` and a docstring that says what each block does in one sentence
  ("Drop the odd values, then total them.") followed by `>>>` examples; each block's phrase is one
  of its wordings (`skills.wording`: 0 is the canonical intent, the phrase its comment uses; 1.. are
  other ways to say it), chosen per task;
- a body: each block's lines, optionally preceded by its canonical intent as a `# ...` comment at
  the block's indentation, then `return <the last block's variable>`; a block writes the skill's
  own variable (`evens`, `total`), or with positional names `step1`, `step2`, ... (so the code's
  first line no longer names the skill);
- a HumanEval row (`task_id, prompt, canonical_solution, test, entry_point`) whose
  `check(candidate)` asserts the expected output of every sampled input;
- a corpus row: the whole function as text, the line index where each block starts, which blocks
  carry a comment, and the skill names.
"""

import dataclasses
from collections import Counter
from typing import Any

from repro.world.skills import (
    ARG_NAMES,
    COUNTS,
    INT,
    INTS,
    STR,
    WORDS,
    Skill,
    block_function,
    block_lines,
    intent,
    sample_values,
    wording,
)

WORD_LIST = ("cat", "dog", "sun", "tree", "apple", "moon", "star", "bird", "fish", "rain", "blue", "red",
             "lamp", "book", "door", "pear", "milk", "sea", "sky", "leaf", "rock", "wind", "fire", "snow",
             "bread", "mint", "plum", "tide")
# Function names say little on purpose: the docstring, not the name, states what to do.
VERBS = ("process", "transform", "compute", "handle", "convert", "reduce", "summarize", "tidy")
NOUNS = {INTS: "numbers", INT: "number", STR: "text", WORDS: "words", COUNTS: "counts"}

# Small values keep examples and asserts short (the tiny model reads them all), and the ranges
# straddle the skills' thresholds so filters keep some values and drop others.
INPUT_SAMPLERS = {
    INTS: lambda rng: rng.choices(range(-3, 13), k=rng.randint(3, 7)),
    INT: lambda rng: rng.randint(10, 999),
    STR: lambda rng: " ".join(rng.choices(WORD_LIST, k=rng.randint(2, 4))),
    WORDS: lambda rng: rng.choices(WORD_LIST, k=rng.randint(2, 5)),
    COUNTS: lambda rng: {word: rng.randint(1, 4) for word in rng.sample(WORD_LIST, rng.randint(2, 4))},
}


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    """The function's name (the HumanEval entry point)."""
    skills: tuple[Skill, ...]
    values: tuple[dict[str, Any], ...]
    """Each block's parameter values."""
    inputs: tuple[Any, ...]
    """Distinct arguments; the first ones are the docstring's examples, all are asserted."""
    outputs: tuple[Any, ...]
    wording: tuple[int, ...] = ()
    """Per block, which of its wordings the docstring uses (`skills.wording`; empty: the canonical intents)."""
    positional_names: bool = False
    """Blocks write `step1`, `step2`, ... instead of the skill's own variable."""
    behaviours: tuple[tuple[int, str], ...] = ()
    """(first block, name) of each named behaviour in the chain: the docstring names it in place of
    its two blocks' phrases."""
    numbered: bool = False
    """The docstring lists the steps one per line ("1. ...", "2. ..."), and a block's comment names its
    step ("# 2. add 7 to each value")."""


def task_key(chain: tuple[Skill, ...], values: tuple[dict[str, Any], ...]) -> tuple:
    """What makes two tasks the same task: their skills and parameters (not name or inputs)."""
    return tuple((skill.name, tuple(v.items())) for skill, v in zip(chain, values, strict=True))


def sample_parameters(rng, chain: tuple[Skill, ...]) -> tuple[dict[str, Any], ...]:
    return tuple(sample_values(skill, rng) for skill in chain)


def make_task(rng, chain: tuple[Skill, ...], values: tuple[dict[str, Any], ...], n_inputs: int) -> Task | None:
    """A task on `chain` with these parameters and sampled inputs, or None when the tests could
    hardly tell the task from a simpler one: a block that changes no input is dead code, and a
    constant answer should miss at least two asserts."""
    functions = [block_function(skill.name, tuple(v.items())) for skill, v in zip(chain, values, strict=True)]
    inputs, seen = [], set()
    for _ in range(4 * n_inputs):  # redraw repeats; every input type has far more than n_inputs values
        x = INPUT_SAMPLERS[chain[0].in_type](rng)
        if repr(x) not in seen:
            seen.add(repr(x))
            inputs.append(x)
        if len(inputs) == n_inputs:
            break
    else:
        return None
    outputs, changed = [], [skill.in_type != skill.out_type for skill in chain]
    for x in inputs:
        value = x
        for i, function in enumerate(functions):
            result = function(value)
            changed[i] = changed[i] or result != value
            value = result
        outputs.append(value)
    if not all(changed) or Counter(repr(y) for y in outputs).most_common(1)[0][1] > n_inputs - 2:
        return None
    # Examples come first: show a non-empty, non-zero, true result where there is one.
    order = sorted(range(n_inputs), key=lambda i: not outputs[i])
    name = f"{rng.choice(VERBS)}_{NOUNS[chain[0].in_type]}"
    return Task(name, chain, values, tuple(inputs[i] for i in order), tuple(outputs[i] for i in order))


def intents(task: Task) -> list[str]:
    """Each block's comment: its canonical intent (with its step number when the docstring numbers the
    steps), the perfect teacher's thought."""
    said = [intent(skill, values) for skill, values in zip(task.skills, task.values, strict=True)]
    return [f"{k + 1}. {text}" for k, text in enumerate(said)] if task.numbered else said


def prompt(task: Task, n_examples: int) -> str:
    """Signature and docstring, ending with a newline, as HumanEval prompts do."""
    wordings = task.wording or (0,) * len(task.skills)
    phrases = [wording(skill, values, index)
               for skill, values, index in zip(task.skills, task.values, wordings, strict=True)]
    for first, name in sorted(task.behaviours, reverse=True):
        phrases[first: first + 2] = [f"apply the {name}"]
    lines = [f"def {task.name}({ARG_NAMES[task.skills[0].in_type]}):"]
    if task.numbered:
        lines += ['    """In steps:'] + [f"    {k + 1}. {phrase}" for k, phrase in enumerate(phrases)]
    else:
        description = ", then ".join(phrases)
        lines.append(f'    """{description[0].upper()}{description[1:]}.')
    for x, y in zip(task.inputs[:n_examples], task.outputs[:n_examples], strict=True):
        lines += [f"    >>> {task.name}({x!r})", f"    {y!r}"]
    lines.append('    """')
    return "\n".join(lines) + "\n"


def body(task: Task, commented: tuple[bool, ...]) -> tuple[list[str], list[int]]:
    """The body's lines and the index (within them) of each block's first line: its comment when
    it has one, else its first line of code."""
    lines, starts = [], []
    src = ARG_NAMES[task.skills[0].in_type]
    comments = intents(task)
    for k, (skill, values, comment) in enumerate(zip(task.skills, task.values, commented, strict=True)):
        starts.append(len(lines))
        if comment:
            lines.append(f"    # {comments[k]}")
        out = f"step{k + 1}" if task.positional_names else skill.out
        lines += [f"    {line}" for line in block_lines(skill, src, values, out)]
        src = out
    lines.append(f"    return {src}")
    return lines, starts


def humaneval_row(task: Task, task_id: str, n_examples: int) -> dict[str, Any]:
    """The task in the HumanEval schema (the canonical solution carries no comments), plus `intents`:
    each block's canonical intent, the thoughts a perfect teacher would write (forced-thought evaluation)."""
    lines, _ = body(task, (False,) * len(task.skills))
    asserts = "".join(f"    assert candidate({x!r}) == {y!r}\n"
                      for x, y in zip(task.inputs, task.outputs, strict=True))
    return {"task_id": task_id, "prompt": prompt(task, n_examples), "canonical_solution": "\n".join(lines) + "\n",
            "test": f"def check(candidate):\n{asserts}", "entry_point": task.name, "intents": intents(task)}


def corpus_row(task: Task, commented: tuple[bool, ...], n_examples: int) -> dict[str, Any]:
    """A whole function as text; `block_starts` are line indices into `text.splitlines()`."""
    head = prompt(task, n_examples)
    lines, starts = body(task, commented)
    offset = head.count("\n")
    return {"text": head + "\n".join(lines) + "\n", "block_starts": [offset + s for s in starts],
            "commented": list(commented), "skills": [skill.name for skill in task.skills], "intents": intents(task)}
