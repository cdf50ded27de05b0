"""Execution of untrusted code: model completions, benchmark tests and ground-truth solutions.

Every program that the suite did not write runs through `run_job`, for evaluation and for RL
rewards alike. Each job gets
- its own process group (killed whole at the wall-clock limit) and a fresh temporary directory;
- resource limits set before the program starts: address space, CPU seconds, file size,
  processes (where the sandbox can give each parallel slot its own user id), no core dumps;
- stdout and stderr captured up to a cap (the rest is read and dropped, so a flood never blocks);
- with bubblewrap (`bwrap`): new user, PID, network, IPC and UTS namespaces (no network at all),
  the host's root mounted read-only, a private size-capped tmpfs on /tmp that vanishes with the
  job, no capabilities, and death with the harness. Where bwrap cannot create namespaces the job
  runs with limits only, with a logged warning; `sandbox_mode()` says which and is recorded.

A verdict is decided by `repro/sandbox_driver.py` inside the sandbox and reported on a private
pipe after the test code ran to its end (see that file); the exit code never decides a pass.
"""

import dataclasses
import functools
import itertools
import json
import logging
import marshal
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

log = logging.getLogger(__name__)

STATUSES = ("pass", "fail", "error", "timeout", "memory")
DRIVER = Path(__file__).with_name("sandbox_driver.py")
TMPFS_BYTES = 64 * 2**20
# When the harness runs as root, slot k runs its jobs as uid/gid FIRST_SANDBOX_UID + k, so the
# per-user process limit is per slot and a fork bomb in one job cannot starve the others.
FIRST_SANDBOX_UID = 61000
STARTUP_GRACE_SECONDS = 2.0
# The driver's report may carry ground-truth outputs (MBs for some MBPP+ tasks); anything larger is
# a program flooding the private pipe, and is refused rather than held in the harness's memory.
REPORT_BYTES = 256 * 2**20


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits of one job. `None` leaves a limit unset."""

    wall_seconds: float = 10.0
    """Wall-clock limit of the whole job, interpreter start included; the process group is killed."""
    cpu_seconds: int | None = 10
    """RLIMIT_CPU: CPU seconds of the job's processes."""
    memory_bytes: int | None = 4 * 2**30
    """RLIMIT_AS: address space of each process (EvalPlus's default of 4 GiB)."""
    file_size_bytes: int | None = 16 * 2**20
    """RLIMIT_FSIZE: the largest file the job may write."""
    max_processes: int | None = 32
    """RLIMIT_NPROC for the job's slot user (only enforced with a dedicated sandbox uid)."""
    output_bytes: int = 64 * 2**10
    """Bytes of stdout and of stderr kept; the rest is drained and dropped."""


@dataclasses.dataclass(frozen=True)
class Job:
    """One program to run. `mode` and `args` are passed to the in-sandbox driver."""

    mode: str
    args: dict[str, Any]
    limits: Limits = Limits()
    stdin: str = ""


@dataclasses.dataclass(frozen=True)
class Verdict:
    status: str
    """One of STATUSES; `pass` only when the driver reported that the test code ran to its end."""
    seconds: float
    detail: str
    stdout: str
    stderr: str
    report: dict[str, Any] | None
    """The driver's report (mode-specific extras such as ground-truth payloads), or None."""


@functools.cache
def sandbox_mode() -> str:
    """`bwrap` when bubblewrap can create its namespaces here, else `limits-only` (logged once)."""
    bwrap = shutil.which("bwrap")
    if bwrap:
        probe = subprocess.run(
            [*_bwrap_prefix(bwrap), sys.executable, "-I", "-c", "pass"],
            capture_output=True, text=True, timeout=30,
        )
        if probe.returncode == 0:
            return "bwrap"
        reason = f"bwrap failed here: {probe.stderr.strip()[:200]}"
    else:
        reason = "bwrap is not installed (Debian/Ubuntu package: bubblewrap)"
    log.warning("sandbox: %s; untrusted code runs with resource limits only, without "
                "namespaces, a read-only root or network isolation", reason)
    return "limits-only"


def _bwrap_prefix(bwrap: str) -> list[str]:
    if os.geteuid() == 0:
        # No user namespace: the driver starts as root with only CAP_SETUID/CAP_SETGID and drops
        # to its slot's uid before running anything untrusted (see `_run_as`).
        isolation = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                     "--unshare-cgroup-try", "--cap-drop", "ALL",
                     "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        isolation = ["--unshare-all", "--cap-drop", "ALL"]
    return [
        bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
        "--size", str(TMPFS_BYTES), "--perms", "1777", "--tmpfs", "/tmp", *_expose_interpreter(),
        *isolation, "--die-with-parent", "--new-session",
    ]


