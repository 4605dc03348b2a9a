"""
The tasks: (prompt, answer) generators with exact checkers and three disjoint splits.

Every task draws problems from a seeded `random.Random`, so a dataset is a pure function of
(task, split, n, seed). The splits:

    train   the in-distribution problem space, minus the problems that hash into test
    test    the same distribution; a problem is in test iff crc32(prompt) % 100 < 10
    ood     harder problems (longer operands, more steps, unseen templates) that no
            in-distribution draw can produce

Arithmetic is written least-significant digit first ("reversed") and zero-padded to a fixed
width, operands and answer alike: 48213+9924 is posed "31284000+42990000" and answered
"731850000" (058137 reversed). Reversed digits let the model emit each digit after the digits
it depends on (the carry flows left to right), which trains much faster than the usual order
(Lee et al. 2023, "Teaching Arithmetic to Small Transformers"). The fixed width puts digit i of
each operand at the same distance from answer digit i in every problem, so with relative
(RoPE) positions one circuit serves every digit, and ood problems, whose longer operands fill
the same width, get a chance. `Task.pose` turns "48213+9924" into the padded prompt.

Three tasks are verifiable: subsetsum, countdown and toycode have many right answers and a checker
far cheaper than a solver (the search lives in data/verifiable.py), so a right lobe that verifies
has an edge over a left lobe that generates. Their check() accepts any right answer, as
tictactoe's accepts any optimal move.

    $ python -c "from data import get_task; print(get_task('addition').dataset('ood', 3, seed=0))"
"""
import random
import re
import zlib
from abc import ABC, abstractmethod
from collections import Counter
from functools import lru_cache

from data.verifiable import (EXAMPLES, PRIMITIVES, digit_list, evaluate, expression_for,
                             first_subset, fitting, run)
from games.tictactoe import (from_prompt, is_over, moves, optimal_moves, reachable_positions,
                             read_move, to_prompt)


def rev(n: int, width: int) -> str:
    """An integer's digits least-significant first, zero-padded to width: (1230, 6) -> '032100'."""
    return str(n).zfill(width)[::-1]


def unrev(digits: str) -> int:
    return int(digits[::-1])


def exactly(completion, answer):
    """True when the completion is the answer and nothing else, surrounding whitespace aside.
    decode_answer has already cut the completion at its first special token (<|eos|>), so junk
    before or after the answer is the model's own text and makes the answer wrong."""
    return isinstance(completion, str) and completion.strip() == answer


def texts(*xs):
    """True when every argument is a str: checkers return 0.0 for anything else, never raise."""
    return all(isinstance(x, str) for x in xs)


def number(rng: random.Random, lo_digits: int, hi_digits: int) -> int:
    """A number with a uniformly chosen digit count in [lo_digits, hi_digits], then uniform."""
    d = rng.randint(lo_digits, hi_digits)
    return rng.randint(0 if d == 1 else 10 ** (d - 1), 10 ** d - 1)


class Task(ABC):
    """A task: `draw` one problem, `check` a completion, `corrupt` an answer into a wrong one."""
    name = "task"

    @abstractmethod
    def draw(self, rng: random.Random, ood: bool) -> tuple[str, str]:
        """One (prompt, answer) from the in-distribution (ood=False) or the harder space."""

    @abstractmethod
    def check(self, prompt: str, completion: str) -> float:
        """Reward 1.0 if the completion is exactly the answer (see `exactly`), else 0.0.
        Never raises."""

    def corrupt(self, prompt: str, answer: str, rng: random.Random) -> str:
        """A plausible wrong answer: one digit changed, two swapped, one dropped or inserted."""
        runs = [m for m in re.finditer(r"\d+", answer)]
        for _ in range(100):
            m = rng.choice(runs)
            s, i = m.group(0), rng.randrange(len(m.group(0)))
            kind = rng.choice(["change", "swap", "drop", "insert"])
            if kind == "change":
                s = s[:i] + str(rng.randrange(10)) + s[i + 1:]
            elif kind == "swap" and len(s) > 1:
                i = min(i, len(s) - 2)
                s = s[:i] + s[i + 1] + s[i] + s[i + 2:]
            elif kind == "drop" and len(s) > 1:
                s = s[:i] + s[i + 1:]
            elif kind == "insert":
                s = s[:i] + str(rng.randrange(10)) + s[i:]
            wrong = answer[:m.start()] + s + answer[m.end():]
            if not self.check(prompt, wrong):
                return wrong
        return answer + "0"  # a fallback that is wrong for every task here

    def pose(self, question: str) -> str:
        """A human's question as this task's prompt ("48213+9924" -> "31284000+42990000")."""
        return question

    def show(self, answer: str) -> str:
        """An answer in the form a human writes it ("731850000" -> "58137"); junk stays as it is."""
        return answer

    def split_of(self, prompt: str) -> str:
        """'test' for the 10% of in-distribution prompts that hash there, else 'train'."""
        return "test" if zlib.crc32(prompt.encode()) % 100 < 10 else "train"

    def sample(self, rng: random.Random, split: str) -> tuple[str, str]:
        """One problem from a split; train and test never share a prompt."""
        if split not in ("train", "test", "ood"):
            raise ValueError(f"unknown split {split!r}: expected train, test or ood")
        while True:
            prompt, answer = self.draw(rng, ood=split == "ood")
            if split == "ood" or self.split_of(prompt) == split:
                return prompt, answer

    def dataset(self, split: str, n: int, seed: int = 0) -> list[tuple[str, str]]:
        """n distinct problems of a split (fewer if the split is smaller), the same for a seed."""
        rng, seen, out = random.Random(f"{self.name}/{split}/{seed}"), set(), []
        for _ in range(50 * n):
            p, a = self.sample(rng, split)
            if p not in seen:
                seen.add(p)
                out.append((p, a))
                if len(out) == n:
                    break
        return out

    def batch(self, rng: random.Random, size: int, grown: float = 1.0) -> list[tuple[str, str]]:
        """size train problems. grown < 1 is a length curriculum inside the train split: prompts
        of at most 2 + grown * (longest - 2) characters, never fewer than the shortest, so short
        problems come first (parity: few bits, few loops); grown >= 1 draws plainly."""
        lo, hi = self.train_lengths()
        cap = max(lo, 2 + grown * (hi - 2)) if grown < 1 else float("inf")
        pairs = []
        while len(pairs) < size:
            p, a = self.sample(rng, "train")
            if len(p) <= cap:
                pairs.append((p, a))
        return pairs

    @lru_cache(maxsize=None)
    def train_lengths(self) -> tuple[int, int]:
        """The shortest and longest prompt among 200 train draws."""
        seen = [len(self.sample(random.Random(i), "train")[0]) for i in range(200)]
        return min(seen), max(seen)


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
# Verifiable tasks (see the top of the file): check() accepts every right answer; y_true is the one
# that `solve` finds by search, and the tests use `solve` to prove every drawn prompt solvable.
NUMBERS = r"([1-9](?: [1-9]){0,11})=([0-9]{1,4})"    # '3 7 1 8 5=12': at most 12 digits 1-9


