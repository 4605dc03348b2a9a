"""
The actor's update of Algorithm 2 (paper §5.3, lines 19-20 and 28): PPO-clip (eq 8) with the ratio
against the rollout policy, plus kl_coef times eq 2's KL to a frozen reference policy (§5.1).

    rollout = make_rollout(left, contexts, actions, advantages, cfg)   # pi_old, frozen here
    actor_update(left, opt_left, ref, rollout, cfg)                    # ppo_epochs steps of eq 8

or, where an action is one token and every candidate has a value (a game's legal moves, each
scored by the critic), eq 8 in expectation over the candidates rather than on a sample:

    cand = make_candidates(left, ref, contexts, group, token, value, cfg)
    expected_update(left, opt_left, cand, cfg)

Both actor-critic scripts update their left lobe with it: train_actor_critic.py on tasks through
the Inner Dialogue Loop, train_games.py on whole games. cfg is either script's Config; this reads
its temperature, clip_eps, kl_coef, ppo_epochs and grad_clip. The losses themselves are pure
functions in losses.py (ppo_clip_loss, token_kl); the log-probs are lobes.answer_logprobs.

    $ python -m pytest tests/test_ppo.py
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from common import optimize
from ranks import share
from lobes import answer_logprobs, distinct, pad_right, spread
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


def epochs(step, left, opt_left, cfg):
    """ppo_epochs updates by step() -> (loss, ratio, KL); the first update's stats."""
    first = None
    for _ in range(cfg.ppo_epochs):
        loss, ratio, kl = step()
        optimize(left, opt_left, loss, cfg.grad_clip)
        first = first or dict(loss_left=loss.item(), ratio=ratio.item(), kl=kl.item())
    return first


def actor_update(left, opt_left, ref, ro, cfg):
    """ppo_epochs updates on one rollout (Alg 2 lines 19-20, 28); the first update's stats."""
    return epochs(lambda: ppo_step(left, ref, ro, cfg), left, opt_left, cfg)


def next_token_logprobs(model, contexts, temperature):
    """log softmax(logits / temperature) of the token after each context: (B, V); a context met
    more than once is computed once (lobes.distinct)."""
    keep, at = distinct(tuple(c) for c in contexts)
    contexts = [contexts[i] for i in keep]
    idx, lengths = pad_right(contexts, model.wte.weight.device)
    logits, _ = model(idx)
    last = logits[torch.arange(len(contexts), device=idx.device), lengths - 1]
    return spread(F.log_softmax(last.float() / temperature, dim=-1), at)


@dataclass
class Candidates:
    """Every candidate action of one token after each context, for eq 8 in expectation."""
    contexts: list            # what the left lobe read (token lists), n of them
    group: torch.Tensor       # (R,) the context of each candidate row
    token: torch.Tensor       # (R,) the candidate token
    advantages: torch.Tensor  # (R,) pi_old(a | x) (value - E_pi_old[value])
    old_logp: torch.Tensor    # (R,) log pi_old(a | x)
    expected: torch.Tensor    # (n,) E_pi_old[value] over each context's candidates
    ref_full: torch.Tensor = None  # (n, V) the frozen reference's next-token log-probs (eq 2)


def make_candidates(left, ref, contexts, group, token, value, cfg):
    """Freeze pi_old over candidate tokens with their values: eq 8's surrogate summed over every
    candidate, weighted by pi_old, rather than sampled, so its gradient is the exact expectation
    of the sampled policy gradient over the candidates (a baseline, E_pi_old[value], does not
    change it). pi_old is renormalised over the candidates for the baseline only."""
    dev = left.wte.weight.device
    group, token, value = group.to(dev), token.to(dev), value.to(dev).float()
    n = len(contexts)
    with torch.no_grad():
        old = next_token_logprobs(left, contexts, cfg.temperature)[group, token]     # (R,)
        ref_full = next_token_logprobs(ref, contexts, cfg.temperature) if cfg.kl_coef else None
    pi = old.exp()
    mass = torch.zeros(n, device=dev).index_add_(0, group, pi)
    expected = torch.zeros(n, device=dev).index_add_(0, group, pi * value) / mass.clamp(1e-8)
    # times rows per context: the loss is a mean over rows, the surrogate a sum per context
    adv = pi * (value - expected[group]) * (len(token) / n)
    return Candidates(contexts, group, token, adv, old, expected.cpu(), ref_full)


def expected_step(left, cand, cfg):
    """Eq 8 in expectation over cand (make_candidates), + kl_coef * eq 2 on the next-token
    distribution. Returns (loss, mean ratio over the candidates, KL)."""
    dev = left.wte.weight.device
    rows = torch.ones(len(cand.token), 1, device=dev)          # every candidate row counts
    full = next_token_logprobs(left, cand.contexts, cfg.temperature)                 # (n, V)
    loss, ratio = ppo_clip_loss(full[cand.group, cand.token][:, None], cand.old_logp[:, None],
                                cand.advantages, rows, cfg.clip_eps)
    kl = torch.zeros((), device=dev)
    if cand.ref_full is not None:                              # eq 2 once per context
        kl = token_kl(full[:, None], cand.ref_full[:, None], torch.ones(len(full), 1, device=dev))
    return loss + cfg.kl_coef * kl, ratio.mean().detach(), kl.detach()


def expected_update(left, opt_left, cand, cfg):
    """ppo_epochs updates of eq 8 in expectation (expected_step); the first update's stats."""
    return epochs(lambda: expected_step(left, cand, cfg), left, opt_left, cfg)
