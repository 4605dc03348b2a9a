"""
The course assignments (assignments/): the student version and the grader do what they promise.

    the reference scores full marks
    a student version with only assignment N stubbed scores 0 on N and full marks on every other
    pasting the reference bodies back gives the reference, byte for byte (graded: the broken
      hand-ins below, whose untouched assignments score full marks)
    the student version imports, every script's --help works, and a script that reaches a stub
      stops with that assignment's message
    a broken hand-in (syntax error, import error, a hang, a wrong shape) loses exactly the
      assignments it touches, each with a one-line reason; a folder that is not a student version
      or a bad argument is one line and exit 2

Every grading run is a subprocess (about 4 s, most of it importing torch); the module fixture
builds all the folders first and grades them two at a time.

    $ python -m pytest tests/test_assignments.py -q
"""
import ast
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "assignments"))

import grade  # noqa: E402  (assignments/ on sys.path)
import make_student  # noqa: E402

MANIFEST = make_student.load_manifest()
ASSIGNMENTS = {a["number"]: a for a in MANIFEST["assignments"]}
FULL = {n: float(a["points"]) for n, a in ASSIGNMENTS.items()}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def paste_back(folder):
    """Put the reference's body back into every stub of a student version."""
    for path, fns in make_student.stubs_by_file(MANIFEST, list(ASSIGNMENTS)).items():
        ref = open(os.path.join(ROOT, path)).read()
        ref_lines, ref_tree = ref.splitlines(keepends=True), ast.parse(ref)
        with open(os.path.join(folder, path)) as f:
            text = f.read()
        spans = []
        for qualname in fns:
            first, last, _ = make_student.body_span(make_student.find_function(ast.parse(text),
                                                                               qualname))
            r_first, r_last, _ = make_student.body_span(make_student.find_function(ref_tree,
                                                                                   qualname))
            spans.append((first, last, ref_lines[r_first - 1:r_last]))
        lines = text.splitlines(keepends=True)
        for first, last, body in sorted(spans, reverse=True):
            lines[first - 1:last] = body
        with open(os.path.join(folder, path), "w") as f:
            f.write("".join(lines))


def break_function(folder, ref, *code):
    """Put lines of code at the start of a function's body, e.g. ("while True:", "    pass")."""
    path, qualname = ref.split(":")
    with open(os.path.join(folder, path)) as f:
        lines = f.read().splitlines(keepends=True)
    first, _, indent = make_student.body_span(make_student.find_function(ast.parse("".join(lines)),
                                                                         qualname))
    lines[first - 1:first - 1] = [" " * indent + c + "\n" for c in code]
    with open(os.path.join(folder, path), "w") as f:
        f.write("".join(lines))


def break_one(folder):
    """A hand-in with a syntax error (3), a hang and a wrong shape (7), and a wrong shape (5)."""
    break_function(folder, "idl.py:lateralized", "d = Dialogue(list(prompts)")
    break_function(folder, "lobes.py:KVCache.update", "while True:", "    pass")
    break_function(folder, "lobes.py:attention_mask", "return valid")            # (B, S)
    break_function(folder, "losses.py:spin_loss", "return torch.zeros(len(logp_true)), logp_true")


def break_two(folder):
    """A hand-in whose losses.py imports a module that does not exist (2, 4, 5, 6, 8), and whose
    soft_tokens hangs, deaf to the time limit's alarm, on one test's input (1)."""
    with open(os.path.join(folder, "losses.py")) as f:
        text = f.read()
    with open(os.path.join(folder, "losses.py"), "w") as f:
        f.write(text.replace("import torch\n", "import torch\nimport numpyy\n", 1))
    break_function(folder, "lobes.py:soft_tokens", "import signal", "if logits.shape[0] == 20000:",
                   "    signal.signal(signal.SIGALRM, signal.SIG_IGN)",
                   "    while True:", "        pass")


def grade_run(folder, out, *args):
    """Run the reference's grader on folder: (printed lines, results.json written to out)."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "assignments", "grade.py"), folder,
                           f"--json={out}", *args], capture_output=True, text=True, env=ENV,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    with open(out) as f:
        return proc.stdout.splitlines(), json.load(f)


SCRIPT_CHECK = r"""
import contextlib, importlib, io, json, os, runpy, sys
folder, out_dir = sys.argv[1], sys.argv[2]
sys.path.insert(0, folder)
report = {"imported": [], "help": {}}
for name in sorted(os.listdir(folder)):
    if name.endswith(".py") or os.path.isfile(os.path.join(folder, name, "__init__.py")):
        importlib.import_module(name.removesuffix(".py"))
        report["imported"].append(name)
scripts = [n for n in sorted(os.listdir(folder)) if n.endswith(".py")
           and '\nif __name__ == "__main__":' in open(os.path.join(folder, n)).read()]
for script in scripts + ["assignments/make_student.py", "assignments/grade.py"]:
    sys.argv = [script, "--help"]
    sys.path.insert(0, os.path.dirname(os.path.join(folder, script)))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(os.path.join(folder, script), run_name="__main__")
        report["help"][script] = "did not exit"
    except SystemExit as e:
        report["help"][script] = e.code
    except BaseException as e:
        report["help"][script] = f"{type(e).__name__}: {e}"
