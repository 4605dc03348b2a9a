"""
The verifiable tasks (subsetsum, countdown, toycode) and the search behind them: tasks with many
right answers where checking one is far easier than finding one, so a right lobe that verifies
has an edge over a left lobe that generates. Finding is search here (subsets, expression tables,
programs); checking is an addition, a parse, a run. Their check() accepts any right answer, as
tictactoe's accepts any optimal move.

    $ python -c "from data.verifiable import expression_for as e; print(e((2, 3, 5, 7), 29))"
"""
import random
import re
import zlib
from collections import Counter
from functools import lru_cache
from itertools import combinations, product

from data.task import Task, texts


def first_subset(nums, target):
    """The indices of the fewest numbers, first in order, that sum to target; None if none do."""
    for k in range(1, len(nums) + 1):
        for idx in combinations(range(len(nums)), k):
            if sum(nums[i] for i in idx) == target:
                return idx
    return None


# -----------------------------------------------------------------------------
# Countdown: arithmetic expressions over a multiset of numbers with + - * and parentheses.

def splits(nums):
    """Every cut of a sorted multiset into two non-empty sorted parts, as (left, right)."""
    return {(tuple(x for i, x in enumerate(nums) if mask >> i & 1),
             tuple(x for i, x in enumerate(nums) if not mask >> i & 1))
            for mask in range(1, 2 ** len(nums) - 1)}


def joins(a, ea, b, eb):
    """(value, is_product, text) for a+b, a-b (when >= 0) and a*b, where ea = (free, tight) holds
    a's texts (see `expressions`): a side takes parentheses only where it must, a sum right of '-'
    or beside '*'; '+' and the left of '-' need none, since a+(b-c) = a+b-c."""
    (a_free, a_tight), (b_free, b_tight) = ea, eb
    yield a + b, 0, f"{a_free}+{b_free}"
    if a >= b:
        yield a - b, 0, f"{a_free}-{b_tight}"
    yield a * b, 1, f"{a_tight}*{b_tight}"


def shortest(*candidates):
    """The shortest text, ties to the first in ASCII order; None when all are None."""
    return min((c for c in candidates if c), key=lambda c: (len(c), c), default=None)


@lru_cache(maxsize=None)
def expressions(nums):
    """{value: (free, tight)} for every value that an expression using each number of the sorted
    multiset nums exactly once reaches: free is its shortest text, tight its shortest text that is
    a number, a product or a parenthesised sum. Intermediate values stay >= 0, which loses no
    positive target: |x+y|, |x-y| and |x*y| are all reached from |x| and |y|."""
    if len(nums) == 1:
        return {nums[0]: (str(nums[0]), str(nums[0]))}
    best = {}                                       # value -> [shortest sum, shortest product]
    for left, right in splits(nums):
        for a, ea in expressions(left).items():
            for b, eb in expressions(right).items():
                for value, kind, text in joins(a, ea, b, eb):
                    pair = best.setdefault(value, [None, None])
                    pair[kind] = shortest(pair[kind], text)
    return {v: (shortest(s, p), shortest(p, s and f"({s})")) for v, (s, p) in best.items()}


def expression_for(nums, target):
    """The shortest text over a sub-multiset of the sorted tuple nums (at most 5 numbers) that
    equals target, or None. Parts of up to 4 numbers are looked up in their tables; all 5 are
    joined at the target alone (b = target - a, ...), which spares building the 5-number table."""
    found = None
    for k in range(1, len(nums) + 1):
        if found and len(found) < 2 * k - 1:        # k numbers take at least 2k-1 characters
            break
        for sub in sorted(set(combinations(nums, k))):
            if k <= 4:
                found = shortest(found, expressions(sub).get(target, (None,))[0])
                continue
            for left, right in splits(sub):
                table = expressions(right)
                for a, ea in expressions(left).items():
                    for b in {target - a, a - target, target // a if a else -1} & table.keys():
                        hits = [text for v, _, text in joins(a, ea, b, table[b]) if v == target]
                        found = shortest(found, *hits)
    return found


def evaluate(tokens):
    """The value of tokens under expr := term (('+'|'-') term)*, term := factor ('*' factor)*,
    factor := number | '(' expr ')'; None if they do not parse. No eval(): nothing else runs."""
    def expr(i):
        v, i = term(i)
        while v is not None and i < len(tokens) and tokens[i] in ("+", "-"):
            w, j = term(i + 1)
            v, i = (None if w is None else v + w if tokens[i] == "+" else v - w), j
        return v, i

    def term(i):
        v, i = factor(i)
        while v is not None and i < len(tokens) and tokens[i] == "*":
            w, i = factor(i + 1)
            v = None if w is None else v * w
        return v, i

    def factor(i):
        if i < len(tokens) and tokens[i].isdigit():
            return int(tokens[i]), i + 1
        if i < len(tokens) and tokens[i] == "(":
            v, i = expr(i + 1)
            if v is not None and i < len(tokens) and tokens[i] == ")":
                return v, i + 1
        return None, i

    value, end = expr(0)
    return value if end == len(tokens) else None


# -----------------------------------------------------------------------------
# Toy code: a list is a string of digits; a program is primitives joined by '.', applied left to
# right ('sort.inc' sorts, then adds 1 to each digit).
INC, DBL = str.maketrans("0123456789", "1234567890"), str.maketrans("0123456789", "0246802468")
PRIMITIVES = {"rev": lambda s: s[::-1],                    # reverse
              "sort": lambda s: "".join(sorted(s)),        # ascending
              "inc": lambda s: s.translate(INC),           # x -> x+1 mod 10
              "dbl": lambda s: s.translate(DBL),           # x -> 2x mod 10
              "tail": lambda s: s[1:],                     # drop the first
              "rot": lambda s: s[1:] + s[:1]}              # the first moves to the end
PROGRAMS = sorted((p for k in (1, 2, 3) for p in product(PRIMITIVES, repeat=k)),
                  key=lambda p: (len(p), ".".join(p)))   # canonical order: shortest, then ASCII
EXAMPLES = r"([0-9]{1,9})>([0-9]{1,9}) ([0-9]{1,9})>([0-9]{1,9})"    # '312>213 45>54'


def run(program, digits):
    for name in program:
        digits = PRIMITIVES[name](digits)
    return digits


def digit_list(rng):
    return "".join(str(rng.randrange(10)) for _ in range(rng.randint(3, 5)))


def outputs(digits):
    """{program: run(program, digits)} for every program of PROGRAMS, each one primitive applied
    to its prefix's output (PROGRAMS lists every prefix first): one call per program, not three."""
    out = {(): digits}
    for program in PROGRAMS:
        out[program] = PRIMITIVES[program[-1]](out[program[:-1]])
    return out


@lru_cache(maxsize=4096)
def fitting(prompt):
    """(inputs, programs) for a toycode prompt that matches EXAMPLES: the 2 shown inputs and 4
    hidden ones seeded by crc32(prompt), and the programs of 1-3 primitives (in canonical order)
    that map each shown input to its output."""
    m = re.fullmatch(EXAMPLES, prompt)
    rng = random.Random(zlib.crc32(prompt.encode()))
    inputs = (m[1], m[3]) + tuple(digit_list(rng) for _ in range(4))
    first = outputs(m[1])
    return inputs, tuple(p for p in PROGRAMS if first[p] == m[2] and run(p, m[3]) == m[4])


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

