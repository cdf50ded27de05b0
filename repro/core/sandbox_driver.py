"""The first code that runs inside a sandbox: sets limits, runs one job, reports the verdict.

`repro.sandbox` starts `python -I -S sandbox_driver.py JOB_FILE RESULT_FD` inside bubblewrap (or
with limits only). This file is trusted; it imports only the standard library, plus EvalPlus in
the EvalPlus modes, whose own functions then run the untrusted code exactly as EvalPlus does.

The verdict travels on a private pipe (RESULT_FD) as one JSON object carrying a per-job nonce.
It is written only after the test code has run to its end, so a program that exits early
(`os._exit(0)`, `sys.exit(0)`), kills itself or installs an excepthook never produces a report
and cannot pass: the host never decides a verdict from the exit code. Threat model: this stops
programs that end, crash or print their way out of a test; a program that deliberately searches
the interpreter's memory for the nonce could forge a report (it cannot harm the host either way).

Modes:
- `script`: exec the code as `__main__` (HumanEval: prompt + completion + tests + `check(f)`).
  Passed iff it runs to its end; `AssertionError` is a fail, `MemoryError` memory, a timer
  expiry timeout, anything else an error. With `exit_ok`, `SystemExit(0)` also counts as the end
  (stdin/stdout programs may call `exit()`); the host then compares stdout.
- `check_function`: a HumanEval-style task, hardened for RL rewards and used for evaluation alike:
  the program (prompt + completion) runs first, then the test code, then `check(candidate)` from
  the test code as compiled here (a `check` the program defines cannot replace it). The candidate
  is wrapped: after every call the builtins are restored to their state before the program ran,
  trace and profile hooks are removed, a thread left running is an error (it could patch the
  harness while the tests run), and a return value must be made of builtin types exactly (bool,
  int, float, complex, str, bytes, None, and list, tuple, set, frozenset, dict of them; no
  subclasses), so an object whose `__eq__` is always true fails instead of passing. With
  `count_tests`, every top-level statement of `check` that contains an `assert` is one test; all
  of them run (one that raises an `Exception` fails, the others still run) and the report carries
  `tests_passed` and `tests_total` (fraction-of-tests rewards). Not stopped: a program that walks
  the interpreter's frames to read the expected values out of the test's code, or to reach the
  harness's private objects.
- `evalplus_check`: EvalPlus's own `unsafe_execute` on one input split (its float tolerance,
  special oracles and per-input time limits).
- `evalplus_groundtruth`: EvalPlus's own `trusted_exec` on the canonical solution, returning the
  expected outputs (pickled, opaque to the host) and per-input times.
"""

import marshal
import os
import resource
import signal
import sys


class _TestTimeout(BaseException):
    """Raised by the interval timer; a BaseException so `except Exception` in user code misses it."""


def _set_limits(limits):
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for name, value in (
        ("RLIMIT_AS", limits["memory_bytes"]),
        ("RLIMIT_CPU", limits["cpu_seconds"]),
        ("RLIMIT_FSIZE", limits["file_size_bytes"]),
        ("RLIMIT_NPROC", limits["max_processes"]),
    ):
        if value is not None:
            resource.setrlimit(getattr(resource, name), (value, value))


def _describe(exc):
    return f"{type(exc).__name__}: {exc}"[:500]


def _run_script(job):
    def on_alarm(signum, frame):
        raise _TestTimeout()

    signal.signal(signal.SIGALRM, on_alarm)
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        signal.setitimer(signal.ITIMER_REAL, job["test_seconds"])
        exec(compile(job["code"], "<program>", "exec"), namespace)
        signal.setitimer(signal.ITIMER_REAL, 0)
        return {"status": "pass", "detail": ""}
    except _TestTimeout:
        return {"status": "timeout", "detail": f"tests ran over {job['test_seconds']} s"}
    except AssertionError as exc:
        return {"status": "fail", "detail": _describe(exc)}
    except MemoryError as exc:
        return {"status": "memory", "detail": _describe(exc)}
    except SystemExit as exc:
        if job["exit_ok"] and exc.code in (None, 0):
            return {"status": "pass", "detail": "exited with status 0"}
        return {"status": "error", "detail": f"SystemExit({exc.code!r}) before the tests finished"}
    except BaseException as exc:  # noqa: BLE001 - any other escape is the program's error
        return {"status": "error", "detail": _describe(exc)}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