@functools.cache
def _expose_interpreter() -> tuple[str, ...]:
    """Mounts that keep this interpreter, its packages and this package reachable in the sandbox.

    Two things can hide them: the private /tmp (a checkout or virtualenv under /tmp), and a
    directory that other users cannot enter (pyenv under /root, mode 0700) once the job runs as
    a slot uid. Such a directory is covered by an empty tmpfs (hiding the rest of it, such as
    credentials) and the needed trees are bound read-only at their own paths beneath it.
    """
    roots = [sys.base_prefix, sys.prefix, Path(sys.executable).resolve().parent,
             Path(__file__).resolve().parent, *_import_path()]
    needed = sorted({Path(p).resolve() for p in roots})
    # A covered directory on the search path itself (/tmp when the harness runs `python -m` there) is
    # never bound whole, so the trees beneath it are bound on their own.
    needed = [p for p in needed if not any(p != q and p.is_relative_to(q) and not _hidden(q) for q in needed)]
    args: list[str] = []
    covered = {Path("/tmp")}
    for path in needed:
        for ancestor in reversed(path.parents):
            if not _hidden(ancestor):
                continue
            if ancestor not in covered:
                covered.add(ancestor)
                args += ["--perms", "0755", "--tmpfs", str(ancestor)]
            for step in reversed(path.parents):
                if step.is_relative_to(ancestor) and step != ancestor:
                    args += ["--perms", "0755", "--dir", str(step)]
            args += ["--ro-bind", str(path), str(path)]
            break
    return tuple(args)


def _hidden(path: Path) -> bool:
    """Whether the sandbox covers `path` with an empty tmpfs: /tmp, or a directory others cannot enter."""
    return path == Path("/tmp") or (path != Path("/") and not os.stat(path).st_mode & 0o001)


def _run_as(slot: int) -> int | None:
    """The uid (= gid) a root harness gives slot `slot`, so that RLIMIT_NPROC binds per slot.

    Root is exempt from RLIMIT_NPROC; an unprivileged harness keeps its own uid. Without bwrap the
    uid is only changed when the interpreter is reachable by other users.
    """
    if os.geteuid() != 0 or (sandbox_mode() != "bwrap" and _expose_interpreter()):
        return None
    return FIRST_SANDBOX_UID + slot


def _process_limit(run_as: int | None, limits: Limits) -> int | None:
    """RLIMIT_NPROC counts every process and thread of the real uid, so add what it already runs."""
    if limits.max_processes is None or run_as is not None:
        return limits.max_processes
    if os.geteuid() == 0:
        return None  # root is exempt from the limit; `sandbox_mode` has warned
    uid, running = os.getuid(), 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    running += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                continue
    return running + limits.max_processes


_slots = itertools.count()
_thread_slot = threading.local()


def _slot() -> int:
    if not hasattr(_thread_slot, "index"):
        _thread_slot.index = next(_slots)
    return _thread_slot.index


def run_job(job: Job) -> Verdict:
    """Run one job to completion or to its wall-clock limit. Never raises for the program's sake."""
    mode = sandbox_mode()
    run_as = _run_as(_slot())
    limits = job.limits
    nonce = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="ra3-sandbox-") as host_dir:
        host_dir = Path(host_dir)
        os.chmod(host_dir, 0o755)
        (host_dir / "stdin").write_text(job.stdin)
        payload = {
            **job.args, "mode": job.mode, "nonce": nonce, "run_as": run_as, "sys_path": _import_path(),
            "limits": {
                "memory_bytes": limits.memory_bytes,
                "cpu_seconds": limits.cpu_seconds,
                "file_size_bytes": limits.file_size_bytes,
                "max_processes": _process_limit(run_as, limits),
            },
        }
        (host_dir / "job.marshal").write_bytes(marshal.dumps(payload))
        for name in ("stdin", "job.marshal"):
            os.chmod(host_dir / name, 0o644)
        result_read, result_write = os.pipe()
        if mode == "bwrap":
            work = "/tmp/work"
            command = [
                *_bwrap_prefix(shutil.which("bwrap")),
                "--ro-bind", str(host_dir / "job.marshal"), "/tmp/job.marshal",
                "--perms", "0777", "--dir", work, "--chdir", work,
                sys.executable, "-I", "-S", str(DRIVER), "/tmp/job.marshal", str(result_write),
            ]
            cwd = None
        else:
            cwd = host_dir / "work"
            cwd.mkdir()
            if run_as is not None:
                os.chmod(cwd, 0o777)
            command = [sys.executable, "-I", "-S", str(DRIVER), str(host_dir / "job.marshal"), str(result_write)]
        start = time.monotonic()
        with open(host_dir / "stdin", "rb") as stdin:
            try:
                proc = subprocess.Popen(
                    command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    pass_fds=(result_write,), cwd=cwd, start_new_session=True,
                    env=_clean_env(host_dir),
                )
            finally:
                os.close(result_write)
        streams, timed_out = _collect(proc, result_read, start + limits.wall_seconds, limits.output_bytes)
        seconds = time.monotonic() - start
    return _decide(proc.returncode, streams, timed_out, nonce, seconds, limits)


