"""
Tests for the wide SLN (wide.WideSLN, systems E and G, Figure 4) and its training through
train_wide.py: parameter counts against the fixed-depth GPT, per-row halting (a row that
halts stops changing), batching, save -> load, and a tiny training run with an exact resume.
(The halting and load-balancing losses are checked by hand in tests/test_losses.py.)

    $ python -m pytest tests/test_wide.py -q
"""
import json
import math
import os
from dataclasses import replace

import pytest
import torch

import train_wide
from common import UsageError, load_checkpoint
from lobes import Lobe
from measure import LengthRow, pool
from sln import SYSTEMS, System, load_lobes, load_system
from wide import WideConfig, WideSLN, equal_depth_config, save_wide

CFG = WideConfig(n_head=2, n_embd=32, n_expert=2, max_loops=8)
PROMPTS = ["0110", "1", "1011101", "00", "111111111"]


def wide(seed=0, kind="E", **kw):
    """A seeded wide SLN whose matrices have std 0.3, so states and routes differ from row to row."""
    torch.manual_seed(seed)
    model = WideSLN(CFG, kind, **kw).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
    return model


def batch(prompts):
    from lobes import pad_right, prompt_ids
    ids = [prompt_ids(p) for p in prompts]
    idx, _ = pad_right(ids, "cpu")
    return idx, torch.tensor([len(i) - 1 for i in ids])


def parity_ids():
    """PROMPTS and their parity answers as token lists, what wide_step takes."""
    from lobes import answer_ids, prompt_ids
    return [prompt_ids(p) for p in PROMPTS], [answer_ids(str(p.count("1") % 2)) for p in PROMPTS]


# -----------------------------------------------------------------------------
def test_parameters_equal_the_fixed_depth_gpt_up_to_the_gates():
    model, C, E = WideSLN(CFG), CFG.n_embd, CFG.n_expert
    gpt = Lobe(equal_depth_config(CFG))
    assert gpt.cfg.n_layer == CFG.n_first + CFG.n_last + 2 * E == 6
    # the wide SLN adds the main gate (3 outputs), the left gate (E), the right gate (E + 1: the
    # score), the loop's LayerNorm; the GPT has a score head (1 output and its judge weight) the
    # wide SLN does not
    gates = (3 * C + 3) + (E * C + E) + ((E + 1) * C + E + 1) + 2 * C
    assert model.num_params() - gpt.num_params() == gates - (C + 2)
    assert abs(model.num_params() - gpt.num_params()) < 0.01 * gpt.num_params()


def test_training_forward_reads_out_every_loop_with_stop_probabilities():
    model = wide()
    idx, at = batch(PROMPTS)
    logits, lam, balance, still, rest = model(idx, at, 5)
    assert logits.shape == (5, len(PROMPTS), idx.size(1), CFG.vocab_size)
    assert lam.shape == (2, len(PROMPTS), 5) and ((lam > 0) & (lam < 1)).all()
    assert not torch.equal(logits[0], logits[1])        # each loop changes the state
    assert balance >= 1.0 - 1e-6                        # the Switch loss is at least 1
    for settled in (still, rest):                       # loop 1 is never settled
        assert settled.shape == (len(PROMPTS), 5) and (settled[:, 0] == 0).all() and (settled[:, 1:] < 1).all()
    assert (rest <= still + 1e-6).all()                 # every prompt token moves at least as the last


def test_skipped_loops_are_the_first_loops_of_a_longer_forward_without_a_gradient():
    model, (idx, at) = wide(), batch(PROMPTS)
    full, part = model(idx, at, 5), model(idx, at, 3, skip=2)
    for a, b in ((full[0][2:], part[0]), (full[1][..., 2:], part[1]), (full[3][:, 2:], part[3]),
                 (full[4][:, 2:], part[4])):            # logits, stop probabilities, settled x2
        assert torch.allclose(a, b, atol=1e-5)
    assert (part[4][:, 0] != 0).all()                   # loop 3 is settled against loop 2's readout
    grads = []
    for logits in (full[0][2:], part[0]):               # the same loss on loops 3-5
        model.zero_grad()
        logits.square().mean().backward(retain_graph=True)
        grads.append(model.first[0].mlp[0].weight.grad.clone())
    assert grads[1].abs().sum() > 0 and not torch.allclose(grads[0], grads[1])  # none through 1-2


