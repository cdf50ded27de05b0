"""`ra3-repro fetch` against a fake hub on localhost and file:// release assets: what it downloads, where
later offline runs find it, and what happens to a corrupted file (detected, named, not used)."""

import dataclasses
import gzip
import hashlib
import json
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest

from repro import cli, fetch
from repro.core import files
from repro.core.config import ConfigError
from repro.core.eval_config import FetchSource
from repro.core.files import DataError
from repro.core.hub import cache_env, hub_cache
from repro.core.scale import CorpusSpec, ModelSpec, load_scale
from repro.eval.benchmarks import load_benchmark, load_eval_config, resolve_path

FIXTURES = Path(__file__).parent.parent / "fixtures"
MODEL, MODEL_COMMIT = "test-org/tiny-model", "1" * 40
CORPUS, CORPUS_COMMIT = "test-org/corpus", "2" * 40
LCB, LCB_COMMIT = "test-org/lcb", "3" * 40
CF, CF_COMMIT = "test-org/cf", "4" * 40
RL, RL_COMMIT = "test-org/rl", "5" * 40


@pytest.fixture
def hub(fake_hub):
    server = fake_hub
    server.repos[MODEL, MODEL_COMMIT] = {"config.json": b'{"model_type": "llama"}\n',
                                         "model.safetensors": b"weights " * 100,
                                         "original/consolidated.00.pth": b"not fetched"}
    server.repos[CORPUS, CORPUS_COMMIT] = {f"python/{p.name}": p.read_bytes()
                                           for p in (FIXTURES / "corpus" / "python").glob("*.parquet")}
    server.repos[CORPUS, CORPUS_COMMIT]["README.md"] = b"# corpus\n"
    server.repos[LCB, LCB_COMMIT] = {p.name: p.read_bytes() for p in (FIXTURES / "livecodebench").glob("test*.jsonl")}
    server.repos[CF, CF_COMMIT] = {"verifiable/test.jsonl": (FIXTURES / "codeforces" / "test.jsonl").read_bytes()}
    server.repos[RL, RL_COMMIT] = {"train/train.jsonl": b'{"query_id": "1"}\n', "code_benchmark/x.jsonl": b"{}\n"}
    return server


@pytest.fixture
def cache(tmp_path, monkeypatch, hub):
    """A cache directory as `--cache DIR` sets it, and the hub at the fake endpoint."""
    import evalplus.data.utils

    cache = tmp_path / "cache"
    for key, value in cache_env(cache).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(evalplus.data.utils, "CACHE_DIR", str(cache / "evalplus"))  # read at import otherwise
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return cache


def first_shard_snippets() -> int:
    from repro.train.corpus import MAX_CHARS, rejection

    shard = sorted((FIXTURES / "corpus" / "python").glob("*.parquet"))[0]
    return sum(rejection(t, MAX_CHARS) is None for t in fetch._texts(shard, "content"))


@pytest.fixture
def scale_and_config(tmp_path):
    """The small scale's shape with the fake hub's artifacts, and benchmarks whose sources are fixtures."""
    asset = tmp_path / "HumanEvalPlus.jsonl.gz"
    content = (FIXTURES / "evalplus" / "HumanEvalPlus-fixture.jsonl").read_bytes()
    asset.write_bytes(gzip.compress(content))
    asset_sha256 = hashlib.sha256(asset.read_bytes()).hexdigest()
    small = load_scale("small")
    rl_data = dataclasses.replace(small.rlvr.train_data, dataset=RL, revision=RL_COMMIT, data_files="train/train.jsonl")
    scale = dataclasses.replace(
        small, models=(ModelSpec("Tiny", MODEL, MODEL_COMMIT),),
        # the contest benchmarks only in the RLVR curves' list, as at the paper scale: fetched all the same
        rlvr=dataclasses.replace(small.rlvr, train_data=rl_data,
                                 eval_benchmarks=("humaneval+", "livecodebench", "codeforces")),
        corpus=CorpusSpec(CORPUS, CORPUS_COMMIT, "content", max_snippets=first_shard_snippets(), max_tokens=10**9,
                          data_dir="python"),
        benchmarks=("humaneval", "humaneval+"))
    config = load_eval_config()
    sources = {
        "humaneval+": dict(sha256=hashlib.sha256(content).hexdigest(),
                           fetch=FetchSource(url=asset.as_uri(), sha256=asset_sha256)),
        "livecodebench": dict(fetch=FetchSource(hub_dataset=LCB, revision=LCB_COMMIT,
                                                files=("test.jsonl", "test2.jsonl")), start_date="2023-01-01"),
        "codeforces": dict(file="{data_dir}/codeforces/test.jsonl",
                           fetch=FetchSource(hub_dataset=CF, revision=CF_COMMIT, files=("verifiable/test.jsonl",))),
    }
    benchmarks = {**config.benchmarks, **{name: dataclasses.replace(config.benchmarks[name], **changes)
                                          for name, changes in sources.items()}}
    return scale, dataclasses.replace(config, benchmarks=benchmarks)


