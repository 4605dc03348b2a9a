"""
The Inner Dialogue Loop (IDL): two lobes talk until a stopping rule fires, then one answers.

Lateralized (paper Figure 5, Algorithm 2 lines 4-19, eq 6):

    for loop = 1 .. idl_limit:
        x_left  = left(x)                       # Alg 2 lines 6-13: the left lobe answers
        y_right = sigmoid(right(prompt + x_left))  # line 14: the right lobe scores the answer
        if y_right >= threshold: stop           # lines 15-16: accepted
        x = prompt + x_left + <|v y_right|>     # line 18 / eq 6: try again with the feedback

The context keeps the last attempt only, as eq 6 and Alg 3 line 7 write it (Alg 2 line 18
would grow it every loop); the feedback is the right lobe's probability quantised to a valence
token <|v0|>..<|v9|>, which is what train_sft.py teaches the left lobe to read.

Tall (Figure 3): both lobes generate; each one's input is the prompt plus the other's last
answer; they stop when their answers agree.

Both are batched: every row stops on its own, a stopped row is never run again, and the loop
ends when all rows have stopped. The Dialogue record keeps every attempt and score, the loops
each row used (adaptive compute), the stop reason and the final answer.

    $ python play.py --task=addition --prompt="48213+9924"     # watch one dialogue
"""
from dataclasses import dataclass, field

import torch

from data.tokenizer import LEFT, PAD, RIGHT, decode_answer, valence_token
from lobes import answer_ids, prompt_ids


@dataclass
class Dialogue:
    prompts: list                                    # the B prompts (text)
    attempts: list = field(init=False)        # attempts[i]: row i's answers, one per loop
    scores: list = field(init=False)          # scores[i]: the right lobe's p of each attempt
    tokens: list = field(init=False)          # tokens[i]: generated token ids of each attempt
    loops: list = field(init=False)           # loops row i ran
    stop: list = field(init=False)            # "accepted" | "agreed" | "limit"
    final: list = field(init=False)           # the answer given to the outside world
    forward_passes: list = field(init=False)  # per row: lobe forward passes spent

    def __post_init__(self):
        B = len(self.prompts)
        self.attempts, self.scores, self.tokens = ([[] for _ in range(B)] for _ in range(3))
        self.loops, self.stop, self.final, self.forward_passes = [0] * B, [""] * B, [""] * B, [0] * B


def _temperature(temperature, loop):
    """A float for every loop, or a list with one temperature per loop (SPIN samples at several)."""
    return temperature[loop] if isinstance(temperature, (list, tuple)) else temperature


def speak(lobe, contexts, max_new_tokens, temperature):
    """One batched generation: token lists in, (answers, token lists, forward passes per row) out."""
    tokens, _ = lobe.generate(contexts, max_new_tokens, temperature)
    rows = [[t for t in row if t != PAD] for row in tokens.tolist()]
    # one forward pass per generated token (the prompt's prefill is one more)
    return [decode_answer(r) for r in rows], rows, [len(r) + 1 for r in rows]


@torch.no_grad()
def lateralized(left, right, prompts, idl_limit=4, threshold=0.5, temperature=0.0, max_new_tokens=16):
    """Algorithm 2 lines 4-19, batched: the left lobe answers until the right lobe is satisfied."""
    d = Dialogue(list(prompts))
    feedback = [[] for _ in prompts]
    active = list(range(len(prompts)))
    for loop in range(idl_limit):
        if not active:
            break
        # LOOP LOGIC: Alg 2 lines 6-13, the left lobe answers x (prompt [+ attempt + valence])
        answers, rows, passes = speak(left, [prompt_ids(prompts[i], feedback[i]) for i in active],
                                       max_new_tokens, _temperature(temperature, loop))
        # LOOP LOGIC: Alg 2 line 14, the right lobe scores prompt + answer in one pass
        p = torch.sigmoid(right.score([prompt_ids(prompts[i]) + answer_ids(a) for i, a in zip(active, answers)]))
        still = []
        for i, a, r, n, pi in zip(active, answers, rows, passes, p.tolist()):
            d.attempts[i].append(a), d.scores[i].append(pi), d.tokens[i].append(r)
            d.loops[i], d.forward_passes[i] = loop + 1, d.forward_passes[i] + n + 1
            if pi >= threshold:                       # Alg 2 lines 15-16: accepted, this row stops
                d.stop[i], d.final[i] = "accepted", a
            else:                                     # Alg 2 line 18 / eq 6: feed the score back
                feedback[i] = [(a, valence_token(pi))]
                still.append(i)
        active = still
    for i in active:                                  # idl_limit reached: answer the best-scored
        best = max(range(len(d.scores[i])), key=lambda j: d.scores[i][j])
        d.stop[i], d.final[i] = "limit", d.attempts[i][best]
    return d


@torch.no_grad()
def tall(left, right, prompts, idl_limit=4, temperature=0.0, max_new_tokens=16):
    """Figure 3: both lobes answer; each then reads the other's last answer; stop on agreement.

    Role tokens mark who said what: the left lobe reads  prompt <sep> right's answer <|right|> <sep>
    and the right lobe reads  prompt <sep> left's answer <|left|> <sep>. Scores stay empty.
    """
    d = Dialogue(list(prompts))
    last_left, last_right = [None] * len(prompts), [None] * len(prompts)
    active = list(range(len(prompts)))
    for loop in range(idl_limit):
        if not active:
            break
        t = _temperature(temperature, loop)
        ctx_l = [prompt_ids(prompts[i], [(last_right[i], RIGHT)] if loop else []) for i in active]
        ctx_r = [prompt_ids(prompts[i], [(last_left[i], LEFT)] if loop else []) for i in active]
        a_l, rows_l, n_l = speak(left, ctx_l, max_new_tokens, t)     # LOOP LOGIC: both lobes speak
        a_r, _, n_r = speak(right, ctx_r, max_new_tokens, t)
        still = []
        for i, al, ar, r, nl, nr in zip(active, a_l, a_r, rows_l, n_l, n_r):
            d.attempts[i].append(al), d.tokens[i].append(r)
            last_left[i], last_right[i] = al, ar
            d.loops[i], d.forward_passes[i] = loop + 1, d.forward_passes[i] + nl + nr
            if al == ar:                              # LOOP LOGIC: the lobes agree, this row stops
                d.stop[i], d.final[i] = "agreed", al
            else:
                still.append(i)
        active = still
    for i in active:
        d.stop[i], d.final[i] = "limit", last_left[i]
    return d
