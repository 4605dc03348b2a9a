"""
Tests for the run that goes wrong: a nan or inf loss stops training with one line naming the
step and exit code 1, the last good checkpoint kept (common.Logger.tick, common.run); a nan
gradient never reaches the weights (common.optimize); an --out_dir that cannot be written is one
line and exit code 2 (common.writable_dir).

    $ python -m pytest tests/test_reliability.py -q
"""
import dataclasses
import os
import subprocess
import sys

import pytest
import torch

import common
from common import Diverged, Logger, UsageError, load_checkpoint, optimize, writable_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--device=cpu", "--n_layer=1", "--right_n_layer=1", "--n_embd=32", "--n_head=2",
        "--batch_size=8", "--n_eval=16"]


def one_error_line(r, code):
    assert r.returncode == code, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


# -----------------------------------------------------------------------------
# a loss gone nan or inf: Diverged, one line, exit 1
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_tick_with_a_nonfinite_loss_raises_diverged_naming_the_loss_and_the_step(tmp_path, bad):
    log = Logger(str(tmp_path), 10, 20, "test")
    log.tick(left=1.0, right=2.0)                             # step 11: fine
    with pytest.raises(Diverged, match=f"right={bad} at step 12: .*no checkpoint was saved"):
        log.tick(left=1.0, right=bad)


def test_optimize_skips_a_nan_gradient_and_the_next_tick_stops(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    log = Logger(str(tmp_path), 0, 10, "test")
    optimize(model, opt, model(torch.ones(2, 4)).sum())
    log.tick(loss=1.0)
    before = [p.clone() for p in model.parameters()]
    optimize(model, opt, model(torch.ones(2, 4)).sum() * float("nan"), grad_clip=1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(Diverged, match="a gradient was nan or inf at step 2"):
        log.tick(loss=1.0)                                    # finite, but the update was skipped


@dataclasses.dataclass
class TinyConfig(common.Checked):
    n: int = 1  # unused


def test_run_prints_diverged_as_one_line_and_exits_1(capsys):
    def main(cfg):
        raise Diverged("left=nan at step 3: the run diverged and stopped; no checkpoint was saved")
    with pytest.raises(SystemExit) as e:
        common.run(main, TinyConfig, argv=[])
    assert e.value.code == 1
    assert capsys.readouterr().err == ("error: left=nan at step 3: the run diverged and stopped; "
                                       "no checkpoint was saved\n")


# The left lobe's loss of step 5 made nan in train_sft.py, run as a user would (common.run): the
# checkpoint of step 4 (eval_interval 2) must be the one on disk, finite, and load.
def test_train_sft_with_a_nan_loss_exits_1_naming_the_step_and_keeps_the_last_checkpoint(
        tmp_path, cli, monkeypatch):
    import train_sft
    real, calls = train_sft.lm_step, []

    def lm_step(*args):
        calls.append(1)
        return real(*args) * (float("nan") if len(calls) == 5 else 1.0)
    monkeypatch.setattr(train_sft, "lm_step", lm_step)
    r = cli("train_sft.py", *TINY, "--max_iters=8", "--eval_interval=2", f"--out_dir={tmp_path}")
    line = one_error_line(r, 1)
    assert line.startswith("error: left=nan at step 5: ") and str(tmp_path / "ckpt.pt") in line
    ckpt = load_checkpoint(str(tmp_path / "ckpt.pt"))
    assert ckpt["step"] == 4
    assert all(torch.isfinite(w).all() for lobe in ("left", "right") for w in ckpt[lobe].values())
    assert not any(f.endswith(".tmp") for f in os.listdir(tmp_path))


def test_a_lobe_sampling_from_nan_logits_is_a_floating_point_error_run_prints_as_one_line(tmp_path):
    from lobes import sample
    with pytest.raises(FloatingPointError, match="diverged"):
        sample(torch.tensor([[float("nan"), 0.0]]))
    # exit 1 as the shell sees it: a real process (the other runs here go through conftest.cli)
    r = subprocess.run([sys.executable, "train_sft.py", *TINY, "--lr=1e10", "--max_iters=4",
                        "--eval_interval=4", f"--out_dir={tmp_path}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "diverged" in one_error_line(r, 1)


# -----------------------------------------------------------------------------
# an --out_dir that cannot be written: one line, exit 2
def test_train_sft_with_an_unwritable_out_dir_exits_2_with_one_line(cli):
    r = cli("train_sft.py", *TINY, "--out_dir=/dev/null/x")
    assert "cannot write to --out_dir=/dev/null/x: " in one_error_line(r, 2)


def test_writable_dir_makes_the_folder_and_rejects_a_path_under_a_file(tmp_path):
    writable_dir(str(tmp_path / "a" / "b"))
    assert os.path.isdir(tmp_path / "a" / "b") and not os.listdir(tmp_path / "a" / "b")
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="cannot write to --out_dir=.*file/x: "):
        writable_dir(str(tmp_path / "file" / "x"))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_writable_dir_rejects_a_read_only_folder(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(UsageError, match="Permission denied"):
            writable_dir(str(tmp_path))
    finally:
        tmp_path.chmod(0o700)
