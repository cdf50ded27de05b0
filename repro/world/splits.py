"""The tiny code world's four splits, disjoint by skill composition.

An adjacent pair is two skills that can follow each other (the first's output type is the
second's input type). A seeded `heldout_pair_fraction` of all adjacent pairs is held out: every
held-out evaluation task contains at least one of them (it is grown around one), and no
pretraining, expert or RL task contains any (each grows from one skill, extended only through
the other pairs). A pair is held out only while both its skills keep a training pair on that side,
so every skill is still seen composed in training.

- pretrain: whole functions, each block's intent as a comment with `comment_probability`, plus
  `helper_fraction` single-skill helpers (the only functions that may repeat), shuffled together;
- expert: functions without any comment (mid-training's expert corpus);
- rl and heldout: tasks in the HumanEval schema.

No two composed tasks share skills and parameters, within or across splits. Each split draws
from its own `random.Random` seeded with `"<seed>/<split>"` (string seeds hash the same in every
process), and the splits are generated in a fixed order because of the shared duplicate check.
"""

import dataclasses
import random
from collections import Counter

from repro.world.config import WorldConfig
from repro.world.skills import SKILL_BY_NAME, SKILLS, Skill, sample_values
from repro.world.tasks import Task, make_task, sample_parameters, task_key

Pair = tuple[str, str]
# A split that needs more draws than this per task asks for more distinct tasks than its
# compositions allow; the default pretraining split needs about 14 (most draws are repeats).
MAX_DRAWS_PER_TASK = 50

SUCCESSORS = {a.name: [b for b in SKILLS if b is not a and b.in_type == a.out_type] for a in SKILLS}
PREDECESSORS = {b.name: [a for a in SKILLS if a is not b and a.out_type == b.in_type] for b in SKILLS}


def _by_signature(skills: list[Skill]) -> list[list[Skill]]:
    groups: dict[tuple[str, str], list[Skill]] = {}
    for skill in skills:
        groups.setdefault((skill.in_type, skill.out_type), []).append(skill)
    return list(groups.values())


# Chains grow by a kind of step first (which side, which type signature), then a skill of that
# kind: otherwise the twelve list[int] -> list[int] skills would take most steps from any list.
SUCCESSOR_KINDS = {name: _by_signature(skills) for name, skills in SUCCESSORS.items()}
PREDECESSOR_KINDS = {name: _by_signature(skills) for name, skills in PREDECESSORS.items()}


def adjacent_pairs() -> list[Pair]:
    return [(a.name, b.name) for a in SKILLS for b in SUCCESSORS[a.name]]


def hold_out_pairs(fraction: float, rng: random.Random) -> list[Pair]:
    pairs = adjacent_pairs()
    target = round(fraction * len(pairs))
    outgoing = Counter(a for a, _ in pairs)
    incoming = Counter(b for _, b in pairs)
    held = []
    for a, b in rng.sample(pairs, len(pairs)):
        if len(held) == target:
            break
        if outgoing[a] > 1 and incoming[b] > 1:
            held.append((a, b))
            outgoing[a] -= 1
            incoming[b] -= 1
    if len(held) < target:
        raise ValueError(f"cannot hold out {target} of {len(pairs)} pairs and keep every skill composable "
                         f"in training; lower heldout_pair_fraction")
    return sorted(held)


@dataclasses.dataclass(frozen=True)
class Behaviour:
    """A named two-block recipe: two adjacent skills with fixed parameters."""
    name: str
    skills: tuple[Skill, Skill]
    values: tuple[dict, dict]