def test_a_row_that_halts_stops_changing():
    model = wide(threshold=0.5)
    with torch.no_grad():
        model.main_gate.bias[2] = 0.0                   # stop probabilities that pass 0.5 in some rows
    idx, at = batch(PROMPTS)
    runs = []
    for m in range(1, 9):
        model.max_loops = m
        runs.append(model.think(idx, at)[:2])
    loops = runs[-1][1]
    assert loops.min() < 8 and loops.max() == 8, loops  # some rows halt early, one never does
    for i, n in enumerate(loops.tolist()):
        if n < 8:  # every run allowed n or more loops gives row i the same logits
            for m in range(n, 9):
                assert torch.equal(runs[m - 1][0][i], runs[n - 1][0][i]) and runs[m - 1][1][i] == n
        else:      # and a row still looping does change
            assert not torch.equal(runs[7][0][i], runs[6][0][i])


def test_batched_answers_equal_one_prompt_at_a_time():
    for kind in "EG":
        model = wide(1, kind)
        d = model.answer(PROMPTS, 4)
        for i, p in enumerate(PROMPTS):
            one = model.answer([p], 4)
            assert one.final == [d.final[i]] and one.loops == [d.loops[i]] and one.tokens == [d.tokens[i]]
        assert all(1 <= n <= CFG.max_loops for n in d.loops)
        assert d.forward_passes == [len(t[0]) * (n + 1) for t, n in zip(d.tokens, d.loops)]


def recomputed(model, prompts, max_new_tokens):
    """Greedy generation the slow way, the reference of the KV cache: the whole right-padded
    sequence thinks again for every new token."""
    from data.tokenizer import EOS
    from lobes import pad_right
    seqs, at = [list(p) for p in prompts], torch.tensor([len(p) - 1 for p in prompts])
    new, done = [[] for _ in prompts], [False] * len(prompts)
    loops = None                                        # the prompt's loops: the first think's
    for _ in range(max_new_tokens):
        idx, lengths = pad_right(seqs, "cpu")
        logits, loops_t, _, _ = model.think(idx, at)
        loops = loops_t if loops is None else loops
        for i, token in enumerate(logits[torch.arange(len(seqs)), lengths - 1].argmax(-1).tolist()):
            if not done[i]:
                seqs[i].append(token), new[i].append(token)
                done[i] = token == EOS
        if all(done):
            break
    return new, loops


@pytest.mark.parametrize("window,seed,kind,halt", [(0, 1, "G", "ponder"), (0, 3, "G", "ponder"), (3, 0, "E", "ponder"),
                                                   (3, 3, "G", "ponder"), (0, 4, "E", "settled"), (3, 0, "G", "settled")])
def test_cached_generation_equals_recomputing_every_token(window, seed, kind, halt):
    from lobes import prompt_ids
    torch.manual_seed(seed)
    model = WideSLN(replace(CFG, window=window, halt=halt, threshold=0.9 if halt == "settled" else 0.5), kind).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
    prompts = [prompt_ids(p) for p in PROMPTS]
    new, loops, _ = model.generate(prompts, 10)
    want_new, want_loops = recomputed(model, prompts, 10)
    assert new == want_new and torch.equal(loops, want_loops)
    assert len(set(loops.tolist())) > 1                 # rows that halt at different loops


def test_e_and_g_halt_on_different_gates():
    e, g = wide(2, "E", threshold=0.3), wide(2, "G", threshold=0.3)
    with torch.no_grad():                               # E halts at once, G's score never fires
        e.main_gate.bias.copy_(torch.tensor([0.0, 0.0, 50.0]))
        g.main_gate.bias.copy_(torch.tensor([0.0, 0.0, 50.0]))
        g.right.gate.bias[-1] = -50.0
    assert e.answer(PROMPTS, 2).loops == [1] * 5
    assert g.answer(PROMPTS, 2).loops == [CFG.max_loops] * 5


def test_save_then_load_gives_identical_answers_for_e_and_g(tmp_path):
    path = str(tmp_path / "ckpt.pt")
    save_wide(path, wide(3), task="parity")
    for kind in "EG":
        before = wide(3, kind).answer(PROMPTS, 4)
        after = load_system(path, kind, idl_limit=2).answer(PROMPTS, 4)
        assert after.final == before.final and after.loops == before.loops and after.scores == before.scores


