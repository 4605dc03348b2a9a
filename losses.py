"""
Every loss in the paper as a pure function named after its equation (paper line numbers in
brackets). Each takes tensors, returns a tensor, touches no model: tests/test_losses.py checks
each against a value worked out by hand.

    eq 1  [238]  sft_loss               -E log p(y|x) over answer tokens
    eq 7  [323]  critic_loss            -log D(y_true) - log(1 - D(x_left)), weighted
    eq 9  [462]  pavlovian_weights      C(dT) = C0 * exp(-lambda * dT), normalised
    Alg 3 [522]  spin_loss              logistic loss on the log-ratio margin (SPIN)

    $ python -m pytest tests/test_losses.py
"""
import math

import torch
import torch.nn.functional as F


def sft_loss(logits, targets, mask):
    """Eq 1: L_SFT = -E[log p_theta(y | x)], the mean over answer tokens (mask = 1) only.

    Args: logits (B, T, V); targets (B, T) next-token ids; mask (B, T) 1 on answer tokens.
    Returns: a scalar, the mean negative log-likelihood per answer token.
    """
    logp = F.log_softmax(logits.float(), dim=-1).gather(2, targets[..., None]).squeeze(2)  # (B, T)
    return -(logp * mask).sum() / mask.sum().clamp(min=1)


def critic_loss(scores, labels, weights=None):
    """Eq 7: L_critic = -log(y_right_true) - log(1 - y_right), as binary cross-entropy.

    Args: scores: the right lobe's logits, any shape; labels: 1 for y_true (positives), 0 for
    the left lobe's answers (negatives); weights: per-item weights (eq 9), default 1.
    Returns: sum(w * BCE) / sum(w), so the weights decide how much each item teaches.
    """
    bce = F.binary_cross_entropy_with_logits(scores.float(), labels.float(), reduction="none")
    w = torch.ones_like(bce) if weights is None else weights.float()
    return (w * bce).sum() / w.sum().clamp(min=1e-8)


def pavlovian_weights(n, lam, c0=1.0):
    """Eq 9: C(dT) = C0 * exp(-lambda * dT) for items k = 1..n with dT = n - k, normalised to sum 1.

    Items are the prefixes of y_true (positives, §5.5 lines 470-474) or the IDL iterations of the
    left lobe (negatives): the last one, nearest the reward, weighs most. lambda = 0 gives uniform
    weights; lambda -> inf puts all weight on the last item (plain eq 7). C0 cancels in the
    normalisation; it is kept to match the paper. The paper prints 1 - C0*exp(-lambda*dT) for
    negatives (lines 475-483), which gives the final iteration weight 0 when C0 = 1 and contradicts its
    own sentence (line 486, "not penalize ... as much for earlier iterations"); we follow the
    sentence and use the same decay for both.
    """
    dt = torch.arange(n - 1, -1, -1, dtype=torch.float32)  # n-1, ..., 1, 0
    if math.isinf(lam):
        return (dt == 0).float()
    w = c0 * torch.exp(-lam * dt)
    return w / w.sum()


def spin_loss(logp_true, ref_logp_true, logp_gen, ref_logp_gen, beta):
    """Alg 3 line 12 (SPIN): mean of l(beta * [log p/p_t (y_true|x) - log p/p_t (y'|x)]).

    l(t) = log(1 + exp(-t)) = -log sigmoid(t), the logistic loss of SPIN (Chen et al. 2024). The
    paper prints sigma(...) inside the argmin; minimising sigma would push y_true's likelihood
    down, so we use SPIN's l. At the first step of an iteration p = p_t, the margin is 0 and the
    loss is ln 2. Args: summed answer log-probs (B,) under the new lobe and the frozen
    iteration-t lobe, for the true answer and a generated one; beta is the paper's lambda.
    Returns: (loss, margin (B,)) where margin is beta times the log-ratio difference.
    """
    margin = beta * ((logp_true - ref_logp_true) - (logp_gen - ref_logp_gen))
    return F.softplus(-margin).mean(), margin


def pavlovian_targets(attempt, truth, correct, lam):
    """Labels and eq 9 weights for every prefix of one answer the right lobe judges (§5.5).

    Args: attempt, truth: answer token lists (ending in <|eos|>); correct: the task checker's
    verdict on the whole attempt; lam: eq 9's lambda over prefixes.
    Returns: labels (n,), 1 where attempt[:j+1] is a prefix of y_true (the paper's exploded
    positives, lines 470-474) or the whole attempt is correct, else 0; weights (n,) from eq 9.
    A correct answer's prefixes all count as positives, a wrong one's turn negative at its first
    wrong token and stay negative.
    """
    n = len(attempt)
    labels = torch.tensor([float(correct or attempt[:j + 1] == truth[:j + 1]) for j in range(n)])
    if not correct:
        labels[-1] = 0.0  # the finished wrong answer is a negative even if it equals y_true's prefix
    return labels, pavlovian_weights(n, lam)