def make_behaviours(rng: random.Random, count: int, forbidden: frozenset) -> list[Behaviour]:
    """`count` behaviours on distinct training pairs, each named by a made-up word (consonant-vowel
    syllables), parameters drawn once."""
    pairs = [pair for pair in adjacent_pairs() if pair not in forbidden]
    if count > len(pairs):
        raise ValueError(f"{count} behaviours need as many training pairs; there are {len(pairs)}")
    names: set[str] = set()
    while len(names) < count:
        names.add("".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(2)) + rng.choice("klmnr"))
    out = []
    for name, (a, b) in zip(sorted(names), rng.sample(pairs, count), strict=True):
        skills = (SKILL_BY_NAME[a], SKILL_BY_NAME[b])
        out.append(Behaviour(name, skills, tuple(sample_values(skill, rng) for skill in skills)))
    return out


def sample_chain(rng: random.Random, start: tuple[str, ...], length: int, forbidden: frozenset,
                 behaviours: tuple[Behaviour, ...] = (), behaviour_rate: float = 0.0):
    """A chain grown from `start` by prepending or appending skills, never a skill twice (its
    variable would clobber its own input) and never adding a forbidden pair; with `behaviours`, a step
    adds a whole behaviour with probability `behaviour_rate` where one fits. Returns the skills, the
    fixed parameters of the behaviours' blocks {index: values} and the behaviours' (first index, name)."""
    chain = [SKILL_BY_NAME[name] for name in start]
    fixed: list[dict | None] = [None] * len(chain)
    spans: list[str | None] = [None] * len(chain)  # a behaviour's name at its first block
    while len(chain) < length:
        first, last = chain[0], chain[-1]
        if behaviours and len(chain) + 2 <= length and rng.random() < behaviour_rate:
            fits = [(True, b) for b in behaviours if b.skills[0].in_type == last.out_type
                     and (last.name, b.skills[0].name) not in forbidden and not set(b.skills) & set(chain)]
            fits += [(False, b) for b in behaviours if b.skills[1].out_type == first.in_type
                     and (b.skills[1].name, first.name) not in forbidden and not set(b.skills) & set(chain)]
            if fits:
                append, behaviour = rng.choice(fits)
                part, part_fixed, part_spans = list(behaviour.skills), list(behaviour.values), [behaviour.name, None]
                chain, fixed, spans = ((chain + part, fixed + part_fixed, spans + part_spans) if append
                                       else (part + chain, part_fixed + fixed, part_spans + spans))
                continue
        kinds = [[(True, s) for s in group if s not in chain and (last.name, s.name) not in forbidden]
                 for group in SUCCESSOR_KINDS[last.name]]
        kinds += [[(False, s) for s in group if s not in chain and (s.name, first.name) not in forbidden]
                  for group in PREDECESSOR_KINDS[first.name]]
        kinds = [kind for kind in kinds if kind]
        if not kinds:
            break
        append, skill = rng.choice(rng.choice(kinds))
        chain = [*chain, skill] if append else [skill, *chain]
        fixed = [*fixed, None] if append else [None, *fixed]
        spans = [*spans, None] if append else [None, *spans]
    return (tuple(chain), {i: v for i, v in enumerate(fixed) if v is not None},
            tuple((i, name) for i, name in enumerate(spans) if name is not None))


def sample_tasks(rng: random.Random, count: int, starts: list[tuple[str, ...]], forbidden: frozenset,
                 config: WorldConfig, seen: set, behaviours: tuple[Behaviour, ...] = ()) -> list[Task]:
    """`count` distinct composed tasks grown from random `starts`, none in `seen` (which collects them)."""
    tasks: list[Task] = []
    if count == 0:
        return tasks
    for _ in range(MAX_DRAWS_PER_TASK * count):
        length = rng.randint(config.min_skills, config.max_skills)
        chain, fixed, spans = sample_chain(rng, rng.choice(starts), length, forbidden, behaviours,
                                           config.behaviour_rate)
        values = tuple(fixed.get(i, v) for i, v in enumerate(sample_parameters(rng, chain)))
        key = task_key(chain, values)
        # Short chains run out early (the defaults have about 3k distinct two-skill tasks), so
        # most draws are repeats; they are skipped before their inputs are sampled and run.
        if len(chain) < config.min_skills or key in seen:
            continue
        task = make_task(rng, chain, values, config.n_tests)
        if task is None:
            continue
        seen.add(key)
        tasks.append(dataclasses.replace(task, behaviours=spans))
        if len(tasks) == count:
            return tasks
    raise ValueError(f"drew {MAX_DRAWS_PER_TASK * count} chains but found only {len(tasks)} of {count} "
                     f"distinct tasks; ask for fewer tasks")


