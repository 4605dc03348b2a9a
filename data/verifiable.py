"""
The search and the checking behind the verifiable tasks of data/tasks.py (subsetsum, countdown,
toycode): tasks with many right answers where checking one is far easier than finding one, so a
right lobe that verifies has an edge over a left lobe that generates. Finding is search here
(subsets, expression tables, programs); checking is an addition, a parse, a run.

    $ python -c "from data.verifiable import expression_for as e; print(e((2, 3, 5, 7), 29))"
"""
import random
import re
import zlib
from functools import lru_cache
from itertools import combinations, product


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