def test_wide_checkpoints_and_lobe_checkpoints_are_not_mixed_up(tmp_path):
    path = str(tmp_path / "ckpt.pt")
    save_wide(path, wide())
    with pytest.raises(UsageError, match="wide SLN"):
        load_lobes(path)
    assert {"E", "G"} <= set(SYSTEMS)
    with pytest.raises(ValueError):
        System("E", Lobe(equal_depth_config(CFG)))


def test_route_names_a_lobe_and_an_expert_at_every_loop():
    model = wide(4)
    steps = model.route("0110")
    assert steps and len(steps) == model.answer(["0110"], 1).loops[0]
    assert all(lobe in ("left", "right") and 0 <= e < CFG.n_expert and 0 <= s <= 1 for lobe, e, s in steps)
    assert [s for _, _, s in steps] == sorted(s for _, _, s in steps)  # P(halted by loop n) only grows


# -----------------------------------------------------------------------------
# train_wide: a tiny run, then 0 -> 4 -> resume -> 8 against an uninterrupted 0 -> 8
TINY = train_wide.Config(task="parity", device="cpu", n_expert=1, n_embd=32, n_head=2, batch_size=8,
                         n_eval=12, train_loops=4, max_loops=6, decay_lr=False, eval_interval=2)


def test_smoke_run_trains_a_wide_sln_that_load_system_reads(tmp_path, capsys):
    results = train_wide.main(replace(TINY, max_iters=4, out_dir=str(tmp_path)))
    assert results["step"] == 4 and 0 <= results["E_ood"] <= 1 and "left_ood" not in results
    assert 1 <= results["G_loops_ood"] <= 6
    out = capsys.readouterr().out
    assert "the fixed-depth GPT of as many blocks (--n_layer=4)" in out and "| prompt length |" in out
    assert "G's loops on test and ood by lobe and expert: " in out
    pooled = out[out.index("| lengths |"):].splitlines()[2:4]           # parity: 1-10 and 11-20 pooled
    assert [r.split(" | ")[0] for r in pooled] == ["| 1-10", "| 11-15"] and pooled[0].split(" | ")[1] == "12"
    ckpt = load_checkpoint(str(tmp_path / "ckpt.pt"))
    assert ckpt["step"] == 4 and ckpt["wide_config"]["n_expert"] == 1 and "left" not in ckpt
    with open(tmp_path / "metrics.jsonl") as f:
        lines = [json.loads(line) for line in f]
    assert [m["step"] for m in lines if "E_test" in m] == [0, 2, 4]
    assert any("loops_E" in m for m in lines)
    g = load_system(str(tmp_path / "ckpt.pt"), "G")
    assert g.kind == "G" and g.max_loops == 6 and len(g.answer(["0101"], 3).final) == 1


def test_resumed_wide_run_ends_with_the_same_weights(tmp_path):
    split, whole = str(tmp_path / "split"), str(tmp_path / "whole")
    tiny = replace(TINY, eval_interval=4)                # checkpoints at 4 and 8: where it resumes
    train_wide.main(replace(tiny, max_iters=4, out_dir=split))
    train_wide.main(replace(tiny, max_iters=8, out_dir=split, init_from="resume"))
    train_wide.main(replace(tiny, max_iters=8, out_dir=whole))
    a, b = load_checkpoint(os.path.join(split, "ckpt.pt")), load_checkpoint(os.path.join(whole, "ckpt.pt"))
    assert a["step"] == b["step"] == 8
    assert all(torch.equal(a["wide"][k], b["wide"][k]) for k in a["wide"])


def test_bad_wide_options_are_usage_errors(tmp_path):
    for bad in (dict(init_from="deep"), dict(halt_prior=1.0), dict(train_loops=7), dict(train_loops=-1),
                dict(halt="critic"), dict(halt="settled"), dict(threshold=1.5),   # settled needs loop_weight
                dict(skip_loops=2)):                                                 # ... and skip_loops settled
        with pytest.raises(UsageError):
            train_wide.main(replace(TINY, max_iters=1, out_dir=str(tmp_path), **bad))


def test_window_lets_a_token_see_itself_and_the_window_minus_one_before_it():
    model = WideSLN(replace(CFG, window=2))
    assert WideSLN(CFG).mask(4, "cpu") is None          # window 0: plain causal attention
    expected = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(model.mask(4, "cpu"), expected)


