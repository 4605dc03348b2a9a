"""
Tests for the verifiable tasks and their search (data/verifiable.py: subsetsum, countdown,
toycode; data/sudoku.py): disjoint splits whose ood shapes training never shows, every dataset
answer right, every prompt proved solvable by search, junk and corruptions wrong and never
raising, other right answers right, problems short and ASCII. Slow independent implementations
(Python's eval on expressions built here, brute force over subsets, Sudoku units by slicing)
check the solvers and the parser.

    $ python -m pytest tests/test_verifiable_tasks.py -q
"""
import itertools
import random
import re
from functools import lru_cache

import pytest

from data import get_task
from data.tasks import TASKS
from data.sudoku import solutions
from data.verifiable import PRIMITIVES, PROGRAMS, evaluate, expression_for, run

VERIFIABLE = ["subsetsum", "countdown", "toycode", "sudoku"]
SPLITS = ["train", "test", "ood"]


@lru_cache(maxsize=None)
def problems(name, split):
    """200 problems of a split, drawn once for the whole file."""
    return tuple(get_task(name).dataset(split, 200, seed=0))


def shape(name, prompt):
    """What separates in-distribution from ood: how many numbers, primitives or blanks."""
    if name == "sudoku":
        return prompt.count(".")
    if name == "toycode":
        return get_task(name).solve(prompt).count(".") + 1
    return len(prompt.split("=")[0].split())


# -----------------------------------------------------------------------------
# splits and sizes

def test_the_verifiable_tasks_are_registered_by_name():
    assert {"subsetsum", "countdown", "toycode", "sudoku"} <= set(TASKS)
    assert get_task("subsetsum").name == "subsetsum"


@pytest.mark.parametrize("name", VERIFIABLE)
def test_splits_are_disjoint_and_ood_has_shapes_training_never_shows(name):
    task = get_task(name)
    train, test, ood = ({p for p, _ in problems(name, s)} for s in SPLITS)
    assert len(train) == len(test) == len(ood) == 200
    assert not train & test and not ood & (train | test)
    assert all(task.split_of(p) == "test" for p in test)
    assert not {shape(name, p) for p in train | test} & {shape(name, p) for p in ood}


@pytest.mark.parametrize("name", VERIFIABLE)
def test_problems_are_short_ascii(name):
    pairs = [pa for s in SPLITS for pa in problems(name, s)]
    assert all(p.isascii() and a.isascii() for p, a in pairs)
    assert max(len(p) for p, _ in pairs) <= 40
    assert max(len(a) for _, a in pairs) <= 19          # sudoku: 16 cells and 3 bars
    assert max(len(p) + len(a) for p, a in pairs) < 60


# -----------------------------------------------------------------------------
# right answers

@pytest.mark.parametrize("name", VERIFIABLE)
@pytest.mark.parametrize("split", SPLITS)
def test_every_dataset_answer_checks_and_search_proves_every_prompt_solvable(name, split):
    task = get_task(name)
    for p, a in problems(name, split):
        assert task.check(p, a) == 1.0, (p, a)
        assert task.solve(p) == a                       # y_true is the solver's canonical answer
        assert task.check(p, " " + a + "\n") == 1.0


def test_subsetsum_accepts_any_subset_in_any_order():
    task = get_task("subsetsum")
    p = "3 7 1 8 5=12"
    assert task.solve(p) == "7 5"
    for right in ("7 5", "5 7", "3 1 8", "8 1 3", "1 3 8", " 7 5\n"):
        assert task.check(p, right) == 1.0, right
    assert task.check("3 3 6 1=7", "3 3 1") == 1.0      # both 3s, as the prompt has two


def test_subsetsum_accepts_another_valid_subset_of_every_test_problem():
    # brute force: every index set, written back to front; some problems have only one answer
    task, others = get_task("subsetsum"), 0
    for p, a in problems("subsetsum", "test"):
        nums, target = p.split("=")[0].split(), int(p.split("=")[1])
        for k in range(1, len(nums) + 1):
            for idx in itertools.combinations(range(len(nums)), k):
                text = " ".join(nums[i] for i in reversed(idx))
                if sum(int(nums[i]) for i in idx) == target and sorted(text) != sorted(a):
                    assert task.check(p, text) == 1.0, (p, text)
                    others += 1
    assert others > 100


def test_countdown_accepts_other_expressions_for_the_target():
    task = get_task("countdown")
    p = "3 5 7 2=29"
    assert task.solve(p) == "2*7+3*5"                    # shortest, then first in ASCII order
    for right in ("2*7+3*5", "3*5+7*2", "5*7-2*3", "7*5-3*2", "(5*7)-(2*3)", "((7*5))-3*2",
                  "5*7-(3*2)", " 5*7-2*3 "):
        assert task.check(p, right) == 1.0, right
    for p, a in problems("countdown", "test") + problems("countdown", "ood"):
        assert task.check(p, f"({a})") == 1.0, (p, a)             # another text, the same value