def test_fetch_downloads_what_a_scale_needs_and_offline_runs_find_it(cache, hub, scale_and_config, monkeypatch):
    from huggingface_hub import hf_hub_download

    scale, config = scale_and_config
    manifest = fetch.fetch(scale, config)
    kinds = [(a["kind"], a["name"]) for a in manifest["artifacts"]]
    assert kinds == [("model", "Tiny"), ("corpus", CORPUS), ("rlvr", RL), ("benchmark", "humaneval+"),
                     ("benchmark", "livecodebench"), ("benchmark", "codeforces")]  # humaneval ships with its package
    assert json.loads(fetch.manifest_path(scale.name).read_text()) == manifest
    model, corpus, rl = manifest["artifacts"][:3]
    assert [f["path"] for f in rl["files"]] == ["train/train.jsonl"]
    assert {f["path"] for f in model["files"]} == {"config.json", "model.safetensors"}  # not original/
    assert [f["path"] for f in corpus["files"]] == ["python/train-00000-of-00002.parquet"]  # holds max_snippets
    assert "python/train-00001-of-00002.parquet" not in hub.downloads
    config_file = hf_hub_download(MODEL, "config.json", revision=MODEL_COMMIT, local_files_only=True,
                                  cache_dir=hub_cache())  # what from_pretrained(hub_id, revision=...) reads
    assert json.loads(Path(config_file).read_text()) == {"model_type": "llama"}
    for name in ("humaneval+", "livecodebench", "codeforces"):
        assert load_benchmark(name, config).tasks

    downloads = len(hub.downloads)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = fetch.fetch(scale, config)  # verifies the cache without the network
    assert len(hub.downloads) == downloads and again["offline"]
    assert [a["files"] for a in again["artifacts"]] == [a["files"] for a in manifest["artifacts"]]


def test_offline_corpus_reads_the_fetched_snapshot(cache, scale_and_config, monkeypatch):
    from repro.train.corpus import load_corpus

    class Tokenizer:
        def __call__(self, text, add_special_tokens):
            return {"input_ids": text.split()}

        def get_vocab(self):
            return {"words": 0}

    scale, config = scale_and_config
    fetch.fetch(scale, config)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snippets, identity = load_corpus(scale.corpus, Tokenizer())
    assert len(snippets) == scale.corpus.max_snippets and identity["source"] == "hub"
    assert identity["files"] == [f"hf://datasets/{CORPUS}@{CORPUS_COMMIT}/python/train-00000-of-00002.parquet"]


def test_a_corrupted_file_in_the_cache_is_detected_named_and_not_used(cache, scale_and_config, monkeypatch):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    scale, config = scale_and_config
    manifest = fetch.fetch(scale, config)
    weights = Path(manifest["artifacts"][0]["snapshot"]) / "model.safetensors"
    blob = weights.resolve()
    blob.write_bytes(b"weights " * 99 + b"flipped ")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=rf"removed from the cache: {MODEL}@{MODEL_COMMIT}:model.safetensors"):
        fetch.fetch(scale, config)
    assert not weights.exists() and blob.with_name(blob.name + ".corrupt").exists()
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download(MODEL, "model.safetensors", revision=MODEL_COMMIT, local_files_only=True,
                        cache_dir=hub_cache())
    with pytest.raises(DataError, match="model.safetensors"):  # and offline, fetch keeps saying what is missing
        fetch.fetch(scale, config)

    monkeypatch.delenv("HF_HUB_OFFLINE")
    fetch.fetch(scale, config)  # online, the file comes again
    assert weights.read_bytes() == b"weights " * 100


def test_a_corrupted_download_is_named_and_not_kept(cache, hub, scale_and_config):
    scale, config = scale_and_config
    hub.served_instead["test2.jsonl"] = b'{"tampered": true}\n'
    with pytest.raises(DataError, match=rf"benchmark livecodebench: corrupted, removed from the cache: "
                                        rf"{LCB}@{LCB_COMMIT}:test2.jsonl \(sha256 "):
        fetch.fetch(scale, config)
    assert hub.downloads.count("test2.jsonl") == 2  # found, removed, downloaded again, found again
    assert not any(p.name.startswith("test2") for p in (cache / "huggingface" / "hub").rglob("snapshots/*/*"))
    assert not fetch.manifest_path(scale.name).exists()  # an incomplete fetch writes no manifest


