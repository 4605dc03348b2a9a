"""
Assignment 4, PPO-clip with GAE (paper §5.3 eq 8, lines 327-333, and the TD note after it, lines
337-345): losses.py:ppo_clip_loss, losses.py:td_errors, losses.py:gae_advantages.

Graded by values worked by hand, by the invariants (ratio 1 gives the vanilla policy gradient;
GAE with lambda 0 is the TD error, with lambda 1 the return minus the baseline) and by a
three-armed bandit that PPO must learn.

    $ python -m pytest assignments/tests/test_a4_ppo_gae.py -q
"""
import math

import torch

from checks import close, descend
from losses import gae_advantages, ppo_clip_loss, td_errors


def test_ppo_clip_loss_by_hand_clips_only_the_side_that_would_overshoot():
    # ratios e^0.5 = 1.6487 and e^-0.5 = 0.6065, eps 0.2, advantages +1, -1, +1, -1:
    #   r=1.65, A=+1: min(1.65, 1.2) = 1.2        r=1.65, A=-1: min(-1.65, -1.2) = -1.65
    #   r=0.61, A=+1: min(0.61, 0.8) = 0.6065     r=0.61, A=-1: min(-0.61, -0.8) = -0.8
    logp = torch.tensor([[0.5, 0.5, -0.5, -0.5]], requires_grad=True)
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    loss, ratio = ppo_clip_loss(logp, torch.zeros(1, 4), adv, torch.ones(1, 4), eps=0.2)
    close(ratio, torch.exp(logp))
    close(loss, -(1.2 - math.exp(0.5) + math.exp(-0.5) - 0.8) / 4)
    # the clipped terms (1 and 4) pass no gradient; the others d(-r A / 4)/d logp = -r A / 4
    loss.backward()
    close(logp.grad, [[0.0, math.exp(0.5) / 4, -math.exp(-0.5) / 4, 0.0]])


def test_ppo_clip_loss_at_ratio_1_is_the_vanilla_policy_gradient():
    # at r = 1 nothing is clipped: the gradient is -A / n per answer token, REINFORCE's
    logp = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
    adv, mask = torch.tensor([2.0]), torch.tensor([[0.0, 1.0, 1.0]])
    loss, ratio = ppo_clip_loss(logp, logp.detach(), adv, mask, eps=0.2)
    close(ratio, torch.ones(1, 3))
    close(loss, -2.0)                                                  # -mean(r A) = -2
    loss.backward()
    close(logp.grad, [[0.0, -1.0, -1.0]])                             # -A / 2 on 2 answer tokens


def test_prompt_and_pad_tokens_get_no_gradient_and_per_token_advantages_work():
    mask = torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0, 1.0]])
    logp = torch.full((2, 5), -1.0, requires_grad=True)
    loss, _ = ppo_clip_loss(logp, torch.full((2, 5), -1.1), torch.tensor([3.0, -1.0]), mask, 0.2)
    loss.backward()
    assert torch.equal(logp.grad[mask == 0], torch.zeros(int((mask == 0).sum())))
    assert (logp.grad[mask == 1] != 0).all()
    # a (B, T) advantage: at r = 1, -sum(A * mask) / sum(mask) = -(1 + 2 + 3) / 3
    adv = torch.tensor([[5.0, 1.0, 2.0, 3.0]])
    loss, _ = ppo_clip_loss(torch.zeros(1, 4), torch.zeros(1, 4), adv,
                            torch.tensor([[0.0, 1.0, 1.0, 1.0]]), 0.2)
    close(loss, -2.0)


# rewards 0, 0, 1 (a won game), V = 0.5, 0.2, -0.4, then 0 at the end; gamma 0.9
R, V = torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.5, 0.2, -0.4, 0.0])


def test_td_errors_by_hand():
    # 0 + 0.9 * 0.2 - 0.5 = -0.32;  0.9 * (-0.4) - 0.2 = -0.56;  1 + 0 - (-0.4) = 1.4
    close(td_errors(R, V, 0.9), [-0.32, -0.56, 1.4])


def test_gae_with_lambda_0_is_the_td_error_and_lambda_1_the_return_minus_v():
    adv, ret = gae_advantages(R, V, gamma=0.9, lam=0.0)
    close(adv, [-0.32, -0.56, 1.4])
    close(ret, [0.18, -0.36, 1.0])                                     # adv + V: the TD target
    # returns G = 0.81, 0.9, 1; minus V: 0.31, 0.7, 1.4
    adv, ret = gae_advantages(R, V, gamma=0.9, lam=1.0)
    close(adv, [0.31, 0.7, 1.4])
    close(ret, [0.81, 0.9, 1.0])


def test_gae_with_lambda_half_by_hand_and_a_bootstrapped_end():
    # A_2 = 1.4; A_1 = -0.56 + 0.45 * 1.4 = 0.07; A_0 = -0.32 + 0.45 * 0.07 = -0.2885
    close(gae_advantages(R, V, gamma=0.9, lam=0.5)[0], [-0.2885, 0.07, 1.4])
    # a cut-off trajectory bootstraps from V(s_T) = 0.5: r = 0, delta = 0.5 * 0.5 - 1 = -0.75
    close(gae_advantages(torch.zeros(1), torch.tensor([1.0, 0.5]), gamma=0.5, lam=1.0)[0], [-0.75])


def test_ppo_learns_a_three_armed_bandit():
    # arm 2 pays 1, the others 0; each round: sample 64 pulls from pi_old, advantage = reward -
    # mean reward, then 4 clipped steps against pi_old
    torch.manual_seed(0)
    logits = torch.zeros(3, requires_grad=True)
    for _ in range(15):
        with torch.no_grad():
            arms = torch.multinomial(logits.softmax(-1), 64, replacement=True)
            old = logits.log_softmax(-1)[arms][:, None]               # (64, 1): one token each
        reward = (arms == 2).float()
        adv = reward - reward.mean()
        for _ in range(4):
            logp = logits.log_softmax(-1)[arms][:, None]
            loss, _ = ppo_clip_loss(logp, old, adv, torch.ones(64, 1), eps=0.2)
            loss.backward()
            descend([logits], lr=1.0)
    assert logits.softmax(-1)[2] > 0.9
