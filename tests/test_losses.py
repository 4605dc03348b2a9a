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


# -----------------------------------------------------------------------------
# Actor-critic: eq 8 (ppo_clip_loss), TD/GAE, eq 2 (token_kl), reward_transform
from losses import (gae_advantages, leave_one_out_baseline, ppo_clip_loss, reward_transform, td_errors,  # noqa: E402
                    token_advantages, token_kl)


def test_ppo_clip_loss_by_hand_clips_only_the_side_that_would_overshoot():
    # ratios e^0.5 = 1.6487 and e^-0.5 = 0.6065, eps 0.2, advantages +1, -1, +1, -1 on four tokens:
    #   r=1.65, A=+1: min(1.65, 1.2) = 1.2        r=1.65, A=-1: min(-1.65, -1.2) = -1.65
    #   r=0.61, A=+1: min(0.61, 0.8) = 0.6065     r=0.61, A=-1: min(-0.61, -0.8) = -0.8
    logp = torch.tensor([[0.5, 0.5, -0.5, -0.5]])
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    loss, ratio = ppo_clip_loss(logp, torch.zeros(1, 4), adv, torch.ones(1, 4), eps=0.2)
    close(ratio, torch.exp(logp))
    close(loss, -(1.2 - math.exp(0.5) + math.exp(-0.5) - 0.8) / 4)


def test_ppo_clip_loss_gradient_at_ratio_1_is_the_vanilla_policy_gradient():
    # d/dlogp of -mean(min(r A, clip(r) A)) at r = 1 is -A / n: the REINFORCE gradient of -mean(A log pi)
    logp = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
    adv, mask = torch.tensor([2.0]), torch.tensor([[0.0, 1.0, 1.0]])
    loss, _ = ppo_clip_loss(logp, logp.detach(), adv, mask, eps=0.2)
    loss.backward()
    close(logp.grad, [[0.0, -1.0, -1.0]])                         # -A / 2 on the 2 answer tokens


def test_prompt_and_pad_tokens_get_zero_advantage_and_zero_gradient():
    mask = torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0, 1.0]])   # prompt, answer, pad
    close(token_advantages(torch.tensor([3.0, -1.0]), mask), [[0, 0, 3, 3, 0], [0, -1, -1, -1, -1]])
    logp = torch.full((2, 5), -1.0, requires_grad=True)
    loss, _ = ppo_clip_loss(logp, torch.full((2, 5), -1.1), torch.tensor([3.0, -1.0]), mask, eps=0.2)  # r = 1.105
    loss.backward()
    assert torch.equal(logp.grad[mask == 0], torch.zeros(int((mask == 0).sum())))
    assert (logp.grad[mask == 1] != 0).all()


# rewards 0, 0, 1 (a won game), V = 0.5, 0.2, -0.4, then 0 at the end; gamma 0.9
R, V = torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.5, 0.2, -0.4, 0.0])


def test_td_errors_by_hand():
    # delta_0 = 0 + 0.9*0.2 - 0.5 = -0.32; delta_1 = 0.9*(-0.4) - 0.2 = -0.56; delta_2 = 1 - (-0.4) = 1.4
    close(td_errors(R, V, 0.9), [-0.32, -0.56, 1.4])


def test_gae_lambda_0_is_the_td_error():
    adv, ret = gae_advantages(R, V, gamma=0.9, lam=0.0)
    close(adv, [-0.32, -0.56, 1.4])
    close(ret, [0.18, -0.36, 1.0])                                # r + gamma V(next): the TD(0) target


def test_gae_lambda_1_is_the_return_minus_v():
    # returns G = 0.81, 0.9, 1; minus V: 0.31, 0.7, 1.4
    adv, ret = gae_advantages(R, V, gamma=0.9, lam=1.0)
    close(adv, [0.31, 0.7, 1.4])
    close(ret, [0.81, 0.9, 1.0])