def test_a_release_asset_with_the_wrong_hash_is_not_used(cache, scale_and_config):
    scale, config = scale_and_config
    source = config.benchmarks["humaneval+"].fetch
    Path(urlparse(source.url).path).write_bytes(gzip.compress(b'{"task_id": "HumanEval/0"}\n'))
    with pytest.raises(DataError, match=r"HumanEvalPlus.jsonl.gz: downloaded sha256 [0-9a-f]{64}, pinned "):
        fetch.fetch(scale, config)
    assert not list((cache / "evalplus").iterdir())  # nothing left where EvalPlus data is looked for


def test_a_damaged_release_file_in_the_cache_is_set_aside_and_fetched_again(cache, scale_and_config):
    scale, config = scale_and_config
    fetch.fetch(scale, config)
    path = resolve_path(config.benchmarks["humaneval+"])
    path.write_text(path.read_text()[:-10])
    fetch.fetch(scale, config)
    assert files.sha256_of(path) == config.benchmarks["humaneval+"].sha256
    assert path.with_name(path.name + ".corrupt").exists()


def test_offline_without_a_cache_names_what_is_missing(cache, scale_and_config, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as error:
        fetch.fetch(*scale_and_config)
    message = str(error.value)
    assert "6 artifact(s) failed" in message and f"model Tiny: {MODEL}@{MODEL_COMMIT} is not" in message
    assert "HumanEvalPlus-v0.1.10.jsonl is not in the cache" in message


def test_the_command_line_points_everything_at_the_cache(cache, tmp_path, capsys, monkeypatch):
    other = tmp_path / "other"
    assert cli.main(["fetch", "--scale", "tiny", "--cache", str(other)]) == 0
    assert (other / "ra3-repro" / "fetch" / "tiny.json").exists()  # tiny needs nothing from outside
    assert "manifest: " in capsys.readouterr().out
    assert files.data_dir() == other.resolve() / "ra3-repro"
    assert hub_cache() == other.resolve() / "huggingface" / "hub"


def test_a_fetch_source_is_a_url_or_a_pinned_hub_dataset():
    with pytest.raises(ValueError, match="exactly one"):
        FetchSource()
    with pytest.raises(ValueError, match="takes `sha256`"):
        FetchSource(url="https://example.org/x.gz")
    with pytest.raises(ValueError, match="takes a `revision`"):
        FetchSource(hub_dataset="org/name", files=("a.jsonl",))
    config = load_eval_config()
    for name in ("humaneval+", "mbpp", "mbpp+", "livecodebench", "codeforces"):
        source = config.benchmarks[name].fetch
        assert source.url or re.fullmatch(r"[0-9a-f]{40}", source.revision), name


def test_only_fetches_the_named_artifacts_and_rejects_unknown_names(cache, hub, scale_and_config):
    scale, config = scale_and_config
    manifest = fetch.fetch(scale, config, only=("humaneval+", "corpus"))
    assert [(a["kind"], a["name"]) for a in manifest["artifacts"]] == [("corpus", CORPUS), ("benchmark", "humaneval+")]
    assert "model.safetensors" not in hub.downloads
    with pytest.raises(ConfigError, match=r"--only \['humaneval'\]: .* choose from \['Tiny', 'benchmark', "):
        fetch.fetch(scale, config, only=("humaneval",))  # it ships with its package: nothing to fetch


def test_an_unpinned_rlvr_dataset_is_not_fetched(cache, scale_and_config):
    scale, config = scale_and_config
    unpinned = dataclasses.replace(scale.rlvr.train_data, revision="UNPINNED")
    scale = dataclasses.replace(scale, rlvr=dataclasses.replace(scale.rlvr, train_data=unpinned))
    with pytest.raises(DataError, match=rf"rlvr {RL}: {RL} has revision 'UNPINNED' in configs/scales/small.yaml"):
        fetch.fetch(scale, config)
    assert fetch.fetch(scale, config, only=("model",))["artifacts"][0]["name"] == "Tiny"


def test_runs_read_the_hub_cache_named_now_not_at_import(tmp_path, monkeypatch):
    """`--cache DIR` in a process that imported huggingface_hub before (a notebook, a test, a wrapper):
    the base model's snapshot is looked up in DIR, as `fetch` put it there."""
    import huggingface_hub  # noqa: F401 (imported first, as such a process has)

    from repro import pipeline

    snapshot = tmp_path / "hub" / f"models--{MODEL.replace('/', '--')}" / "snapshots" / MODEL_COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert pipeline.hub_snapshot(MODEL, MODEL_COMMIT, "model", "small") == str(snapshot)