def sample_helpers(rng: random.Random, count: int, config: WorldConfig,
                   behaviours: tuple[Behaviour, ...] = ()) -> list[Task]:
    """Single-skill functions, and with behaviours as often single-behaviour ones (a behaviour's recipe
    on its own, the way real code defines a named helper)."""
    tasks = []
    while len(tasks) < count:  # every skill has parameters and inputs that pass make_task's filter
        if behaviours and rng.random() < 0.5:
            behaviour = rng.choice(behaviours)
            task = make_task(rng, behaviour.skills, behaviour.values, config.n_tests)
            task = task and dataclasses.replace(task, behaviours=((0, behaviour.name),))
        else:
            chain = (rng.choice(SKILLS),)
            task = make_task(rng, chain, sample_parameters(rng, chain), config.n_tests)
        if task is not None:
            tasks.append(task)
    return tasks


def generate(config: WorldConfig) -> dict:
    """The held-out pairs and every split's tasks; pretraining and expert tasks come with their
    blocks' comment flags."""
    def rng(split):
        return random.Random(f"{config.seed}/{split}")

    held = hold_out_pairs(config.heldout_pair_fraction, rng("pairs"))
    forbidden = frozenset(held)
    behaviours = tuple(make_behaviours(rng("behaviours"), config.behaviours, forbidden))
    # Training chains grow from one skill drawn uniformly, so the many list[int] skills, which most
    # pairs connect, do not crowd out the string and dict skills.
    singles = [(skill.name,) for skill in SKILLS]
    seen: set = set()
    heldout = sample_tasks(rng("heldout"), config.n_heldout, held, frozenset(), config, seen, behaviours)
    rl = sample_tasks(rng("rl"), config.n_rl, singles, forbidden, config, seen, behaviours)
    expert = sample_tasks(rng("expert"), config.n_expert, singles, forbidden, config, seen, behaviours)
    pretrain_rng = rng("pretrain")
    n_helpers = round(config.helper_fraction * config.n_pretrain)
    pretrain = sample_tasks(pretrain_rng, config.n_pretrain - n_helpers, singles, forbidden, config, seen, behaviours)
    pretrain += sample_helpers(pretrain_rng, n_helpers, config, behaviours)
    pretrain_rng.shuffle(pretrain)  # so any prefix of the corpus has helpers and compositions alike

    def worded(tasks: list[Task], split: str, split_rng: random.Random) -> list[Task]:
        choices = config.docstring_wordings[split]
        return [dataclasses.replace(task, wording=tuple(split_rng.choice(choices) for _ in task.skills),
                                    positional_names=config.positional_names, numbered=config.numbered_steps)
                for task in tasks]

    heldout, rl = worded(heldout, "heldout", rng("heldout-wording")), worded(rl, "rl", rng("rl-wording"))
    expert = worded(expert, "expert", rng("expert-wording"))
    pretrain = worded(pretrain, "pretrain", rng("pretrain-wording"))
    return {
        "heldout_pairs": held,
        "behaviours": [{"name": b.name, "skills": [s.name for s in b.skills], "values": list(b.values)}
                       for b in behaviours],
        "heldout": heldout,
        "rl": rl,
        "expert": [(task, (False,) * len(task.skills)) for task in expert],
        "pretrain": [(task, tuple(pretrain_rng.random() < config.comment_probability for _ in task.skills))
                     for task in pretrain],
    }
