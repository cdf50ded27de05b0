"""The tiny code world: the skill library, the task format, split disjointness, determinism, and
every canonical solution passing its own tests in the project's sandboxed scorer.

A small world (a few thousand functions) is built once for the module; the default sizes are
measured by hand (see `repro/world/build.py`).
"""

import ast
import dataclasses
import hashlib
import itertools
import json
import random
import re
from pathlib import Path

import pytest

from repro.core.config import CONFIG_DIR, ConfigError, from_dict, load
from repro.core.eval_config import BenchmarkConfig
from repro.eval import score
from repro.eval.benchmarks import Benchmark, load_eval_config
from repro.world import WorldConfig, build_world
from repro.world.build import FILES
from repro.world.skills import ARG_NAMES, SKILL_BY_NAME, SKILLS, block_lines, intent, sample_values
from repro.world.splits import adjacent_pairs

TINY = CONFIG_DIR / "world" / "tiny.yaml"
HUMANEVAL_KEYS = {"task_id", "prompt", "canonical_solution", "test", "entry_point"}


def small_config(**changes) -> WorldConfig:
    sizes = {"n_pretrain": 3000, "n_expert": 300, "n_rl": 150, "n_heldout": 80}
    return dataclasses.replace(load(WorldConfig, TINY), **{**sizes, **changes})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    manifest = build_world(small_config(), out)
    rows = {name: [json.loads(line) for line in (out / name).read_text().splitlines()] for name in FILES}
    return out, manifest, rows


def pairs_of(skills: list[str]) -> set[tuple[str, str]]:
    return set(itertools.pairwise(skills))


def assigned_names(code: str) -> set[str]:
    return {node.id for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Name)
            and isinstance(node.ctx, ast.Store)}


def test_the_library_has_enough_real_multiline_skills():
    assert len(SKILLS) >= 30 and len(SKILL_BY_NAME) == len(SKILLS)
    rng = random.Random(0)
    for skill in SKILLS:
        values = sample_values(skill, rng)
        code = "\n".join(block_lines(skill, "src", values))
        assert 2 <= len(skill.code) <= 6, skill.name
        tree = ast.parse(code)
        assert any(isinstance(node, ast.For | ast.While) for node in ast.walk(tree)), skill.name
        assert "$src" in "".join(skill.code), skill.name
        for value in values.values():  # each parameter is stated in the intent and used in the code
            assert repr(value) in intent(skill, values) and repr(value) in code, skill.name
        assert "#" not in code and "$" not in code


def test_naming_convention_a_block_never_clobbers_what_it_reads():
    outputs = [skill.out for skill in SKILLS]
    assert len(set(outputs)) == len(outputs)
    scratch = set()
    for skill in SKILLS:
        names = assigned_names("\n".join(block_lines(skill, "src", sample_values(skill, random.Random(0)))))
        assert skill.out in names, skill.name
        scratch |= names - {skill.out}
    assert not scratch & set(outputs)
    assert not (scratch | set(outputs)) & ({"src"} | set(ARG_NAMES.values()))
    assert {skill.in_type for skill in SKILLS} <= set(ARG_NAMES)


def test_the_shipped_config_loads_and_bad_values_fail_loudly(tmp_path):
    config = load(WorldConfig, TINY)
    assert (config.n_pretrain, config.n_expert, config.n_rl, config.n_heldout) == (40000, 4000, 1000, 200)
    assert config.heldout_pair_fraction == 0.15 and config.comment_probability == 0.5
    data = dataclasses.asdict(config)
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(WorldConfig, {**data, "n_pretraining": 5}, "x")
    with pytest.raises(ConfigError, match="n_tests must be at least 5"):
        from_dict(WorldConfig, {**data, "n_tests": 4}, "x")
    with pytest.raises(ConfigError, match="max_skills <= 4"):
        from_dict(WorldConfig, {**data, "max_skills": 5}, "x")
    for line in TINY.read_text().splitlines():
        if line and not line.startswith("#"):
            assert "# not in paper:" in line, line


