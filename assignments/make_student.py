"""
Write the student version of this repository: a copy in which every function that the manifest
(assignments/manifest.json) hands out keeps its decorators, signature and docstring, and its body
becomes one line,

    raise NotImplementedError("Assignment 5: SPIN loss: write spin_loss")

Everything else is copied byte for byte. The reference is the solution, so it carries no markers:
the manifest names whole functions (`losses.py:spin_loss`, a method as `lobes.py:KVCache.update`)
and `ast` finds each body's exact lines. The copy gets assignments/student.json, which names the
assignments it hands out; that is how assignments/grade.py tells a student version.

    $ python assignments/make_student.py /tmp/course              # every assignment stubbed
    $ python assignments/make_student.py /tmp/course --only=3,5   # only assignments 3 and 5
"""
import argparse
import ast
import json
import os
import re
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SKIP_DIRS = {"out"}                 # checkpoints and logs; hidden and __dunder__ folders too
SKIP_FILES = (".pyc", ".tmp")
# the course's check of these tools makes student versions of the reference: not for a student
SKIP_PATHS = {os.path.join("tests", "test_assignments.py")}
MAX_LINE = 100


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error and exit 2 (the default prints the usage too)."""

    def error(self, message):
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def load_manifest(path=os.path.join(HERE, "manifest.json")):
    """The assignments: number, title, paper, functions (file:function), tests, points."""
    with open(path) as f:
        return json.load(f)


def find_function(tree, qualname):
    """The def node of `name` or `Class.name` in a module's ast, or None."""
    node, body = None, tree.body
    for part in qualname.split("."):
        node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                       ast.ClassDef)) and n.name == part), None)
        if node is None:
            return None
        body = node.body
    return node if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None


def body_span(fn):
    """(first, last) 1-based line numbers of a def's body after its docstring, and the body's
    indentation. Comments between the docstring and the first statement belong to the body."""
    body, has_doc = fn.body, ast.get_docstring(fn) is not None
    first = body[0].end_lineno + 1 if has_doc else body[0].lineno
    code = body[1:] if has_doc else body
    if body[0].lineno == fn.lineno or (code and code[0].lineno < first):
        raise ValueError(f"{fn.name}: put its docstring and its body on lines of their own")
    return first, fn.end_lineno, body[0].col_offset


def stub_lines(indent, message):
    """The stub statement, split over two lines if one would pass MAX_LINE characters."""
    text = json.dumps(message)                                # a double-quoted literal
    one = f"{' ' * indent}raise NotImplementedError({text})\n"
    if len(one) <= MAX_LINE + 1:
        return [one]
    return [f"{' ' * indent}raise NotImplementedError(\n", f"{' ' * (indent + 4)}{text})\n"]


def stub_source(source, stubs):
    """source with each function in stubs {qualname: message} reduced to its stub."""
    tree, lines = ast.parse(source), source.splitlines(keepends=True)
    spans = []
    for qualname, message in stubs.items():
        fn = find_function(tree, qualname)
        if fn is None:
            raise ValueError(f"no function {qualname}")
        first, last, indent = body_span(fn)
        spans.append((first, last, stub_lines(indent, message)))
    for first, last, stub in sorted(spans, reverse=True):     # bottom up: line numbers hold
        lines[first - 1:last] = stub
    return "".join(lines)


def stub_message(assignment, qualname):
    """What the stub raises: the assignment's number and title, and what to write."""
    return f"Assignment {assignment['number']}: {assignment['title']}: write {qualname}"


def stubs_by_file(manifest, numbers):
    """{file: {qualname: stub message}} for the assignments in numbers."""
    out = {}
    for a in manifest["assignments"]:
        if a["number"] in numbers:
            for ref in a["functions"]:
                path, qualname = ref.split(":")
                out.setdefault(path, {})[qualname] = stub_message(a, qualname)
    return out


def copy_project(src, dst):
    """Copy the project's files (not .git, out/, caches) from src to dst, which must be empty."""
    dst_abs = os.path.abspath(dst)
    for folder, dirs, names in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")) and d not in SKIP_DIRS
                         and os.path.abspath(os.path.join(folder, d)) != dst_abs)
        target = os.path.join(dst, os.path.relpath(folder, src))
        os.makedirs(target, exist_ok=True)
        for name in names:
            path = os.path.relpath(os.path.join(folder, name), src)
            if not name.endswith(SKIP_FILES) and path not in SKIP_PATHS:
                shutil.copy2(os.path.join(folder, name), os.path.join(target, name))


def make_student(out_dir, numbers=None, src=ROOT):
    """Write the student version of src into out_dir with the assignments in numbers stubbed
    (default: all). Returns the sorted list of assignment numbers handed out."""
    manifest = load_manifest(os.path.join(src, "assignments", "manifest.json"))
    every = [a["number"] for a in manifest["assignments"]]
    numbers = sorted(every if numbers is None else numbers)
    unknown = set(numbers) - set(every)
    if unknown:
        raise ValueError(f"no assignment {sorted(unknown)}; the manifest has {every}")
    if os.path.exists(out_dir) and os.listdir(out_dir):
        raise ValueError(f"{out_dir} exists and is not empty")
    stubs = stubs_by_file(manifest, numbers)
    sources = {}
    for path, fns in stubs.items():                           # all checked before any copy
        with open(os.path.join(src, path)) as f:
            sources[path] = stub_source(f.read(), fns)
    copy_project(src, out_dir)
    for path, text in sources.items():
        with open(os.path.join(out_dir, path), "w") as f:
            f.write(text)
    with open(os.path.join(out_dir, "assignments", "student.json"), "w") as f:
        json.dump({"handed_out": numbers}, f)
        f.write("\n")
    return numbers


def main(argv=None):
    ap = Parser(description="Write the student version of this repository.")
    ap.add_argument("out_dir", help="an empty or new folder")
    ap.add_argument("--only", default="", help="comma-separated assignment numbers (default all)")
    args = ap.parse_args(argv)
    if args.only and not re.fullmatch(r"\d+(,\d+)*", args.only):
        ap.error(f"--only expects numbers like 3,5, got {args.only!r}")
    try:
        numbers = [int(n) for n in args.only.split(",")] if args.only else None
        handed = make_student(args.out_dir, numbers)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote the student version to {args.out_dir}: assignments {handed}")
    print(f"grade it with: cd {args.out_dir} && python assignments/grade.py .")
    return 0


if __name__ == "__main__":
    sys.exit(main())
