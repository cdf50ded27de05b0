"""The small and paper scales: pinned models and corpus, DeepSpeed configs DeepSpeed accepts, and the
corpus loader on a local stand-in for bigcode/starcoderdata's `python` directory. No network."""

import hashlib
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from repro.core.config import CONFIG_DIR, REPO_ROOT
from repro.core.scale import CorpusSpec, load_scale
from repro.eval.benchmarks import load_eval_config
from repro.train import corpus

FIXTURE = Path(__file__).parent.parent / "fixtures" / "corpus"
COMMIT = re.compile(r"[0-9a-f]{40}")
HUB_SCALES = ("small", "paper")
PAPER_MODELS = {"Llama-3.2-1B": "meta-llama/Llama-3.2-1B", "Qwen-2.5-1.5B": "Qwen/Qwen2.5-1.5B",
                "Llama-3.1-8B": "meta-llama/Llama-3.1-8B"}
# Models whose revision is the placeholder "UNPINNED" (no public source for a commit was found).
# Empty today: every model and the corpus carry a commit whose source is cited in the YAML.
UNPINNED: dict[str, set[str]] = {"small": set(), "paper": set()}
# hidden_size from each model's config.json: accelerate derives ZeRO bucket sizes from it.
HIDDEN_SIZE = {"Llama-3.2-1B": 2048, "Qwen-2.5-1.5B": 1536, "Llama-3.1-8B": 4096}


@pytest.fixture(scope="module")
def scales():
    return {name: load_scale(name) for name in HUB_SCALES}


def test_paper_scale_has_the_three_base_models_and_small_one_of_them(scales):
    assert {m.name: m.hub_id for m in scales["paper"].models} == PAPER_MODELS
    assert [m.hub_id for m in scales["small"].models] == ["Qwen/Qwen2.5-1.5B"]
    assert scales["small"].models[0] in scales["paper"].models


@pytest.mark.parametrize("scale", HUB_SCALES)
def test_every_revision_is_a_commit_or_listed_as_unpinned(scales, scale):
    cfg = scales[scale]
    unpinned = {m.name for m in cfg.models if m.revision == "UNPINNED"}
    assert unpinned == UNPINNED[scale]
    for model in cfg.models:
        assert model.name in unpinned or COMMIT.fullmatch(model.revision), model
    assert COMMIT.fullmatch(cfg.corpus.revision), cfg.corpus


def test_small_corpus_is_a_prefix_of_the_paper_corpus(scales):
    small, paper = scales["small"].corpus, scales["paper"].corpus
    assert (small.dataset, small.revision, small.data_dir, small.text_field, small.split) == \
        (paper.dataset, paper.revision, paper.data_dir, paper.text_field, paper.split)
    assert small.max_snippets < paper.max_snippets and small.max_tokens < paper.max_tokens
    assert (paper.max_snippets, paper.max_tokens) == (3_500_000, 1_000_000_000)  # the paper's corpus size


@pytest.mark.parametrize("scale", HUB_SCALES)
def test_benchmarks_and_decoding(scales, scale):
    cfg = scales[scale]
    assert set(cfg.benchmarks) <= set(load_eval_config().benchmarks)
    assert {"humaneval", "mbpp", "humaneval+", "mbpp+"} <= set(cfg.benchmarks)  # table 1
    assert cfg.generation.n >= 5 and cfg.generation.temperature > 0  # pass@5 needs 5 sampled completions
    assert cfg.generation == scales["paper"].generation  # small previews paper-scale decoding
    assert cfg.ntp.mixed_precision == "bf16"
    assert len(cfg.benchmarks) == 4  # table 1's average (the paper's all4) is over these four only
    if scale == "paper":
        assert {"livecodebench", "codeforces"} <= set(cfg.rlvr.eval_benchmarks)  # the RLVR curves


# DeepSpeed -------------------------------------------------------------------------------------

def _accelerate_filled(path: Path, ntp, hidden_size: int, processes: int = 1) -> dict:
    """The config as accelerate hands it to DeepSpeed: Accelerator(mixed_precision=...) and
    accelerator.prepare(model, optimizer, scheduler), as repro.train.ntp calls them, fill the "auto"s."""
    from accelerate.utils import DeepSpeedPlugin

    plugin = DeepSpeedPlugin(hf_ds_config=str(path))
    plugin.set_mixed_precision(ntp.mixed_precision)
    plugin.fill_match("gradient_accumulation_steps", must_match=False, gradient_accumulation_steps=1)
    micro = plugin.get_value("train_micro_batch_size_per_gpu")
    assert micro != "auto", f"{path.name}: accelerate fills train_micro_batch_size_per_gpu only from a dataloader"
    plugin.deepspeed_config_process(must_match=False, **{
        "gradient_clipping": 1.0,
        "zero_optimization.stage3_gather_16bit_weights_on_model_save": False,
        "train_micro_batch_size_per_gpu": micro,
        "train_batch_size": micro * plugin.get_value("gradient_accumulation_steps") * processes,
        "zero_optimization.reduce_bucket_size": hidden_size * hidden_size,
        "zero_optimization.stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
        "zero_optimization.stage3_param_persistence_threshold": 10 * hidden_size,
    })
    return plugin.deepspeed_config


