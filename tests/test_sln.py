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


def test_sampled_baselines_choose_among_the_same_k_samples(sharp_lobe, tiny_lobe):
    from collections import Counter
    from sln import Sampled
    prompts = [f"{i}+{3 * i}" for i in range(6)]

    def run(kind, **kw):
        torch.manual_seed(0)                  # the same k samples for every rule
        return Sampled(kind, sharp_lobe, tiny_lobe, k=4, temperature=1.0, **kw).answer(prompts, 4)
    best, vote = run("best@k"), run("vote@k")
    assert best.attempts == vote.attempts and all(len(a) == 4 for a in best.attempts)
    for i, tried in enumerate(best.attempts):
        assert best.final[i] == tried[max(range(4), key=best.scores[i].__getitem__)]
        assert vote.final[i] == Counter(tried).most_common(1)[0][0]
        assert best.forward_passes[i] == vote.forward_passes[i] + 4   # + one scoring pass a sample
    want = {p: tried[-1] for p, tried in zip(prompts, best.attempts)}  # an oracle that knows

    class Oracle:
        def check(self, p, a):
            return float(a == want[p])
    assert run("pass@k", task=Oracle()).final == [want[p] for p in prompts]
    assert Sampled("vote@k", sharp_lobe, tiny_lobe).num_params() == sharp_lobe.num_params()
    with pytest.raises(ValueError, match="needs the task"):
        Sampled("pass@k", sharp_lobe)


def test_retry_at_k_samples_from_the_prompt_until_the_right_lobe_accepts(sharp_lobe):
    from idl import speak
    from lobes import prompt_ids
    from sln import Sampled

    class Right:      # accepts an answer without an 'l' (most of this lobe's greedy ones have one)
        def score(self, seqs):
            return torch.tensor([-5.0 if ord("l") in s else 5.0 for s in seqs])
    prompts = [f"{i}+{3 * i}" for i in range(16)]
    torch.manual_seed(0)
    d = Sampled("retry@k", sharp_lobe, Right(), k=3, temperature=1.0).answer(prompts, 4)
    greedy, _, _ = speak(sharp_lobe, [prompt_ids(p) for p in prompts], 4, 0.0)
    assert [tried[0] for tried in d.attempts] == greedy        # the first answer is greedy
    for tried, final, stop in zip(d.attempts, d.final, d.stop):
        # every loop but the last was rejected; a row stops at its first accepted answer
        assert all("l" in a for a in tried[:-1])
        assert (stop == "accepted") == ("l" not in final) == ("l" not in tried[-1])
        assert len(tried) == 3 or stop == "accepted"
    # retries sample from the prompt: some row is rejected greedily and accepted later
    assert any(len(t) > 1 and s == "accepted" for t, s in zip(d.attempts, d.stop))