def numbers(prompt):
    """A '3 7 1 8 5=12' prompt as (['3', '7', '1', '8', '5'], 12), or None."""
    m = texts(prompt) and re.fullmatch(NUMBERS, prompt)
    return (m[1].split(), int(m[2])) if m else None


class SubsetSum(Task):
    """'3 7 1 8 5=12' -> '7 5': some of the numbers that sum to the target, each used at most as
    often as the prompt has it, written with single spaces in any order. y_true is the solver's:
    the fewest numbers, then the first index set, in prompt order. The target is a sum of two or
    more of the numbers and equals none of them. train/test: 4-6 digits 1-9; ood: 7-9 digits."""
    name = "subsetsum"

    def draw(self, rng, ood):
        while True:
            n = rng.randint(7, 9) if ood else rng.randint(4, 6)
            nums = [rng.randint(1, 9) for _ in range(n)]
            chosen = [x for x in nums if rng.random() < 0.5]
            if len(chosen) >= 2 and sum(chosen) not in nums:
                prompt = f"{' '.join(map(str, nums))}={sum(chosen)}"
                return prompt, self.solve(prompt)

    def solve(self, prompt):
        """The fewest numbers, first in prompt order, that sum to the target; None if none do."""
        nums, target = numbers(prompt) or ([], 0)
        idx = first_subset([int(x) for x in nums], target)
        return None if idx is None else " ".join(nums[i] for i in idx)

    def check(self, prompt, completion):
        posed = numbers(prompt)
        ok = posed and texts(completion) and re.fullmatch(r"[1-9]( [1-9])*", completion.strip())
        if not ok:
            return 0.0
        used = completion.split()
        return float(not Counter(used) - Counter(posed[0]) and sum(map(int, used)) == posed[1])

    def corrupt(self, prompt, answer, rng):
        """A number dropped, added or swapped for another of the prompt's: it misses the target."""
        nums = numbers(prompt)[0]
        for _ in range(100):
            wrong, i = answer.split(), rng.randrange(len(answer.split()))
            kind = rng.choice(["drop", "add", "swap"])
            if kind == "drop" and len(wrong) > 1:
                del wrong[i]
            elif kind == "add":
                wrong.insert(i, rng.choice(nums))
            else:
                wrong[i] = rng.choice(nums)
            if not self.check(prompt, " ".join(wrong)):
                return " ".join(wrong)
        return super().corrupt(prompt, answer, rng)


