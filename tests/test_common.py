"""
Tests for common.py, the plumbing: bad command lines and bad checkpoints are one line on stderr
and exit code 2 (run as a user would: once through a real process, the rest through the script's
entry point in this one), --help lists every field with its comment, checkpoints are atomic and
round-trip with RNG state, and the small helpers.

    $ python -m pytest tests/test_common.py -q
"""
import dataclasses
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

import common
from common import (Logger, UsageError, field_help, get_device, load_checkpoint, lr_at, make_optimizer,
                    parse_config, rng_state, save_checkpoint, set_rng_state)
from lobes import Lobe
from train_sft import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_sft(*args):
    """Run `python train_sft.py args...` from the repository root, as a user would: the one real
    process here; the other command lines run in this one (conftest.run_script)."""
    return subprocess.run([sys.executable, "train_sft.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def assert_one_line_exit_2(r, *needles):
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0]


# -----------------------------------------------------------------------------
# bad input: one line, exit 2

def test_unknown_key_exits_2_with_one_line_naming_the_closest_valid_key():
    assert_one_line_exit_2(train_sft("--lr_rate=1"), "--lr_rate", "did you mean --lr?")


@pytest.mark.parametrize("typo,meant", [("max_iter", "max_iters"), ("batchsize", "batch_size"),
                                        ("n-layers", "n_layer")])
def test_unknown_key_suggests_the_closest_field(typo, meant):
    with pytest.raises(UsageError, match=f"did you mean --{meant}\\?"):
        parse_config(Config, [f"--{typo}=3"])


def test_wrong_type_exits_2_with_one_line_naming_key_and_type(cli):
    assert_one_line_exit_2(cli("train_sft.py", "--max_iters=abc"), "--max_iters", "int", "'abc'")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_device_without_cuda_exits_2_with_one_line(cli):
    assert_one_line_exit_2(cli("train_sft.py", "--device=cuda"), "CUDA")


def test_resume_from_an_empty_out_dir_exits_2_with_one_line(tmp_path, cli):
    r = cli("train_sft.py", "--init_from=resume", f"--out_dir={tmp_path}", "--device=cpu")
    assert_one_line_exit_2(r, "no checkpoint", str(tmp_path / "ckpt.pt"))


def test_resume_from_a_corrupt_checkpoint_exits_2_with_one_line(tmp_path, cli):
    (tmp_path / "ckpt.pt").write_bytes(bytes(random.Random(0).randrange(256) for _ in range(4096)))
    r = cli("train_sft.py", "--init_from=resume", f"--out_dir={tmp_path}", "--device=cpu")
    assert_one_line_exit_2(r, "corrupt")


def test_help_exits_0_and_lists_every_field_with_its_comment(cli):
    r = cli("train_sft.py", "--help")
    assert r.returncode == 0 and r.stderr == ""
    helps = field_help(Config)
    for f in dataclasses.fields(Config):
        line = next(line for line in r.stdout.splitlines() if line.strip().startswith(f"--{f.name}="))
        assert helps[f.name] and helps[f.name] in line
        assert str(f.default) in line
    assert r.stdout.startswith("Supervised warm start")   # the module docstring's first line


@pytest.mark.parametrize("argv,message", [(["lr=1"], "expected --key=value"), (["--lr=-1"], "> 0"),
                                          (["--feedback_frac=1.5"], "[0, 1]"), (["--n_head=3"], "multiple"),
                                          (["--lr=nan"], "finite"), (["--decay_lr=maybe"], "bool"),
                                          (["--muon_lr=-0.01"], ">= 0")])
def test_impossible_values_are_usage_errors(argv, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config(Config, argv)


def test_values_are_converted_to_the_fields_types():
    cfg = parse_config(Config, ["--lr=3e-4", "--max_iters=7", "--decay_lr", "--task=parity", "--n-embd=64"])
    assert (cfg.lr, cfg.max_iters, cfg.decay_lr, cfg.task, cfg.n_embd) == (3e-4, 7, True, "parity", 64)
    assert parse_config(Config, ["--decay_lr=false"]).decay_lr is False


def test_right_n_layer_0_is_accepted_as_documented():
    # train_sft.Config: "right_n_layer ... (0 = n_layer)", and build_lobes reads 0 that way
    assert parse_config(Config, ["--right_n_layer=0"]).right_n_layer == 0


def test_pavlov_lambda_inf_is_accepted_as_documented():
    # train_sft.Config: "pavlov_lambda ... (0 = uniform, inf = last only)"
    assert parse_config(Config, ["--pavlov_lambda=inf"]).pavlov_lambda == float("inf")


def test_get_device_auto_is_a_real_device_and_unknown_names_are_usage_errors():
    assert get_device("auto").type in ("cuda", "mps", "cpu")
    assert get_device("cpu") == torch.device("cpu")
    with pytest.raises(UsageError, match="tpu"):
        get_device("tpu")


# -----------------------------------------------------------------------------
# checkpoints

def test_save_checkpoint_is_atomic_tmp_then_os_replace(tmp_path, monkeypatch):
    path = str(tmp_path / "sub" / "ckpt.pt")
    calls = []
    real_replace = os.replace
    monkeypatch.setattr(common.os, "replace", lambda a, b: (calls.append((a, b)), real_replace(a, b)))
    save_checkpoint(path, left={"w": torch.ones(2)}, step=1)
    assert calls == [(path + ".tmp", path)]
    assert os.listdir(tmp_path / "sub") == ["ckpt.pt"]        # no .tmp left behind


def test_a_crash_while_saving_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt.pt")
    save_checkpoint(path, left={"w": torch.ones(2)}, step=1)

    def torn_save(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(common.torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, left={"w": torch.zeros(2)}, step=2)
    assert load_checkpoint(path)["step"] == 1


def test_checkpoint_round_trips_with_weights_only_including_rng_state(tmp_path, tiny_cfg):
    torch.manual_seed(0)
    model = Lobe(tiny_cfg)
    path = str(tmp_path / "ckpt.pt")
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint(path, left=model.state_dict(), step=5, config={"lr": 0.1, "task": "addition"})
    after = (random.random(), np.random.rand(), torch.rand(3))   # what the saved RNG draws next
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ckpt = torch.load(path, weights_only=True)                    # no pickled code needed
    assert ckpt["step"] == 5 and ckpt["config"] == {"lr": 0.1, "task": "addition"}
    assert all(torch.equal(ckpt["left"][k], v) for k, v in model.state_dict().items())
    set_rng_state(ckpt["rng"])
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert again[:2] == after[:2] and torch.equal(again[2], after[2])


def test_rng_state_is_plain_data_that_survives_json():
    state = rng_state()
    json.dumps({k: v for k, v in state.items() if k not in ("torch", "cuda")})  # lists and ints only


def test_load_checkpoint_rejects_a_file_without_lobes(tmp_path):
    path = str(tmp_path / "other.pt")
    torch.save({"weights": torch.ones(1)}, path)
    with pytest.raises(UsageError, match="holds no lobes"):
        load_checkpoint(path)


# -----------------------------------------------------------------------------
# optimisation and metrics

def test_lr_warms_up_linearly_then_decays_by_cosine_to_a_tenth():
    assert lr_at(0, 1000, 1.0) == pytest.approx(1 / 50)
    assert lr_at(49, 1000, 1.0) == pytest.approx(1.0)
    assert lr_at(50, 1000, 1.0) == pytest.approx(1.0)
    assert lr_at(525, 1000, 1.0) == pytest.approx(0.1 + 0.9 * 0.5)   # halfway: cos(pi/2) = 0
    assert lr_at(1000, 1000, 1.0) == pytest.approx(0.1)
    assert lr_at(700, 1000, 1.0, decay=False) == 1.0


def test_make_optimizer_decays_matrices_but_not_embeddings_biases_or_norms(tiny_cfg):
    model = Lobe(tiny_cfg)
    decay, rest = make_optimizer(model, 1e-3, 0.1).param_groups
    assert decay["weight_decay"] == 0.1 and rest["weight_decay"] == 0.0
    assert any(p is model.wte.weight for p in rest["params"])
    assert any(p is model.blocks[0].attn.qkv.weight for p in decay["params"])
    assert all(p.dim() >= 2 for p in decay["params"])
    assert len(decay["params"]) + len(rest["params"]) == len(list(model.parameters()))


def test_logger_appends_one_json_line_per_log(tmp_path):
    log = Logger(str(tmp_path), 0, 10, "test")
    log.log(0, loss=1.234567891)
    log.log(5, acc=0.5, note="x")
    log.close()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == [{"step": 0, "loss": 1.23457}, {"step": 5, "acc": 0.5, "note": "x"}]