def test_pool_weights_each_length_by_its_problem_count():
    rows = [LengthRow(*r) for r in ((1, 10, 1.0, 2.0), (10, 30, 0.5, 4.0), (12, 20, 0.25, 8.0),
                                    (16, 5, 0.0, 9.0))]
    assert pool(rows, ((1, 10), (11, 15), (16, 20), (21, 30))) == [
        (1, 10, 40, (10 * 1.0 + 30 * 0.5) / 40, (10 * 2.0 + 30 * 4.0) / 40),   # 0.625, 3.5
        (11, 15, 20, 0.25, 8.0), (16, 20, 5, 0.0, 9.0)]                      # empty 21-30 left out


def test_loop_weight_teaches_every_loop_and_halting_only_the_stop_probabilities():
    from lobes import pad_right, span_mask
    prompts, answers = parity_ids()
    cfg = replace(TINY, loop_weight=0.5, balance_weight=0.0)
    grads = []
    for way in ("wide_step", "by hand"):
        model = wide(5)
        if way == "wide_step":
            loss, _ = train_wide.wide_step(model, prompts, answers, cfg)
        else:  # the answers' gradient is loop_weight * the mean CE over loops, nothing from halting
            idx, _ = pad_right([p + a for p, a in zip(prompts, answers)], "cpu")
            logits, *_ = model(idx[:, :-1], torch.tensor([len(p) - 1 for p in prompts]), cfg.train_loops)
            mask = span_mask([len(p) - 1 for p in prompts], [len(a) for a in answers], idx.size(1) - 1, "cpu")
            loss = 0.5 * train_wide.loop_ce(logits, idx[:, 1:], mask).mean()
        loss.backward()
        grads.append(model.ln_f.weight.grad.clone())
    assert grads[0].abs().sum() > 0 and torch.allclose(grads[0], grads[1], atol=1e-6)


def test_task_batch_grows_the_longest_prompt_from_two_characters():
    import random
    from data import get_task
    task = get_task("parity")
    assert task.train_lengths() == (1, 10)
    short, half, full = (task.batch(random.Random(0), 64, g) for g in (0.0, 0.5, 1.0))
    assert len(short) == len(full) == 64 and max(len(p) for p, _ in short) <= 2
    assert max(len(p) for p, _ in half) == 6 and max(len(p) for p, _ in full) == 10   # 2 + 0.5 * 8
    rng = random.Random(0)                                                       # grown 1: no filter
    assert full == [task.sample(rng, "train") for _ in range(64)]
    assert all(a == str(p.count("1") % 2) for p, a in short)
    add = get_task("addition")                     # every prompt 17 characters: the cap never falls below them
    assert len(add.batch(random.Random(0), 8, 0.0)) == 8


# -----------------------------------------------------------------------------
# Halting: one rule in training and evaluation; the balancing loss leaves the stop logit alone
def test_settled_rule_and_stop_probabilities_by_hand():
    # token 1: |(3, 4) - (3, 0)| = 4, |(3, 4)| = 5, it moved 80% of its length; token 2 did not move;
    # the row is as settled as its least settled prompt token: 0.2. A token past the prompt is not read
    out, before = torch.tensor([[[3.0, 4.0], [1.0, 0.0]]]), torch.tensor([[[3.0, 0.0], [1.0, 0.0]]])
    assert torch.allclose(WideSLN.settled(out, before, torch.tensor([[True, True]])), torch.tensor([0.2]))
    assert torch.allclose(WideSLN.settled(out, before, torch.tensor([[False, True]])), torch.tensor([1.0]))
    assert WideSLN.settled(out, None, torch.tensor([[True, True]])).tolist() == [0.0]   # loop 1 is never settled
    ponder = WideSLN(CFG)                            # 1 - (0.8), 1 - (0.8 * 0.5), 1 - (0.8 * 0.5 * 0.1)
    lam = torch.tensor([[0.2, 0.5, 0.9], [0.1, 0.1, 0.1]])
    stops, survive = [], torch.ones(2)
    for n in range(3):
        stop, survive = ponder.stop_after(lam[:, n], survive)
        stops.append(stop)
    assert torch.allclose(torch.stack(stops, 1)[0], torch.tensor([0.2, 0.6, 0.96]))
    assert ponder.halting_loops(lam).tolist() == [2, 3]           # 0.6 > 0.5; row 2 never passes: N
    settled = WideSLN(replace(CFG, halt="settled", threshold=0.99))
    assert settled.halting_loops(torch.tensor([[0.0, 0.995, 0.5], [0.0, 0.98, 0.991]])).tolist() == [2, 3]