class Countdown(Task):
    """'3 5 7 2=29' -> '2*7+3*5' (or '5*7-2*3', ...): an expression over some of the numbers,
    each used at most as often as the prompt has it, with + - * and parentheses (no division, no
    unary minus, no spaces) that equals the target. check() tokenizes and parses it (`evaluate`),
    never eval()s it. y_true is the solver's shortest text, ties to the first in ASCII order
    (`expression_for`). Targets are drawn uniformly and kept when reachable. train/test: 3-4
    digits 1-9, targets 10-100; ood: 5 digits, targets 10-200."""
    name = "countdown"

    def draw(self, rng, ood):
        while True:
            nums = [rng.randint(1, 9) for _ in range(5 if ood else rng.randint(3, 4))]
            target = rng.randint(10, 200 if ood else 100)
            answer = expression_for(tuple(sorted(nums)), target)
            if answer:
                return f"{' '.join(map(str, nums))}={target}", answer

    def solve(self, prompt):
        """The shortest expression that reaches the target, or None (also for over 5 numbers)."""
        nums, target = numbers(prompt) or ([], 0)
        return expression_for(tuple(sorted(map(int, nums))), target) if len(nums) <= 5 else None

    def check(self, prompt, completion):
        posed = numbers(prompt)
        if not (posed and texts(completion) and len(completion) <= 64):
            return 0.0
        tokens = re.findall(r"[0-9]+|[-+*()]", completion.strip())
        if "".join(tokens) != completion.strip():   # another character, or a space inside
            return 0.0
        if Counter(t for t in tokens if t.isdigit()) - Counter(posed[0]):
            return 0.0                              # a number not in the prompt, or used too often
        return float(evaluate(tokens) == posed[1])

    def corrupt(self, prompt, answer, rng):
        """A number swapped for another of the prompt's, or an operator changed: it misses."""
        nums = numbers(prompt)[0]
        for _ in range(100):
            i = rng.randrange(len(answer))
            new = rng.choice(nums) if answer[i].isdigit() else rng.choice("+-*")
            wrong = answer if answer[i] in "()" else answer[:i] + new + answer[i + 1:]
            if not self.check(prompt, wrong):
                return wrong
        return super().corrupt(prompt, answer, rng)


class ToyCode(Task):
    """'312>213 45>54' -> 'rev': program synthesis from examples, a stand-in for MBPP/HumanEval.
    The answer is a program that maps each shown input to its output: primitives joined by '.'
    and applied left to right (data/verifiable.py: rev sort inc dbl tail rot). check() runs it on
    the 2 shown inputs and on 4 hidden ones derived from the prompt alone (crc32) and compares it
    with y_true, the first of the 258 programs of 1-3 primitives (shortest, then ASCII) that fits
    the shown examples; any program that agrees on all 6 is right ('inc.rev' for 'rev.inc').
    draw() keeps only well-posed prompts: every program of 1-3 primitives that fits the shown
    examples agrees on the hidden inputs, and no shown output is empty or equal to its input.
    train/test: programs of 1-2 primitives; ood: 3 primitives where no shorter program fits, so no
    ood prompt is ever in-distribution. Inputs have 3-5 digits."""
    name = "toycode"

    def draw(self, rng, ood):
        while True:
            program = [rng.choice(list(PRIMITIVES)) for _ in range(3 if ood else rng.randint(1, 2))]
            shown = [digit_list(rng) for _ in range(2)]
            outputs = [run(program, x) for x in shown]
            if any(y in ("", x) for x, y in zip(shown, outputs)):
                continue
            prompt = " ".join(f"{x}>{y}" for x, y in zip(shown, outputs))
            inputs, fits = fitting(prompt)
            posed = len({tuple(run(p, x) for x in inputs) for p in fits}) == 1
            if posed and (len(fits[0]) == 3) == ood:
                return prompt, ".".join(fits[0])

    def solve(self, prompt):
        """The canonical program, or None if the prompt does not parse or nothing fits."""
        fits = texts(prompt) and re.fullmatch(EXAMPLES, prompt) and fitting(prompt)[1]
        return ".".join(fits[0]) if fits else None

    def check(self, prompt, completion):
        y_true = self.solve(prompt)
        ok = y_true and texts(completion) and re.fullmatch(r"[a-z]+(\.[a-z]+){0,7}",
                                                           completion.strip())
        program = completion.strip().split(".") if ok else ["?"]
        if any(name not in PRIMITIVES for name in program):
            return 0.0
        inputs = fitting(prompt)[0]
        return float(all(run(program, x) == run(y_true.split("."), x) for x in inputs))

    def corrupt(self, prompt, answer, rng):
        """A primitive changed, dropped or added, or two swapped: it computes something else."""
        for _ in range(100):
            wrong, i = answer.split("."), rng.randrange(answer.count(".") + 1)
            kind = rng.choice(["change", "drop", "add", "swap"])
            if kind == "drop" and len(wrong) > 1:
                del wrong[i]
            elif kind == "add":
                wrong.insert(i, rng.choice(list(PRIMITIVES)))
            elif kind == "swap" and len(wrong) > 1:
                wrong[i - 1], wrong[i] = wrong[i], wrong[i - 1]
            else:
                wrong[i] = rng.choice(list(PRIMITIVES))
            if not self.check(prompt, ".".join(wrong)):
                return ".".join(wrong)
        return answer + "0"


# -----------------------------------------------------------------------------
TASKS = {t.name: t for t in (Addition, Multiplication, Parity, WordProblems, TicTacToeTask,
                             SubsetSum, Countdown, ToyCode)}


def get_task(name: str) -> Task:
    """A task by name."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: choose from {', '.join(TASKS)}")
    return TASKS[name]()
