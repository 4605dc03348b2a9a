"""
Muon (Jordan et al. 2024, "Muon: MomentUm Orthogonalized by Newton-Schulz"), the optimizer of the
lobes' warm start (train_sft.py; train_wide.py's --muon_lr): each hidden matrix W (attention's
qkv and proj, the MLP's two layers) steps by the orthogonalised momentum, an update whose
singular values are all about 1, so every direction of W learns at one rate; embeddings, norms,
biases, heads and gates step by AdamW as before.

Why here: on addition a lobe learns the digits in a seed-dependent order, and under AdamW the
last circuits to form (the first answer digit, read from <|sep|>, and the carries) sit on a
plateau for hundreds of steps; an update that moves every direction of a matrix alike does not
wait for the dominant ones (results/README.md, "Supervised warm start").

One optimizer object for both kinds of parameter, so set_lr, state_dict and resume treat it as
they treat AdamW. A group's "lr_scale" multiplies the learning rate the schedule sets
(common.set_lr): Muon's matrices run at muon_lr while the AdamW rest runs at lr.

    >>> from common import make_optimizer
    >>> opt = make_optimizer(lobe, lr=2e-3, weight_decay=0.1, muon_lr=0.02)
"""
import torch

# the quintic iteration's coefficients (Jordan et al. 2024): they push every singular value of a
# matrix scaled to norm 1 into about [0.7, 1.2] in five steps, faster than the cubic's exact limit
NS_COEFFS = (3.4445, -4.7750, 2.0315)


def orthogonalize(g, steps=5):
    """Newton-Schulz: g (m, n) -> about U V^T of g's SVD U S V^T (singular values ~1, same
    singular vectors), without an SVD: X <- a X + b (X X^T) X + c (X X^T)^2 X on X = g / |g|."""
    a, b, c = NS_COEFFS
    x = g.float() / (g.norm() + 1e-7)      # Frobenius norm 1: every singular value <= 1
    tall = x.size(0) > x.size(1)
    if tall:                               # iterate on the short side: X X^T is the small Gram
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for the groups with muon=True (2-D matrices), AdamW for the others.

    Muon, per matrix W (m, n) with gradient G:   B <- momentum B + G     (heavy-ball buffer)
                                                 W <- W - lr sqrt(max(1, m/n)) orth(G + momentum B)
    (Nesterov momentum; sqrt(m/n) gives a tall matrix the per-entry step of a square one as
    wide as its input, n: every update's RMS is then 1/sqrt(n) times lr).
    Weight decay is decoupled and shrinks W by lr * weight_decay a step, as AdamW's does."""

    def __init__(self, params, lr, momentum=0.95, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, betas=betas, eps=eps,
                                      weight_decay=weight_decay, muon=False, lr_scale=1.0))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in (p for p in group["params"] if p.grad is not None):
                state = self.state[p]
                p.mul_(1 - lr * wd / group["lr_scale"])  # the shrink AdamW's lr would give
                if group["muon"]:
                    buf = state.setdefault("momentum", torch.zeros_like(p))
                    buf.mul_(group["momentum"]).add_(p.grad)
                    update = orthogonalize(p.grad.add(buf, alpha=group["momentum"]))
                    p.add_(update, alpha=-lr * max(1.0, p.size(0) / p.size(1)) ** 0.5)
                else:
                    self.adamw(p, state, lr, *group["betas"], group["eps"])

    @staticmethod
    def adamw(p, state, lr, beta1, beta2, eps):
        """Adam's step on p (its weight decay already applied): bias-corrected moments."""
        if not state:   # the step count a tensor, as torch's AdamW keeps it in a state_dict
            state.update(step=torch.tensor(0.0), exp_avg=torch.zeros_like(p),
                         exp_avg_sq=torch.zeros_like(p))
        state["step"] += 1
        t = state["step"].item()
        state["exp_avg"].lerp_(p.grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        denom = (state["exp_avg_sq"] / (1 - beta2 ** t)).sqrt_().add_(eps)
        p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - beta1 ** t))
