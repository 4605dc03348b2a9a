"""
Tests for data/: the tokenizer (round trip, vocabulary, specials, valence bins) and the tasks
(disjoint splits, seeded datasets, exact-match checkers that reject junk and never raise,
corruptions that are always wrong, posing a human's question), plus right-padded batches. Every
draw is seeded.

    $ python -m pytest tests/test_data.py -q
"""
import random
import re

import pytest
import torch

from data import get_task
from data.task import unrev
from data.tasks import TASKS
from data.tokenizer import (BOS, EOS, PAD, SEP, SPECIALS, VALENCE, decode, decode_answer, encode, enc,
                            valence_token, vocab_size)
from lobes import pad_right

ALL_TASKS = list(TASKS)


# -----------------------------------------------------------------------------
# tokenizer

@pytest.mark.parametrize("text", ["12+34", "31284000+42990000", "Ann has 5 apples. #### 6", "x.o|.x.|..o",
                                  "", " \n\t", "naïve café ∑ 日本 🙂", "<|eos|> is plain text here"])
def test_tokenizer_round_trips_text(text):
    ids = encode(text)
    assert decode(ids) == text
    assert all(0 <= t < 256 for t in ids)      # user text never becomes a special token
    assert len(ids) == len(text.encode())       # byte level: one token per byte


def test_vocab_is_272_and_the_specials_are_distinct_ids_above_the_bytes():
    assert vocab_size == 272 == 256 + len(SPECIALS)
    special_ids = set(enc._special_tokens.values())
    assert len(special_ids) == len(SPECIALS) == 16
    assert special_ids == set(range(256, 272))
    assert len({BOS, EOS, PAD, SEP, *VALENCE}) == 14
    assert decode([BOS, *encode("7"), SEP, EOS]) == "<|bos|>7<|sep|><|eos|>"


def test_decode_answer_stops_at_the_first_special_token():
    assert decode_answer(encode("731") + [EOS] + encode("99")) == "731"
    assert decode_answer(encode("12") + [VALENCE[3], PAD]) == "12"
    assert decode_answer([EOS]) == ""


@pytest.mark.parametrize("p,k", [(0.0, 0), (0.05, 0), (0.1, 1), (0.35, 3), (0.5, 5), (0.89, 8), (0.95, 9),
                                 (0.999, 9), (1.0, 9)])
def test_valence_token_quantises_a_probability_into_ten_bins(p, k):
    assert valence_token(p) == VALENCE[k]


def test_valence_token_quantises_p_into_ten_bins():
    assert valence_token(0.35) == VALENCE[3]
    assert [valence_token((k + 0.5) / 10) for k in range(10)] == VALENCE
    assert valence_token(0.0) == VALENCE[0] and valence_token(1.0) == VALENCE[9]


# -----------------------------------------------------------------------------
# splits

def shape(name, prompt):
    """What separates in-distribution from ood for each task: digit counts, length, steps."""
    if name in ("addition", "multiplication"):
        return tuple(len(str(unrev(x))) for x in re.split(r"[+*]", prompt))
    if name == "parity":
        return len(prompt)
    if name == "wordproblems":
        steps = prompt.count(".") - 1
        unseen = any(v in prompt for v in ("gets", "sells", "wins"))
        return steps, unseen
    if name in ("subsetsum", "countdown"):
        return len(prompt.split("=")[0].split())            # how many numbers
    if name == "toycode":
        return get_task(name).solve(prompt).count(".") + 1  # primitives in the shortest program
    if name == "sudoku":
        return prompt.count(".")                            # blanks
    return 9 - prompt.count(".")   # tictactoe: marks on the board


@pytest.mark.parametrize("name", ALL_TASKS)
def test_splits_are_disjoint_and_ood_has_shapes_training_never_shows(name):
    task = get_task(name)
    train = task.dataset("train", 3000, seed=0)
    test = task.dataset("test", 500, seed=0)
    ood = task.dataset("ood", 500, seed=0)
    train_p, test_p, ood_p = ({p for p, _ in d} for d in (train, test, ood))
    assert len(test_p) >= 50 and len(ood_p) >= 50
    assert not train_p & test_p
    assert not ood_p & (train_p | test_p)
    assert all(task.split_of(p) == "test" for p in test_p)
    in_shapes = {shape(name, p) for p in train_p | test_p}
    ood_shapes = {shape(name, p) for p in ood_p}
    assert not in_shapes & ood_shapes


