"""The actor's update (ppo.py, Alg 2 lines 19-20 and 28, eq 8, eq 2): the PPO ratio starts at 1,
the clipped gradient is the policy gradient there, the log-probs PPO scores line up with
generation on answer tokens only, and the KL to the reference."""
import torch

import ppo
from common import frozen
from data.tokenizer import PAD, encode
from idl import speak
from lobes import answer_logprobs, prompt_ids
from train_actor_critic import Config   # either script's Config: the same PPO fields


def rollout(lobe, cfg, advantages=(1.0, -0.5, 2.0)):
    """Three sampled answers to prompts of different lengths, as a Rollout."""
    torch.manual_seed(0)
    ctx = [prompt_ids("12+3"), prompt_ids("4"), prompt_ids("567+89")]
    _, actions, _ = speak(lobe, ctx, 5, cfg.temperature)
    return ppo.make_rollout(lobe, ctx, actions, torch.tensor(advantages), cfg)


def test_ppo_ratio_is_exactly_one_on_the_first_minibatch_and_moves_after_an_update(sharp_lobe):
    cfg = Config(temperature=0.7, ppo_epochs=1)
    ro = rollout(sharp_lobe, cfg)
    logp, mask, _ = answer_logprobs(sharp_lobe, ro.contexts, ro.actions, cfg.temperature)
    assert torch.equal(torch.exp(logp - ro.old_logp)[mask > 0], torch.ones(int(mask.sum())))
    opt = torch.optim.SGD(sharp_lobe.parameters(), lr=0.1)
    stats = ppo.actor_update(sharp_lobe, opt, None, ro, cfg)
    assert stats["ratio"] == 1.0
    _, ratio, _ = ppo.ppo_step(sharp_lobe, None, ro, cfg)
    assert abs(ratio.item() - 1.0) > 1e-4                      # the update changed the policy


def test_clipped_objective_gradient_equals_vanilla_policy_gradient_at_ratio_one(sharp_lobe):
    cfg = Config(temperature=1.0)
    ro = rollout(sharp_lobe, cfg)
    params = [p for n, p in sharp_lobe.named_parameters()
              if not n.startswith(("score_head", "judge_weight"))]             # the LM only
    loss, _, _ = ppo.ppo_step(sharp_lobe, None, ro, cfg)
    g_ppo = torch.autograd.grad(loss, params)
    logp, mask, _ = answer_logprobs(sharp_lobe, ro.contexts, ro.actions, cfg.temperature)
    vanilla = -(ro.advantages[:, None] * logp * mask).sum() / mask.sum()   # -E[A grad log pi]
    g_pg = torch.autograd.grad(vanilla, params)
    for a, b in zip(g_ppo, g_pg):
        torch.testing.assert_close(a, b)


def test_logprobs_line_up_with_generation_and_mask_only_answer_tokens(sharp_lobe):
    torch.manual_seed(1)
    ctx = [prompt_ids("12+3"), prompt_ids("4")]
    tokens, gen_logp = sharp_lobe.generate(ctx, 4, temperature=0.8)
    actions = [[t for t in row if t != PAD] for row in tokens.tolist()]
    logp, mask, _ = answer_logprobs(sharp_lobe, ctx, actions, 0.8)
    for i, (c, a) in enumerate(zip(ctx, actions)):
        assert mask[i].nonzero().flatten().tolist() == list(range(len(c) - 1, len(c) - 1 + len(a)))
        torch.testing.assert_close(logp[i, len(c) - 1:len(c) - 1 + len(a)], gen_logp[i, :len(a)],
                                   atol=1e-5, rtol=0)


def test_kl_to_the_reference_is_zero_for_the_same_policy_and_positive_after_an_update(sharp_lobe):
    cfg = Config(temperature=1.0, kl_coef=1.0, ppo_epochs=1)
    ref = frozen(sharp_lobe)
    ro = rollout(sharp_lobe, cfg)
    _, _, kl = ppo.ppo_step(sharp_lobe, ref, ro, cfg)
    assert abs(kl.item()) < 1e-6
    ppo.actor_update(sharp_lobe, torch.optim.SGD(sharp_lobe.parameters(), lr=0.1), ref, ro, cfg)
    assert ppo.ppo_step(sharp_lobe, ref, ro, cfg)[2].item() > 1e-6


def test_expected_step_is_the_policy_gradient_summed_over_every_candidate(sharp_lobe):
    cfg = Config(temperature=1.0, kl_coef=0.0)
    ctx = [prompt_ids("12+3"), prompt_ids("4")]
    group, token = torch.tensor([0, 0, 0, 1]), torch.tensor(encode("579") + encode("4"))
    value = torch.tensor([1.0, 0.0, 0.5, 0.3])
    cand = ppo.make_candidates(sharp_lobe, None, ctx, group, token, value, cfg)
    assert cand.advantages[3] == 0.0                # a lone candidate is its own baseline
    loss, ratio, _ = ppo.expected_step(sharp_lobe, cand, cfg)
    assert ratio.item() == 1.0                      # the first update's ratio, exactly
    params = [p for n, p in sharp_lobe.named_parameters()
              if not n.startswith(("score_head", "judge_weight"))]             # the LM only
    # by hand: -(1/n) sum_x sum_a grad pi(a | x) (v_a - b_x), b_x = E_pi[v] over x's candidates,
    # each context run alone (no padding) through the full softmax
    probs = [torch.softmax(sharp_lobe(torch.tensor([c]))[0][0, -1], -1) for c in ctx]
    pi = torch.stack([probs[g][t] for g, t in zip(group.tolist(), token.tolist())])
    b = torch.stack([(pi * value)[group == g].sum() / pi[group == g].sum() for g in (0, 1)])
    by_hand = -(pi * (value - b.detach()[group])).sum() / len(ctx)
    for a, h in zip(torch.autograd.grad(loss, params), torch.autograd.grad(by_hand, params)):
        torch.testing.assert_close(a, h)
    ppo.expected_update(sharp_lobe, torch.optim.SGD(sharp_lobe.parameters(), lr=0.1), cand, cfg)
    assert abs(ppo.expected_step(sharp_lobe, cand, cfg)[1].item() - 1.0) > 1e-4     # it moved
