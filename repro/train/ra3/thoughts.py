"""RA3's line-level MDP and the thought format: where a thought can go and how it is written.

Paper: arXiv:2509.25810, section 2. Each logical line of an expert snippet is an action; at every line
boundary (not before the first line) the model either acts (the expert line follows) or thinks (a
comment line `# ...` at the next line's indentation, at most `max_thought_tokens` tokens, then the
expert line). The posterior q shares its weights with pi: the decision is the model's own next-token
choice where the next line's content begins. With byte-level BPE a line's leading whitespace token
ends one space short (`"\\n   "`), and the next token is either `" #"` (think) or the line's first
code token (act); so q(think) is the model's total probability of the comment tokens there
(`comment_token_ids`, `decision_point`).
"""

import dataclasses
import io
import tokenize
from collections.abc import Sequence

import torch


@dataclasses.dataclass(frozen=True)
class Segment:
    """A logical line: `start`..`end` (with its blank lines before, its newline after)."""
    start: int
    code_start: int
    """Where the line's own first physical line starts (after blank or comment lines)."""
    end: int
    indent: str


def segment_lines(text: str) -> list[Segment]:
    """Logical lines of Python source: continuation lines and multi-line strings stay whole."""
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    segments, seg_start, first_row = [], 0, None
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        tokens = []
    if not tokens:  # not Python we can tokenize: fall back to physical lines
        return [Segment(offsets[i], offsets[i], offsets[i + 1], _indent(lines[i])) for i in range(len(lines))]
    for token in tokens:
        if token.type in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT,
                          tokenize.ENCODING, tokenize.ENDMARKER):
            continue
        if first_row is None:
            first_row = token.start[0]
        if token.type == tokenize.NEWLINE:
            end = offsets[min(token.end[0], len(lines))]
            code_start = offsets[first_row - 1]
            segments.append(Segment(seg_start, code_start, end, _indent(lines[first_row - 1])))
            seg_start, first_row = end, None
    return segments


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def comment_token_ids(tokenizer) -> torch.Tensor:
    """Ids of tokens that open a comment at a decision point (`#` or ` #`, possibly longer)."""
    ids = [i for i in range(len(tokenizer))
           if tokenizer.decode([i]).lstrip(" ").startswith("#") and "\n" not in tokenizer.decode([i])]
    if not ids:
        raise ValueError("the tokenizer has no token that starts a comment")
    return torch.tensor(ids)


def decision_point(text: str, segment: Segment) -> int:
    """Character offset where a thought is inserted: the line's content start, minus one space of
    indentation (that space travels with the next token, `" #"` or `" for"`)."""
    return segment.code_start + max(0, len(segment.indent) - 1)


def decision_tokens(tokenizer, text: str, chars: dict[int, int]) -> tuple[list[int], dict[int, int]]:
    """Token ids of `text` and, for each boundary of `chars` (boundary -> character offset in `text`), the
    index of its decision token: the boundaries a rollout decides at are those where a token starts
    exactly at the offset with at least one token before it (whose state gives the decision's logits)."""
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    starts = {s: j for j, (s, _) in enumerate(enc["offset_mapping"])}
    return enc["input_ids"], {k: starts[c] for k, c in chars.items() if starts.get(c, 0) > 0}


def rest_after_thought(tokenizer, text: str, segments: Sequence[Segment], chars: dict[int, int],
                       k: int) -> tuple[list[int], dict[int, int]]:
    """What a rollout reads after its thought at boundary k (`chars`: every boundary's decision offset in
    `text`): the tokens of "\n" + the snippet from k's line on (the thought line's newline, then the
    line), and the later boundaries' decision tokens in them (`decision_tokens`)."""
    rest = segments[k].code_start
    return decision_tokens(tokenizer, "\n" + text[rest:], {kk: c - rest + 1 for kk, c in chars.items() if kk > k})


@dataclasses.dataclass
class Infused:
    """One sample: the snippet with its thoughts, and where every part sits in the infused text."""
    text: str
    thoughts: dict[int, str]
    owner: list[int]
    """Per character: the expert segment it belongs to, or -1 inside a thought line."""
    decisions: dict[int, int]
    """Boundary k (k >= 1) -> character offset in `text` where its decision token starts."""


def build_infused(text: str, segments: Sequence[Segment], thoughts: dict[int, str]) -> Infused:
    out, owner, decisions = [], [], {}
    for k, seg in enumerate(segments):
        lead = text[seg.start: seg.code_start]
        out.append(lead)
        owner.extend([k] * len(lead))
        if k >= 1:
            decisions[k] = len(owner) + max(0, len(seg.indent) - 1)
        if k in thoughts:
            line = f"{seg.indent}#{thoughts[k]}\n"
            out.append(line)
            owner.extend([-1] * len(line))
        body = text[seg.code_start: seg.end]
        out.append(body)
        owner.extend([k] * len(body))
    tail = text[segments[-1].end:] if segments else text
    out.append(tail)
    owner.extend([len(segments) - 1] * len(tail))
    return Infused("".join(out), dict(thoughts), owner, decisions)