@pytest.mark.parametrize("name", ALL_TASKS)
def test_dataset_is_a_pure_function_of_split_n_and_seed(name):
    task = get_task(name)
    a = task.dataset("train", 200, seed=3)
    assert a == get_task(name).dataset("train", 200, seed=3)
    assert a != task.dataset("train", 200, seed=4)
    assert len({p for p, _ in a}) == len(a) == 200          # n distinct problems
    assert all(task.check(p, ans) == 1.0 for p, ans in a)   # every answer is right


def test_about_10_percent_of_in_distribution_prompts_hash_into_test():
    task, rng = get_task("addition"), random.Random(0)
    prompts = [task.draw(rng, ood=False)[0] for _ in range(5000)]
    share = sum(task.split_of(p) == "test" for p in prompts) / len(prompts)
    assert 0.08 < share < 0.12


def test_unknown_split_and_task_are_errors_that_name_the_choices():
    with pytest.raises(ValueError, match="train, test or ood"):
        get_task("addition").sample(random.Random(0), "val")
    with pytest.raises(ValueError, match="addition"):
        get_task("subtraction")


# -----------------------------------------------------------------------------
# checkers

def one_problem(name):
    return get_task(name).dataset("test", 1, seed=0)[0]


@pytest.mark.parametrize("name", ALL_TASKS)
def test_checker_accepts_the_exact_answer_with_surrounding_whitespace(name):
    task, (p, a) = get_task(name), one_problem(name)
    for completion in (a, " " + a, a + " ", " " + a + "\n", "\t" + a + "  \n"):
        assert task.check(p, completion) == 1.0, completion


@pytest.mark.parametrize("name", ALL_TASKS)
def test_checker_rejects_the_answer_with_junk_before_or_after_it(name):
    # decode_answer cuts at <|eos|>, so what is left is all the model's own text
    task, (p, a) = get_task(name), one_problem(name)
    for completion in (a + " junk", a + "<|eos|>12", "answer: " + a, "x" + a, a + "x123",
                       a + " " + a, a + ".", a + a[-1]):
        assert task.check(p, completion) == 0.0, completion


@pytest.mark.parametrize("name", ALL_TASKS)
@pytest.mark.parametrize("split", ["test", "ood"])
def test_checker_accepts_every_answer_of_the_test_and_ood_splits(name, split):
    task = get_task(name)
    pairs = task.dataset(split, 50, seed=0)
    assert len(pairs) == 50 and all(task.check(p, a) == 1.0 for p, a in pairs)


def test_addition_checker_wants_exactly_the_padded_reversed_sum():
    task = get_task("addition")
    p = task.pose("48213+9924")
    assert task.check(p, "731850000") == task.check(p, " 731850000 ") == 1.0
    for junk in ("abc 731850000", "731850000x123", "731850000 731850000", "7318500000",
                 "73185000", "731850000=58137", "+731850000", "731850000\n1"):
        assert task.check(p, junk) == 0.0, junk


def test_multiplication_checker_wants_exactly_the_padded_reversed_product():
    task = get_task("multiplication")
    p = task.pose("25*43")
    assert task.check(p, "57010000") == task.check(p, "\n57010000\n") == 1.0
    for junk in ("ab 57010000", "57010000x1", "5701", "570100000", "57010000 57010000"):
        assert task.check(p, junk) == 0.0, junk


def test_parity_checker_wants_one_bit_and_nothing_else():
    task = get_task("parity")
    assert task.check("0110", "0") == task.check("0110", " 0\n") == 1.0
    assert task.check("0111", "1") == 1.0
    for junk in ("01", "x0 1", "0 1", "00", "0.", "answer 0", "1"):
        assert task.check("0110", junk) == 0.0, junk


