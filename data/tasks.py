"""
The tasks, by name (TASKS, get_task): addition, multiplication, parity, word problems and
tic-tac-toe here; the verifiable ones (subsetsum, countdown, toycode) in data/verifiable.py and
sudoku in data/sudoku.py. Each is a data/task.py Task: seeded draws, an exact checker, disjoint
train/test/ood splits.

Arithmetic is written least-significant digit first ("reversed") and zero-padded to a fixed
width, operands and answer alike: 48213+9924 is posed "31284000+42990000" and answered
"731850000" (058137 reversed). Reversed digits let the model emit each digit after the digits
it depends on (the carry flows left to right), which trains much faster than the usual order
(Lee et al. 2023, "Teaching Arithmetic to Small Transformers"). The fixed width puts digit i of
each operand at the same distance from answer digit i in every problem, so with relative
(RoPE) positions one circuit serves every digit, and ood problems, whose longer operands fill
the same width, get a chance. `Task.pose` turns "48213+9924" into the padded prompt.

    $ python -c "from data import get_task; print(get_task('addition').dataset('ood', 3, seed=0))"
"""
import re
from functools import lru_cache

from data.task import Task, exactly, number, rev, texts, unrev
from data.sudoku import Sudoku
from data.verifiable import Countdown, SubsetSum, ToyCode
from games.tictactoe import (from_prompt, is_over, moves, optimal_moves, reachable_positions,
                             read_move, to_prompt)