def test_gae_lambda_half_by_hand_and_a_bootstrapped_end():
    # A_2 = 1.4; A_1 = -0.56 + 0.45 * 1.4 = 0.07; A_0 = -0.32 + 0.45 * 0.07 = -0.2885
    close(gae_advantages(R, V, gamma=0.9, lam=0.5)[0], [-0.2885, 0.07, 1.4])
    # a cut-off trajectory bootstraps from V(s_T) = 0.5: one step, r = 0, delta = 0.5 * 0.5 - 1 = -0.75
    close(gae_advantages(torch.zeros(1), torch.tensor([1.0, 0.5]), gamma=0.5, lam=1.0)[0], [-0.75])


def test_token_kl_is_zero_for_the_same_policy_and_by_hand_otherwise():
    p = torch.log(torch.tensor([[[0.5, 0.5]]]))
    q = torch.log(torch.tensor([[[0.25, 0.75]]]))
    close(token_kl(p, p, torch.ones(1, 1)), 0.0)
    close(token_kl(p, q, torch.ones(1, 1)), 0.5 * math.log(2) + 0.5 * math.log(2 / 3))   # = 0.5 ln(4/3)
    close(token_kl(torch.cat([p, q], 1), torch.cat([q, q], 1), torch.tensor([[1.0, 0.0]])), 0.5 * math.log(4 / 3))


def test_reward_transforms_by_hand():
    d = torch.tensor([0.25, 0.5])
    close(reward_transform(d, "D"), [0.25, 0.5])
    close(reward_transform(d, "logD"), [math.log(0.25), -LN2])
    close(reward_transform(d, "logitD"), [-LN3, 0.0])
    close(reward_transform(d, "2D-1"), [-0.5, 0.0])
    with pytest.raises(ValueError):
        reward_transform(d, "exp")


# -----------------------------------------------------------------------------
# Wide SLN (Figure 4): PonderNet's halting distribution and loss, the Switch load-balancing loss
from losses import halting_distribution, halting_loss, load_balancing_loss  # noqa: E402


def test_halting_distribution_by_hand_and_it_sums_to_one():
    # lam = 0.5 after every loop, N = 3: p = 0.5, 0.5 * 0.5, and the rest (0.25) on the last loop
    close(halting_distribution(torch.tensor([[0.5, 0.5, 0.5]])), [[0.5, 0.25, 0.25]])
    # lam = 0.2, 0.5, 0.9: p = 0.2, 0.8 * 0.5 = 0.4, 0.8 * 0.5 = 0.4 (lam_N is read as 1)
    close(halting_distribution(torch.tensor([[0.2, 0.5, 0.9]])), [[0.2, 0.4, 0.4]])
    torch.manual_seed(0)
    p = halting_distribution(torch.rand(5, 7))
    close(p.sum(1), torch.ones(5))
    assert (p >= 0).all()


def test_halting_loss_by_hand():
    # lam = (0.5, 0.5), N = 2: p = (1/2, 1/2); CE = (1.0, 0.2): expected CE 0.5 + 0.1 = 0.6.
    # prior 0.5: p_G = (0.5, 0.25) renormalised = (2/3, 1/3);
    # KL = 1/2 ln((1/2)/(2/3)) + 1/2 ln((1/2)/(1/3)) = 1/2 ln(3/4 * 3/2) = 1/2 ln(9/8); beta 1
    loss, p = halting_loss(torch.tensor([[1.0, 0.2]]), torch.tensor([[0.5, 0.5]]), prior=0.5, beta=1.0)
    close(p, [[0.5, 0.5]])
    close(loss, 0.6 + 0.5 * math.log(9 / 8))
    # beta 0 leaves the expected CE; a row that halts where CE is low costs less
    loss0, _ = halting_loss(torch.tensor([[1.0, 0.2]]), torch.tensor([[0.5, 0.5]]), prior=0.5, beta=0.0)
    close(loss0, 0.6)
    late, _ = halting_loss(torch.tensor([[1.0, 0.2]]), torch.tensor([[0.1, 0.5]]), prior=0.5, beta=0.0)
    close(late, 0.1 * 1.0 + 0.9 * 0.2)


