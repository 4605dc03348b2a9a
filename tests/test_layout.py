"""The house rules that a reader relies on, checked on the source (DESIGN.md, STYLE.md): imports go
one way (no circle), a training script imports no other script but train_sft (the warm start),
and no line is longer than 100 characters.

    $ python -m pytest tests/test_layout.py -q
"""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ("train_", "evaluate", "play", "bench")


def project_files():
    """Every Python file of the project, tests excluded: {module name: path}."""
    files = {}
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__")) and d not in ("tests", "out")]
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                files[module.removesuffix(".__init__")] = path
    return files


def imports(path, modules):
    """The project modules a file imports at any depth of its code (lazy imports too)."""
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        for name in names:
            while name and name not in modules:        # games.base -> games.base; x.y -> x
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def find_cycle(graph):
    """One import circle as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def graph():
    files = project_files()
    return {m: imports(p, files) - {m, m.partition(".")[0]} for m, p in files.items()}


def test_no_import_circle():
    assert find_cycle(graph()) is None


def test_find_cycle_finds_a_circle_when_there_is_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_scripts_import_no_other_script_but_train_sft_for_the_warm_start():
    for module, deps in graph().items():
        if module.startswith(SCRIPTS):
            others = {d for d in deps if d.startswith(SCRIPTS) and d != "train_sft"}
            if module == "evaluate":        # Table 1 trains its checkpoints with the two SFT scripts
                others -= {"train_wide"}
            assert not others, f"{module} imports {others}"


def test_no_line_is_longer_than_100_characters():
    long = [f"{os.path.relpath(p, ROOT)}:{i}" for p in project_files().values()
            for i, line in enumerate(open(p), 1) if len(line.rstrip("\n")) > 100]
    assert not long, f"{len(long)} lines over 100 characters, e.g. {long[:5]}"
