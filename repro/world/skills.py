"""The skill library of the tiny code world: parameterised blocks of 2 to 6 lines with an intent.

A skill turns one value of a small set of types into another (`list[int] -> int`, ...), so skills
chain into functions. Its code and its intent are `string.Template`s: `$src` is the variable the
block reads, other `$names` are parameters, sampled from small ranges and substituted as Python
literals in both, so the intent text states the same constants as the code ("keep the values
greater than 3" / `if x > 3:`).

Naming convention, so that composed code reads naturally: a block reads the variable its
predecessor wrote (the function's argument, named by its type in `ARG_NAMES`, for the first
block) and writes the variable `out` named by the skill. Every other name a block assigns (loop
variables such as `x`, `word`, `ch`; scratch such as `acc`, `rest`, `parts`) is never any skill's
output or an argument name, and a composed function never uses a skill twice, so a block cannot
clobber the value it reads. `tests/unit/test_world.py` checks this convention.

The registry is the plain tuple `SKILLS`.
"""

import dataclasses
import functools
import re
from collections.abc import Callable
from string import Template
from typing import Any

INTS = "list[int]"
INT = "int"
STR = "str"
WORDS = "list[str]"
COUNTS = "dict[str,int]"
BOOL = "bool"

# The argument name of a function whose first block reads this type (bool is only ever a result).
ARG_NAMES = {INTS: "nums", INT: "n", STR: "text", WORDS: "words", COUNTS: "counts"}


@dataclasses.dataclass(frozen=True, eq=False)
class Skill:
    name: str
    intent: str
    """What the block does, in words; a `$param` is replaced by the parameter's Python literal."""
    in_type: str
    out_type: str
    out: str
    """The variable the block writes; the next block (or the `return`) reads it."""
    params: dict[str, tuple[Any, ...]]
    """Each parameter's choices, sampled uniformly."""
    code: tuple[str, ...]
    """The block's lines at indentation 0; `$src` is the variable it reads."""


def _skill(name, intent, in_type, out_type, out, params, *code):
    """A Skill with its code lines as trailing arguments, so the registry reads like the code."""
    return Skill(name, intent, in_type, out_type, out, params, code)


