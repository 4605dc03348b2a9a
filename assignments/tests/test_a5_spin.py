"""
Assignment 5, SPIN's loss (paper §5.6, Algorithm 3 line 12, line 522): losses.py:spin_loss.

Graded by the invariant that starts every SPIN iteration (the loss is ln 2 when the policy is
its opponent), values worked by hand, the direction of its gradient, and a tiny policy that SPIN
must pull toward y_true and away from the opponent's answers.

    $ python -m pytest assignments/tests/test_a5_spin.py -q
"""
import math

import torch
import torch.nn.functional as F

from checks import close, descend
from losses import spin_loss

LN2, LN3 = math.log(2), math.log(3)


def test_spin_loss_is_ln2_when_the_policy_is_its_opponent():
    # every log-ratio is 0, so the margin is 0 and l(0) = ln(1 + e^0) = ln 2
    lp_true, lp_gen = torch.tensor([-3.0, -1.5, -0.2]), torch.tensor([-2.0, -7.0, -4.0])
    loss, margin = spin_loss(lp_true, lp_true, lp_gen, lp_gen, beta=0.1)
    close(loss, LN2)
    assert margin.shape == (3,), f"margin shape {tuple(margin.shape)}, expected (3,)"
    close(margin, [0.0, 0.0, 0.0])


def test_spin_loss_by_hand_and_swapping_true_and_generated_flips_the_margin():
    # log p/p_t(y_true) = ln 3, log p/p_t(y') = -ln 3, beta 1/2: margin = (ln 3 + ln 3) / 2 = ln 3
    lp_true, ref_true = torch.tensor([-1.0]), torch.tensor([-1.0 - LN3])
    lp_gen, ref_gen = torch.tensor([-2.0]), torch.tensor([-2.0 + LN3])
    loss, margin = spin_loss(lp_true, ref_true, lp_gen, ref_gen, beta=0.5)
    close(margin, [LN3])
    close(loss, math.log(4 / 3))                                       # l(ln 3) = ln(1 + 1/3)
    swapped, m_swapped = spin_loss(lp_gen, ref_gen, lp_true, ref_true, beta=0.5)
    close(m_swapped, [-LN3])
    close(swapped, math.log(4))                                        # l(-ln 3) = ln(1 + 3)


def test_spin_loss_is_the_batch_mean_and_stays_finite_for_large_margins():
    # margins ln 3 and -ln 3 (beta 1): (ln(4/3) + ln 4) / 2
    zero = torch.zeros(2)
    loss, _ = spin_loss(torch.tensor([LN3, -LN3]), zero, zero, zero, beta=1.0)
    close(loss, (math.log(4 / 3) + math.log(4)) / 2)
    loss, _ = spin_loss(torch.tensor([-500.0]), torch.zeros(1), torch.zeros(1), torch.zeros(1), 1.0)
    close(loss, 500.0)                                                 # l(-500) = 500, not inf


def test_the_gradient_raises_y_true_and_lowers_the_opponents_answer():
    # dl/dm = -sigmoid(-m) = -1/2 at m = 0; m = beta (lp_true - lp_gen + ...); mean over 2 rows
    lp_true = torch.tensor([-2.0, -3.0], requires_grad=True)
    lp_gen = torch.tensor([-1.0, -0.5], requires_grad=True)
    loss, _ = spin_loss(lp_true, lp_true.detach(), lp_gen, lp_gen.detach(), beta=0.1)
    assert loss.shape == (), f"the loss is the batch mean, a scalar; got shape {tuple(loss.shape)}"
    loss.backward()
    close(lp_true.grad, [-0.025, -0.025])                             # descent raises log p(y_true)
    close(lp_gen.grad, [0.025, 0.025])                                # ... and lowers log p(y')


def test_one_spin_iteration_moves_a_tiny_policy_toward_y_true():
    # a policy over 4 answers; answer 0 is y_true; the opponent (the frozen policy of iteration t)
    # prefers answer 3 and generates it. Training on spin_loss alone must prefer answer 0.
    opponent = torch.tensor([0.0, 0.0, 0.0, 2.0]).log_softmax(-1)
    logits = opponent.clone().requires_grad_(True)
    y_true, y_gen = torch.zeros(8, dtype=torch.long), torch.full((8,), 3)
    losses = []
    for _ in range(30):
        lp = F.log_softmax(logits, -1)
        loss, _ = spin_loss(lp[y_true], opponent[y_true], lp[y_gen], opponent[y_gen], beta=1.0)
        loss.backward()
        descend([logits], lr=1.0)
        losses.append(loss.item())
    assert math.isclose(losses[0], LN2, abs_tol=1e-6) and losses[-1] < 0.1
    assert logits.softmax(-1).argmax() == 0
