"""
Tests for losses.py: every loss against a value worked out by hand (the arithmetic is in the
comment above each assert).

    $ python -m pytest tests/test_losses.py -q
"""
import math

import pytest
import torch
import torch.nn.functional as F

from losses import critic_loss, pavlovian_targets, pavlovian_weights, sft_loss, spin_loss

LN2, LN3 = math.log(2), math.log(3)


def close(x, value):
    """x (a tensor) equals value (a number, list or tensor) to float32 precision."""
    torch.testing.assert_close(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(value, dtype=torch.float32))


# -----------------------------------------------------------------------------
# eq 1: sft_loss

def test_sft_loss_on_one_token_of_a_two_word_vocabulary():
    # logits (0, ln 3): softmax = (1/4, 3/4). Target 0: -ln(1/4) = ln 4; target 1: -ln(3/4) = ln(4/3)
    logits = torch.tensor([[[0.0, LN3]]])
    one = torch.ones(1, 1)
    close(sft_loss(logits, torch.tensor([[0]]), one), math.log(4))
    close(sft_loss(logits, torch.tensor([[1]]), one), math.log(4 / 3))


def test_sft_loss_averages_over_answer_tokens_only():
    # position 0: logits (0, ln 3), target 1 -> ln(4/3); position 1: logits (0, 0), target 0 -> ln 2
    logits = torch.tensor([[[0.0, LN3], [0.0, 0.0]]])
    targets = torch.tensor([[1, 0]])
    close(sft_loss(logits, targets, torch.tensor([[1.0, 0.0]])), math.log(4 / 3))  # pos 1 ignored
    close(sft_loss(logits, targets, torch.tensor([[0.0, 1.0]])), LN2)              # pos 0 ignored
    # both: (ln(4/3) + ln 2) / 2 = ln(8/3) / 2
    close(sft_loss(logits, targets, torch.tensor([[1.0, 1.0]])), math.log(8 / 3) / 2)


def test_sft_loss_with_an_empty_mask_is_zero_not_nan():
    # 0 / clamp(0, min=1) = 0
    close(sft_loss(torch.zeros(1, 2, 2), torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2)), 0.0)


# -----------------------------------------------------------------------------
# eq 7: critic_loss

def test_critic_loss_at_score_0_is_ln2_per_item_whatever_the_label():
    # sigmoid(0) = 1/2: -ln(1/2) = ln 2 for a positive and -ln(1 - 1/2) = ln 2 for a negative
    close(critic_loss(torch.zeros(4), torch.tensor([1, 0, 1, 0])), LN2)


def test_critic_loss_by_hand_for_a_positive_and_a_negative():
    # score ln 3: D = sigmoid(ln 3) = 3/4. Positive: -ln(3/4) = ln(4/3). Negative: -ln(1/4) = ln 4
    scores, labels = torch.tensor([LN3, LN3]), torch.tensor([1.0, 0.0])
    close(critic_loss(scores, labels), (math.log(4 / 3) + math.log(4)) / 2)   # = ln(16/3) / 2


def test_critic_loss_weights_decide_how_much_each_item_teaches():
    scores, labels = torch.tensor([LN3, LN3]), torch.tensor([1.0, 0.0])
    # weights (3, 1): (3 ln(4/3) + 1 ln 4) / (3 + 1)
    close(critic_loss(scores, labels, torch.tensor([3.0, 1.0])), (3 * math.log(4 / 3) + math.log(4)) / 4)
    # weights (1, 0): the negative does not count at all -> ln(4/3)
    close(critic_loss(scores, labels, torch.tensor([1.0, 0.0])), math.log(4 / 3))
    # only ratios matter: (30, 10) is (3, 1)
    close(critic_loss(scores, labels, torch.tensor([30.0, 10.0])), (3 * math.log(4 / 3) + math.log(4)) / 4)


# -----------------------------------------------------------------------------
# eq 9: pavlovian_weights

def test_pavlovian_weights_lambda_0_are_uniform():
    close(pavlovian_weights(4, 0.0), [0.25, 0.25, 0.25, 0.25])


def test_pavlovian_weights_lambda_inf_put_everything_on_the_last_item():
    close(pavlovian_weights(4, math.inf), [0.0, 0.0, 0.0, 1.0])


def test_pavlovian_weights_n3_lambda_ln2_are_1_2_4_sevenths():
    # dT = 2, 1, 0: exp(-ln2 * dT) = 1/4, 1/2, 1; sum 7/4 -> 1/7, 2/7, 4/7
    close(pavlovian_weights(3, LN2), [1 / 7, 2 / 7, 4 / 7])