SKILLS = (
    # list[int] -> list[int]
    _skill("keep_even", "keep the even values", INTS, INTS, "evens", {},
           "evens = []",
           "for x in $src:",
           "    if x % 2 == 0:",
           "        evens.append(x)"),
    _skill("keep_above", "keep the values greater than $t", INTS, INTS, "above", {"t": tuple(range(0, 9))},
           "above = []",
           "for x in $src:",
           "    if x > $t:",
           "        above.append(x)"),
    _skill("drop_multiples", "drop the multiples of $k", INTS, INTS, "kept", {"k": (3, 4, 5)},
           "kept = []",
           "for x in $src:",
           "    if x % $k != 0:",
           "        kept.append(x)"),
    _skill("clip", "clip the values to [$lo, $hi]", INTS, INTS, "clipped", {"lo": (0, 1, 2, 3), "hi": (7, 8, 9, 10)},
           "clipped = []",
           "for x in $src:",
           "    clipped.append(min(max(x, $lo), $hi))"),
    _skill("scale", "multiply each value by $k", INTS, INTS, "scaled", {"k": (2, 3, 4, 5)},
           "scaled = []",
           "for x in $src:",
           "    scaled.append(x * $k)"),
    _skill("shift", "add $k to each value", INTS, INTS, "shifted", {"k": tuple(range(1, 10))},
           "shifted = []",
           "for x in $src:",
           "    shifted.append(x + $k)"),
    _skill("absolute", "make every value non-negative", INTS, INTS, "magnitudes", {},
           "magnitudes = []",
           "for x in $src:",
           "    if x < 0:",
           "        x = -x",
           "    magnitudes.append(x)"),
    _skill("square", "square each value", INTS, INTS, "squares", {},
           "squares = []",
           "for x in $src:",
           "    squares.append(x * x)"),
    _skill("running_sum", "compute the running totals", INTS, INTS, "running", {},
           "running = []",
           "acc = 0",
           "for x in $src:",
           "    acc += x",
           "    running.append(acc)"),
    _skill("dedupe", "remove repeated values, keeping the first of each", INTS, INTS, "unique", {},
           "unique = []",
           "for x in $src:",
           "    if x not in unique:",
           "        unique.append(x)"),
    _skill("reverse", "reverse the order of the values", INTS, INTS, "backwards", {},
           "backwards = []",
           "for x in $src:",
           "    backwards.insert(0, x)"),
    _skill("neighbour_diffs", "take the differences between neighbouring values", INTS, INTS, "diffs", {},
           "diffs = []",
           "for i in range(1, len($src)):",
           "    diffs.append($src[i] - $src[i - 1])"),
    # list[int] -> int, bool, str
    _skill("sum", "add up the values", INTS, INT, "total", {},
           "total = 0",
           "for x in $src:",
           "    total += x"),
    _skill("count_above", "count the values greater than $t", INTS, INT, "n_above", {"t": tuple(range(0, 9))},
           "n_above = 0",
           "for x in $src:",
           "    if x > $t:",
           "        n_above += 1"),
    _skill("largest", "find the largest value, or 0 if there is none", INTS, INT, "largest", {},
           "largest = 0",
           "for i, x in enumerate($src):",
           "    if i == 0 or x > largest:",
           "        largest = x"),
    _skill("is_sorted", "check whether the values never decrease", INTS, BOOL, "ascending", {},
           "ascending = True",
           "for i in range(1, len($src)):",
           "    if $src[i] < $src[i - 1]:",
           "        ascending = False"),
    _skill("join_values", "write the values joined by $sep", INTS, STR, "line", {"sep": ("-", " ", ",", "+")},
           "parts = []",
           "for x in $src:",
           "    parts.append(str(x))",
           "line = $sep.join(parts)"),
    # int -> int, list[int], str
    _skill("digit_sum", "add up its digits", INT, INT, "digit_total", {},
           "digit_total = 0",
           "rest = abs($src)",
           "while rest > 0:",
           "    digit_total += rest % 10",
           "    rest //= 10"),
    _skill("digits", "list its digits", INT, INTS, "digits", {},
           "digits = []",
           "rest = abs($src)",
           "while rest > 0:",
           "    digits.insert(0, rest % 10)",
           "    rest //= 10"),
    _skill("binary", "write its absolute value in binary", INT, STR, "bits", {},
           "bits = ''",
           "rest = abs($src)",
           "while rest > 0:",
           "    bits = str(rest % 2) + bits",
           "    rest //= 2"),
    # str -> str, list[str], int, dict, bool
    _skill("remove_char", "remove every $c", STR, STR, "without", {"c": tuple("aeiorst")},
           "without = ''",
           "for ch in $src:",
           "    if ch != $c:",
           "        without += ch"),
    _skill("replace_char", "replace every $a with $b", STR, STR, "swapped", {"a": tuple("aeiou"), "b": tuple("xyz")},
           "swapped = ''",
           "for ch in $src:",
           "    if ch == $a:",
           "        ch = $b",
           "    swapped += ch"),
    _skill("reverse_words", "reverse the order of the words", STR, STR, "flipped", {},
           "parts = []",
           "for word in $src.split():",
           "    parts.insert(0, word)",
           "flipped = ' '.join(parts)"),
    _skill("long_words", "split into the words with at least $k letters", STR, WORDS, "long_words", {"k": (3, 4, 5)},
           "long_words = []",
           "for word in $src.split():",
           "    if len(word) >= $k:",
           "        long_words.append(word)"),
    _skill("count_vowels", "count the vowels", STR, INT, "n_vowels", {},
           "n_vowels = 0",
           "for ch in $src:",
           "    if ch in 'aeiou':",
           "        n_vowels += 1"),
    _skill("letter_counts", "count each letter into a dict", STR, COUNTS, "letter_counts", {},
           "letter_counts = {}",
           "for ch in $src:",
           "    if ch != ' ':",
           "        letter_counts[ch] = letter_counts.get(ch, 0) + 1"),
    _skill("has_char", "check whether $c appears", STR, BOOL, "found", {"c": tuple("abdkmnopwy")},
           "found = False",
           "for ch in $src:",
           "    if ch == $c:",
           "        found = True"),
    # list[str] -> list[str], str, int, dict
    _skill("upper_words", "uppercase each word", WORDS, WORDS, "shouted", {},
           "shouted = []",
           "for word in $src:",
           "    shouted.append(word.upper())"),
    _skill("keep_starting", "keep the words starting with $c", WORDS, WORDS, "starting", {"c": tuple("bcdflmprst")},
           "starting = []",
           "for word in $src:",
           "    if word.startswith($c):",
           "        starting.append(word)"),
    _skill("join_words", "join the words with $sep", WORDS, STR, "joined", {"sep": ("-", " ", ", ", "_")},
           "joined = ''",
           "for i, word in enumerate($src):",
           "    if i > 0:",
           "        joined += $sep",
           "    joined += word"),
    _skill("initials", "take the first letter of each word", WORDS, STR, "initials", {},
           "initials = ''",
           "for word in $src:",
           "    initials += word[:1]"),
    _skill("total_length", "add up the word lengths", WORDS, INT, "n_letters", {},
           "n_letters = 0",
           "for word in $src:",
           "    n_letters += len(word)"),
    _skill("word_counts", "count each word into a dict", WORDS, COUNTS, "tally", {},
           "tally = {}",
           "for word in $src:",
           "    tally[word] = tally.get(word, 0) + 1"),
    # dict[str,int] -> list[str], int, str, dict
    _skill("keys_at_least", "list the keys whose count is at least $k", COUNTS, WORDS, "frequent", {"k": (2, 3)},
           "frequent = []",
           "for key, value in $src.items():",
           "    if value >= $k:",
           "        frequent.append(key)"),
    _skill("sum_counts", "add up the counts", COUNTS, INT, "count_total", {},
           "count_total = 0",
           "for value in $src.values():",
           "    count_total += value"),
    _skill("most_common", "find the key with the largest count", COUNTS, STR, "best", {},
           "best = ''",
           "best_count = 0",
           "for key, value in $src.items():",
           "    if value > best_count:",
           "        best = key",
           "        best_count = value"),
    _skill("keep_counts_above", "keep the entries with a count above $k", COUNTS, COUNTS, "common", {"k": (1, 2)},
           "common = {}",
           "for key, value in $src.items():",
           "    if value > $k:",
           "        common[key] = value"),
)