def test_files_and_manifest(world):
    out, manifest, rows = world
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["counts"] == {"pretrain.jsonl": 3000, "expert.jsonl": 300, "rl_tasks.jsonl": 150,
                                  "heldout.jsonl": 80}
    for name in FILES:
        assert manifest["files"][name]["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    assert manifest["config"] == dataclasses.asdict(small_config())
    assert len(manifest["heldout_pairs"]) == round(0.15 * len(adjacent_pairs()))


def test_tasks_use_the_humaneval_schema_with_at_least_five_asserts(world):
    _, manifest, rows = world
    for split, name in (("rl", "rl_tasks.jsonl"), ("heldout", "heldout.jsonl")):
        for n, task in enumerate(rows[name]):
            assert set(task) == HUMANEVAL_KEYS | {"intents"} and task["task_id"] == f"TinyWorld/{split}/{n}"
            assert len(task["intents"]) == len(manifest["compositions"][split][task["task_id"]])
            assert task["prompt"].startswith(f"def {task['entry_point']}(") and task["prompt"].endswith('"""\n')
            assert task["test"].startswith("def check(candidate):\n")
            assert task["test"].count("    assert candidate(") >= 5
            assert "#" not in task["canonical_solution"]
            assert 2 <= len(manifest["compositions"][split][task["task_id"]]) <= 4


def test_docstring_examples_are_what_the_canonical_solution_returns(world):
    _, _, rows = world
    for task in rows["rl_tasks.jsonl"] + rows["heldout.jsonl"]:
        namespace: dict = {}
        exec(task["prompt"] + task["canonical_solution"], namespace)  # our own generated code
        examples = re.findall(r"^    >>> (.*)\n    (.*)$", task["prompt"], re.M)
        assert examples, task["task_id"]
        for call, expected in examples:
            assert repr(eval(call, namespace)) == expected, task["task_id"]


@pytest.mark.slow
def test_every_canonical_solution_passes_its_tests_in_the_sandbox_and_none_passes(world):
    out, _, rows = world
    tasks = {t["task_id"]: t for t in rows["rl_tasks.jsonl"] + rows["heldout.jsonl"]}
    config = BenchmarkConfig(kind="humaneval", version="tiny world (test)", file=str(out),
                             provide="built by repro.world.build_world", timeout_seconds=3.0)
    benchmark = Benchmark("tinyworld", config, tasks, out, "unpinned", {})
    samples = [score.Sample(t, 0, task["prompt"] + task["canonical_solution"]) for t, task in tasks.items()]
    samples += [score.Sample(t, 1, task["prompt"] + "    return None\n") for t, task in tasks.items()]
    outcomes, _, details = score.score(benchmark, samples, load_eval_config())
    assert all(o["passed"] for o in outcomes[:len(tasks)]), [d for d in details if d][:3]
    assert not any(o["passed"] for o in outcomes[len(tasks):])


def test_splits_are_disjoint_by_composition(world):
    _, manifest, rows = world
    held = {tuple(pair) for pair in manifest["heldout_pairs"]}
    for skills in manifest["compositions"]["heldout"].values():
        assert pairs_of(skills) & held
    training = list(manifest["compositions"]["rl"].values())
    training += [row["skills"] for row in rows["pretrain.jsonl"] + rows["expert.jsonl"]]
    assert not any(pairs_of(skills) & held for skills in training)
    composed = {name for skills in training if len(skills) > 1 for name in skills}
    assert composed == set(SKILL_BY_NAME)  # every skill is still seen composed in training


def code_of(text: str) -> str:
    """A function's body without comments: what identifies a task apart from name and examples."""
    body = text.split('    """\n', 1)[1]
    return "".join(line for line in body.splitlines(keepends=True) if not line.lstrip().startswith("#"))


def test_expert_tasks_differ_from_pretraining_and_carry_no_comments(world):
    _, _, rows = world
    pretrain = {code_of(row["text"]) for row in rows["pretrain.jsonl"] if len(row["skills"]) > 1}
    for row in rows["expert.jsonl"]:
        assert "#" not in row["text"] and not any(row["commented"])
        assert 2 <= len(row["skills"]) <= 4 and code_of(row["text"]) not in pretrain


def test_block_starts_and_comments_in_the_corpora(world):
    _, manifest, rows = world
    positional = manifest["config"]["positional_names"]
    for row in rows["pretrain.jsonl"] + rows["expert.jsonl"]:
        lines = row["text"].splitlines()
        description = lines[1].lower()
        assert len(row["block_starts"]) == len(row["skills"]) == len(row["commented"])
        for k, (start, name, comment) in enumerate(zip(row["block_starts"], row["skills"], row["commented"],
                                                       strict=True)):
            skill = SKILL_BY_NAME[name]
            first = re.sub(rf"\b{skill.out}\b", f"step{k + 1}", skill.code[0]) if positional else skill.code[0]
            assert lines[start + comment] == "    " + first
            if comment:  # the block's intent, as the docstring states it, at the block's indentation
                assert lines[start].startswith("    # ") and lines[start][6:] in description
        assert sum(line.lstrip().startswith("#") for line in lines) == sum(row["commented"])


def test_comments_are_drawn_with_the_configured_probability(world):
    _, _, rows = world
    flags = [flag for row in rows["pretrain.jsonl"] for flag in row["commented"]]
    # Each pretraining block is commented independently with p = 0.5: over ~9k blocks the standard
    # error is 0.5 / sqrt(9k) ~ 0.005, so 0.03 is about six of them.
    assert len(flags) > 8000 and abs(sum(flags) / len(flags) - 0.5) < 0.03
    helpers = sum(len(row["skills"]) == 1 for row in rows["pretrain.jsonl"])
    assert helpers == round(0.1 * 3000)
    assert all(2 <= len(row["skills"]) <= 4 for row in rows["pretrain.jsonl"] if len(row["skills"]) > 1)


def test_the_same_config_gives_identical_files_and_another_seed_does_not(tmp_path):
    config = small_config(n_pretrain=300, n_expert=30, n_rl=20, n_heldout=20)
    build_world(config, tmp_path / "a")
    build_world(config, tmp_path / "b")
    build_world(dataclasses.replace(config, seed=1), tmp_path / "c")
    for name in (*FILES, "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "heldout.jsonl").read_bytes() != (tmp_path / "c" / "heldout.jsonl").read_bytes()


def test_a_rebuild_replaces_a_stale_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text("{}")
    manifest = build_world(small_config(n_pretrain=50, n_expert=5, n_rl=5, n_heldout=5), Path(tmp_path))
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
