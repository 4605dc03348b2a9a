"""
Grade a folder: the reference, a student version (assignments/make_student.py) or a hand-in.

The grading tests (assignments/tests next to this file, never the hand-in's own copy) run against
the folder's code in a pytest process, each test under a time limit (a process that dies or
hangs anyway is blamed on the test it was running, and a fresh one runs the rest). An assignment
scores points x (its tests passed / its tests); one that lost points prints one line saying why
(its first failing test's reason). Whatever the folder holds (a
syntax error, a missing module, a function that hangs or returns the wrong shape) only the
assignments whose tests reach it lose points, and grading goes on. The result is also written
as Gradescope's results.json.

    $ python assignments/grade.py /tmp/course --json=results.json
    $ python assignments/grade.py . --only=3 --timeout=5        # one assignment, 5 s per test

Exit status: 0 once graded (whatever the score); 2 for bad arguments or a folder that is neither
the reference nor a student version (one line on stderr).
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile

from make_student import Parser, load_manifest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(HERE, "tests")
STARTUP_S = 60          # allowance for starting python, pytest and torch, on top of the tests


# -----------------------------------------------------------------------------
# running the tests
def run_pytest(folder, tests, limit):
    """One pytest process over the node ids in tests, with folder as its working directory.
    Returns the plugin's result rows (assignments/tests/conftest.py) and how the run ended:
    '' if pytest finished, else why not."""
    with tempfile.TemporaryDirectory() as tmp:
        results, log = os.path.join(tmp, "results.jsonl"), os.path.join(tmp, "pytest.log")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
               "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "GRADE_FOLDER": folder,
               "GRADE_RESULTS": results, "GRADE_TIME_LIMIT": str(limit),
               "GRADE_TESTS": "\n".join(tests)}
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull,
               "--rootdir", TESTS, "--confcutdir", TESTS, "--continue-on-collection-errors",
               *dict.fromkeys(os.path.join(TESTS, t.split("::")[0]) for t in tests)]
        budget = STARTUP_S + limit * len(tests)
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                ended = f"the test process crashed (exit status {proc.wait(timeout=budget)})"
            except subprocess.TimeoutExpired:
                if hasattr(os, "killpg"):                        # the test and its children
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
                proc.wait()
                ended = f"the test run was stopped after {budget:g} s"
        rows = [json.loads(ln) for ln in open(results)] if os.path.exists(results) else []
        stuck = open(results + ".stuck").read() if os.path.exists(results + ".stuck") else ""
        with open(log, errors="replace") as f:
            tail = [ln.strip() for ln in f if ln.strip()][-1:]
    if {"finished": True} in rows:
        return rows, ""
    if stuck:                                                     # conftest's faulthandler
        return rows, f"TimeLimit: the test ran over {limit:g} s and ignored the alarm, so its " \
                     f"process was ended{where_stuck(stuck, folder)}"
    return rows, ended + (f"; pytest said: {tail[0]}" if tail and not rows else "")


def where_stuck(dump, folder):
    """' (lobes.py line 40)': the innermost frame in folder's own code of a faulthandler dump."""
    for path, line in re.findall(r'File "([^"]+)", line (\d+)', dump):
        if path.startswith(folder + os.sep) and not path.startswith(HERE + os.sep):
            return f" ({os.path.relpath(path, folder)} line {line})"
    return ""


def run_tests(folder, tests, limit):
    """{test: '' if it passed, else one line why} for every node id in tests. A run that dies or
    overstays is blamed on the test it was running (else its first test that did not report),
    and the rest run again."""
    verdict, pending = {}, list(tests)
    while pending:
        rows, ended = run_pytest(folder, pending, limit)
        started = [r["start"] for r in rows if "start" in r]
        broken = {r["module"]: r["reason"] for r in rows if "module" in r}
        for r in rows:
            if "test" in r and not verdict.get(r["test"]):        # the first failure sticks
                verdict[r["test"]] = "" if r["passed"] else r["reason"] or "failed"
        for t in pending:
            if t not in verdict and t.split("::")[0] in broken:
                verdict[t] = broken[t.split("::")[0]]
        pending = [t for t in pending if t not in verdict]
        if pending:                                               # not reported: blame one
            culprit = started[-1] if started and started[-1] in pending else pending[0]
            verdict[culprit] = ended or "the test did not run"
            pending.remove(culprit)
    return verdict


