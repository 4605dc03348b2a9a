"""
Tests for muon.py: Newton-Schulz against the scalar polynomial it applies to each singular value,
Muon's step against one worked by hand, its AdamW groups against torch.optim.AdamW, and the
groups make_optimizer builds for a lobe.

    $ python -m pytest tests/test_muon.py -q
"""
import pytest
import torch

from common import make_optimizer, set_lr
from lobes import Lobe, LobeConfig
from muon import NS_COEFFS, Muon, orthogonalize


def quintic(s, steps=5):
    """What Newton-Schulz does to one singular value s of a matrix of norm 1, by hand."""
    a, b, c = NS_COEFFS
    for _ in range(steps):
        s = a * s + b * s ** 3 + c * s ** 5
    return s


def test_orthogonalize_maps_each_singular_value_by_the_quintic():
    # diag(3, 4) has Frobenius norm 5: singular values 0.6 and 0.8 after scaling, vectors e1, e2
    out = orthogonalize(torch.tensor([[3.0, 0.0], [0.0, 4.0]]))
    assert torch.allclose(out, torch.diag(torch.tensor([quintic(0.6), quintic(0.8)])), atol=1e-5)
    assert 0.7 < quintic(0.6) < 1.2 and 0.7 < quintic(0.8) < 1.2


@pytest.mark.parametrize("shape", [(48, 16), (16, 48)])
def test_orthogonalize_keeps_the_singular_vectors_and_sets_the_values_near_1(shape):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    out = orthogonalize(g)
    s_out = torch.linalg.svdvals(out)
    assert s_out.min() > 0.6 and s_out.max() < 1.25
    # out = U f(S) V^T with the same U, V: U^T out V is diagonal
    inner = u.T @ out @ vh.T
    assert torch.allclose(inner, torch.diag(torch.diagonal(inner)), atol=1e-4)


def test_a_muon_step_by_hand():
    """W = I, G = diag(3, 4), momentum 0.95, lr 0.1 (lr_scale 10: the schedule's lr is 0.01),
    weight decay 0.5: W <- W (1 - 0.01 * 0.5), buffer B = G, update orth(G + 0.95 G) = orth(G)
    = diag(quintic(0.6), quintic(0.8)), W <- W - 0.1 * update (square: no shape factor)."""
    w = torch.nn.Parameter(torch.eye(2))
    opt = Muon([{"params": [w], "muon": True, "lr_scale": 10.0, "weight_decay": 0.5}], lr=0.1)
    w.grad = torch.tensor([[3.0, 0.0], [0.0, 4.0]])
    opt.step()
    want = torch.eye(2) * (1 - 0.01 * 0.5) - 0.1 * torch.diag(torch.tensor([quintic(0.6),
                                                                            quintic(0.8)]))
    assert torch.allclose(w.detach(), want, atol=1e-5)
    assert torch.equal(opt.state[w]["momentum"], w.grad)


def test_the_adamw_groups_step_as_torch_adamw():
    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(5)), torch.nn.Parameter(torch.randn(3, 4))]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    ours = Muon([{"params": a, "weight_decay": 0.1}], lr=1e-2)
    ref = torch.optim.AdamW([{"params": b, "weight_decay": 0.1}], lr=1e-2, betas=(0.9, 0.99),
                            eps=1e-8)
    for _ in range(4):
        grads = [torch.randn_like(p) for p in a]
        for ps, opt in ((a, ours), (b, ref)):
            for p, g in zip(ps, grads):
                p.grad = g.clone()
            opt.step()
    for p, q in zip(a, b):
        assert torch.allclose(p, q, atol=1e-6)


def test_make_optimizer_gives_muon_the_blocks_matrices_and_set_lr_scales_them():
    lobe = Lobe(LobeConfig(n_layer=2, n_head=2, n_embd=16))
    hidden, heads, rest = make_optimizer(lobe, 1e-3, 0.1, muon_lr=0.02).param_groups
    blocks = [m for b in lobe.blocks for m in (b.attn.qkv, b.attn.proj, b.mlp[0], b.mlp[2])]
    assert [id(p) for p in hidden["params"]] == [id(m.weight) for m in blocks] and hidden["muon"]
    assert [id(p) for p in heads["params"]] == [id(lobe.score_head.weight)]
    assert not heads["muon"] and not rest["muon"] and rest["weight_decay"] == 0.0
    assert any(p is lobe.wte.weight for p in rest["params"])
    assert sum(len(g["params"]) for g in (hidden, heads, rest)) == len(list(lobe.parameters()))
    opt = make_optimizer(lobe, 1e-3, 0.1, muon_lr=0.02)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.02)
    set_lr(opt, 5e-4)   # the schedule at half its peak: Muon's matrices at half of theirs
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 5e-4, 5e-4])
    assert type(make_optimizer(lobe, 1e-3, 0.1)) is torch.optim.AdamW   # muon_lr 0: as before