def test_load_balancing_is_one_under_uniform_routing_and_the_expert_count_when_collapsed():
    assert load_balancing_loss(torch.full((8, 4), 0.25)).item() == pytest.approx(1.0)
    assert load_balancing_loss(torch.full((3, 5, 2), 0.5)).item() == pytest.approx(1.0)  # any leading shape
    collapsed = torch.tensor([[1.0, 0.0, 0.0]] * 6)
    assert load_balancing_loss(collapsed).item() == pytest.approx(3.0)
    # two rows, confident and split evenly: f = (1/2, 1/2), P = (0.45, 0.55): 2 * (0.225 + 0.275) = 1
    close(load_balancing_loss(torch.tensor([[0.9, 0.1], [0.0, 1.0]])), 1.0)
    # both rows prefer expert 0: f = (1, 0), P = (0.7, 0.3): 2 * 0.7 = 1.4
    close(load_balancing_loss(torch.tensor([[0.9, 0.1], [0.5, 0.5]])), 1.4)


# -----------------------------------------------------------------------------
# Alg 1: the GAN losses
from losses import (gan_discriminator_loss, gan_generator_loss_nonsaturating,  # noqa: E402
                    gan_generator_loss_saturating)


def test_gan_discriminator_loss_by_hand():
    # D(y) = sigmoid(0) = 1/2 and sigmoid(ln 3) = 3/4; D(G(x)) = 1/2 and sigmoid(-ln 3) = 1/4
    # -[log 1/2 + log 1/2] = 2 ln 2;  -[log 3/4 + log 3/4] = 2 ln(4/3);  mean = ln 2 + ln(4/3) = ln(8/3)
    close(gan_discriminator_loss(torch.tensor([0.0, LN3]), torch.tensor([0.0, -LN3])), math.log(8 / 3))
    # a perfect D (s_real -> +inf, s_fake -> -inf) has loss 0; swapping real and fake costs a lot
    close(gan_discriminator_loss(torch.tensor([30.0]), torch.tensor([-30.0])), 0.0)
    close(gan_discriminator_loss(torch.tensor([-LN3]), torch.tensor([LN3])), 2 * math.log(4))


def test_gan_generator_losses_by_hand_and_their_gradients():
    s_fake = torch.tensor([0.0, -LN3])                     # D(G(x)) = 1/2, 1/4
    # saturating: mean log(1 - D) = (log 1/2 + log 3/4) / 2
    close(gan_generator_loss_saturating(s_fake), (math.log(0.5) + math.log(0.75)) / 2)
    # non-saturating: -mean log D = (ln 2 + ln 4) / 2 = 1.5 ln 2
    close(gan_generator_loss_nonsaturating(s_fake), 1.5 * LN2)
    # d/ds: saturating -sigmoid(s), non-saturating -(1 - sigmoid(s)); at s = -ln 9 (D = 1/10), /2 for the mean
    s = torch.tensor([-math.log(9.0), 0.0], requires_grad=True)
    gan_generator_loss_saturating(s).backward()
    close(s.grad, [-0.1 / 2, -0.5 / 2])                    # weak exactly where D rejects the fake
    s.grad = None
    gan_generator_loss_nonsaturating(s).backward()
    close(s.grad, [-0.9 / 2, -0.5 / 2])


def test_leave_one_out_baseline_by_hand():
    # prompt 0: sample 0 has rewards 1, 0 (two IDL loops), sample 1 has 1; prompt 1: one sample only
    r = torch.tensor([1.0, 0.0, 1.0, 0.5])
    b = leave_one_out_baseline(r, prompt_of=[0, 0, 0, 1], sample_of=[0, 0, 1, 2])
    torch.testing.assert_close(b, torch.tensor([1.0, 1.0, 0.5, 0.0]))   # others' mean; none -> 0
