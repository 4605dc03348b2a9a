"""The systems (sln.py): one set of weights for B, parameter counts, save -> load, evaluation
(measure.py)."""
import pytest
import torch

from common import UsageError, save_lobes
from data import get_task
from lobes import Lobe, LobeConfig
from measure import evaluate_system
from sln import SYSTEMS, System, load_system


def lobes(seed=0, n_layer=1):
    torch.manual_seed(seed)
    cfg = LobeConfig(n_layer=n_layer, n_head=2, n_embd=32)
    return Lobe(cfg).eval(), Lobe(cfg).eval()


def test_self_reflection_uses_one_set_of_weights():
    left, _ = lobes()
    b = System("B", left)
    assert b.right is b.left
    assert b.num_params() == left.num_params()


def test_homogeneous_pair_is_one_lobe_debating_itself_and_can_differ_from_a(sharp_lobe):
    c, a = System("C", sharp_lobe, idl_limit=4), System("A", sharp_lobe)
    assert c.right is c.left and c.num_params() == sharp_lobe.num_params()
    prompts = [f"{i}+{2 * i}" for i in range(16)]
    torch.manual_seed(0)
    d = c.answer(prompts, 4)
    # both seats sample, so they can disagree at loop 1 and go on talking: C is not A
    assert max(d.loops) > 1 and d.final != a.answer(prompts, 4).final


def test_every_system_reports_parameters_and_compute():
    left, right = lobes()
    task = get_task("addition")
    pairs = task.dataset("test", 6)
    for kind in (k for k in SYSTEMS if k not in "EG"):  # E and G are a WideSLN: tests/test_wide.py
        s = System(kind, left, right, idl_limit=2)
        r = evaluate_system(s, task, pairs, max_new_tokens=4)
        assert s.num_params() > 0
        assert 1 <= r["loops"] <= 2 and r["passes"] >= 2
    assert System("F", left, right).num_params() == left.num_params() + right.num_params()


def test_save_then_load_gives_identical_answers(tmp_path):
    left, right = lobes(3)
    prompts = ["12+34", "5", "x"]
    f = System("F", left, right, idl_limit=3)
    before = f.answer(prompts, 6)
    save_lobes(str(tmp_path / "ckpt.pt"), left, right, task="addition")
    after = load_system(str(tmp_path / "ckpt.pt"), "F", idl_limit=3).answer(prompts, 6)
    assert before.attempts == after.attempts and before.final == after.final


def test_a_checkpoint_that_does_not_fit_the_lobes_is_a_usage_error_naming_it(tmp_path):
    path = str(tmp_path / "ckpt.pt")
    save_lobes(path, *lobes(), task="addition")
    ckpt = torch.load(path, weights_only=True)
    del ckpt["right"]["judge_weight"]               # as written before the score read the surprise
    torch.save(ckpt, path)
    with pytest.raises(UsageError, match=f"checkpoint {path} does not fit this code .*judge_weight"):
        load_system(path, "F")
