"""One writer per run file: a rank other than 0 writes no identity.json, DONE.json or run.log, and the
barrier of a single process touches nothing (the multi-process run: tests/pipeline/test_two_processes.py)."""

import logging

import pytest

from repro.core import ranks, runs
from repro.eval.barrier import barrier


def test_a_plain_process_is_rank_0_of_1(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert (ranks.rank(), ranks.world_size(), ranks.local_rank(), ranks.is_main()) == (0, 1, 0, True)
    barrier()  # returns at once: no process group to wait on


def test_only_rank_0_writes_the_run_files(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    path = runs.stage_dir("stage", {"a": 1}, tmp_path)
    with runs.stage_log(path):
        logging.getLogger("repro.test").warning("from rank 1")
    runs.mark_done(path, {})
    assert list(path.iterdir()) == [] and ranks.local_rank() == 1
    monkeypatch.setenv("RANK", "0")
    assert runs.stage_dir("stage", {"a": 1}, tmp_path) == path
    with runs.stage_log(path):
        logging.getLogger("repro.test").warning("from rank 0")
    runs.mark_done(path, {})
    runs.wait_done(path)
    assert {p.name for p in path.iterdir()} == {"identity.json", "run.log", "DONE.json"}
    assert "from rank 0" in (path / "run.log").read_text()


def test_waiting_for_a_stage_that_never_finishes_times_out_with_its_path(tmp_path):
    with pytest.raises(TimeoutError, match="no DONE.json after 0 s"):
        runs.wait_done(tmp_path / "never", poll_seconds=0.01, timeout_seconds=0.05)