def _autos(config: dict, prefix: str = "") -> list[str]:
    found = []
    for key, value in config.items():
        if isinstance(value, dict):
            found += _autos(value, f"{prefix}{key}.")
        elif value == "auto":
            found.append(prefix + key)
    return found


@pytest.fixture(scope="module")
def deepspeed_config_class():
    pytest.importorskip("accelerate", reason="accelerate fills the DeepSpeed configs' auto values")
    ds_config = pytest.importorskip("deepspeed.runtime.config", reason="DeepSpeed is not installed (extra `gpu`)")
    return ds_config.DeepSpeedConfig


def _named_configs(scales):
    named = [(scale, model.name) for scale in HUB_SCALES if scales[scale].ntp.deepspeed_config
             for model in scales[scale].models]
    assert ("paper", "Llama-3.1-8B") in named
    return named


@pytest.mark.parametrize("path", sorted((CONFIG_DIR / "deepspeed").glob("*.json")), ids=lambda p: p.name)
def test_every_deepspeed_json_is_accepted_by_deepspeed(deepspeed_config_class, path):
    filled = _accelerate_filled(path, load_scale("paper").ntp, hidden_size=HIDDEN_SIZE["Llama-3.1-8B"])
    assert _autos(filled) == [], f"{path.name}: accelerate leaves these 'auto' for DeepSpeed"
    ds = deepspeed_config_class(filled)  # raises on unknown or ill-typed keys
    assert ds.bfloat16_config.enabled
    assert ds.zero_optimization_stage == json.loads(path.read_text())["zero_optimization"]["stage"]
    if ds.zero_optimization_stage == 3:
        assert ds.zero_config.gather_16bit_weights_on_model_save  # save_pretrained writes full weights


def test_scales_that_name_a_deepspeed_config_agree_with_it(deepspeed_config_class, scales):
    for scale, model in _named_configs(scales):
        ntp = scales[scale].ntp
        path = REPO_ROOT / ntp.deepspeed_config
        assert path.is_file(), f"{scale}: {ntp.deepspeed_config} does not exist"
        ds = deepspeed_config_class(_accelerate_filled(path, ntp, HIDDEN_SIZE[model]))
        assert ds.train_micro_batch_size_per_gpu == ntp.batch_size, scale
        assert ds.gradient_clipping == ntp.max_grad_norm, scale
        assert ntp.grad_accum_steps == 1, f"{scale}: the training loop's accumulation steps DeepSpeed every micro-batch"
    assert load_scale("paper").ntp.deepspeed_config == "configs/deepspeed/zero3.json"
    assert load_scale("paper").ntp.gradient_checkpointing


# Corpus ----------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def private_datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus.datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")


