"""The paper scale rehearsed on the CPU: `table1 --scale paper` and then `rlvr_curves --scale paper`, its own
code path (its three hub models at their pinned revisions, the starcoderdata corpus, DeepSpeed ZeRO-3 through
configs/deepspeed/zero3.json for NTP, both EM rounds' E-steps and M-steps and GRPO), under `torchrun
--nproc_per_node 2` with DeepSpeed's CPU backend over gloo, with only sizes changed by `--set` (and the curves'
benchmarks, see CURVES), each run ending with `verify` deciding.

A fake hub on localhost (tests/conftest.py) serves a tiny Llama under each of configs/scales/paper.yaml's
hub ids and revisions and a corpus parquet in starcoderdata's schema; `ra3-repro fetch --scale paper` puts
them in a cache and every run reads that cache offline (tests/pipeline/rehearsal_runner.py, as the small
scale's rehearsal does). One rank is killed right after the first training checkpoint of the run (step 2 of
the first model's NTP stage, under ZeRO-3, after its RA3 stage) and the same command run again finishes the
claim.
The same claims then run in one process (DeepSpeed in a world of one), in runs of their own, to compare.
rlvr_curves runs GRPO from each model's base, NTP and RA3 models (9 runs of 2 steps) and evaluates the curve
points after training, with DeepSpeed's state given back (an evaluation under transformers' ZeRO-3 flag would
wait forever in collectives rank 1 never joins).

What must match a one-process run, and why only that: the base models' evaluations (the same weights, so
the same outcomes, bit for bit) and each model's round-0 E-step and infused corpus (the ranks split the
rows, not the generators, and sum their gradients, so the update is the one-process update up to float
rounding in another order, ~1e-7 relative, which could flip a sampled decision whose uniform draw lies that
close to its threshold: at most one snippet in each model's corpus may differ, none did when written).
Training after that differs by design: NTP's and the M-step's global batch is 8 rows per process, so it
doubles with two processes. The verdicts' statuses must match: a model this small solves nothing, so the
cells are all near zero either way (what this shows is that the claim decides the same from either run).
For the same reason every GRPO reward is 0, so its advantages and update are zero: this shows GRPO's steps,
checkpoints and curves under ZeRO-3 on 2 ranks, not that its update moves the weights. About 6.5 minutes.
"""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import two_ranks
from test_small_rehearsal import FIXTURES, corpus_shard, finished, identities, ra3_repro

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_ra3 import make_texts

from repro.core.scale import TinyModelConfig, TokenizerConfig, load_scale, resolve_scale
from repro.pipeline import model_identity
from repro.train.pretrain import init_model, train_tokenizer

pytestmark = pytest.mark.slow  # three models through NTP and two EM rounds, twice (2 processes, 1 process)

RUNNER = Path(__file__).with_name("rehearsal_runner.py")
PAPER = load_scale("paper")
CORPUS, RL = PAPER.corpus, PAPER.rlvr.train_data
RL_COMMIT = "5f1ca1a1e4c3a9d47e1f3bb7a2bd40e0a8c2d6f1"  # a real run pins one (paper.yaml leaves it open)

# Every --set is a difference from a real paper run, and each is a size. ntp.batch_size stays the paper's 8:
# zero3.json's train_micro_batch_size_per_gpu must equal it. checkpoint_every 2 of 4 steps: the kill's checkpoint.
SIZES = (
    "ntp.seq_len=64", "ntp.max_steps=4", "ntp.warmup_steps=1", "ntp.checkpoint_every=2", "ntp.log_every=1",
    "ntp.gradient_checkpointing=false",
    "ra3.estep_steps=1", "ra3.snippets_per_step=2", "ra3.group_size=2", "ra3.max_thought_tokens=4",
    "ra3.rollout_batch_size=8", "generation.n=1", "generation.max_new_tokens=8",
    # GRPO keeps the paper's 8 completions per device (zero3.json) and 8 per prompt: 2 prompts a step on 2 ranks
    "rlvr.max_steps=2", "rlvr.eval_every=1", "rlvr.gradient_accumulation_steps=1", "rlvr.max_completion_length=8",
    "rlvr.eval_n=1", "rlvr.eval_tasks=2",
)
CPU = ("rlvr.use_vllm=false",)  # vLLM needs a GPU: TRL's transformers generation instead
CURVES = ("rlvr.eval_benchmarks=[humaneval+, mbpp+]",)
"""Not a size: the curves leave out LiveCodeBench and Codeforces, whose fixtures (tests/fixtures) lie outside
the paper's LiveCodeBench window; their fetch and loading are tested in tests/unit/test_fetch.py."""
RL_PIN = (f"rlvr.train_data={{revision: {RL_COMMIT}}}",)  # fetch takes the RL set with the scale's artifacts
SETS = [f"--set={s}" for s in SIZES + CPU + CURVES + RL_PIN]
KILL = "1:2"
"""Rank 1 dies after checkpoint-2 of the first training stage is marked complete."""