def test_toycode_accepts_extensionally_equal_programs():
    task = get_task("toycode")
    p = "312>213 45>54"
    assert task.solve(p) == "rev"
    for right in ("rev", "rev.rev.rev", "rot.rev.rot", "rev.rev.rev.rev.rev",
                  "rot.rot.rev.rot.rot"):
        assert task.check(p, right) == 1.0, right
    # element-wise maps commute with reversing, rotating and dropping the first element
    swapped = 0
    for p, a in problems("toycode", "test") + problems("toycode", "ood"):
        names = a.split(".")
        for i in range(len(names) - 1):
            pair = {names[i], names[i + 1]}
            if pair & {"inc", "dbl"} and pair & {"rev", "rot", "tail"}:
                other = names[:i] + [names[i + 1], names[i]] + names[i + 2:]
                assert task.check(p, ".".join(other)) == 1.0, (p, a, other)
                swapped += 1
        if "rev" in names:
            assert task.check(p, a.replace("rev", "rot.rev.rot", 1)) == 1.0, (p, a)
    assert swapped > 20


def test_toycode_primitives_do_what_their_names_say():
    assert [run((name,), "3129") for name in PRIMITIVES] == \
        ["9213", "1239", "4230", "6248", "129", "1293"]
    assert run(("sort", "inc"), "903") == "140" and run(("inc", "sort"), "903") == "014"
    assert len(PROGRAMS) == 6 + 36 + 216 and PROGRAMS[0] == ("dbl",)


def sudoku_ok(grid):
    """A 16-digit grid is a Sudoku: rows, columns and 2x2 boxes, sliced here independently."""
    rows = [grid[4 * r:4 * r + 4] for r in range(4)]
    cols = ["".join(r[c] for r in rows) for c in range(4)]
    boxes = [rows[r][c:c + 2] + rows[r + 1][c:c + 2] for r in (0, 2) for c in (0, 2)]
    return all(sorted(u) == list("1234") for u in rows + cols + boxes)


def test_sudoku_has_the_288_grids_known_for_4x4():
    # 288 is the known count of 4x4 Sudoku grids; each is checked by slicing, not by UNITS
    grids = solutions()
    assert len(grids) == len(set(grids)) == 288 and grids == sorted(grids)
    assert all(sudoku_ok(g) for g in grids)
    assert grids[0] == "1234341221434321"


def test_sudoku_accepts_every_grid_that_keeps_the_givens():
    task, others = get_task("sudoku"), 0
    assert task.solve("12.4|34..|..4.|4...") == "1234|3412|2143|4321"
    for p, a in problems("sudoku", "ood"):
        puzzle = p.replace("|", "")
        for g in solutions():
            keeps = all(c in (".", x) for c, x in zip(puzzle, g))
            text = "|".join(g[i:i + 4] for i in range(0, 16, 4))
            assert task.check(p, text) == float(keeps), (p, text)
            others += keeps and text != a
    assert others > 100                                 # ood puzzles often have several


def test_sudoku_rejects_junk_broken_grids_and_changed_givens():
    task = get_task("sudoku")
    p = "12.4|34..|..4.|4..."
    for junk in ("1234|3412|2143|4321 junk", "1234341221434321", "1234|3412|2143|432",
                 "1234|3412|2143|43211", "1234 3412 2143 4321", "1234|3412|2143|4321|",
                 "1234|3412|2143|4312",          # a column and a box repeat
                 "2134|3412|1243|4321",          # valid rows but a given changed
                 "1234|3412|2143|432.", "5234|3412|2143|4321", "", " ", "1234|3412|2143|4321\n1"):
        assert task.check(p, junk) == 0.0, junk
    for prompt in (None, "", "12.4|34..|..1.", "12.4|34..|..1.|4..0", "12 4|34..|..1.|4...",
                   "11.4|34..|..1.|4..."):      # a puzzle with two 1s in a row has no solution
        assert task.check(prompt, "1234|3412|2143|4321") == 0.0, prompt
    assert task.solve("11.4|34..|..1.|4...") is None


# -----------------------------------------------------------------------------
# wrong answers: 0.0, never an exception

def test_subsetsum_rejects_junk_and_wrong_subsets():
    task = get_task("subsetsum")
    p = "3 7 1 8 5=12"
    for junk in ("7 5 junk", "x 7 5", "7 5x", "7 5.", "", " ", "75", "7  5", "7,5", "7+5", "12",
                 "4 8",                 # sums to 12, but 4 is not in the prompt
                 "3 3 1 5",             # sums to 12, but 3 appears once
                 "7 8", "7 5 7 5", "0 7 5", "07 5", "\u0667 5", "7 5\n1"):
        assert task.check(p, junk) == 0.0, junk
    for prompt, completion in [(p, None), (p, 12), (p, b"7 5"), (None, "7 5"), ("3 7 1 8 5", "7 5"),
                               ("3 7 1 8 5=", "7 5"), ("3 7 1 8 5 = 12", "7 5"),
                               (" ".join("1" * 40) + "=2", "1 1")]:     # over 12 numbers
        assert task.check(prompt, completion) == 0.0, (prompt, completion)