SKILL_BY_NAME = {skill.name: skill for skill in SKILLS}

# Other ways to say each intent, for docstrings that do not spell out the comments a programmer would
# write (the comments, `Skill.intent`, keep one canonical phrase per skill). Same `$param` convention.
WORDINGS = {
    "keep_even": ("drop the odd values", "filter down to the even numbers"),
    "keep_above": ("discard anything not above $t", "filter to the numbers exceeding $t"),
    "drop_multiples": ("remove whatever $k divides evenly", "filter out the numbers divisible by $k"),
    "clip": ("bound each number below by $lo and above by $hi", "limit every value to the range $lo to $hi"),
    "scale": ("make every number $k times larger", "scale the numbers by a factor of $k"),
    "shift": ("raise every number by $k", "increase the values by $k"),
    "absolute": ("take absolute values", "flip the sign of the negative numbers"),
    "square": ("raise each number to the second power", "replace every value with its square"),
    "running_sum": ("form the cumulative sums", "accumulate prefix sums"),
    "dedupe": ("keep only the first occurrence of each number", "drop duplicates, preserving order"),
    "reverse": ("turn the list back to front", "flip the sequence around"),
    "neighbour_diffs": ("compute the step from each value to the next", "list the consecutive differences"),
    "sum": ("total them", "compute their sum"),
    "count_above": ("tally how many numbers exceed $t", "find how many values are above $t"),
    "largest": ("get the maximum, 0 for an empty list", "pick the biggest number, defaulting to 0"),
    "is_sorted": ("test whether the list is in ascending order", "decide whether the numbers are sorted"),
    "join_values": ("render the numbers as text separated by $sep", "glue the numbers together with $sep"),
    "digit_sum": ("compute the sum of its decimal digits", "total its digits"),
    "digits": ("split it into decimal digits", "break the number into a list of digits"),
    "binary": ("convert its magnitude to a base-2 string", "express its size in binary digits"),
    "remove_char": ("delete each occurrence of $c", "strip out the character $c"),
    "replace_char": ("swap each $a for $b", "substitute $b wherever $a appears"),
    "reverse_words": ("put the words back to front", "flip the word order"),
    "long_words": ("break it into words and keep those of length $k or more", "collect the words no shorter than $k"),
    "count_vowels": ("tally the letters a, e, i, o and u", "find how many vowels there are"),
    "letter_counts": ("build a letter frequency table", "map every letter to how often it occurs"),
    "has_char": ("test for an occurrence of $c", "decide whether the character $c is present"),
    "upper_words": ("capitalise every letter of each word", "convert the words to upper case"),
    "keep_starting": ("filter to the words that begin with $c", "select the words whose first letter is $c"),
    "join_words": ("glue the words together using $sep", "concatenate the words with $sep between them"),
    "initials": ("collect the initials", "build a string of each word's leading letter"),
    "total_length": ("count the letters across all the words", "compute the combined length of the words"),
    "word_counts": ("build a word frequency table", "map every word to how often it occurs"),
    "keys_at_least": ("collect the keys with counts of $k or more", "find the entries occurring $k times or more"),
    "sum_counts": ("total all the counts", "compute the sum of the dict's values"),
    "most_common": ("pick the most frequent key", "get the key that occurs most often"),
    "keep_counts_above": ("drop the entries whose count is $k or less", "filter the dict to counts exceeding $k"),
}


