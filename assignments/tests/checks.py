"""
What the grading tests share: close() compares numbers and says in one line how they differ;
descend() is one step of plain gradient descent, for the small end-to-end runs.

Plain torch only (no torch.testing, no torch.optim): their first use costs about a second of
imports in every grading run.
"""
import torch


def show(t):
    values = [round(v, 4) for v in t.flatten()[:6].tolist()]
    return f"{values}{' ...' if t.numel() > 6 else ''}"


def close(x, value, atol=1e-5, rtol=1e-5):
    """x (a tensor) equals value (a number, list or tensor) to float32 precision."""
    got = torch.as_tensor(x).detach().float()
    want = torch.as_tensor(value, dtype=torch.float32)
    assert got.shape == want.shape, f"shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    assert torch.allclose(got, want, rtol=rtol, atol=atol), \
        f"got {show(got)}, expected {show(want)}"


@torch.no_grad()
def descend(params, lr):
    """p <- p - lr * grad for each parameter; the gradients are then cleared."""
    for p in params:
        p -= lr * p.grad
        p.grad = None
