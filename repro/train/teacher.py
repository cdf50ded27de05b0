"""Synthetic reasoning, the paper's Fig. 7 baseline: comments written into the expert corpus by a
teacher, then plain NTP on the commented corpus (no E-step, no EM).

At the tiny scale the teacher is the world itself: every skill block gets its true intent as a
comment at its first line (`true_intent_corpus`), the perfect teacher and so also the ceiling of what
thoughts placed there can give. `insert_comments` is the one way comments enter a snippet, whoever
wrote them.
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