@pytest.mark.parametrize("n,lam,c0", [(1, 0.3, 1.0), (5, 0.3, 1.0), (7, 2.0, 1.0), (6, 0.3, 5.0), (3, math.inf, 1.0)])
def test_pavlovian_weights_sum_to_1_grow_toward_the_last_item_and_c0_cancels(n, lam, c0):
    w = pavlovian_weights(n, lam, c0)
    assert w.shape == (n,)
    close(w.sum(), 1.0)
    assert (w[1:] >= w[:-1]).all()
    close(w, pavlovian_weights(n, lam))


# -----------------------------------------------------------------------------
# §5.5: pavlovian_targets

TRUTH = [1, 2, 3, 0]          # think "123<|eos|>"; the token ids do not matter


def test_pavlovian_targets_label_every_prefix_of_a_correct_answer_positive():
    labels, weights = pavlovian_targets(TRUTH, TRUTH, correct=True, lam=LN2)
    close(labels, [1.0, 1.0, 1.0, 1.0])
    # dT = 3, 2, 1, 0: 1/8, 1/4, 1/2, 1 over 15/8 -> 1/15, 2/15, 4/15, 8/15
    close(weights, [1 / 15, 2 / 15, 4 / 15, 8 / 15])


def test_pavlovian_targets_a_correct_answer_other_than_y_true_is_all_positive():
    labels, _ = pavlovian_targets([9, 9, 0], TRUTH, correct=True, lam=0.3)  # e.g. "0123" for "123"
    close(labels, [1.0, 1.0, 1.0])


def test_pavlovian_targets_a_wrong_answer_is_positive_up_to_its_first_wrong_token():
    # "127<eos>" vs "123<eos>": prefixes "1", "12" agree with y_true, "127", "127<eos>" do not
    labels, _ = pavlovian_targets([1, 2, 7, 0], TRUTH, correct=False, lam=0.3)
    close(labels, [1.0, 1.0, 0.0, 0.0])
    # a wrong first token is negative from the start, even where a later token agrees again
    labels, _ = pavlovian_targets([5, 2, 3, 0], TRUTH, correct=False, lam=0.3)
    close(labels, [0.0, 0.0, 0.0, 0.0])


def test_pavlovian_targets_final_position_of_a_wrong_answer_that_is_a_prefix_is_negative():
    # "12" (cut short) agrees with y_true on both tokens, yet as a finished answer it is wrong
    labels, weights = pavlovian_targets([1, 2], TRUTH, correct=False, lam=LN2)
    close(labels, [1.0, 0.0])
    close(weights, [1 / 3, 2 / 3])    # 1/2, 1 over 3/2


# -----------------------------------------------------------------------------
# Alg 3: spin_loss

def test_spin_loss_is_ln2_when_the_policy_is_the_reference():
    # every log-ratio is 0, so the margin is 0 and l(0) = ln(1 + e^0) = ln 2
    lp_true, lp_gen = torch.tensor([-3.0, -1.5]), torch.tensor([-2.0, -7.0])
    loss, margin = spin_loss(lp_true, lp_true, lp_gen, lp_gen, beta=0.1)
    close(loss, LN2)
    close(margin, [0.0, 0.0])


def test_spin_loss_by_hand_and_swapping_chosen_and_rejected_flips_the_margin():
    # log p/p_t(y_true) = ln 3, log p/p_t(y') = -ln 3, beta = 1/2: margin = (ln3 + ln3) / 2 = ln 3
    lp_true, ref_true = torch.tensor([-1.0]), torch.tensor([-1.0 - LN3])
    lp_gen, ref_gen = torch.tensor([-2.0]), torch.tensor([-2.0 + LN3])
    loss, margin = spin_loss(lp_true, ref_true, lp_gen, ref_gen, beta=0.5)
    close(margin, [LN3])
    close(loss, math.log(4 / 3))          # l(ln 3) = ln(1 + 1/3)
    swapped, m_swapped = spin_loss(lp_gen, ref_gen, lp_true, ref_true, beta=0.5)
    close(m_swapped, [-LN3])
    close(swapped, math.log(4))           # l(-ln 3) = ln(1 + 3)
    # in general loss(-m) = softplus(m) while loss(m) = softplus(-m)
    close(swapped, F.softplus(margin).mean())
    close(loss, F.softplus(-margin).mean())


def test_spin_loss_is_the_batch_mean():
    # margins ln 3 and -ln 3 (beta 1): (ln(4/3) + ln 4) / 2
    lp_true, zero = torch.tensor([LN3, -LN3]), torch.zeros(2)
    loss, _ = spin_loss(lp_true, zero, zero, zero, beta=1.0)
    close(loss, (math.log(4 / 3) + math.log(4)) / 2)
