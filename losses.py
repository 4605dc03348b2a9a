"""
Every loss in the paper as a pure function named after its equation (paper line numbers in
brackets). Each takes tensors, returns a tensor, touches no model: tests/test_losses.py checks
each against a value worked out by hand.

    eq 1  [238]  sft_loss               -E log p(y|x) over answer tokens
    eq 7  [323]  critic_loss            -log D(y_true) - log(1 - D(x_left)), weighted
    eq 9  [462]  pavlovian_weights      C(dT) = C0 * exp(-lambda * dT), normalised
    Alg 3 [522]  spin_loss              logistic loss on the log-ratio margin (SPIN)
    Alg 1 [286]  gan_discriminator_loss, gan_generator_loss_saturating, ..._nonsaturating
    eq 8  [329]  ppo_clip_loss          -E min(r A, clip(r, 1-eps, 1+eps) A), token_advantages,
                 leave_one_out_baseline  b = mean reward of the other samples of the same prompt
    TD    [342]  td_errors, gae_advantages  delta = r + gamma V' - V; A = sum (gamma lam)^k delta
    eq 2  [242]  token_kl               KL(p_theta || p_ref) per answer token; reward_transform
    Fig 4 [156]  halting_loss           sum_n p_n CE_n + beta KL(p || geometric) (PonderNet);
                 load_balancing_loss    E * sum_i f_i P_i (Switch), halting_distribution

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
    negatives (lines 475-483), which gives the final iteration weight 0 when C0 = 1 and
    contradicts its own sentence (line 486, "not penalize ... as much for earlier iterations");
    we follow the sentence and use the same decay for both.
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
        # the finished wrong answer is a negative even if it equals y_true's prefix
        labels[-1] = 0.0
    return labels, pavlovian_weights(n, lam)


# -----------------------------------------------------------------------------
# GAN (§5.2, Algorithm 1 lines 4-5 [286-292]): D's and G's losses on D's score logits
def gan_discriminator_loss(score_real, score_fake):
    """Alg 1 line 4: D ascends (1/b) sum_i [log D(y_i) + log(1 - D(G(x_i)))]; we minimise its
    negative,

        L_D = -(1/b) sum_i [log sigmoid(s_real_i) + log(1 - sigmoid(s_fake_i))]
            =  (1/b) sum_i [softplus(-s_real_i) + softplus(s_fake_i)]

    Args: score_real (b,) D's logits of (x, y_true); score_fake (b,) of (x, G(x)).
    Returns: a scalar. Twice eq 7's critic_loss on the same items (that one averages over 2b).
    """
    return (F.softplus(-score_real.float()) + F.softplus(score_fake.float())).mean()


def gan_generator_loss_saturating(score_fake):
    """Alg 1 line 5, the paper's G loss: G descends (1/b) sum_i log(1 - D(G(x_i)))
    = -mean softplus(s_fake).

    Saturates: when D is sure a fake is fake (s -> -inf) the gradient sigmoid(s) -> 0, so a
    confident D teaches G nothing (Goodfellow et al. 2014, §3). Args: score_fake (b,) logits.
    """
    return -F.softplus(score_fake.float()).mean()


def gan_generator_loss_nonsaturating(score_fake):
    """Alg 1 line 5, non-saturating form: G descends -(1/b) sum_i log D(G(x_i))
    = mean softplus(-s_fake).

    Same fixed point as the saturating loss, but the gradient 1 - sigmoid(s) is largest exactly
    when D rejects the fake (Goodfellow et al. 2014). train_gan.py's default. Args: score_fake (b,).
    """
    return F.softplus(-score_fake.float()).mean()


# -----------------------------------------------------------------------------
# Actor-critic (§5.1 eq 2 [242], §5.3 eq 8 [329] and the TD note after it [337-345])
def ppo_clip_loss(logp, old_logp, advantages, mask, eps):
    """Eq 8 (PPO-clip): maximise E_t[min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t)],
    r_t = pi/pi_old.

    The paper writes y_right (the critic's score) where A_t stands; any reward minus a baseline
    that does not depend on the action has the same expected gradient. We minimise the negative
    mean over answer tokens. At r_t = 1 the gradient is exactly the vanilla policy gradient
    -mean(A_t * grad log pi). Args: logp, old_logp (B, T) per-token log-probs under the policy
    and the rollout policy; advantages (B,) one per sequence, or (B, T); mask (B, T) 1 on answer
    tokens. Returns: (loss, ratio (B, T)).
    """
    adv = token_advantages(advantages, mask)
    ratio = torch.exp(logp - old_logp)
    obj = torch.min(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv)
    return -(obj * mask).sum() / mask.sum().clamp(min=1), ratio


def token_advantages(advantages, mask):
    """A sequence's advantage on each of its answer tokens, 0 on prompt and pad positions:
    (B, T)."""
    adv = advantages[:, None] if advantages.dim() == 1 else advantages
    return adv.float() * mask.float()


def td_errors(rewards, values, gamma):
    """The TD error (note after eq 8, step 4): delta_t = r_t + gamma * V(s_{t+1}) - V(s_t).

    Args: rewards (T,); values (T + 1,) V(s_0) .. V(s_T), the last 0 when s_T is final.
    """
    return rewards + gamma * values[1:] - values[:-1]


def gae_advantages(rewards, values, gamma, lam):
    """Generalised advantage estimation (Schulman et al. 2016):
    A_t = sum_k (gamma lam)^k delta_{t+k}.

    lam = 0 gives the one-step TD error delta_t; lam = 1 gives the Monte Carlo return minus the
    baseline, sum_k gamma^k r_{t+k} + gamma^(T-t) V(s_T) - V(s_t). Args as in td_errors.
    Returns: (advantages (T,), returns (T,) = advantages + V(s_t), the critic's targets).
    """
    delta = td_errors(rewards, values, gamma)
    adv = torch.zeros_like(delta)
    running = torch.zeros(())
    for t in range(len(delta) - 1, -1, -1):
        running = delta[t] + gamma * lam * running
        adv[t] = running
    return adv, adv + values[:-1]


def leave_one_out_baseline(rewards, prompt_of, sample_of):
    """Each answer's baseline: the mean reward of the answers to the same prompt from the other
    samples (0 if there are none). It does not depend on the answer's own sample, so
    E[grad log pi(y) * b] = b * grad sum_y pi(y) = 0: the advantage r - b keeps the gradient
    unbiased."""
    tot, cnt = {}, {}
    for r, p, s in zip(rewards.tolist(), prompt_of, sample_of):
        for key in (p, (p, s)):
            tot[key], cnt[key] = tot.get(key, 0.0) + r, cnt.get(key, 0) + 1
    out = [(tot[p] - tot[(p, s)]) / (cnt[p] - cnt[(p, s)]) if cnt[p] > cnt[(p, s)] else 0.0
           for p, s in zip(prompt_of, sample_of)]
    return torch.tensor(out)


def token_kl(logp, ref_logp, mask):
    """Eq 2's KL(p_theta(.|x) || p_ref(.|x)), exactly per answer token over the vocabulary,
    masked mean.

    Args: logp, ref_logp (B, T, V) log-probabilities; mask (B, T).
    KL = sum_v p (log p - log p_ref) >= 0, and 0 when the policy is the reference. Returns a scalar.
    """
    kl = (logp.exp() * (logp - ref_logp)).sum(-1)                       # (B, T)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def reward_transform(d, kind, eps=1e-6):
    """The actor's reward from the critic's probability D (eq 8 writes D itself):
    'D' in [0, 1], 'logD' in (-inf, 0] (the GAN's non-saturating choice),
    'logitD' = log D - log(1 - D), '2D-1' in [-1, 1] (a value on the +1/0/-1 scale of games)."""
    d = d.float().clamp(eps, 1 - eps)
    if kind == "D":
        return d
    if kind == "logD":
        return d.log()
    if kind == "logitD":
        return d.log() - (1 - d).log()
    if kind == "2D-1":
        return 2 * d - 1
    raise ValueError(f"unknown reward transform {kind!r}: use D, logD, logitD or 2D-1")


# -----------------------------------------------------------------------------
# Wide SLN (paper Figure 4, line 156; abstract item 2, line 16): the main gating network's learned
# halting and its experts' routing. The paper names no formula for either; these are PonderNet's
# (Banino et al. 2021) and the Switch Transformer's (Fedus et al. 2021), used by sln.WideSLN.
def halting_distribution(lam):
    """PonderNet's halting distribution: p_n = lam_n * prod_{j<n} (1 - lam_j), n = 1..N.

    Args: lam (B, N), the stop probability after each loop. The last loop takes all the mass
    that is left (lam_N is read as 1), so every row's p sums to 1 exactly.
    Returns: p (B, N).
    """
    lam = torch.cat([lam[:, :-1], torch.ones_like(lam[:, -1:])], dim=1)
    survive = torch.cumprod(torch.cat([torch.ones_like(lam[:, :1]), 1 - lam[:, :-1]], dim=1), dim=1)
    return lam * survive


def halting_loss(ce, lam, prior, beta):
    """PonderNet's loss: L = sum_n p_n * CE_n + beta * KL(p || p_G), the mean over rows.

    p is halting_distribution(lam); CE_n is the answer's cross-entropy (eq 1) read out after loop
    n; p_G(n) = prior * (1 - prior)^(n-1), the geometric prior truncated to N loops and
    renormalised. The first term moves the stop probability to the loops whose answer is right;
    the KL keeps some mass on every loop, so the later loops are trained too.
    Args: ce (B, N); lam (B, N); prior in (0, 1); beta >= 0.
    Returns: (loss, p (B, N)).
    """
    p = halting_distribution(lam.float())
    n = torch.arange(p.size(1), dtype=torch.float32, device=p.device)
    p_g = prior * (1 - prior) ** n
    p_g = p_g / p_g.sum()
    kl = (p * (torch.log(p.clamp(min=1e-10)) - torch.log(p_g))).sum(1)
    return ((p * ce.float()).sum(1) + beta * kl).mean(), p


def load_balancing_loss(probs):
    """Switch Transformer: L = E * sum_i f_i * P_i over E experts (or lobes).

    f_i = share of rows whose top choice is i (not differentiable), P_i = mean router probability
    of i (differentiable). It is 1 under uniform routing (P_i = 1/E, whatever f is) and E when one
    expert takes every row with probability 1: minimising it spreads the rows.
    Args: probs (..., E), router probabilities. Returns: a scalar.
    """
    probs = probs.float().reshape(-1, probs.size(-1))
    f = F.one_hot(probs.argmax(-1), probs.size(-1)).float().mean(0)
    return probs.size(-1) * (f * probs.mean(0)).sum()
