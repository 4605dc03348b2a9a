"""
The grading tests' setup: the folder under test first on sys.path, a time limit per test, and
(when assignments/grade.py asks) one JSON line per result.

The folder under test is the current directory, or GRADE_FOLDER: the tests import `losses`,
`lobes`, `idl` from there, so the same tests grade the reference, a student version or a hand-in.
A test, or the import of a test module, that runs over GRADE_TIME_LIMIT seconds (default 10)
fails with TimeLimit (SIGALRM: Linux and macOS); code that the alarm cannot stop ends the process
a few seconds later (faulthandler), and grade.py blames the test that never finished.
GRADE_TESTS (node ids, one per line) picks the tests to run and their order. With GRADE_RESULTS
set, each test's outcome is appended to that file as it finishes,
{"test": node id, "passed": bool, "reason": one line}, each test module that fails to import as
{"module": file, "reason": one line}, and {"start": node id}, {"finished": true} around them;
a hang that ended the process leaves its traceback in GRADE_RESULTS.stuck.

    $ python -m pytest assignments/tests -q          # run the grading tests on this folder
"""
import contextlib
import faulthandler
import json
import os
import re
import signal
import sys

import pytest
import torch  # imported here, outside any time limit: a limit must never cut torch's own import

FOLDER = os.path.abspath(os.environ.get("GRADE_FOLDER", os.getcwd()))
HERE = os.path.dirname(os.path.abspath(__file__))
LIMIT = float(os.environ.get("GRADE_TIME_LIMIT", "10"))
RESULTS = os.environ.get("GRADE_RESULTS")
WANTED = os.environ.get("GRADE_TESTS", "").split()      # node ids; empty: every test collected
STUCK = open(RESULTS + ".stuck", "w") if RESULTS else sys.__stderr__  # where a hang is dumped
sys.path[:0] = [HERE, FOLDER]      # checks.py from here, everything else from the folder
torch.set_num_threads(1)


class TimeLimit(BaseException):
    """A test or a test module's import ran over the time limit. A BaseException, so that the
    code under test cannot swallow it with `except Exception`."""


@contextlib.contextmanager
def time_limit(what):
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def stop(signum, frame):
        raise TimeLimit(f"{what} ran over the time limit of {LIMIT:g} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, LIMIT)
    # code that ignores the alarm (stuck in C, or SIGALRM ignored): end the whole process a little
    # later; grade.py blames the test that started and never finished
    faulthandler.dump_traceback_later(LIMIT + 3, exit=True, file=STUCK)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def pytest_collection_modifyitems(config, items):
    """Keep only the tests asked for, in the order asked (node ids on pytest's command line would
    stop the whole run when one test module fails to import)."""
    if WANTED:
        order = {t: i for i, t in enumerate(WANTED)}
        kept = [it for it in items if it.nodeid in order]
        items[:] = sorted(kept, key=lambda it: order[it.nodeid])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    with time_limit("the test"):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    if not isinstance(collector, pytest.Module):
        return (yield)
    with time_limit("importing the code under test"):
        return (yield)


# -----------------------------------------------------------------------------
# one line per result, for the grader
def where(tb):
    """'losses.py line 40': the last frame of a traceback in the folder under test's own code."""
    found = ""
    while tb is not None:
        path = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if path.startswith(FOLDER + os.sep) and not path.startswith(HERE + os.sep):
            found = f"{os.path.relpath(path, FOLDER)} line {tb.tb_lineno}"
        tb = tb.tb_next
    return found


def why(e):
    """One line that says what went wrong: the exception, its first line, and where."""
    if isinstance(e, SyntaxError):
        return f"{type(e).__name__} in {os.path.relpath(e.filename or '?', FOLDER)} " \
               f"line {e.lineno}: {e.msg}"
    lines = str(e).strip().splitlines()
    text = f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__
    at = where(e.__traceback__)
    return text + (f" ({at})" if at else "")


def why_not_imported(text):
    """One line from the report of a test module that failed to import (pytest gives text)."""
    errors = re.findall(r"^E\s+(?:\w+\.)*(\w+(?:Error|Exception|Limit|Exit)\b.*)$", text, re.M)
    error = errors[-1].strip() if errors else text.strip().splitlines()[-1]
    syntax = re.findall(r'File "([^"]+)", line (\d+)', text)
    if error.startswith(("SyntaxError", "IndentationError", "TabError")) and syntax:
        path, line = syntax[-1]
        kind, _, msg = error.partition(":")
        return f"{kind} in {os.path.relpath(path, FOLDER)} line {line}:{msg}"
    frames = [f for f in re.findall(r"^(\S+\.py):(\d+): in ", text, re.M)
              if os.path.abspath(f[0]).startswith(FOLDER + os.sep)
              and not os.path.abspath(f[0]).startswith(HERE + os.sep)]
    return error + (f" ({os.path.relpath(frames[-1][0], FOLDER)} line {frames[-1][1]})"
                    if frames else "")


def record(**row):
    if RESULTS:
        with open(RESULTS, "a") as f:
            f.write(json.dumps(row) + "\n")


def pytest_runtest_logstart(nodeid, location):
    record(start=nodeid)


def pytest_sessionfinish(session, exitstatus):
    record(finished=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" or report.failed:
        reason = ""
        if report.failed:
            reason = why(call.excinfo.value) if call.excinfo else "failed"
        elif not report.passed:
            reason = report.outcome                               # skipped
        record(test=item.nodeid, passed=report.passed, reason=reason)
    return report


def pytest_collectreport(report):
    if report.failed:
        record(module=report.nodeid, reason=why_not_imported(report.longreprtext))