def sample_values(skill: Skill, rng) -> dict[str, Any]:
    return {name: rng.choice(choices) for name, choices in skill.params.items()}


def intent(skill: Skill, values: dict[str, Any]) -> str:
    return Template(skill.intent).substitute({k: repr(v) for k, v in values.items()})


def wording(skill: Skill, values: dict[str, Any], index: int) -> str:
    """Way `index` of saying what the block does: 0 is the canonical intent (the comment), 1.. the
    WORDINGS."""
    text = skill.intent if index == 0 else WORDINGS[skill.name][index - 1]
    return Template(text).substitute({k: repr(v) for k, v in values.items()})


def block_lines(skill: Skill, src: str, values: dict[str, Any], out: str | None = None) -> list[str]:
    """The block's code reading `src`, with its parameters as literals, at indentation 0; `out`
    renames the variable it writes (the skill's own name by default)."""
    subs = {"src": src, **{k: repr(v) for k, v in values.items()}}
    lines = [Template(line).substitute(subs) for line in skill.code]
    if out is not None and out != skill.out:
        pattern = re.compile(rf"\b{re.escape(skill.out)}\b")
        lines = [pattern.sub(out, line) for line in lines]
    return lines


@functools.cache
def block_function(name: str, values: tuple[tuple[str, Any], ...]) -> Callable[[Any], Any]:
    """The block as a one-argument function, compiled once per parameter setting.

    Tasks compute their expected outputs block by block with these, not from the rendered
    function text, so that scoring the rendered canonical solutions against those outputs (the
    world's tests do) checks the rendering too.
    """
    skill = SKILL_BY_NAME[name]
    body = "".join(f"    {line}\n" for line in block_lines(skill, "src", dict(values)))
    namespace: dict[str, Any] = {}
    exec(f"def block(src):\n{body}    return {skill.out}\n", namespace)  # our own generated code
    return namespace["block"]
