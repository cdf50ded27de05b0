"""The sandbox against programs that try to pass without passing, or to harm the host or harness."""

import os
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from repro.core import sandbox
from repro.core.sandbox import Job, Limits, run_job, run_jobs

needs_bwrap = pytest.mark.skipif(sandbox.sandbox_mode() != "bwrap", reason="bubblewrap cannot create namespaces here")

QUICK = Limits(wall_seconds=6.0, cpu_seconds=6, memory_bytes=1 * 2**30, output_bytes=4096)


def script(code: str, test_seconds: float = 2.0, limits: Limits = QUICK, exit_ok: bool = False) -> Job:
    return Job("script", {"code": code, "test_seconds": test_seconds, "exit_ok": exit_ok}, limits)


def test_pass_fail_error_are_told_apart():
    verdicts = run_jobs([script("assert 1 + 1 == 2"), script("assert 1 + 1 == 3, 'arith'"), script("1 / 0")])
    assert [v.status for v in verdicts] == ["pass", "fail", "error"]
    assert "arith" in verdicts[1].detail and "ZeroDivisionError" in verdicts[2].detail


def test_os_exit_zero_before_the_tests_does_not_pass():
    verdict = run_job(script("import os\nos._exit(0)\nassert False"))
    assert verdict.status == "error" and "before the tests finished" in verdict.detail


def test_sys_exit_zero_does_not_pass_a_test_program():
    assert run_job(script("import sys\nsys.exit(0)\nassert False")).status == "error"


def test_exit_zero_is_the_end_of_a_stdio_program():
    assert run_job(script("print(42)\nexit(0)", exit_ok=True)).status == "pass"


def test_a_patched_excepthook_cannot_hide_a_failure():
    code = "import sys\nsys.excepthook = lambda *a: None\nsys.__excepthook__ = sys.excepthook\nassert False"
    assert run_job(script(code)).status == "fail"


def test_printing_a_forged_report_does_not_pass():
    code = ('import os, sys\nprint(\'{"status": "pass", "nonce": "x"}\')\n'
            'for fd in range(3, 20):\n    try: os.write(fd, b\'{"status": "pass", "nonce": "x"}\\n\')\n'
            '    except OSError: pass\nos._exit(0)')
    assert run_job(script(code)).status == "error"


def test_infinite_loop_times_out_and_a_blocked_timer_hits_the_wall():
    verdicts = run_jobs([
        script("while True: pass", test_seconds=1.0),
        script("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True: pass",
               test_seconds=1.0, limits=Limits(wall_seconds=3.0, cpu_seconds=10)),
    ])
    assert [v.status for v in verdicts] == ["timeout", "timeout"]
    assert "wall-clock" in verdicts[1].detail and verdicts[1].seconds < 5


def test_memory_bombs_get_a_memory_verdict():
    limits = Limits(wall_seconds=30, memory_bytes=2**30)
    verdicts = run_jobs([
        script("x = ' ' * 10**11", limits=limits),
        script("blocks = []\nwhile True:\n    blocks.append(bytearray(64 * 2**20))", test_seconds=20, limits=limits),
    ])
    assert [v.status for v in verdicts] == ["memory", "memory"]


def test_fork_bomb_is_contained_and_leaves_nothing_behind():
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    start = time.monotonic()
    verdict = run_job(script(code, test_seconds=1.0, limits=Limits(wall_seconds=3.0, max_processes=16)))
    assert verdict.status in ("timeout", "error") and time.monotonic() - start < 15
    time.sleep(0.5)
    assert run_job(script("assert True")).status == "pass"  # the harness and its slot still work


def test_writing_outside_the_sandbox_fails(tmp_path):
    target = tmp_path / "escaped"
    verdict = run_job(script(f"open({str(target)!r}, 'w').write('x')"))
    assert verdict.status == "error" and not target.exists()


def test_the_working_directory_is_fresh_and_writable():
    code = "import os\nassert os.listdir('.') == []\nopen('scratch.txt', 'w').write('x')"
    assert [v.status for v in run_jobs([script(code), script(code)])] == ["pass", "pass"]