# -----------------------------------------------------------------------------
class Addition(Task):
    """'31284000+42990000' (48213+9924) -> '731850000' (58137). train/test: 1-5 digit operands;
    ood: 6-8 digits. Operands are padded to 8 digits and answers to 9, all reversed."""
    name, width = "addition", 8

    def draw(self, rng, ood):
        lo, hi = (6, 8) if ood else (1, 5)
        a, b = number(rng, lo, hi), number(rng, lo, hi)
        return f"{rev(a, self.width)}+{rev(b, self.width)}", rev(a + b, self.width + 1)

    def pose(self, question):
        a, b = (int(x) for x in question.replace(" ", "").split("+"))
        return f"{rev(a, self.width)}+{rev(b, self.width)}"

    def show(self, answer):
        return str(unrev(answer)) if re.fullmatch(r"\d+", answer) else answer

    def check(self, prompt, completion):
        m = texts(prompt) and re.fullmatch(rf"(\d{{{self.width}}})\+(\d{{{self.width}}})", prompt)
        return float(bool(m) and
                     exactly(completion, rev(unrev(m[1]) + unrev(m[2]), self.width + 1)))

    def corrupt(self, prompt, answer, rng):
        """Half the time a carry error (the sum with one carry dropped), else a generic one."""
        a, b = (unrev(x) for x in prompt.split("+"))
        carries, carry = [], 0
        for i in range(self.width):  # the digit positions whose column sum carries out
            carry = (a // 10**i % 10 + b // 10**i % 10 + carry) // 10
            if carry:
                carries.append(i)
        if carries and rng.random() < 0.5:
            return rev(a + b - 10 ** (rng.choice(carries) + 1), self.width + 1)
        return super().corrupt(prompt, answer, rng)


class Multiplication(Task):
    """'5200*3400' (25*43) -> '57010000' (1075). train/test: 1-2 digit operands; ood: 3-4 digits,
    so the paper's 2534*5423 (line 29) is an ood prompt. Operands padded to 4, answers to 8."""
    name, width = "multiplication", 4

    def draw(self, rng, ood):
        lo, hi = (3, 4) if ood else (1, 2)
        a, b = number(rng, lo, hi), number(rng, lo, hi)
        return f"{rev(a, self.width)}*{rev(b, self.width)}", rev(a * b, 2 * self.width)

    def pose(self, question):
        a, b = (int(x) for x in question.replace(" ", "").split("*"))
        return f"{rev(a, self.width)}*{rev(b, self.width)}"

    show = Addition.show

    def check(self, prompt, completion):
        m = texts(prompt) and re.fullmatch(rf"(\d{{{self.width}}})\*(\d{{{self.width}}})", prompt)
        return float(bool(m) and
                     exactly(completion, rev(unrev(m[1]) * unrev(m[2]), 2 * self.width)))


class Parity(Task):
    """'0110100' -> '1' (an odd number of ones). train/test: length 1-10; ood: 11-20."""
    name = "parity"

    def draw(self, rng, ood):
        n = rng.randint(11, 20) if ood else rng.randint(1, 10)
        bits = "".join(rng.choice("01") for _ in range(n))
        return bits, str(bits.count("1") % 2)

    def check(self, prompt, completion):
        ok = texts(prompt) and set(prompt) <= {"0", "1"}
        return float(ok and exactly(completion, str(prompt.count("1") % 2)))

    def corrupt(self, prompt, answer, rng):
        return "1" if answer == "0" else "0"


# -----------------------------------------------------------------------------
# Word problems: tiny GSM8k. A start sentence, some steps, a question; the answer shows one
# "a+b=c" line per step and ends "#### N" as GSM8k does. ood: more steps, and step templates
# that training never shows.
NAMES = ["Ann", "Ben", "Cal", "Dee", "Eve", "Fay", "Gus", "Hal"]
ITEMS = ["apples", "coins", "books", "cards", "shells", "stamps"]
STEPS_TRAIN = [("buys {b} more", "+"), ("finds {b} more", "+"), ("gives away {b}", "-"),
               ("loses {b}", "-")]
STEPS_OOD = [("gets {b} from a friend", "+"), ("sells {b}", "-"), ("wins {b} more", "+")]


class WordProblems(Task):
    """'Ann has 5 apples. Ann buys 3 more. Ann loses 2. How many apples does Ann have?'
    -> '5+3=8 8-2=6 #### 6'. train/test: 1-2 steps, four templates; ood: 3-4 steps, all seven.
    The work is a function of the prompt, so check() asks for the whole answer exactly, as every
    task does: a right final number after wrong or missing work is a wrong answer, and a reward
    for the number alone would teach a model that its working does not matter."""
    name = "wordproblems"

    def draw(self, rng, ood):
        name, item = rng.choice(NAMES), rng.choice(ITEMS)
        steps = STEPS_TRAIN + STEPS_OOD if ood else STEPS_TRAIN
        x = rng.randint(1, 20)
        text, work = [f"{name} has {x} {item}."], []
        chosen = [rng.choice(steps) for _ in range(rng.randint(3, 4) if ood else rng.randint(1, 2))]
        if ood and not any(s in STEPS_OOD for s in chosen):
            chosen[rng.randrange(len(chosen))] = rng.choice(STEPS_OOD)  # an unseen template, always
        for template, op in chosen:
            b = rng.randint(1, 10) if op == "+" else rng.randint(0, min(x, 10))
            y = x + b if op == "+" else x - b
            text.append(f"{name} {template.format(b=b)}.")
            work.append(f"{x}{op}{b}={y}")
            x = y
        text.append(f"How many {item} does {name} have?")
        return " ".join(text), " ".join(work) + f" #### {x}"

    def solve(self, prompt):
        """The answer, work and all, from the prompt text alone, or None if it does not parse."""
        m = re.match(r"(\w+) has (\d+) ", prompt) if texts(prompt) else None
        if not m:
            return None
        x, work = int(m[2]), []
        for verb, b in re.findall(r"\. \w+ ([a-z ]+?) (\d+)", prompt):
            op = next((o for t, o in STEPS_TRAIN + STEPS_OOD if t.split(" {b}")[0] == verb), None)
            if op is None:
                return None
            y = x + int(b) if op == "+" else x - int(b)
            work.append(f"{x}{op}{int(b)}={y}")
            x = y
        return " ".join(work + [f"#### {x}"])

    def check(self, prompt, completion):
        answer = self.solve(prompt)
        return float(answer is not None and exactly(completion, answer))


# -----------------------------------------------------------------------------
@lru_cache(maxsize=None)
def task_positions(ood):
    """The positions a split draws from, sorted: not over, and >= 4 marks (ood: <= 3 marks)."""
    marks = {b: 9 - b.count(".") for b in reachable_positions() if not is_over(b)}
    return tuple(sorted(b for b, n in marks.items() if (n <= 3) == ood))


class TicTacToeTask(Task):
    """'x.o|.x.|..o' -> '6' (X blocks O's column): a move, cell 1-9 row-major, that is optimal
    for the side to move (X if the marks are even). The answer is drawn uniformly among the
    optimal moves; check() accepts any of them, written as one digit and nothing else (read_move).
    train/test: positions with at least 4 marks; ood: at most 3 marks (earlier in the game, so
    more lookahead is needed)."""
    name = "tictactoe"

    def draw(self, rng, ood):
        board = rng.choice(task_positions(ood))
        return to_prompt(board), str(rng.choice(optimal_moves(board)) + 1)

    def check(self, prompt, completion):
        board, move = from_prompt(prompt), read_move(completion)
        if board is None or is_over(board) or move is None:
            return 0.0
        return float(move in optimal_moves(board))

    def corrupt(self, prompt, answer, rng):
        """A legal but non-optimal move if there is one, else an occupied cell, else '0'."""
        board = from_prompt(prompt)
        if board is None:
            return "0"
        worse = [m for m in moves(board) if m not in optimal_moves(board)]
        taken = [i for i, c in enumerate(board) if c != "."]
        pool = worse or taken
        return str(rng.choice(pool) + 1) if pool else "0"  # the empty board: every move is optimal



# -----------------------------------------------------------------------------
TASKS = {t.name: t for t in (Addition, Multiplication, Parity, WordProblems, TicTacToeTask,
                             SubsetSum, Countdown, ToyCode, Sudoku)}


def get_task(name: str) -> Task:
    """A task by name."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: choose from {', '.join(TASKS)}")
    return TASKS[name]()