@pytest.fixture(scope="module")
def tokenizer():
    """A real fast tokenizer built here: one token per word or punctuation run."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({"[UNK]": 0, "<eos>": 1}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]", eos_token="<eos>")


def _spec(max_snippets: int = 1000, max_tokens: int = 10**9) -> CorpusSpec:
    paper = load_scale("paper").corpus
    return CorpusSpec(dataset=paper.dataset, revision=paper.revision, text_field=paper.text_field,
                      data_dir=paper.data_dir, split=paper.split, max_snippets=max_snippets, max_tokens=max_tokens)


def _fixture_contents() -> list[str]:
    files = sorted((FIXTURE / "python").glob("*.parquet"))
    return [text for f in files for text in pq.read_table(f).column("content").to_pylist()]


def _stream_sha256(snippets: list[str]) -> str:
    digest = hashlib.sha256()
    for text in snippets:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


def _tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1


@pytest.mark.parametrize("streaming", [True, False])
def test_corpus_keeps_filtered_rows_in_order_and_records_its_identity(tokenizer, streaming):
    snippets, identity = corpus.load_corpus(_spec(), tokenizer, local_path=FIXTURE, streaming=streaming)
    expected = [t for t in _fixture_contents() if t and t.strip() and len(t) <= corpus.MAX_CHARS]
    assert snippets == expected and len(expected) == 7
    assert identity["skipped"] == {"empty": 2, "too_long": 1}
    assert identity["files"] == ["python/train-00000-of-00002.parquet", "python/train-00001-of-00002.parquet"]
    assert identity["sha256"] == _stream_sha256(expected)
    assert identity["tokens"] == sum(_tokens(tokenizer, t) for t in expected)
    assert (identity["dataset"], identity["revision"]) == ("bigcode/starcoderdata", _spec().revision)
    assert (identity["snippets"], identity["stopped_by"]) == (7, "exhausted")


def test_the_corpus_identity_is_the_same_wherever_the_tokenizer_lives(tokenizer, tmp_path):
    """A hub model's tokenizer loads from a cache folder whose absolute path differs between machines:
    the identity (and so the stage hash) names the tokenizer by its vocabulary, not by its folder."""
    from transformers import AutoTokenizer

    identities = []
    for home in ("machine-a/hub/snapshots/rev", "elsewhere/b"):
        tokenizer.save_pretrained(tmp_path / home)
        loaded = AutoTokenizer.from_pretrained(tmp_path / home)
        identities.append(corpus.load_corpus(_spec(max_snippets=2), loaded, local_path=FIXTURE)[1])
    assert identities[0] == identities[1] and str(tmp_path) not in json.dumps(identities[0])
    assert identities[0]["tokenizer"]["vocab_sha256"] == corpus.tokenizer_identity(tokenizer)["vocab_sha256"]


def test_snippet_cap_takes_a_prefix(tokenizer):
    everything, _ = corpus.load_corpus(_spec(), tokenizer, local_path=FIXTURE)
    snippets, identity = corpus.load_corpus(_spec(max_snippets=4), tokenizer, local_path=FIXTURE)
    assert snippets == everything[:4]
    assert (identity["snippets"], identity["stopped_by"]) == (4, "max_snippets")
    assert identity["sha256"] == _stream_sha256(everything[:4])


def test_token_cap_counts_eos_and_never_overruns(tokenizer):
    everything, _ = corpus.load_corpus(_spec(), tokenizer, local_path=FIXTURE)
    budget = sum(_tokens(tokenizer, t) for t in everything[:3]) + _tokens(tokenizer, everything[3]) - 1
    snippets, identity = corpus.load_corpus(_spec(max_tokens=budget), tokenizer, local_path=FIXTURE)
    assert snippets == everything[:3]
    assert identity["stopped_by"] == "max_tokens" and identity["tokens"] <= budget


def test_rows_that_are_not_snippets():
    assert corpus.rejection(None, 100) == "empty"
    assert corpus.rejection(" \n", 100) == "empty"
    assert corpus.rejection("x = 1\n" * 20, 100) == "too_long"
    assert corpus.rejection("s = '\ud800'\n", 100) == "invalid_utf8"  # a lone surrogate, as JSON can carry
    assert corpus.rejection("s = 'héllo'\n", 100) is None


def test_hub_loading_passes_the_pinned_revision(tokenizer, monkeypatch):
    calls = []
    real = corpus.datasets.load_dataset_builder

    def fake(path, **kwargs):
        calls.append((path, kwargs))
        return real(str(FIXTURE), data_dir=kwargs["data_dir"])

    monkeypatch.setattr(corpus.datasets, "load_dataset_builder", fake)
    _, identity = corpus.load_corpus(_spec(max_snippets=2), tokenizer)
    assert calls == [("bigcode/starcoderdata", {"data_dir": "python", "revision": _spec().revision})]
    assert identity["source"] == "hub"


def test_the_small_scale_fits_one_80_gb_gpu_by_the_memory_calculation():
    import importlib.util

    spec = importlib.util.spec_from_file_location("memory_small", REPO_ROOT / "benchmarks" / "memory_small.py")
    memory = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(memory)
    scale = load_scale("small")
    assert memory.peak(scale) < 80e9
    stages = memory.stages(scale)
    assert max(stages["E-step"].values()) < 30e9  # no term grows with rows x length x vocabulary any more
    assert sum(stages["(as before) the E-step without chunks or micro-batches"].values()) > 80e9


def test_one_step_at_the_small_scales_learning_rate_moves_every_weight(tmp_path):
    """A checkpoint saved in bf16 (as hub models are) trains from fp32 master weights: one AdamW step at
    lr 1e-5 changes every weight, norms included (bf16 updates would leave most of them unchanged)."""
    import dataclasses

    import torch

    from repro import pipeline
    from repro.core.scale import TinyModelConfig, TokenizerConfig
    from repro.train.ntp import train_causal_lm
    from repro.train.pretrain import init_model, train_tokenizer

    texts = [f"def f{i}(x):\n    return x + {i}\n" for i in range(200)]
    tokenizer = train_tokenizer(texts, TokenizerConfig(vocab_size=300), tmp_path / "base")
    init_model(tokenizer, TinyModelConfig(32, 1, 2, 64, 64), seed=0).to(torch.bfloat16).save_pretrained(
        tmp_path / "base")
    model = pipeline.load_trainable(str(tmp_path / "base"))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    before = [p.detach().clone() for p in model.parameters()]
    cfg = dataclasses.replace(load_scale("small").ntp, seq_len=32, batch_size=4, grad_accum_steps=1, max_steps=1,
                              warmup_steps=1, mixed_precision="no", gradient_checkpointing=False, checkpoint_every=0)
    assert cfg.lr == 1e-5
    train_causal_lm(model, tokenizer, texts, cfg, tmp_path / "run")
    unchanged = [n for (n, p), b in zip(model.named_parameters(), before, strict=True) if torch.equal(p, b)]
    assert not unchanged
    bf16 = [b.to(torch.bfloat16) for b in before]
    moved = sum(not torch.equal(p.detach().to(torch.bfloat16), b)
                for p, b in zip(model.parameters(), bf16, strict=True))
    assert moved < len(bf16)  # in bf16 most tensors would not have changed at all
