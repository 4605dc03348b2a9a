"""
Assignment 8, learned halting (the wide SLN's main gate, paper Figure 4, line 156; PonderNet,
Banino et al. 2021): losses.py:halting_distribution, losses.py:halting_loss.

Graded by values worked by hand, by the invariants (every row's halting distribution sums to 1;
the loss's gradient moves the halt toward the loop whose answer is right) and by a tiny halting
policy trained on the loss alone.

    $ python -m pytest assignments/tests/test_a8_halting.py -q
"""
import math

import torch

from checks import close, descend
from losses import halting_distribution, halting_loss


def test_halting_distribution_by_hand():
    # lam 0.5 after every loop, N = 3: p = 0.5, 0.5 * 0.5, and the rest (0.25) on the last loop
    close(halting_distribution(torch.tensor([[0.5, 0.5, 0.5]])), [[0.5, 0.25, 0.25]])
    # lam 0.2, 0.5, 0.9: p = 0.2, 0.8 * 0.5, and 0.4 left for the last (lam_N is read as 1)
    close(halting_distribution(torch.tensor([[0.2, 0.5, 0.9]])), [[0.2, 0.4, 0.4]])


def test_every_row_of_the_halting_distribution_sums_to_one():
    lam = torch.rand(5, 7, generator=torch.Generator().manual_seed(0))
    p = halting_distribution(lam)
    assert p.shape == (5, 7), f"shape {tuple(p.shape)}, expected (5, 7)"
    close(p.sum(1), torch.ones(5))
    assert (p >= 0).all()
    close(halting_distribution(torch.ones(2, 4))[:, 0], [1.0, 1.0])    # lam 1: halt at once


def test_halting_loss_by_hand():
    # lam (0.5, 0.5): p = (1/2, 1/2); CE (1.0, 0.2): expected CE 0.6. prior 0.5: p_G = (0.5, 0.25)
    # renormalised (2/3, 1/3); KL = 1/2 ln(3/4) + 1/2 ln(3/2) = 1/2 ln(9/8); beta 1
    loss, p = halting_loss(torch.tensor([[1.0, 0.2]]), torch.tensor([[0.5, 0.5]]), 0.5, 1.0)
    close(p, [[0.5, 0.5]])
    close(loss, 0.6 + 0.5 * math.log(9 / 8))
    # beta 0 leaves the expected CE; the mean over rows
    loss, _ = halting_loss(torch.tensor([[1.0, 0.2], [1.0, 0.2]]),
                           torch.tensor([[0.5, 0.5], [0.1, 0.5]]), 0.5, 0.0)
    close(loss, (0.6 + 0.1 * 1.0 + 0.9 * 0.2) / 2)


def test_the_gradient_moves_the_halt_toward_the_loop_whose_answer_is_right():
    # beta 0, N = 2: loss = lam_1 CE_1 + (1 - lam_1) CE_2, so d/d lam_1 = CE_1 - CE_2 = 0.8;
    # lam_2 is read as 1 and gets no gradient
    lam = torch.tensor([[0.5, 0.3]], requires_grad=True)
    loss, _ = halting_loss(torch.tensor([[1.0, 0.2]]), lam, 0.5, 0.0)
    loss.backward()
    close(lam.grad, [[0.8, 0.0]])


def test_a_halting_policy_trained_on_the_loss_halts_at_the_first_right_loop():
    # loop 1's answer is wrong (CE 3), loops 2 and 3 are right (CE 0.05): the expected CE wants
    # the halt past loop 1; the KL to the geometric prior prefers the earlier of the right ones
    ce = torch.tensor([[3.0, 0.05, 0.05]])
    z = torch.zeros(1, 3, requires_grad=True)
    for _ in range(150):
        loss, p = halting_loss(ce, torch.sigmoid(z), 0.5, 0.1)
        loss.backward()
        descend([z], lr=1.0)
    assert p[0, 0] < 0.1 and p[0].argmax() == 1