def claim(name: str, out: Path) -> list[str]:
    return [name, "--scale", "paper", "--cache", str(out.parent / "cache"), *SETS, "--out", str(out)]


def tiny_models(out: Path, n: int) -> list[dict[str, bytes]]:
    """`n` tiny Llamas, each saved as a hub repository holds it (path -> bytes): one tokenizer, different
    seeds (so each model gets stages of its own), each trained for a few steps on snippets that comment their
    loop half of the time, so that the E-step samples thoughts (about 8% of boundaries) to compare. A plain
    torch loop: accelerate's process-wide state stays this pytest process's own."""
    texts = make_texts(300)
    tokenizer = train_tokenizer(texts, TokenizerConfig(vocab_size=400, min_frequency=1), out / "tokenizer")
    rows = [tokenizer(text)["input_ids"] + [tokenizer.eos_token_id] for text in texts]
    repos = []
    for seed in range(n):
        model = init_model(tokenizer, TinyModelConfig(32, 1, 2, 64, 4096), seed=seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        draws = torch.Generator().manual_seed(seed)
        for _ in range(80):
            batch = [rows[i] for i in torch.randint(len(rows), (8,), generator=draws).tolist()]
            width = max(map(len, batch))
            ids = torch.tensor([r + [tokenizer.eos_token_id] * (width - len(r)) for r in batch])
            labels = torch.tensor([r + [-100] * (width - len(r)) for r in batch])
            model(input_ids=ids, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        model.save_pretrained(out / str(seed))
        tokenizer.save_pretrained(out / str(seed))
        repos.append({p.name: p.read_bytes() for p in (out / str(seed)).iterdir() if p.is_file()})
    return repos


def finished_on_ranks(result: subprocess.CompletedProcess, what: str) -> str:
    """`finished` for a torchrun: every rank ran to its end and exited 0, or 1 with the claim failed. A rank's
    exit 1 makes torchrun raise its own ChildFailedError (one traceback, torchrun's); a rank that crashed
    would add its own traceback, and a bad input its one-line error."""
    tail = f"{what} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    assert result.returncode in (0, 1), tail
    torchrun_own = int(result.returncode == 1 and "ChildFailedError" in result.stderr)
    assert result.stderr.count("Traceback (most recent call last)") == torchrun_own, tail
    assert "ra3-repro: error" not in result.stderr, tail
    assert (" passed, " in result.stdout) and (result.returncode == 1) == (" 0 failed" not in result.stdout), tail
    return result.stdout


def statuses(verdicts: str, claim_name: str) -> list[list[str]]:
    """Each verdict line of `claim_name` printed by `ra3-repro verify`: its status and claim, and its cell."""
    return [line.split(" | ")[:2] for line in verdicts.splitlines() if f" {claim_name} | " in line]


def outcomes(out: Path, record: dict, label: str) -> list[dict]:
    """What a claim run's evaluation `label` decided per sample."""
    keep = ("task_id", "sample", "passed", "status")
    return [{k: row[k] for k in keep} for row in map(json.loads, open(out / record["outcome_files"][label]))]


def infused(stage: Path, round_: int = 0) -> list[dict]:
    return [json.loads(line) for line in open(stage / f"round-{round_}" / "infused.jsonl")]


def test_the_paper_scale_runs_table1_on_two_processes_under_zero3(fake_hub, tmp_path):
    texts = make_texts(32, seed=1)  # the corpus
    for spec, files in zip(PAPER.models, tiny_models(tmp_path / "models", len(PAPER.models)), strict=True):
        fake_hub.repos[spec.hub_id, spec.revision] = files
    fake_hub.repos[CORPUS.dataset, CORPUS.revision] = {
        f"{CORPUS.data_dir}/train-00000-of-00001.parquet": corpus_shard(texts), "README.md": b"# corpus\n"}
    fake_hub.repos[RL.dataset, RL_COMMIT] = {RL.data_files: (FIXTURES / "areal" / RL.data_files).read_bytes()}
    cache = tmp_path / "cache"
    env = {**os.environ, "HF_ENDPOINT": fake_hub.endpoint,
           "PYTHONPATH": os.pathsep.join([str(RUNNER.parents[2]), os.environ.get("PYTHONPATH", "")]),
           "HUMANEVAL_OVERRIDE_PATH": str(FIXTURES / "evalplus" / "HumanEvalPlus-fixture.jsonl"),
           "MBPP_OVERRIDE_PATH": str(FIXTURES / "evalplus" / "MbppPlus-fixture.jsonl")}
    env.pop("HF_HUB_OFFLINE", None)
    fetched = finished(ra3_repro(["fetch", "--scale", "paper", "--cache", str(cache), "--only", "model",
                                  "--only", "corpus", "--only", "rlvr", *[f"--set={s}" for s in RL_PIN]], env),
                       "fetch")
    assert fetched.count("files verified") == len(PAPER.models) + 2, fetched
    offline = {**env, "HF_HUB_OFFLINE": "1"}

    # Two processes: rank 1 killed mid-stage, then the same command again.
    runs2, out2 = tmp_path / "runs-2", tmp_path / "claim-2"
    two = {**offline, "RA3_RUNS_DIR": str(runs2)}
    killed = two_ranks.torchrun(RUNNER, claim("table1", out2), 900, **two, RA3_TEST_KILL=KILL)
    assert killed.returncode != 0 and (runs2 / "killed").exists(), killed.stderr[-4000:]
    stage = Path((runs2 / "killed").read_text()).parent  # the first model's NTP stage (its M-steps of 2 steps
    assert stage.parent.name == "ntp" and not (stage / "DONE.json").exists(), stage  # a round never checkpoint)
    resumed = two_ranks.torchrun(RUNNER, claim("table1", out2), 900, **two)
    finished_on_ranks(resumed, "table1 on 2 processes, resumed")
    assert "resuming" in (stage / "run.log").read_text()

    record = json.loads((out2 / "record.json").read_text())
    assert record["scale"] == "paper" and record["config"] == json.loads(json.dumps(
        dataclasses.asdict(resolve_scale("paper", record["sets"]))))
    assert record["config"]["ntp"]["deepspeed_config"] == "configs/deepspeed/zero3.json"
    snapshots = {spec.name: cache / "huggingface" / "hub" / f"models--{spec.hub_id.replace('/', '--')}" / "snapshots"
                 / spec.revision for spec in PAPER.models}
    assert {name: Path(record["stages"][f"{name}/base/s0"]) for name in snapshots} == snapshots
    trained = identities(runs2, "ntp") + identities(runs2, "ra3")
    assert len(trained) == 2 * len(PAPER.models), trained
    assert all(i["corpus"]["dataset"] == CORPUS.dataset and i["corpus"]["revision"] == CORPUS.revision
               for i in trained)
    for ra3 in runs2.glob("ra3/*"):
        assert len(list(ra3.glob("round-*/estep.jsonl"))) == PAPER.ra3.rounds, ra3
    verdicts2 = finished(ra3_repro(["verify", str(out2)], offline, runner=False), "verify (2 processes)")
    assert " passed, " in verdicts2 and " table1 | " in verdicts2, verdicts2
    # The killed stage, resumed, ends where an uninterrupted one does, bit for bit (`ra3-repro ntp`, same sizes).
    first = str(snapshots[PAPER.models[0].name])
    alone = two_ranks.torchrun(RUNNER, ["ntp", "--scale", "paper", "--cache", str(cache), "--model", first, *SETS],
                               300, **{**offline, "RA3_RUNS_DIR": str(tmp_path / "runs-uninterrupted")})
    two_ranks.assert_succeeded(alone)
    uninterrupted = Path(alone.stdout.strip().splitlines()[-1])  # its model folder, printed by rank 0 only
    assert alone.stdout.count(str(uninterrupted)) == 1, alone.stdout
    assert uninterrupted.parent.name == stage.name and uninterrupted != stage / "model"
    assert (uninterrupted / "model.safetensors").read_bytes() == (stage / "model" / "model.safetensors").read_bytes()

    # One process, its own runs: the same claim.
    runs1, out1 = tmp_path / "runs-1", tmp_path / "claim-1"
    finished(ra3_repro(claim("table1", out1), {**offline, "RA3_RUNS_DIR": str(runs1)}), "table1 in one process")
    verdicts1 = finished(ra3_repro(["verify", str(out1)], offline, runner=False), "verify (1 process)")
    assert statuses(verdicts1, "table1") and statuses(verdicts1, "table1") == statuses(verdicts2, "table1")

    one = json.loads((out1 / "record.json").read_text())
    for name in snapshots:
        for benchmark in PAPER.benchmarks:
            label = f"{name}/base/s0/{benchmark}"
            assert outcomes(out1, one, label) == outcomes(out2, record, label), label
    stages = {n: {runs: next(p for p in runs.glob("ra3/*") if json.loads((p / "identity.json").read_text())["base"]
                             == model_identity(str(snapshots[n]))) for runs in (runs1, runs2)} for n in snapshots}
    thoughts = 0
    for name, pair in stages.items():
        corpora = [infused(pair[runs]) for runs in (runs1, runs2)]
        assert len(corpora[0]) == len(corpora[1]) == len(texts), name
        assert sum(a != b for a, b in zip(*corpora, strict=True)) <= 1, name
        thoughts += sum(len(row["thoughts"]) for row in corpora[1])
        steps = [[json.loads(line) for line in open(pair[runs] / "round-0" / "estep.jsonl")] for runs in (runs1, runs2)]
        assert [s["think_rate"] for s in steps[0]] == [s["think_rate"] for s in steps[1]], name
    assert thoughts >= 10  # something to compare: 26 thoughts in the three corpora when written

    # GRPO under ZeRO-3: rlvr_curves from each model's base, NTP and RA3 models (the stages above, cached),
    # on 2 processes, then in one process from the one-process stages.
    curves = {}
    for runs, out in ((runs2, tmp_path / "curves-2"), (runs1, tmp_path / "curves-1")):
        environment = {**offline, "RA3_RUNS_DIR": str(runs), "RA3_TEST_PLAIN_CPU": "1"}
        if runs == runs2:
            finished_on_ranks(two_ranks.torchrun(RUNNER, claim("rlvr_curves", out), 600, **environment),
                              "rlvr_curves on 2 processes")
        else:
            finished(ra3_repro(claim("rlvr_curves", out), environment), "rlvr_curves in one process")
        verdicts = finished(ra3_repro(["verify", str(out)], offline, runner=False), f"verify {out.name}")
        curves[runs] = (json.loads((out / "record.json").read_text()), statuses(verdicts, "rlvr_curves"))
        runs_of_grpo = identities(runs, "rlvr")
        assert len(runs_of_grpo) == 3 * len(PAPER.models), runs_of_grpo
        assert all(i["rlvr"]["deepspeed"] == "configs/deepspeed/zero3.json" for i in runs_of_grpo)
    assert curves[runs2][1] and curves[runs2][1] == curves[runs1][1]
    assert all(entry["steps"] == [0, 1, 2] and entry["train"]["steps_logged"] == 2
               for entry in curves[runs2][0]["entries"]), curves[runs2][0]["entries"]
    for name in snapshots:  # from the same weights, the base models' step-0 points: the same outcomes
        for benchmark in ("humaneval+", "mbpp+"):
            label = f"{name}/base/s0/step0/{benchmark}"
            assert outcomes(tmp_path / "curves-2", curves[runs2][0], label) == \
                outcomes(tmp_path / "curves-1", curves[runs1][0], label), label
