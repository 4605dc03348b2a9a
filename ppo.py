"""
The actor's update of Algorithm 2 (paper §5.3, lines 19-20 and 28): PPO-clip (eq 8) with the ratio
against the rollout policy, plus kl_coef times eq 2's KL to a frozen reference policy (§5.1).

    rollout = make_rollout(left, contexts, actions, advantages, cfg)   # pi_old, frozen here
    actor_update(left, opt_left, ref, rollout, cfg)                    # ppo_epochs steps of eq 8

Both actor-critic scripts update their left lobe with it: train_actor_critic.py on tasks through
the Inner Dialogue Loop, train_games.py on whole games. cfg is either script's Config; this reads
its temperature, clip_eps, kl_coef, ppo_epochs and grad_clip. The losses themselves are pure
functions in losses.py (ppo_clip_loss, token_kl); the log-probs are lobes.answer_logprobs.

    $ python -m pytest tests/test_ppo.py
"""
from dataclasses import dataclass

import torch

from common import optimize
from ranks import share
from lobes import answer_logprobs
from losses import ppo_clip_loss, token_kl


@dataclass
class Rollout:
    contexts: list            # what the left lobe read (token lists)
    actions: list             # what it wrote (token lists, <|eos|> included)
    advantages: torch.Tensor  # (N,) one per answer; the same on each of its tokens
    old_logp: torch.Tensor    # (N, T) per-token log-probs under the rollout policy
    ref_full: torch.Tensor = None  # (N, T, V) the frozen reference's, computed once (eq 2)


def make_rollout(left, contexts, actions, advantages, cfg):
    """Freeze the rollout policy's log-probs: the same lobe, temperature and batch as the update,
    so the first update's ratio is exactly 1 (dropout is off, lobes.LobeConfig)."""
    with torch.no_grad():
        old, _, _ = answer_logprobs(left, contexts, actions, cfg.temperature)   # (N, T)
    return Rollout(contexts, actions, advantages.to(old.device).float(), old)


def ppo_step(left, ref, ro, cfg):
    """Eq 8 on a rollout, + kl_coef * eq 2. Returns (loss, mean ratio over answer tokens, KL)."""
    logp, mask, full = answer_logprobs(left, ro.contexts, ro.actions, cfg.temperature)
    loss, ratio = ppo_clip_loss(logp, ro.old_logp, ro.advantages, mask, cfg.clip_eps)
    kl = torch.zeros((), device=logp.device)
    if cfg.kl_coef > 0:
        if ro.ref_full is None:      # the reference is frozen: once per rollout, not per epoch
            with torch.no_grad():
                _, _, ro.ref_full = answer_logprobs(ref, ro.contexts, ro.actions, cfg.temperature)
        kl = token_kl(full, ro.ref_full, mask)                # over the vocabulary, per token
    # under torchrun each rank's token mean becomes its part of the whole batch's (ranks.share)
    loss = share(loss + cfg.kl_coef * kl, mask.sum())
    return loss, ((ratio * mask).sum() / mask.sum()).detach(), kl.detach()


def actor_update(left, opt_left, ref, ro, cfg):
    """ppo_epochs updates on one rollout (Alg 2 lines 19-20, 28); the first update's stats."""
    first = None
    for _ in range(cfg.ppo_epochs):
        loss, ratio, kl = ppo_step(left, ref, ro, cfg)
        optimize(left, opt_left, loss, cfg.grad_clip)
        first = first or dict(loss_left=loss.item(), ratio=ratio.item(), kl=kl.item())
    return first
