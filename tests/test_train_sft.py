"""
Tests for train_sft.py: a smoke run of main() with a tiny config, and resuming an interrupted
run, which must continue from the saved step and end bit-identical to a run never interrupted.

    $ python -m pytest tests/test_train_sft.py -q
"""
import json
import math
import os
from dataclasses import replace

import pytest
import torch

from common import load_checkpoint
from lobes import Lobe, answer_ids, answer_logprobs, prompt_ids
from train_sft import Config, lm_step, main

TINY = Config(device="cpu", n_layer=1, right_n_layer=1, n_embd=32, n_head=2, batch_size=8, n_eval=16)


def metrics(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def eval_steps(lines):
    return [m["step"] for m in lines if "left_test" in m]


# -----------------------------------------------------------------------------
def test_smoke_run_writes_checkpoint_and_metrics_and_returns_results(tmp_path):
    cfg = replace(TINY, max_iters=6, eval_interval=3, out_dir=str(tmp_path))
    results = main(cfg)
    assert results["step"] == 6
    for key in ("left_test", "left_ood", "right_test"):
        assert 0.0 <= results[key] <= 1.0
    files = os.listdir(tmp_path)
    assert {"ckpt.pt", "metrics.jsonl"} <= set(files) and not any(f.endswith(".tmp") for f in files)
    ckpt = load_checkpoint(str(tmp_path / "ckpt.pt"))
    assert ckpt["step"] == 6 and ckpt["task"] == "addition" and ckpt["config"]["max_iters"] == 6
    assert {"left", "right", "opt_left", "opt_right", "rng", "left_config", "right_config"} <= set(ckpt)
    lines = metrics(tmp_path)
    assert eval_steps(lines) == [0, 3, 6]
    losses = [m for m in lines if "loss_left" in m]
    assert losses and all(math.isfinite(m["loss_left"]) and math.isfinite(m["loss_right"]) for m in losses)
    last = [m for m in lines if "left_test" in m][-1]        # the final eval line is the results
    assert {k: last[k] for k in ("step", "left_test", "left_ood", "right_test")} == pytest.approx(
        {k: results[k] for k in ("step", "left_test", "left_ood", "right_test")}, abs=1e-4)


# -----------------------------------------------------------------------------
# resume: 0 -> 4, then resume to 8, against one uninterrupted 0 -> 8 run with the same seed
@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    base = replace(TINY, decay_lr=False, eval_interval=2)   # constant lr: the 4-step run's lr = the 8-step run's
    split, whole = tmp_path_factory.mktemp("split"), tmp_path_factory.mktemp("whole")
    main(replace(base, max_iters=4, out_dir=str(split)))
    n_before = len(metrics(split))
    main(replace(base, max_iters=8, out_dir=str(split), init_from="resume"))
    main(replace(base, max_iters=8, out_dir=str(whole)))
    return dict(split=split, whole=whole, before=metrics(split)[:n_before], after=metrics(split)[n_before:])


def test_resume_continues_after_the_saved_step_without_repeating_it(resumed):
    assert eval_steps(resumed["before"]) == [0, 2, 4]
    steps_after = [m["step"] for m in resumed["after"]]
    assert steps_after and min(steps_after) > 4, f"the resumed run logged steps {steps_after}"
    assert eval_steps(resumed["before"] + resumed["after"]) == eval_steps(metrics(resumed["whole"])) == [0, 2, 4, 6, 8]


def test_resume_writes_the_final_step_to_the_checkpoint(resumed):
    assert load_checkpoint(str(resumed["split"] / "ckpt.pt"))["step"] == 8


def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_run(resumed):
    a = load_checkpoint(str(resumed["split"] / "ckpt.pt"))
    b = load_checkpoint(str(resumed["whole"] / "ckpt.pt"))
    for lobe in ("left", "right"):
        different = [k for k in a[lobe] if not torch.equal(a[lobe][k], b[lobe][k])]
        assert not different, f"{lobe}: {len(different)} of {len(a[lobe])} tensors differ, e.g. {different[:3]}"
    for opt in ("opt_left", "opt_right"):
        for i, state in a[opt]["state"].items():
            assert all(torch.equal(v, b[opt]["state"][i][k]) for k, v in state.items())


# -----------------------------------------------------------------------------
def test_lm_step_is_the_mean_negative_logprob_of_the_answer_tokens(tiny_cfg):
    torch.manual_seed(0)
    model = Lobe(tiny_cfg)
    prompts = [prompt_ids(p) for p in ["12+34", "7", "00001111"]]
    answers = [answer_ids(a) for a in ["46", "1234567", "0"]]
    logp, mask, _ = answer_logprobs(model, prompts, answers)
    torch.testing.assert_close(lm_step(model, prompts, answers), -logp.sum() / mask.sum())


def test_feedback_dialogues_show_wrong_attempts_only_and_from_samples_only_the_first_shown():
    import random

    from data import get_task, valence_token
    from train_sft import left_batch
    task = get_task("addition")
    pairs, rng = task.dataset("test", 4), random.Random(0)
    attempts = [a if i == 1 else task.corrupt(p, a, rng) for i, (p, a) in enumerate(pairs)]
    assert [task.check(p, w) for (p, _), w in zip(pairs, attempts)] == [0, 1, 0, 0]
    for shown, want in ((None, [0, 2, 3]), (2, [0])):
        prompts, answers = left_batch(task, pairs, attempts, [valence_token(0.1)] * 4, 1.0,
                                      random.Random(0), shown)
        dialogues = [i for i, (q, (p, _)) in enumerate(zip(prompts, pairs)) if q != prompt_ids(p)]
        assert dialogues == want and answers == [answer_ids(a) for _, a in pairs]
        for i in want:
            assert prompts[i] == prompt_ids(pairs[i][0], [(attempts[i], valence_token(0.1))])