def test_countdown_rejects_junk_malformed_and_unsafe_expressions():
    task = get_task("countdown")
    p = "3 5 7 2=29"
    for junk in ("5*7-2*3 junk", "x5*7-2*3", "5*7-2*3x", "5 * 7-2*3", "29", "5*7-6", "5*5+2+2",
                 "5*7-2*3-1", "5*7-2*3+0", "3**5", "__import__('os')", "(3+", "3+)", "()", "(",
                 ")", "+3", "-3+32", "3/3", "7/(2-2)", "5//2", "(5*7-2*3", "5*7-2*3)", "1e3",
                 "0x1d", "29.0", "5*7--2*3", "5*7-2*03", "", " ", "(" * 1000 + "3" + ")" * 1000,
                 "9" * 1000, "3+" * 500 + "3", "\u0663+\u0664", "5*7-2*3;", "5*7-2*3\n1"):
        assert task.check(p, junk) == 0.0, junk
    for prompt, completion in [(p, None), (p, 29), (p, b"5*7-2*3"), (None, "5*7-2*3"),
                               ("3 5 7 2", "5*7-2*3"), ("3 5 7 2=", "5*7-2*3")]:
        assert task.check(prompt, completion) == 0.0, (prompt, completion)


def test_toycode_rejects_junk_unknown_primitives_and_programs_that_only_fit_the_shown_examples():
    task = get_task("toycode")
    p = "312>213 45>54"
    for junk in ("rev junk", "x rev", "revx", "rev.", ".rev", "rev..rev", "REV", "rev rev",
                 "rev,rev", "reverse", "sort", "inc", "", " ", "rev." * 100 + "rev", "rev\nrev",
                 "__import__", "rev()"):
        assert task.check(p, junk) == 0.0, junk
    for prompt, completion in [(p, None), (p, 3), (None, "rev"), ("312>213", "rev"), ("", "rev"),
                               ("312>999 45>54", "rev")]:        # nothing fits the last one
        assert task.check(prompt, completion) == 0.0, (prompt, completion)
    # 4 primitives can fit both shown examples and still differ from y_true: the hidden inputs
    # are what reject them
    caught = 0
    for p, a in problems("toycode", "train")[:40]:
        shown = [pair.split(">") for pair in p.split()]
        for program in itertools.product(PRIMITIVES, repeat=4):
            if all(run(program, x) == y for x, y in shown) and not task.check(p, ".".join(program)):
                caught += 1
    assert caught > 0


@pytest.mark.parametrize("name", VERIFIABLE)
def test_corrupt_always_returns_an_answer_the_checker_rejects(name):
    task, rng = get_task(name), random.Random(0)
    for p, a in problems(name, "train")[:100] + problems(name, "ood")[:50]:
        for _ in range(3):
            wrong = task.corrupt(p, a, rng)
            assert isinstance(wrong, str) and wrong != a
            assert task.check(p, wrong) == 0.0, (p, a, wrong)


# -----------------------------------------------------------------------------
# the solver and the parser against slow independent implementations

def trees(nums):
    """Every fully parenthesised expression over all of nums in this order, as a string."""
    if len(nums) == 1:
        yield str(nums[0])
    for cut in range(1, len(nums)):
        for left in trees(nums[:cut]):
            for right in trees(nums[cut:]):
                for op in "+-*":
                    yield f"({left}{op}{right})"


def reachable(nums):
    """The positive values of every expression over a sub-multiset of nums, by Python's eval."""
    values = set()
    for k in range(1, len(nums) + 1):
        for order in set(itertools.permutations(nums, k)):
            values |= {eval(text) for text in trees(order)}
    return {v for v in values if v > 0}


@pytest.mark.parametrize("nums", [(2, 3, 5, 7), (1, 1, 9, 9), (4, 4, 4, 4), (1, 2, 3), (6, 8, 9)])
def test_expression_for_reaches_exactly_what_brute_force_reaches(nums):
    # negative intermediate values (which the solver never makes) reach nothing new
    truth = reachable(nums)
    for target in range(1, 120):
        text = expression_for(nums, target)
        assert (text is not None) == (target in truth), target
        if text is not None:
            assert eval(text) == evaluate(re.findall(r"[0-9]+|[-+*()]", text)) == target


def test_evaluate_follows_precedence_and_left_associativity():
    cases = {"2+3*4": 14, "(2+3)*4": 20, "9-3-2": 4, "9-(3-2)": 8, "2*3*4": 24, "((7))": 7,
             "9-2*3+1": 4, "2*(3+4)*(5-1)": 56}
    for text, value in cases.items():
        tokens = [t for t in text.replace("(", " ( ").replace(")", " ) ").replace("+", " + ")
                  .replace("-", " - ").replace("*", " * ").split()]
        assert evaluate(tokens) == value == eval(text), text
    for bad in ([], ["("], ["3", "+"], ["3", "3"], ["*", "3"], ["(", "3", ")", ")"]):
        assert evaluate(bad) is None, bad