sys.argv = ["train_sft.py", "--device=cpu", "--max_iters=1", "--n_eval=4", f"--out_dir={out_dir}"]
try:
    with contextlib.redirect_stdout(io.StringIO()):
        runpy.run_path(os.path.join(folder, "train_sft.py"), run_name="__main__")
    report["train_sft"] = "finished"
except BaseException as e:
    report["train_sft"] = f"{type(e).__name__}: {e}"
print(json.dumps(report))
"""


def check_scripts(folder, out_dir):
    proc = subprocess.run([sys.executable, "-c", SCRIPT_CHECK, folder, out_dir], cwd=folder,
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every folder this file needs, made, then graded two at a time: {name: result}."""
    tmp = tmp_path_factory.mktemp("assignments")
    folders = {f"only{n}": str(tmp / f"only{n}") for n in ASSIGNMENTS}
    for n in ASSIGNMENTS:
        make_student.make_student(folders[f"only{n}"], [n])
    for name in ("student", "broken_one", "broken_two"):
        folders[name] = str(tmp / name)
        make_student.make_student(folders[name])
    for name in ("broken_one", "broken_two"):
        paste_back(folders[name])
    break_one(folders["broken_one"])
    break_two(folders["broken_two"])
    # the broken hand-ins first: they wait out their hangs while the others run
    jobs = {name: (grade_run, folders[name], str(tmp / f"{name}.json"), "--timeout=2")
            for name in ("broken_one", "broken_two")}
    jobs.update({name: (grade_run, folders[name], str(tmp / f"{name}.json")) for name in folders
                 if name not in jobs and name != "student"})
    jobs["reference"] = (grade_run, ROOT, str(tmp / "reference.json"))
    jobs["scripts"] = (check_scripts, folders["student"], str(tmp / "out"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(*job) for name, job in jobs.items()}
        return {"folders": folders, **{name: f.result() for name, f in futures.items()}}


def scores(result):
    """{assignment number: score} from a results.json."""
    return {int(t["number"]): t["score"] for t in result[1]["tests"]}


def reasons(result):
    """{assignment number: the one-line reason printed after its score, or ''}."""
    lines = [ln for ln in result[0] if ln.startswith("A")]
    return {int(ln.split()[0][1:]): ln.partition(" tests")[2].strip() for ln in lines}


# -----------------------------------------------------------------------------
def test_the_manifest_lists_every_grading_test_once_and_points_add_to_100():
    listed = [t for a in MANIFEST["assignments"] for t in a["tests"]]
    found = []
    for name in sorted(os.listdir(os.path.join(ROOT, "assignments", "tests"))):
        if name.startswith("test_") and name.endswith(".py"):
            tree = ast.parse(open(os.path.join(ROOT, "assignments", "tests", name)).read())
            found += [f"{name}::{f.name}" for f in tree.body
                      if isinstance(f, ast.FunctionDef) and f.name.startswith("test_")]
    assert sorted(listed) == sorted(found) and len(set(listed)) == len(listed)
    assert sum(FULL.values()) == 100
    for a in MANIFEST["assignments"]:
        assert all(t.startswith(f"test_a{a['number']}_") for t in a["tests"])


def test_the_reference_scores_full_marks(runs):
    lines, result = runs["reference"]
    assert scores(runs["reference"]) == FULL and result["score"] == 100
    assert lines[0].endswith("the reference") and lines[-1].split()[1:] == ["100.00", "/", "100"]


@pytest.mark.parametrize("n", sorted(ASSIGNMENTS))
def test_stubbing_one_assignment_scores_0_on_it_and_full_marks_on_every_other(runs, n):
    got = scores(runs[f"only{n}"])
    assert got == {**FULL, n: 0.0}, f"assignment {n} stubbed: {got}"
    # every one of its tests fails on the stub, with the stub's message
    out = next(t["output"] for t in runs[f"only{n}"][1]["tests"] if t["number"] == str(n))
    assert out.startswith(f"0/{len(ASSIGNMENTS[n]['tests'])} tests passed")
    assert reasons(runs[f"only{n}"])[n].startswith(f"NotImplementedError: Assignment {n}: ")


def project_files(root):
    """The files make_student copies: {relative path: bytes}."""
    files = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__")) and d != "out"]
        for name in names:
            if not name.endswith((".pyc", ".tmp")):
                path = os.path.join(folder, name)
                files[os.path.relpath(path, root)] = open(path, "rb").read()
    return files


def test_stubs_keep_signature_and_docstring_and_nothing_else_changes(tmp_path):
    # a fresh copy, compared at once: the reference may be edited while the graders run
    student = str(tmp_path / "student")
    make_student.make_student(student)
    ref_files, new_files = project_files(ROOT), project_files(student)
    stubbed = make_student.stubs_by_file(MANIFEST, list(ASSIGNMENTS))
    for path, fns in stubbed.items():
        ref, new = ast.parse(ref_files[path]), ast.parse(new_files[path])
        for qualname, message in fns.items():
            a, b = (make_student.find_function(tree, qualname) for tree in (ref, new))
            assert len(b.body) == 2                                 # the docstring, the stub
            assert ast.dump(a.args) == ast.dump(b.args)
            assert list(map(ast.dump, a.decorator_list)) == list(map(ast.dump, b.decorator_list))
            assert ast.get_docstring(a) == ast.get_docstring(b)
            assert ast.dump(b.body[-1]) == ast.dump(ast.parse(
                f"raise NotImplementedError({json.dumps(message)})").body[0])
        stubs = [ln for ln in new_files[path].decode().splitlines() if "NotImplementedError(" in ln]
        assert len(stubs) == len(fns) and all(len(ln) <= 100 for ln in stubs)
    marker = os.path.join("assignments", "student.json")
    assert set(new_files) == set(ref_files) - make_student.SKIP_PATHS | {marker}
    changed = {p for p in new_files if p != marker and ref_files[p] != new_files[p]}
    assert changed == set(stubbed), f"changed: {sorted(changed)}, stubbed: {sorted(stubbed)}"
    # pasting the reference bodies back gives the reference, byte for byte
    paste_back(student)
    assert all(open(os.path.join(student, p), "rb").read() == ref_files[p] for p in stubbed)
    with open(os.path.join(student, "assignments", "student.json")) as f:
        assert json.load(f) == {"handed_out": sorted(ASSIGNMENTS)}


def test_the_student_version_imports_every_help_works_and_a_stub_stops_a_script(runs):
    report = runs["scripts"]
    assert {"lobes.py", "losses.py", "idl.py", "train_sft.py", "data"} <= set(report["imported"])
    assert len(report["help"]) >= 6 and set(report["help"].values()) == {0}, report["help"]
    # train_sft reaches a stub early (its first generation or its critic loss): that stub's
    # message, not an unrelated traceback
    messages = {f"NotImplementedError: {m}" for fns in make_student.stubs_by_file(
        MANIFEST, list(ASSIGNMENTS)).values() for m in fns.values()}
    assert report["train_sft"] in messages, report["train_sft"]


def test_a_broken_hand_in_loses_only_what_it_breaks_with_one_line_each(runs):
    # both are student versions with the reference's bodies pasted back, then broken: what they
    # leave alone scores full marks, and between them that is every assignment
    one, two = runs["broken_one"], runs["broken_two"]
    assert all("a student version" in r[0][0] for r in (one, two))
    assert scores(one) == {**FULL, 3: 0.0, 5: 0.0, 7: 0.0}
    why = reasons(one)
    assert why[3].startswith("SyntaxError in idl.py line ")
    assert why[5].startswith("AssertionError: shape (3,), expected ()")
    assert why[7].startswith("TimeLimit: the test ran over the time limit of 2 s (lobes.py line")
    assert scores(two) == {**FULL, 1: round(10 * 5 / 6, 2), 2: 0.0, 4: 0.0, 5: 0.0, 6: 0.0, 8: 0.0}
    assert all(reasons(two)[n].startswith("ModuleNotFoundError: No module named 'numpyy' "
                                          "(losses.py line ") for n in (2, 4, 5, 6, 8))
    # the hang the alarm could not stop ended its process; only that test was lost
    assert reasons(two)[1].startswith("TimeLimit: the test ran over 2 s and ignored the alarm, so "
                                      "its process was ended (lobes.py line ")
    for t in one[1]["tests"] + two[1]["tests"]:             # results.json: a line per failed test
        n = ASSIGNMENTS[int(t["number"])]
        assert len(t["output"].splitlines()) == 1 + round(len(n["tests"]) * (1 - t["score"] /
                                                                             n["points"]))


def test_a_folder_that_is_not_a_student_version_or_a_bad_argument_is_one_line_and_exit_2(
        tmp_path, capsys):
    for argv in ([str(tmp_path)], [str(tmp_path / "missing")], [ROOT, "--only=x"],
                 [ROOT, "--only=99"], [ROOT, "--bogus"], [ROOT, "--timeout=0"], []):
        with pytest.raises(SystemExit) as e:
            grade.main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and len(err.strip().splitlines()) == 1, (argv, err)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    for argv in ([str(tmp_path / "full")], [str(tmp_path / "new"), "--only=9"]):
        assert make_student.main(argv) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_the_grader_survives_a_test_process_that_dies(tmp_path, monkeypatch):
    # a test run that dies is blamed on its first unreported test; the others run again
    calls = []

    def fake(folder, tests, limit):
        calls.append(list(tests))
        if len(calls) == 1:
            return [{"test": tests[0], "passed": True, "reason": ""}], "the test process crashed"
        return [{"test": t, "passed": True, "reason": ""} for t in tests], ""

    monkeypatch.setattr(grade, "run_pytest", fake)
    verdict = grade.run_tests(str(tmp_path), ["a::1", "a::2", "a::3", "a::4"], 1)
    assert verdict == {"a::1": "", "a::2": "the test process crashed", "a::3": "", "a::4": ""}
    assert calls == [["a::1", "a::2", "a::3", "a::4"], ["a::3", "a::4"]]
