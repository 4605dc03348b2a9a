"""SPIN (train_spin.py, Alg 3): ln 2 at each iteration's start, a frozen opponent, data windows, smoke run."""
import math
import random

import pytest
import torch

import train_spin
from common import UsageError, frozen
from lobes import Lobe, LobeConfig

TINY = dict(task="addition", iterations=2, n_prompts=8, idl_limit=1, steps_per_iter=2, batch_size=4, n_eval=8,
            sft_iters=4, device="cpu", max_new_tokens=6)


def test_spin_loss_is_ln2_when_policy_equals_opponent_and_opponent_stays_frozen():
    torch.manual_seed(0)
    left = Lobe(LobeConfig(n_layer=1, n_head=2, n_embd=32))
    opponent = frozen(left)
    data = [train_spin.Rejected("12+3", "51", "52", 0), train_spin.Rejected("4+4", "8", "9", 1)]
    ref = train_spin.reference_logprobs(opponent, data)
    cfg = train_spin.Config(lr=1e-2)
    loss, loss_spin, margin, _ = train_spin.spin_step(left, data, ref, [0, 1], cfg)
    assert math.isclose(loss_spin.item(), math.log(2), abs_tol=1e-6)
    assert torch.allclose(margin, torch.zeros(2), atol=1e-6)
    before = [p.clone() for p in opponent.parameters()]
    opt = torch.optim.SGD(left.parameters(), lr=0.5)
    train_spin.optimize(left, opt, loss)
    assert all(torch.equal(a, b) for a, b in zip(before, opponent.parameters()))  # opponent unchanged
    _, loss_spin, _, _ = train_spin.spin_step(left, data, ref, [0, 1], cfg)
    assert loss_spin.item() < math.log(2)  # the step moved the policy away from the opponent


def test_temperatures_spread_over_the_range():
    cfg = train_spin.Config(idl_limit=3, t_min=0.1, t_max=0.9)
    assert train_spin.temperatures(cfg) == [0.1, 0.367, 0.633, 0.9]
    with pytest.raises(UsageError, match="--t_min"):
        train_spin.Config(t_min=0.9, t_max=0.1)                # a contradictory pair is an error


def test_smoke_run_trains_each_iteration_on_its_own_and_previous_generations(tmp_path):
    tiny = dict(TINY, sft_dir=str(tmp_path / "sft"))
    rows = train_spin.main(train_spin.Config(out_dir=str(tmp_path), **tiny))
    assert [r["iter"] for r in rows] == [0, 1, 2]
    assert all(math.isclose(r["first_loss"], math.log(2), abs_tol=1e-5) for r in rows[1:])
    assert rows[1]["n_data"] == rows[1]["n_rejected"]
    assert rows[2]["n_data"] == rows[2]["n_rejected"] + rows[1]["n_rejected"]
    assert (tmp_path / "ckpt.pt").exists() and (tmp_path / "metrics.jsonl").exists()
    # resume: nothing left to do at iteration 2 of 2, and a third iteration continues from it
    more = train_spin.main(train_spin.Config(out_dir=str(tmp_path), init_from="resume", **{**tiny, "iterations": 3}))
    assert [r["iter"] for r in more] == [0, 1, 2, 3]
    assert more[3]["n_data"] == more[3]["n_rejected"] + rows[2]["n_rejected"]


def test_pair_ids_cut_both_answers_after_the_first_difference():
    from lobes import answer_ids
    chosen, rejected = train_spin.pair_ids("7498", "7438", truncate=True)
    assert chosen == answer_ids("7498")[:3] and rejected == answer_ids("7438")[:3]
    chosen, rejected = train_spin.pair_ids("74", "749", truncate=True)  # differs at y_true's <|eos|>
    assert chosen == answer_ids("74") and rejected == answer_ids("749")[:3]
    assert train_spin.pair_ids("7498", "7438", truncate=False) == (answer_ids("7498"), answer_ids("7438"))


def test_pair_logprobs_one_pass_equals_a_pass_per_answer():
    # truncated, the cut y_true and y' share all but their last token with y_true: one pass over
    # prompt + y_true must give what separate passes over each answer give
    from lobes import answer_ids, prompt_ids, sequence_logprob
    torch.manual_seed(0)
    lobe = Lobe(LobeConfig(n_layer=1, n_head=2, n_embd=32))
    rows = [train_spin.Rejected("12+3", "7498", "7438", 0), train_spin.Rejected("4+4", "74", "749", 1),
            train_spin.Rejected("9+9", "18", "1", 2), train_spin.Rejected("1+1", "2", "2", 3)]
    prompts = [prompt_ids(r.prompt) for r in rows]
    for truncate in (True, False):
        cut = [train_spin.pair_ids(r.y_true, r.y_gen, truncate) for r in rows]
        want = [sequence_logprob(lobe, prompts, [c[k] for c in cut]) for k in (0, 1)]
        want.append(sequence_logprob(lobe, prompts, [answer_ids(r.y_true) for r in rows]))
        for got, w in zip(train_spin.pair_logprobs(lobe, rows, truncate), want):
            assert torch.allclose(got, w, atol=1e-5)


def test_critic_batch_pairs_every_sample_with_its_y_true():
    # Alg 3 line 13: -log y_right_true - log(1 - y_right) for every IDL sample, so y_true is half
    # of what the right lobe reads, each next to a sample of its own prompt
    judged = [train_spin.Judged(f"{i}+{i}", str(2 * i), str(2 * i + j), float(j == 0), j)
              for i in range(100) for j in range(4)]
    batch = train_spin.critic_batch(judged, 64, random.Random(0))
    truths, samples = batch[:32], batch[32:]
    assert len(samples) == 32 and all(r in judged for r in samples)
    assert [(t.prompt, t.answer, t.ok) for t in truths] == [(s.prompt, s.y_true, 1.0) for s in samples]
