"""
Assignment 2, the critic's loss and Pavlovian weights (paper §5.3 eq 7, line 323; §5.5 eq 9,
lines 460-486): losses.py:critic_loss, losses.py:pavlovian_weights, losses.py:pavlovian_targets.

Graded by values worked by hand (the arithmetic is in the comment above each assert), by the
invariants eq 9 promises, and by a tiny critic that must learn to tell true answers from false.

    $ python -m pytest assignments/tests/test_a2_critic.py -q
"""
import math

import torch

from checks import close, descend
from losses import critic_loss, pavlovian_targets, pavlovian_weights

LN2, LN3 = math.log(2), math.log(3)


def test_critic_loss_by_hand():
    # score 0: D = 1/2, -ln(1/2) = ln 2 for a positive and -ln(1 - 1/2) = ln 2 for a negative
    close(critic_loss(torch.zeros(4), torch.tensor([1, 0, 1, 0])), LN2)
    # score ln 3: D = 3/4. Positive: -ln(3/4) = ln(4/3); negative: -ln(1/4) = ln 4; mean of both
    close(critic_loss(torch.tensor([LN3, LN3]), torch.tensor([1.0, 0.0])),
          (math.log(4 / 3) + math.log(4)) / 2)
    # any shape: the same four items as a (2, 2) batch
    close(critic_loss(torch.zeros(2, 2), torch.tensor([[1.0, 0.0], [0.0, 1.0]])), LN2)


def test_critic_loss_weights_decide_how_much_each_item_teaches():
    scores, labels = torch.tensor([LN3, LN3]), torch.tensor([1.0, 0.0])
    # weights (3, 1): (3 ln(4/3) + ln 4) / 4; (1, 0): the negative does not count; (30, 10) = (3, 1)
    three_to_one = (3 * math.log(4 / 3) + math.log(4)) / 4
    close(critic_loss(scores, labels, torch.tensor([3.0, 1.0])), three_to_one)
    close(critic_loss(scores, labels, torch.tensor([1.0, 0.0])), math.log(4 / 3))
    close(critic_loss(scores, labels, torch.tensor([30.0, 10.0])), three_to_one)


def test_critic_loss_gradient_raises_positives_and_lowers_negatives():
    # d BCE / d s = sigmoid(s) - label: at s = 0, -1/2 for the positive, +1/2 for the negative,
    # each over the 2 items of the mean
    s = torch.zeros(2, requires_grad=True)
    critic_loss(s, torch.tensor([1.0, 0.0])).backward()
    close(s.grad, [-0.25, 0.25])
    # and it stays finite where the sigmoid saturates (a logit of 200 is no problem)
    far = torch.tensor([200.0, -200.0], requires_grad=True)
    loss = critic_loss(far, torch.tensor([0.0, 1.0]))
    loss.backward()
    close(loss, 200.0)
    assert torch.isfinite(far.grad).all()


def test_pavlovian_weights_by_hand():
    # n 3, lambda ln 2: dT = 2, 1, 0 -> 1/4, 1/2, 1, over 7/4 -> 1/7, 2/7, 4/7
    close(pavlovian_weights(3, LN2), [1 / 7, 2 / 7, 4 / 7])
    close(pavlovian_weights(4, 0.0), [0.25] * 4)                       # lambda 0: uniform
    close(pavlovian_weights(4, math.inf), [0.0, 0.0, 0.0, 1.0])        # lambda inf: the last only


def test_pavlovian_weights_sum_to_one_grow_toward_the_last_item_and_c0_cancels():
    for n, lam, c0 in [(1, 0.3, 1.0), (5, 0.3, 1.0), (7, 2.0, 1.0), (6, 0.3, 5.0)]:
        w = pavlovian_weights(n, lam, c0)
        assert w.shape == (n,), f"shape {tuple(w.shape)}, expected ({n},)"
        close(w.sum(), 1.0)
        assert (w[1:] > w[:-1]).all(), "the item nearest the reward must weigh most"
        close(w, pavlovian_weights(n, lam))
        close(w[:-1] / w[1:], [math.exp(-lam)] * (n - 1))              # eq 9: C0 exp(-lam dT)


TRUTH = [1, 2, 3, 0]          # think "123<|eos|>"; the token ids do not matter


def test_pavlovian_targets_label_each_prefix_by_whether_it_is_still_on_track():
    labels, weights = pavlovian_targets(TRUTH, TRUTH, correct=True, lam=LN2)
    close(labels, [1.0, 1.0, 1.0, 1.0])
    close(weights, [1 / 15, 2 / 15, 4 / 15, 8 / 15])                  # 1/8, 1/4, 1/2, 1 over 15/8
    close(pavlovian_targets([9, 9, 0], TRUTH, correct=True, lam=0.3)[0], [1.0, 1.0, 1.0])
    # "127<eos>": "1", "12" agree with y_true, then wrong; a wrong first token is wrong throughout
    close(pavlovian_targets([1, 2, 7, 0], TRUTH, correct=False, lam=0.3)[0], [1.0, 1.0, 0.0, 0.0])
    close(pavlovian_targets([5, 2, 3, 0], TRUTH, correct=False, lam=0.3)[0], [0.0, 0.0, 0.0, 0.0])
    # "12" cut short agrees with y_true on both tokens, yet as a finished answer it is wrong
    labels, weights = pavlovian_targets([1, 2], TRUTH, correct=False, lam=LN2)
    close(labels, [1.0, 0.0])
    close(weights, [1 / 3, 2 / 3])


def test_a_tiny_critic_trained_with_eq_7_tells_true_answers_from_false():
    # each answer is a feature vector; true answers lie around +1 on the first axis, false ones
    # around -1. A linear critic trained on critic_loss alone must separate them.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g) * 0.3
    labels = (torch.arange(64) % 2).float()
    x[:, 0] += 2 * labels - 1
    w = torch.zeros(3, requires_grad=True)
    for _ in range(50):
        critic_loss(x @ w, labels).backward()
        descend([w], lr=1.0)
    assert ((x @ w > 0).float() == labels).all()
    assert critic_loss(x @ w, labels).item() < 0.2
