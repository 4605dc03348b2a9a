"""
The task contract: a task draws (prompt, answer) problems from a seeded `random.Random`, checks a
completion exactly and corrupts an answer into a wrong one, so a dataset is a pure function of
(task, split, n, seed). The splits:

    train   the in-distribution problem space, minus the problems that hash into test
    test    the same distribution; a problem is in test iff crc32(prompt) % 100 < 10
    ood     harder problems (longer operands, more steps, unseen templates) that no
            in-distribution draw can produce

The tasks themselves are in data/tasks.py and data/verifiable.py.
"""
import random
import re
import zlib
from abc import ABC, abstractmethod
from functools import lru_cache


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

