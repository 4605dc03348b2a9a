"""
Assignment 3, the lateralized Inner Dialogue Loop (paper Figure 5, Algorithm 2 lines 4-19,
lines 355-385; eq 6, line 298): idl.py:lateralized.

The lobes here are scripted, so every dialogue is known in advance: the left lobe answers from
a table keyed by the exact context it reads (a context eq 6 does not produce is a KeyError), and
the right lobe scores from a table keyed by the exact prompt + answer. A correct answer scores
0.95, wrong ones 0.25, 0.45 or 0.15: each the centre of its valence bin (<|v9|>, <|v2|>, ...).

    $ python -m pytest assignments/tests/test_a3_lateralized.py -q
"""
import math

import torch

from checks import close
from data.tokenizer import EOS, PAD, encode, valence_token
from idl import lateralized
from lobes import answer_ids, prompt_ids

P = {"4": 0.95, "6": 0.95, "2": 0.95, "5": 0.25, "3": 0.25, "7": 0.15, "9": 0.45}
TRUE = {"2+2": "4", "3+3": "6", "1+1": "2"}


def p_of(prompt, answer):
    """The right lobe's probability: 0.95 for the true answer, else by the answer."""
    return 0.95 if TRUE[prompt] == answer else P[answer]


# what the left lobe says after each context: first a plain prompt, then prompt + last attempt
# + its valence (eq 6 keeps only the last attempt)
SCRIPT = {("2+2", None): "5", ("2+2", "5"): "4", ("2+2", "4"): "4",
          ("3+3", None): "6", ("3+3", "6"): "6",
          ("1+1", None): "3", ("1+1", "3"): "9", ("1+1", "9"): "7", ("1+1", "7"): "3"}


def context(prompt, last):
    feedback = [] if last is None else [(last, valence_token(p_of(prompt, last)))]
    return tuple(prompt_ids(prompt, feedback))


class ScriptedLeft:
    """generate() as Lobe.generate: token rows padded with <|pad|> after <|eos|>, and log-probs."""

    def __init__(self):
        self.table = {context(p, last): a for (p, last), a in SCRIPT.items()}
        self.calls = []          # (contexts, max_new_tokens, temperature) of every call

    def generate(self, contexts, max_new_tokens, temperature=0.0, top_k=None):
        self.calls.append(([list(c) for c in contexts], max_new_tokens, temperature))
        rows = [encode(self.table[tuple(c)]) + [EOS] for c in contexts]
        width = max(len(r) for r in rows)
        tokens = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
        return tokens, torch.zeros(tokens.shape)


class ScriptedRight:
    """score() as Lobe.score: one logit per sequence, here looked up by the exact tokens."""

    def __init__(self):
        self.table = {tuple(prompt_ids(p) + answer_ids(a)): math.log(p_of(p, a) / (1 - p_of(p, a)))
                      for p in TRUE for a in set(SCRIPT.values())}
        self.seen = []

    def score(self, seqs):
        self.seen += [list(s) for s in seqs]
        return torch.tensor([self.table[tuple(s)] for s in seqs])


PROMPTS = ["2+2", "3+3", "1+1"]


def run(**kw):
    left, right = ScriptedLeft(), ScriptedRight()
    kw = {"idl_limit": 3, "threshold": 0.5, "max_new_tokens": 6, **kw}
    return lateralized(left, right, PROMPTS, **kw), left, right


def test_each_row_stops_on_its_own_and_a_stopped_row_is_never_run_again():
    d, left, _ = run()
    assert d.loops == [2, 1, 3]
    assert d.stop == ["accepted", "accepted", "limit"]
    assert [len(contexts) for contexts, _, _ in left.calls] == [3, 2, 1]


def test_the_left_lobe_reads_the_prompt_then_its_last_attempt_and_its_valence_eq_6():
    d, left, _ = run()
    fed = [c for contexts, _, _ in left.calls for c in contexts]
    assert fed[3] == prompt_ids("2+2", [("5", valence_token(0.25))])
    assert fed[5] == prompt_ids("1+1", [("9", valence_token(0.45))])  # the last attempt only
    # the dialogue keeps exactly what the left lobe read, row by row
    assert d.contexts == [[fed[0], fed[3]], [fed[1]], [fed[2], fed[4], fed[5]]]


def test_the_right_lobe_scores_the_plain_prompt_and_the_answer():
    _, _, right = run()
    assert right.seen[:3] == [prompt_ids(p) + answer_ids(a) for p, a in zip(PROMPTS, "563")]


def test_the_dialogue_records_every_attempt_score_and_token_row():
    d, _, _ = run()
    assert d.prompts == PROMPTS
    assert d.attempts == [["5", "4"], ["6"], ["3", "9", "7"]]
    for got, want in zip(d.scores, [[0.25, 0.95], [0.95], [0.25, 0.45, 0.15]]):
        assert all(isinstance(p, float) for p in got), "scores are floats (probabilities)"
        close(got, want)
    assert d.tokens[2] == [encode(a) + [EOS] for a in ["3", "9", "7"]]


def test_an_accepted_row_answers_its_last_attempt_and_a_row_at_the_limit_its_best_scored():
    d, _, _ = run()
    assert d.final == ["4", "6", "9"]


def test_forward_passes_count_every_token_each_prompt_pass_and_each_score():
    # per loop: 2 tokens ("5" <|eos|>) + 1 prompt pass of the left lobe + 1 pass of the right
    d, _, _ = run()
    assert d.forward_passes == [8, 4, 12]


def test_threshold_none_never_accepts_and_every_row_runs_idl_limit_loops():
    d, left, _ = run(threshold=None)
    assert d.loops == [3, 3, 3] and d.stop == ["limit"] * 3
    assert d.attempts[1] == ["6", "6", "6"] and d.final[1] == "6"
    assert [len(contexts) for contexts, _, _ in left.calls] == [3, 3, 3]


def test_the_idl_limit_the_token_budget_and_per_loop_temperatures_reach_the_left_lobe():
    d, left, _ = run(idl_limit=1, max_new_tokens=5)
    assert d.loops == [1, 1, 1] and d.final == ["5", "6", "3"] and len(left.calls) == 1
    assert d.stop == ["limit", "accepted", "limit"]
    _, left, _ = run(threshold=None, temperature=[0.1, 0.5, 0.9])      # SPIN samples at several
    assert [(n, t) for _, n, t in left.calls] == [(6, 0.1), (6, 0.5), (6, 0.9)]
    _, left, _ = run(temperature=0.7)
    assert all(t == 0.7 for _, _, t in left.calls)


def test_with_feedback_false_a_rejected_row_reads_its_prompt_alone_again():
    d, left, _ = run(feedback=False)                       # sln.py's retry@k: eq 6's channel cut
    fed = [c for contexts, _, _ in left.calls for c in contexts]
    assert fed == [prompt_ids(p) for p in ["2+2", "3+3", "1+1", "2+2", "1+1", "2+2", "1+1"]]
    assert d.attempts == [["5"] * 3, ["6"], ["3"] * 3]
    assert d.stop == ["limit", "accepted", "limit"] and d.final == ["5", "6", "3"]