def test_settling_loss_by_hand():
    settled = torch.tensor([[0.0, 0.9, 0.7], [0.0, 0.5, 0.99]])
    right = torch.tensor([[True, True, True], [False, True, False]])
    # row 1: loops 2 and 3 keep a right answer (moved 0.1 and 0.3); row 2: none -> (0.1 + 0.3) / 2
    assert torch.isclose(train_wide.settling_loss(settled, right), torch.tensor(0.2))
    assert train_wide.settling_loss(settled, torch.zeros(2, 3, dtype=torch.bool)) == 0


def test_settle_weight_scales_the_settling_loss_and_nothing_else(monkeypatch):
    prompts, answers = parity_ids()
    monkeypatch.setattr(train_wide, "settling_loss", lambda settled, right: torch.tensor(0.3))
    losses = []
    for weight in (0.0, 1.0, 2.0):
        torch.manual_seed(5)
        model = WideSLN(replace(CFG, halt="settled", threshold=0.99))
        cfg = replace(TINY, halt="settled", loop_weight=1.0, settle_weight=weight)
        losses.append(train_wide.wide_step(model, prompts, answers, cfg)[0].item())
    assert math.isclose(losses[1] - losses[0], 0.3, rel_tol=1e-4)
    assert math.isclose(losses[2] - losses[0], 0.6, rel_tol=1e-4)


def test_ponder_weight_trains_the_stop_probabilities_the_settled_rule_does_not_read():
    prompts, answers = parity_ids()
    grads = []
    for weight in (0.0, 1.0):
        torch.manual_seed(5)
        model = WideSLN(replace(CFG, halt="settled", threshold=0.99))
        cfg = replace(TINY, halt="settled", loop_weight=1.0, ponder_weight=weight)
        train_wide.wide_step(model, prompts, answers, cfg)[0].backward()
        grads.append((model.main_gate.bias.grad[2].item(), model.right.gate.bias.grad[-1].item()))
    assert grads[0] == (0.0, 0.0) and 0.0 not in grads[1]     # E's stop logit and G's score


def test_balancing_loss_has_no_gradient_on_the_stop_logit():
    model = wide(6)
    idx, at = batch(PROMPTS)
    _, _, balance, *_ = model(idx, at, 4)
    balance.backward()
    g_w, g_b = model.main_gate.weight.grad, model.main_gate.bias.grad
    assert g_w[:2].abs().sum() > 0 and g_b[:2].abs().sum() > 0    # it does route
    assert g_w[2].abs().sum() == 0 and g_b[2] == 0                # and never moves E's stop logit


@pytest.mark.parametrize("halt,kind", [("ponder", "E"), ("ponder", "G"), ("settled", "E"), ("settled", "G")])
def test_evaluation_halts_where_the_training_forward_says(halt, kind):
    torch.manual_seed(0)
    model = WideSLN(replace(CFG, halt=halt, threshold=0.9 if halt == "settled" else 0.5), kind).eval()
    with torch.no_grad():                            # small weights: rows that halt at different loops
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.1)
        model.main_gate.bias[2] = model.right.gate.bias[-1] = 0.0
    idx, at = batch(PROMPTS)
    with torch.no_grad():
        logits, lam, _, _, rest = model(idx, at, CFG.max_loops)
    want = model.halting_loops(model.rule_stops(lam, rest)[0 if kind == "E" else 1])
    got, rows = model.think(idx, at)[:2], torch.arange(len(PROMPTS))
    assert torch.equal(got[1], want) and len(set(want.tolist())) > 1, want
    # and the answer evaluation reads is the training forward's at that loop
    assert torch.allclose(got[0], logits[want - 1, rows], atol=1e-5)


def test_settled_run_trains_and_e_equals_g(tmp_path):
    results = train_wide.main(replace(TINY, max_iters=2, halt="settled", loop_weight=1.0, skip_loops=2,
                                      out_dir=str(tmp_path)))
    assert results["E_ood"] == results["G_ood"] and results["E_loops_ood"] == results["G_loops_ood"]
    e, g = (load_system(str(tmp_path / "ckpt.pt"), k, threshold=0.5) for k in "EG")
    assert e.cfg.halt == "settled" and e.threshold == g.threshold == 0.99     # its own rule, not the lobes'
    d_e, d_g = e.answer(PROMPTS, 3), g.answer(PROMPTS, 3)
    assert d_e.final == d_g.final and d_e.loops == d_g.loops and all(1 <= n <= TINY.max_loops for n in d_e.loops)
