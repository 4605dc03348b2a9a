"""
Assignment 1, soft tokens (paper §5.1, eqs 3-4, lines 253-262): lobes.py:soft_tokens.

Eq 3 turns a lobe's logits into a distribution p = softmax(logits / tau); eq 4 feeds it to a lobe
as p @ W_E. hard=True is the straight-through Gumbel version: forward exactly a one-hot sample,
backward the softmax's gradient. Graded by values worked by hand, by the sample frequencies and
by the shape of the backward pass, never by how the code is written.

    $ python -m pytest assignments/tests/test_a1_soft_tokens.py -q
"""
import math

import torch

from checks import close
from lobes import Lobe, LobeConfig, soft_tokens

LN3 = math.log(3)


def test_soft_tokens_are_softmax_of_logits_over_tau_by_hand():
    # logits (0, ln 3): softmax = (1/4, 3/4); with tau 2 the logits (0, 2 ln 3) give the same
    p = soft_tokens(torch.tensor([[0.0, LN3]]), tau=1.0, hard=False)
    close(p, [[0.25, 0.75]])
    p = soft_tokens(torch.tensor([[0.0, 2 * LN3]]), tau=2.0, hard=False)
    close(p, [[0.25, 0.75]])


def test_soft_tokens_keep_the_shape_sum_to_one_and_sharpen_as_tau_falls():
    logits = torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(0))
    p = soft_tokens(logits, tau=1.0, hard=False)
    assert p.shape == logits.shape, f"shape {tuple(p.shape)}, expected {tuple(logits.shape)}"
    close(p.sum(-1), torch.ones(2, 5))
    cold = soft_tokens(logits, tau=1e-4, hard=False)                   # tau -> 0: the argmax
    close(cold, torch.eye(7)[logits.argmax(-1)], atol=1e-6)
    hot = soft_tokens(logits, tau=1e4, hard=False)                     # tau -> inf: uniform
    close(hot, torch.full_like(hot, 1 / 7), atol=1e-3)


def test_straight_through_forward_is_exactly_one_hot():
    logits = torch.randn(4, 6, 9, generator=torch.Generator().manual_seed(1), requires_grad=True)
    torch.manual_seed(0)
    p = soft_tokens(logits, tau=0.5, hard=True)
    assert p.shape == logits.shape, f"shape {tuple(p.shape)}, expected {tuple(logits.shape)}"
    assert ((p == 0) | (p == 1)).all(), "the forward value must be exactly 0 or 1"
    assert (p.sum(-1) == 1).all(), "exactly one 1 per token"
    assert p.requires_grad, "the straight-through output must carry a gradient"
    # a gap of 100 in the logits is beyond any Gumbel noise drawn here: the sample is the argmax
    big = torch.zeros(8, 5)
    big[torch.arange(8), torch.arange(8) % 5] = 100.0
    assert torch.equal(soft_tokens(big, tau=1.0).argmax(-1), torch.arange(8) % 5)


def test_straight_through_samples_follow_softmax_of_the_logits_whatever_tau():
    # a sample of softmax(logits): tau changes the backward pass only, not what is drawn
    want = torch.tensor([0.5, 0.3, 0.2])
    torch.manual_seed(0)
    p = soft_tokens(want.log().expand(20000, 3), tau=0.3, hard=True)
    freq = p.detach().mean(0)
    close(freq, want, atol=0.02)                               # 0.02 is 5 sigma


def test_straight_through_backward_is_a_softmax_at_temperature_tau_around_the_sample():
    # d p_k / d logits_j must be (s_k [k = j] - s_k s_j) / tau for some distribution s (the
    # softmax of the noisy logits over tau) whose argmax is the one-hot drawn in the forward pass
    tau = 2.0
    torch.manual_seed(0)
    for _ in range(5):
        logits = torch.tensor([[0.4, 0.0, -0.3]], requires_grad=True)
        p = soft_tokens(logits, tau=tau, hard=True)
        J = torch.stack([torch.autograd.grad(p[0, k], logits, retain_graph=True)[0][0]
                         for k in range(3)])                           # (3, 3)
        close(J, J.T, atol=1e-6)
        close(J.sum(1), torch.zeros(3), atol=1e-6)
        a = -tau * J                                                   # a_ij = s_i s_j, i != j
        s = torch.stack([(a[0, 1] * a[0, 2] / a[1, 2]).sqrt(), (a[0, 1] * a[1, 2] / a[0, 2]).sqrt(),
                         (a[0, 2] * a[1, 2] / a[0, 1]).sqrt()])
        close(s.sum(), 1.0, atol=1e-4)
        close(tau * J.diagonal(), s * (1 - s))
        assert s.argmax() == p[0].argmax(), "the backward's softmax must peak at the sample"


def test_a_lobe_reads_a_straight_through_token_exactly_as_the_token_and_passes_a_gradient():
    torch.manual_seed(0)
    lobe = Lobe(LobeConfig(n_layer=1, n_head=2, n_embd=32)).eval()
    logits = torch.randn(2, 4, lobe.cfg.vocab_size, requires_grad=True)
    p = soft_tokens(logits, tau=1.0, hard=True)
    out, _ = lobe(embeds=p @ lobe.wte.weight)                          # eq 4: x = p @ W_E
    want, _ = lobe(p.argmax(-1))
    assert torch.equal(out, want), "a one-hot soft token must embed as its token, bit for bit"
    out.sum().backward()
    assert (logits.grad.abs().sum(-1) > 0).all(), "every soft token must pass a gradient back"