class _Tampered(BaseException):
    """The program changed the harness's ground; a BaseException so user code's `except Exception` misses it."""


_PLAIN_ATOMS = (bool, int, float, complex, str, bytes, type(None))
_PLAIN_CONTAINERS = (list, tuple, set, frozenset)


def _plain(value, depth=0):
    """Whether `value` is made of builtin types exactly, so that comparing it runs Python's own `==`.

    Types are compared by identity: a metaclass can make `==` or `hash` of a class lie."""
    kind = type(value)
    for atom in _PLAIN_ATOMS:
        if kind is atom:
            return True
    if depth >= 64:  # deep or self-referencing structures are not test answers
        return False
    for container in _PLAIN_CONTAINERS:
        if kind is container:
            for item in value:
                if not _plain(item, depth + 1):
                    return False
            return True
    if kind is dict:
        for key, item in value.items():
            if not (_plain(key, depth + 1) and _plain(item, depth + 1)):
                return False
        return True
    return False


def _check_code(test, count_tests):
    """The test module's code and the code object of its `check`, compiled here. With `count_tests`,
    each top-level statement of `check` holding an assert reports whether it ran without an exception
    to a keyword-only `__ra3_record__` (a local of `check`, out of the program's reach by name)."""
    if not count_tests:
        module = compile(test, "<test>", "exec")
        total = None
    else:
        import ast

        tree = ast.parse(test)
        total = 0
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == "check":
                body = []
                for statement in node.body:
                    if not any(isinstance(n, ast.Assert) for n in ast.walk(statement)):
                        body.append(statement)
                        continue
                    report = ast.parse("try:\n    pass\nexcept Exception:\n    __ra3_record__(False)\n"
                                       "else:\n    __ra3_record__(True)\n").body[0]
                    report.body = [statement]
                    body.append(report)
                    total += 1
                node.body = body
                node.args.kwonlyargs.append(ast.arg("__ra3_record__"))
                node.args.kw_defaults.append(None)
        module = compile(ast.fix_missing_locations(tree), "<test>", "exec")
    checks = [c for c in module.co_consts if type(c) is type(module) and c.co_name == "check"]
    return module, (checks[-1] if checks else None), total


def _run_check_function(job):
    import _thread
    import builtins
    from types import FunctionType

    # Private references, taken before any untrusted code runs.
    settrace, setprofile, thread_count, function = sys.settrace, sys.setprofile, _thread._count, FunctionType
    saved = dict(builtins.__dict__)
    live = builtins.__dict__
    results = []

    def restore():
        settrace(None)
        setprofile(None)
        if len(live) != len(saved) or any(live.get(k, restore) is not v for k, v in saved.items()):
            live.clear()
            live.update(saved)
        if thread_count():
            raise _Tampered("the program left a thread running while the tests ran")

    def guard(candidate):
        def guarded(*args, **kwargs):
            recorded = results[:]
            try:
                value = candidate(*args, **kwargs)
            finally:
                restore()
                results[:] = recorded  # a report made from inside the candidate does not count
            if not _plain(value):
                raise AssertionError("the return value is not made of builtin types (int, float, str, list, "
                                     "tuple, dict, set, None, ...); its comparisons cannot be trusted")
            return value

        guarded.__name__ = job["entry_point"]
        return guarded

    def on_alarm(signum, frame):
        raise _TestTimeout()

    def counts():
        if total is None:
            return {}
        return {"tests_passed": sum(1 for r in results if r is True), "tests_total": total}

    module, check_code, total = _check_code(job["test"], job["count_tests"])
    if check_code is None:
        return {"status": "error", "detail": "the test code defines no check()"}
    signal.signal(signal.SIGALRM, on_alarm)
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        signal.setitimer(signal.ITIMER_REAL, job["test_seconds"])
        exec(compile(job["code"], "<program>", "exec"), namespace)
        restore()
        namespace["__builtins__"] = builtins
        exec(module, namespace)
        if job["entry_point"] not in namespace:
            raise NameError(f"the program does not define {job['entry_point']}")
        check = function(check_code, namespace, "check")
        candidate = guard(namespace[job["entry_point"]])
        if total is None:
            check(candidate)
        else:
            check(candidate, __ra3_record__=results.append)
            restore()
        signal.setitimer(signal.ITIMER_REAL, 0)
        passed = counts().get("tests_passed", 0)
        if total is not None and passed < total:
            return {"status": "fail", "detail": f"{total - passed} of {total} tests failed", **counts()}
        return {"status": "pass", "detail": "", **counts()}
    except _TestTimeout:
        return {"status": "timeout", "detail": f"tests ran over {job['test_seconds']} s", **counts()}
    except AssertionError as exc:
        return {"status": "fail", "detail": _describe(exc), **counts()}
    except MemoryError as exc:
        return {"status": "memory", "detail": _describe(exc), **counts()}
    except SystemExit as exc:
        return {"status": "error", "detail": f"SystemExit({exc.code!r}) before the tests finished", **counts()}
    except BaseException as exc:  # noqa: BLE001 - any other escape is the program's error
        return {"status": "error", "detail": _describe(exc), **counts()}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _run_evalplus_check(job):
    import pickle
    from types import SimpleNamespace

    from evalplus.eval import _SUCCESS, unsafe_execute

    # EvalPlus raises its own address-space limit to this value; keep it at ours.
    os.environ["EVALPLUS_MAX_MEMORY_BYTES"] = str(job["limits"]["memory_bytes"] or -1)
    inputs = job["inputs"]
    expected = pickle.loads(job["expected"])
    stat, progress = SimpleNamespace(value=-1), SimpleNamespace(value=0)
    details = [False] * len(inputs)
    unsafe_execute(
        job["dataset"], job["entry_point"], job["code"], inputs, expected,
        job["time_limits"], job["atol"], False, stat, details, progress,
    )
    if stat.value != _SUCCESS:
        return {"status": "error", "detail": "the solution failed to load (EvalPlus status FAILED)"}
    failed = [i for i in range(len(inputs)) if not details[i]]
    if progress.value != len(inputs) or failed:
        first = failed[0] if failed else progress.value
        return {"status": "fail", "detail": f"{len(failed)} of {len(inputs)} inputs failed; first #{first}"}
    return {"status": "pass", "detail": f"{len(inputs)} inputs"}