@functools.cache
def _import_path() -> list[str]:
    """The harness's module search path, handed to the driver.

    The driver starts with `-S`, skipping `site` and its .pth hooks (an editable install's hook
    alone costs more than the rest of the interpreter's start), and then imports from the same
    directories the harness does, so programs see the same installed packages.
    """
    return [p for p in sys.path if p and os.path.isdir(p)]


def _clean_env(host_dir: Path) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(HOME=str(host_dir), PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0",
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _collect(proc: subprocess.Popen, result_fd: int, deadline: float, cap: int):
    """Read stdout, stderr and the result pipe until all close or the deadline; kill the group."""
    selector = selectors.DefaultSelector()
    buffers: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray(), "result": bytearray()}
    caps = {"stdout": cap, "stderr": cap, "result": REPORT_BYTES + 1}
    result_file = os.fdopen(result_fd, "rb", buffering=0)
    for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr), ("result", result_file)):
        os.set_blocking(stream.fileno(), False)
        selector.register(stream, selectors.EVENT_READ, name)
    timed_out, exited_at = False, None
    while selector.get_map():
        now = time.monotonic()
        if now >= deadline:
            timed_out = True
            break
        if exited_at is None and proc.poll() is not None:
            exited_at = now
        if exited_at is not None and now - exited_at > 0.5:
            break  # stragglers hold the pipes open; the group is killed below
        remaining = deadline - now
        for key, _ in selector.select(timeout=min(remaining, 0.5)):
            chunk = key.fileobj.read(65536)
            if not chunk:
                selector.unregister(key.fileobj)
                continue
            buffer = buffers[key.data]
            if len(buffer) < caps[key.data]:
                buffer += chunk[: caps[key.data] - len(buffer)]
    _kill_group(proc)
    selector.close()
    for stream in (proc.stdout, proc.stderr, result_file):
        stream.close()
    return {k: bytes(v) for k, v in buffers.items()}, timed_out


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except PermissionError:  # an unprivileged harness cannot signal members that switched uid
        pass
    proc.wait()


def _decide(returncode, streams, timed_out, nonce, seconds, limits) -> Verdict:
    stdout = streams["stdout"].decode("utf-8", "replace")
    stderr = streams["stderr"].decode("utf-8", "replace")
    report = _parse_report(streams["result"], nonce)

    def verdict(status, detail):
        return Verdict(status, round(seconds, 4), detail, stdout, stderr, report)

    if report is not None:
        return verdict(report["status"], report.get("detail", ""))
    if timed_out:
        return verdict("timeout", f"killed at the {limits.wall_seconds} s wall-clock limit")
    if returncode == -signal.SIGXCPU:
        return verdict("timeout", f"CPU limit of {limits.cpu_seconds} s exceeded")
    if "MemoryError" in stderr[-2000:] or "Cannot allocate memory" in stderr[-2000:]:
        return verdict("memory", "out of memory before the tests finished")
    if returncode == -signal.SIGXFSZ:
        return verdict("error", f"wrote a file larger than {limits.file_size_bytes} bytes")
    return verdict("error", f"ended with exit code {returncode} before the tests finished")


def _parse_report(raw: bytes, nonce: str) -> dict[str, Any] | None:
    """The driver's report, or None when none carries this job's nonce (the program ended early)."""
    if len(raw) > REPORT_BYTES:
        return None
    for line in reversed(raw.splitlines()):
        try:
            report = json.loads(line)
        except ValueError:
            continue
        if isinstance(report, dict) and report.get("nonce") == nonce and report.get("status") in STATUSES:
            return report
    return None


T = TypeVar("T")
R = TypeVar("R")


def parallel_map(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None,
                 desc: str | None = None) -> list[R]:
    """Apply `fn` (which runs jobs) to every item on a pool sized to the cores; keeps input order.

    If `fn` raises, or the user interrupts, queued items are cancelled rather than run out.
    """
    items = list(items)
    pool = ThreadPoolExecutor(max_workers=workers or len(os.sched_getaffinity(0)))
    try:
        results = pool.map(fn, items)
        return list(tqdm(results, total=len(items), desc=desc, disable=desc is None, leave=False))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_jobs(jobs: Sequence[Job], workers: int | None = None, desc: str | None = None) -> list[Verdict]:
    return parallel_map(run_job, jobs, workers, desc)