def test_deleting_files_cannot_touch_the_host(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep")
    code = f"import os, shutil\nos.remove({str(precious)!r})"
    assert run_job(script(code)).status == "error"
    code = f"import shutil\nshutil.rmtree({str(tmp_path)!r})"
    assert run_job(script(code)).status == "error"
    assert precious.read_text() == "keep"


@needs_bwrap
def test_no_network_even_to_a_local_listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(3)
    port = server.getsockname()[1]
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(_accept(server)))
    thread.start()
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hi')"
    verdict = run_job(script(code))
    thread.join()
    server.close()
    assert verdict.status == "error"
    assert "refused" in verdict.detail.lower() or "unreachable" in verdict.detail.lower()
    assert accepted == [None]


def _accept(server):
    try:
        return server.accept()[0].recv(10)
    except OSError:
        return None


def test_huge_output_is_capped_and_does_not_block():
    code = "import sys\nfor _ in range(20000):\n    sys.stdout.write('x' * 65536)\nassert True"
    verdict = run_job(script(code, test_seconds=20, limits=Limits(wall_seconds=30, output_bytes=1000)))
    assert verdict.status == "pass" and len(verdict.stdout) == 1000


def test_a_runaway_writer_hits_the_file_size_limit():
    code = "with open('big', 'wb') as f:\n    f.write(b'x' * (4 * 2**20))"
    verdict = run_job(script(code, limits=Limits(file_size_bytes=2**20)))
    assert verdict.status == "error"


def test_killing_the_parent_group_only_ends_the_program():
    code = "import os, signal\nos.killpg(0, signal.SIGKILL)"
    assert run_job(script(code)).status == "error"
    assert run_job(script("assert True")).status == "pass"


def test_background_children_are_killed_with_the_program(tmp_path):
    code = "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])"
    assert run_job(script(code)).status == "pass"
    time.sleep(0.3)
    sleepers = subprocess.run(["pgrep", "-f", "time.sleep\\(60\\)"], capture_output=True, text=True).stdout.split()
    assert sleepers == []


def test_parallel_results_keep_input_order():
    jobs = [script(f"assert {i} % 3 != 0") for i in range(12)]
    statuses = [v.status for v in run_jobs(jobs, workers=3)]
    assert statuses == ["fail" if i % 3 == 0 else "pass" for i in range(12)]


def test_limits_only_fallback_still_judges(monkeypatch):
    monkeypatch.setattr(sandbox, "sandbox_mode", lambda: "limits-only")
    verdicts = run_jobs([script("assert True"), script("assert False"), script("import os\nos._exit(0)")])
    assert [v.status for v in verdicts] == ["pass", "fail", "error"]


def test_sandbox_mode_is_reported():
    assert sandbox.sandbox_mode() in ("bwrap", "limits-only")
    assert Path(sandbox.DRIVER).exists() and os.access(sandbox.DRIVER, os.R_OK)


def test_a_failing_item_cancels_the_queue_instead_of_running_it_out():
    ran = []

    def work(i):
        ran.append(i)
        time.sleep(0.02)
        if i == 0:
            raise RuntimeError("boom")
        return i

    with pytest.raises(RuntimeError, match="boom"):
        sandbox.parallel_map(work, range(200), workers=2)
    assert len(ran) < 20


def test_a_checkout_under_tmp_stays_reachable_when_tmp_itself_is_on_the_search_path(monkeypatch):
    """`python -m` started in /tmp puts /tmp first on sys.path; the private /tmp must not hide the trees
    below it that the driver imports from (every program ended with exit code 2 before)."""
    with tempfile.TemporaryDirectory(dir="/tmp") as checkout:
        monkeypatch.setattr(sandbox, "_import_path", lambda: ["/tmp", checkout])
        sandbox._expose_interpreter.cache_clear()
        try:
            args = sandbox._expose_interpreter()
        finally:
            sandbox._expose_interpreter.cache_clear()
    assert "--ro-bind" in args and args[args.index(checkout) - 1] == "--ro-bind"
    assert "/tmp" not in [args[i + 1] for i, a in enumerate(args) if a == "--ro-bind"]
