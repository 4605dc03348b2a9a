"""
Shared test setup: the repository root on sys.path, one torch thread, and tiny lobes.

One thread, not two: every model in these tests is tiny (n_embd 32), where a second thread only
adds wake-up cost, and on a busy 2-core machine each op then waits milliseconds for the other
core (measured: layer_norm on a (16, 1, 32) tensor 6 ms with 2 threads, 8 us with 1).

    $ python -m pytest tests -q --durations=10
"""
import contextlib
import io
import os
import sys
from types import SimpleNamespace

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

torch.set_num_threads(1)

from lobes import Lobe, LobeConfig  # noqa: E402  (needs ROOT on sys.path)


def run_script(script, *args, stdin=""):
    """`python script args...` run in this process, through the script's own entry point
    (common.run, as its `__main__` block calls it): returncode, stdout, stderr as subprocess.run
    gives them. A fresh interpreter spends ~4 s importing torch before the first line runs; the
    tests that pin the process boundary itself (an exit code seen by the shell) keep a real one."""
    import common
    module = __import__(script.removesuffix(".py"))
    out, err = io.StringIO(), io.StringIO()
    old_stdin, sys.stdin = sys.stdin, io.StringIO(stdin)
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            common.run(module.main, module.Config, argv=list(args))
    except SystemExit as e:
        code = 0 if e.code is None else e.code
    finally:
        sys.stdin = old_stdin
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


@pytest.fixture
def cli():
    """run_script: `cli("train_sft.py", "--lr=1")` in place of a subprocess."""
    return run_script


@pytest.fixture
def tiny_cfg():
    """The smallest lobe that still has every part: 2 blocks, 2 heads, width 32."""
    return LobeConfig(n_layer=2, n_head=2, n_embd=32)


@pytest.fixture
def tiny_lobe(tiny_cfg):
    """A seeded tiny lobe in eval mode with the default (std 0.02) initialisation."""
    torch.manual_seed(0)
    return Lobe(tiny_cfg).eval()


def sharpened(cfg, seed=0):
    """A seeded lobe whose matrices are drawn with std 0.3 instead of 0.02, so its outputs depend
    on the context and greedy continuations differ from prompt to prompt (the default init gives
    near-uniform logits, which would let a broken KV cache pass by luck)."""
    torch.manual_seed(seed)
    model = Lobe(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
    return model


@pytest.fixture
def make_sharp_lobe():
    """sharpened(cfg, seed) for tests that need another config than tiny_cfg."""
    return sharpened


@pytest.fixture
def sharp_lobe(tiny_cfg):
    """The tiny lobe, sharpened: see sharpened()."""
    return sharpened(tiny_cfg)
