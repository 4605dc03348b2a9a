"""
4x4 Sudoku, a verifiable task whose check does not grow with its difficulty: filling the blanks
gets harder the fewer cells are given (more cells wait on others, and with few givens many grids
fit, so a writer going left to right can paint itself into a corner), but checking a filled grid
is always the same work: 16 cells against their 12 rows, columns and boxes and against the
givens. So out of distribution the right lobe judges inputs shaped like its training's while the
left lobe faces harder search: the setting where a verifier has an edge (issue #18).

A grid is written in rows of 4 separated by '|', blanks as '.': the prompt '12.4|34..|..4.|4...'
and the answer '1234|3412|2143|4321' share one layout, so answer cell i sits at one fixed
distance from prompt cell i (relative positions, as data/tasks.py's fixed widths).

    $ python -c "from data import get_task; print(get_task('sudoku').dataset('ood', 3))"
"""
import re
from functools import lru_cache
from itertools import permutations

from data.task import Task, texts

# the cells (row-major, 0-15) of each row, column and 2x2 box: each holds 1-4 once
UNITS = ([[4 * r + c for c in range(4)] for r in range(4)] +
         [[4 * r + c for r in range(4)] for c in range(4)] +
         [[4 * (br + r) + bc + c for r in range(2) for c in range(2)]
          for br in (0, 2) for bc in (0, 2)])
PROMPT, ANSWER = r"[1-4.]{4}(?:\|[1-4.]{4}){3}", r"[1-4]{4}(?:\|[1-4]{4}){3}"


def cells(text):
    """'12.4|34..|..4.|4...' -> '12.434....4.4...' (16 characters)."""
    return text.replace("|", "")


def rows(grid):
    """16 characters -> the written form, rows of 4 separated by '|'."""
    return "|".join(grid[i:i + 4] for i in range(0, 16, 4))


def distinct(grid):
    """No row, column or box repeats a digit among the grid's first len(grid) cells: for 16
    digits 1-4, the grid is a valid Sudoku."""
    return all(len({grid[i] for i in unit if i < len(grid)}) == sum(i < len(grid) for i in unit)
               for unit in UNITS)


@lru_cache(maxsize=None)
def solutions():
    """Every valid 4x4 grid (288 of them), in ASCII order, built a row at a time."""
    grids = [""]
    for _ in range(4):
        grids = [g for g in (h + "".join(row) for h in grids for row in permutations("1234"))
                 if distinct(g)]
    return sorted(grids)


def fits(grid, puzzle):
    """The grid agrees with every given cell of the 16-character puzzle."""
    return all(p in (".", g) for g, p in zip(grid, puzzle))


class Sudoku(Task):
    """'12.4|34..|..4.|4...' -> '1234|3412|2143|4321': any valid grid that keeps the givens
    (with few givens several fit). y_true is the solver's: the first such grid in ASCII order.
    Puzzles are a uniformly drawn grid with some cells blanked. train/test: 4-8 blanks; ood:
    9-12, where the grid is as long but fewer cells can be read off their row, column and box."""
    name = "sudoku"

    def draw(self, rng, ood):
        grid = rng.choice(solutions())
        blanks = set(rng.sample(range(16), rng.randint(9, 12) if ood else rng.randint(4, 8)))
        prompt = rows("".join("." if i in blanks else c for i, c in enumerate(grid)))
        return prompt, self.solve(prompt)

    def solve(self, prompt):
        """The first valid grid in ASCII order that keeps the givens, or None."""
        if not (texts(prompt) and re.fullmatch(PROMPT, prompt)):
            return None
        return next((rows(g) for g in solutions() if fits(g, cells(prompt))), None)

    def check(self, prompt, completion):
        ok = (texts(prompt, completion) and re.fullmatch(PROMPT, prompt)
              and re.fullmatch(ANSWER, completion.strip()))
        grid = cells(completion.strip()) if ok else ""
        return float(bool(ok) and distinct(grid) and fits(grid, cells(prompt)))

    def corrupt(self, prompt, answer, rng):
        """A filled-in cell changed, or two filled-in cells of a row swapped: a duplicate in some
        row, column or box."""
        blanks = [i for i, c in enumerate(cells(prompt)) if c == "."]
        for _ in range(100):
            grid, i = list(cells(answer)), rng.choice(blanks)
            pair = [j for j in blanks if j // 4 == i // 4 and grid[j] != grid[i]]
            if pair and rng.random() < 0.5:
                j = rng.choice(pair)
                grid[i], grid[j] = grid[j], grid[i]
            else:
                grid[i] = rng.choice([d for d in "1234" if d != grid[i]])
            wrong = rows("".join(grid))
            if not self.check(prompt, wrong):
                return wrong
        return super().corrupt(prompt, answer, rng)