# -----------------------------------------------------------------------------
# scoring and reporting
def score(manifest, verdict, numbers):
    """One row per graded assignment: number, title, points, score, passed, tests, and
    failed: [(test, reason)]."""
    rows = []
    for a in manifest["assignments"]:
        if a["number"] in numbers:
            failed = [(t, verdict[t]) for t in a["tests"] if verdict[t]]
            passed = len(a["tests"]) - len(failed)
            rows.append(dict(number=a["number"], title=a["title"], points=a["points"],
                             score=round(a["points"] * passed / len(a["tests"]), 2),
                             passed=passed, tests=len(a["tests"]), failed=failed))
    return rows


def report(rows, header):
    """The lines to print: a header, one line per assignment, the total."""
    lines = [header]
    for r in rows:
        why = f"  {r['failed'][0][1]}" if r["failed"] else ""
        lines.append(f"A{r['number']}  {r['title']:<30} {r['score']:6.2f} / {r['points']:<3} "
                     f"{r['passed']}/{r['tests']} tests{why}")
    total, most = sum(r["score"] for r in rows), sum(r["points"] for r in rows)
    lines.append(f"total {' ' * 29}{total:6.2f} / {most}")
    return lines


def gradescope(rows, header):
    """Gradescope's results.json: the total, and one test entry per assignment."""
    tests = [{"number": str(r["number"]), "name": f"Assignment {r['number']}: {r['title']}",
              "score": r["score"], "max_score": r["points"],
              "output": "\n".join([f"{r['passed']}/{r['tests']} tests passed"]
                                  + [f"{t}: {why}" for t, why in r["failed"]])} for r in rows]
    return {"score": round(sum(r["score"] for r in rows), 2), "output": header, "tests": tests}


def describe(folder):
    """'the reference' or 'a student version (...)', or None if folder is neither."""
    if not os.path.isfile(os.path.join(folder, "assignments", "manifest.json")):
        return None
    marker = os.path.join(folder, "assignments", "student.json")
    if not os.path.exists(marker):
        return "the reference"
    try:
        with open(marker) as f:
            return f"a student version (handed out: {json.load(f)['handed_out']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "a student version"


def main(argv=None):
    manifest = load_manifest()
    every = [a["number"] for a in manifest["assignments"]]
    ap = Parser(description="Grade a folder against the assignments' tests.")
    ap.add_argument("folder", help="the reference, a student version or a hand-in")
    ap.add_argument("--json", default="", help="write Gradescope's results.json here")
    ap.add_argument("--only", default="", help="comma-separated assignment numbers (default all)")
    ap.add_argument("--timeout", type=float, default=manifest["time_limit_s"],
                    help="seconds each test may run")
    args = ap.parse_args(argv)
    if args.only and not re.fullmatch(r"\d+(,\d+)*", args.only):
        ap.error(f"--only expects numbers like 3,5, got {args.only!r}")
    numbers = sorted({int(n) for n in args.only.split(",")}) if args.only else every
    if set(numbers) - set(every):
        ap.error(f"no assignment {sorted(set(numbers) - set(every))}; the manifest has {every}")
    if args.timeout <= 0:
        ap.error(f"--timeout must be > 0, got {args.timeout:g}")
    folder = os.path.abspath(args.folder)
    kind = describe(folder) if os.path.isdir(folder) else None
    if kind is None:
        ap.error(f"{args.folder} is not the reference or a student version "
                 "(no assignments/manifest.json there)")
    tests = [t for a in manifest["assignments"] if a["number"] in numbers for t in a["tests"]]
    rows = score(manifest, run_tests(folder, tests, args.timeout), numbers)
    header = f"grading {args.folder}: {kind}"
    print("\n".join(report(rows, header)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(gradescope(rows, header), f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