def test_wordproblems_checker_wants_the_work_as_well_as_the_number():
    task = get_task("wordproblems")
    p = "Ann has 5 apples. Ann buys 3 more. Ann loses 2. How many apples does Ann have?"
    assert task.solve(p) == "5+3=8 8-2=6 #### 6"
    assert task.check(p, "5+3=8 8-2=6 #### 6") == task.check(p, "  5+3=8 8-2=6 #### 6\n") == 1.0
    for junk in ("#### 6", "junk #### 6", "5+3=9 9-3=6 #### 6", "5+3=8 8-2=6 #### 6 7",
                 "5+3=8 8-2=6 #### 6 junk", "5+3=8  8-2=6 #### 6", "5+3=8 8-2=6 ####6",
                 "5+3=8 8-2=6 #### 7", "6"):
        assert task.check(p, junk) == 0.0, junk


GARBAGE = ["", " ", "None", "+", "12+", "1*2*3", "abc", "0" * 500, "٣+٤", "\x00\xff"]


@pytest.mark.parametrize("name", ALL_TASKS)
def test_checker_gives_0_for_garbage_strings_and_never_raises(name):
    task, (p, a) = get_task(name), one_problem(name)
    for junk in GARBAGE:
        if name == "parity" and set(junk) <= {"0", "1"}:
            continue                                  # a bit string, even "", is a fair parity prompt
        assert task.check(junk, a) == 0.0, junk      # a garbage prompt
        assert task.check(p, junk) == 0.0, junk      # a garbage completion
        assert task.check(junk, junk) == 0.0
    assert task.check(p, "") == 0.0


@pytest.mark.parametrize("name", ALL_TASKS)
def test_checker_gives_0_for_non_string_input_and_never_raises(name):
    # Task.check's contract: 1.0 for exactly the answer, else 0.0, and it never raises
    task, (p, a) = get_task(name), one_problem(name)
    for prompt, completion in [(None, a), (p, None), (None, None), (123, a), (p, b"1")]:
        assert task.check(prompt, completion) == 0.0, (prompt, completion)


@pytest.mark.parametrize("name", ALL_TASKS)
def test_corrupt_always_returns_an_answer_the_checker_rejects(name):
    task, rng = get_task(name), random.Random(0)
    pairs = task.dataset("train", 300, seed=1) + task.dataset("ood", 100, seed=1)
    for p, a in pairs:
        for _ in range(3):
            wrong = task.corrupt(p, a, rng)
            assert isinstance(wrong, str) and wrong != a
            assert task.check(p, wrong) == 0.0, (p, a, wrong)


def test_addition_corrupt_includes_carry_errors():
    # 5 + 5 = 10 carries out of the units: dropping that carry gives 0 ("0000000000"[:9])
    task, rng = get_task("addition"), random.Random(0)
    p = task.pose("5+5")
    assert task.check(p, "010000000") == 1.0
    assert "000000000" in {task.corrupt(p, "010000000", rng) for _ in range(50)}


# -----------------------------------------------------------------------------
# posing a human's question

def test_pose_addition_pads_and_reverses_both_operands():
    task = get_task("addition")
    p = task.pose("48213+9924")
    assert p == "31284000+42990000"
    assert task.check(p, "731850000") == 1.0            # 58137 -> 058137 -> reversed, width 9
    assert task.check(p, "73185") == 0.0                # unpadded is not the answer format
    assert task.pose(" 48213 + 9924 ") == p


def test_pose_multiplication_makes_the_papers_2534x5423_an_ood_prompt():
    task = get_task("multiplication")
    p = task.pose("2534*5423")
    assert p == "4352*3245"
    assert 2534 * 5423 == 13741882
    assert task.check(p, "28814731") == 1.0             # 13741882 reversed, width 8
    assert shape("multiplication", p) == (4, 4)         # 4-digit operands: only ood draws these
    ood = {p for p, _ in task.dataset("ood", 5000, seed=0)}
    assert all(shape("multiplication", q) in {(3, 3), (3, 4), (4, 3), (4, 4)} for q in ood)


# -----------------------------------------------------------------------------
# batches

def test_pad_right_pads_every_row_to_the_longest_with_pad():
    idx, lengths = pad_right([[1, 2, 3], [4], [5, 6]], "cpu")
    assert idx.tolist() == [[1, 2, 3], [4, PAD, PAD], [5, 6, PAD]]
    assert lengths.tolist() == [3, 1, 2]
    assert idx.dtype == torch.long