def _run_evalplus_groundtruth(job):
    import base64
    import pickle

    from evalplus.gen.util import trusted_exec

    outputs, seconds = trusted_exec(
        job["code"], job["inputs"], job["entry_point"],
        record_time=True, output_not_none=job["output_not_none"],
    )
    payload = base64.b64encode(pickle.dumps(outputs)).decode("ascii")
    return {"status": "pass", "detail": "", "payload": payload, "times": seconds}


MODES = {
    "script": _run_script,
    "check_function": _run_check_function,
    "evalplus_check": _run_evalplus_check,
    "evalplus_groundtruth": _run_evalplus_groundtruth,
}


def _to_json(value):
    """JSON for the report's str, number, list and dict values (json and pickle cost ~10 ms to import)."""
    if isinstance(value, str):
        return '"' + "".join(c if c >= " " and c not in '"\\' else f"\\u{ord(c):04x}" for c in value) + '"'
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, int | float):
        return repr(value) if value == value and abs(value) != float("inf") else "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_to_json(v) for v in value) + "]"
    return "{" + ",".join(f"{_to_json(str(k))}:{_to_json(v)}" for k, v in value.items()) + "}"


def main():
    job_path, result_fd = sys.argv[1], int(sys.argv[2])
    with open(job_path, "rb") as f:
        job = marshal.load(f)  # written by the harness; marshal is built in, so free to import
    # Started with -S (no site hooks): take the harness's import path and the builtins site adds.
    sys.path[:] = job["sys_path"]
    import site

    site.setquit()
    site.sethelper()
    site.setcopyright()
    # Keep private references: the program may replace module attributes while it runs.
    write, exit_now, dumps, nonce = os.write, os._exit, _to_json, job.pop("nonce")
    _set_limits(job["limits"])
    if job["run_as"] is not None:  # a root harness: become this slot's unprivileged user
        os.setgroups([])
        os.setgid(job["run_as"])
        os.setuid(job["run_as"])
    try:
        report = MODES[job["mode"]](job)
    except MemoryError as exc:
        report = {"status": "memory", "detail": _describe(exc)}
    except BaseException as exc:  # noqa: BLE001 - reported, never raised into the host
        report = {"status": "error", "detail": _describe(exc)}
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001, S110 - a broken stream must not lose the report
            pass
    report["nonce"] = nonce
    data = (dumps(report) + "\n").encode("utf-8", "replace")
    while data:
        data = data[write(result_fd, data):]
    exit_now(0)


if __name__ == "__main__":
    main()
