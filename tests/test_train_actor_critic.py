"""Actor-critic (train_actor_critic.py, Alg 2, eq 8, TD, §5.4, §5.5): the PPO ratio starts at 1, the
clipped gradient is the policy gradient there, masks, the baseline, games, and smoke runs with resume."""
import math

import pytest
import torch

import train_actor_critic as ac
from data.tokenizer import PAD
from games.tictactoe import moves
from lobes import Lobe, LobeConfig, prompt_ids
from losses import critic_loss
from sln import System, save_system

TINY_GAMES = dict(task="tictactoe", device="cpu", n_layer=1, n_head=2, n_embd=32, warm_iters=4, iters=2,
                  batch_size=6, eval_interval=1, self_play_max=1, kl_coef=0.1)
TINY_TASKS = dict(task="addition", device="cpu", iters=2, batch_size=2, group=2, idl_limit=2, n_eval=4,
                  eval_interval=1, max_new_tokens=4, self_play_max=1, kl_coef=0.1, satisfied=1.0)


def rollout(lobe, cfg, advantages=(1.0, -0.5, 2.0)):
    """Three sampled answers to prompts of different lengths, as a Rollout."""
    torch.manual_seed(0)
    ctx = [prompt_ids("12+3"), prompt_ids("4"), prompt_ids("567+89")]
    actions, _ = ac.sample(lobe, ctx, 5, cfg.temperature)
    return ac.make_rollout(lobe, ctx, actions, torch.tensor(advantages), cfg)


def test_ppo_ratio_is_exactly_one_on_the_first_minibatch_and_moves_after_an_update(sharp_lobe):
    cfg = ac.Config(temperature=0.7, ppo_epochs=1)
    ro = rollout(sharp_lobe, cfg)
    logp, _, mask = ac.policy_logprobs(sharp_lobe, ro.contexts, ro.actions, cfg.temperature)
    assert torch.equal(torch.exp(logp - ro.old_logp)[mask > 0], torch.ones(int(mask.sum())))
    opt = torch.optim.SGD(sharp_lobe.parameters(), lr=0.1)
    stats = ac.actor_update(sharp_lobe, opt, None, ro, cfg)
    assert stats["ratio"] == 1.0
    _, ratio, _ = ac.ppo_step(sharp_lobe, None, ro, cfg)
    assert abs(ratio.item() - 1.0) > 1e-4                      # the update changed the policy


def test_clipped_objective_gradient_equals_vanilla_policy_gradient_at_ratio_one(sharp_lobe):
    cfg = ac.Config(temperature=1.0)
    ro = rollout(sharp_lobe, cfg)
    params = [p for n, p in sharp_lobe.named_parameters() if not n.startswith(("score_head", "judge_weight"))]  # LM only
    loss, _, _ = ac.ppo_step(sharp_lobe, None, ro, cfg)
    g_ppo = torch.autograd.grad(loss, params)
    logp, _, mask = ac.policy_logprobs(sharp_lobe, ro.contexts, ro.actions, cfg.temperature)
    vanilla = -(ro.advantages[:, None] * logp * mask).sum() / mask.sum()   # -E[A grad log pi]
    g_pg = torch.autograd.grad(vanilla, params)
    for a, b in zip(g_ppo, g_pg):
        torch.testing.assert_close(a, b)


def test_logprobs_line_up_with_generation_and_mask_only_answer_tokens(sharp_lobe):
    torch.manual_seed(1)
    ctx = [prompt_ids("12+3"), prompt_ids("4")]
    tokens, gen_logp = sharp_lobe.generate(ctx, 4, temperature=0.8)
    actions = [[t for t in row if t != PAD] for row in tokens.tolist()]
    logp, _, mask = ac.policy_logprobs(sharp_lobe, ctx, actions, 0.8)
    for i, (c, a) in enumerate(zip(ctx, actions)):
        assert mask[i].nonzero().flatten().tolist() == list(range(len(c) - 1, len(c) - 1 + len(a)))
        torch.testing.assert_close(logp[i, len(c) - 1:len(c) - 1 + len(a)], gen_logp[i, :len(a)], atol=1e-5, rtol=0)


def test_kl_to_the_reference_is_zero_for_the_same_policy_and_positive_after_an_update(sharp_lobe):
    cfg = ac.Config(temperature=1.0, kl_coef=1.0, ppo_epochs=1)
    ref = ac.frozen(sharp_lobe)
    ro = rollout(sharp_lobe, cfg)
    _, _, kl = ac.ppo_step(sharp_lobe, ref, ro, cfg)
    assert abs(kl.item()) < 1e-6
    ac.actor_update(sharp_lobe, torch.optim.SGD(sharp_lobe.parameters(), lr=0.1), ref, ro, cfg)
    assert ac.ppo_step(sharp_lobe, ref, ro, cfg)[2].item() > 1e-6


def test_move_scores_win_draw_illegal_and_the_critic_for_the_rest(tiny_lobe):
    right = tiny_lobe
    boards = ["xx.oo....", "xoxxoo.x.", "xx.oo....", "x........", ".oooxxxxo"]
    texts = ["3", "7", "1", "5", "1"]    # X completes a row; a legal move; an occupied cell; legal; the draw
    s = ac.move_scores(right, boards, texts)
    assert s[0] == 1.0 and s[2] == 0.0 and s[4] == 0.5
    p = torch.sigmoid(right.score([ac.board_ids("x...o....")]))[0]
    assert math.isclose(s[3].item(), 1 - p.item(), rel_tol=1e-5)
    assert 0 < s[1] < 1


def test_td_targets_give_returns_and_eq9_weights_per_seat():
    cfg = ac.Config(gamma=1.0, gae_lambda=1.0, pavlov_lambda=float("inf"))
    h = [(0, "b0", [1], [2]), (1, "b1", None, None), (0, "b2", [1], [2])]
    rows = ac.td_targets([h], [(1, -1)], torch.tensor([0.2, 0.0, 0.6]), cfg)
    x = [(e[1], a, g, w) for e, a, g, w in rows]
    # X moved twice and won: returns 1, advantages 1 - V; eq 9 with lambda inf: all weight on the last move
    assert [round(v, 5) for v in (x[0][1], x[0][2], x[1][1], x[1][2])] == [0.8, 1.0, 0.4, 1.0]
    assert [w for *_, w in x] == [0.0, 2.0, 1.0]


def test_play_games_forfeits_illegal_moves_and_ends_every_game(tiny_lobe):
    cfg = ac.Config(temperature=1.0)
    torch.manual_seed(0)
    history, outcome = ac.play_games(tiny_lobe, 6, ["optimal", "random", "self"], cfg, ac.random.Random(0))
    for g, (h, out) in enumerate(zip(history, outcome)):
        assert out in [(1, -1), (-1, 1), (0, 0)]
        seat, board, ctx, action = h[-1]
        if ctx is not None and ac.read_move(ac.decode_answer(action)) not in moves(board):
            assert out[seat] == -1                                  # the untrained lobe forfeits
        lobe_seats = {e[0] for e in h if e[2] is not None}
        assert lobe_seats <= ({0, 1} if g // 2 % 3 == 2 else {g % 2})


def test_smoke_games_run_and_exact_resume(tmp_path):
    a = ac.main(ac.Config(out_dir=str(tmp_path / "a"), **TINY_GAMES))
    assert [r["iter"] for r in a] == [0, 1, 2] and a[1]["ratio"] == 1.0
    assert all(0 <= r["loss_X"] <= 1 and 0 <= r["loss_O"] <= 1 for r in a)
    assert (tmp_path / "a" / "ckpt.pt").exists() and (tmp_path / "a" / "warm" / "ckpt.pt").exists()
    ac.main(ac.Config(out_dir=str(tmp_path / "b"), **{**TINY_GAMES, "iters": 1}))
    b = ac.main(ac.Config(out_dir=str(tmp_path / "b"), init_from="resume", **TINY_GAMES))
    assert [r["iter"] for r in b] == [0, 1, 2]
    assert b[2]["loss_left"] == a[2]["loss_left"] and b[2]["reward"] == a[2]["reward"]


@pytest.mark.parametrize("extra", [dict(reward="checker", pavlov_lambda=0.0),
                                   dict(reward="critic", pavlov_lambda=0.3, reward_transform="logitD")])
def test_smoke_tasks_run_and_resume(tmp_path, extra):
    torch.manual_seed(0)
    tiny = LobeConfig(n_layer=1, n_head=2, n_embd=32)
    save_system(str(tmp_path / "sft.pt"), System("F", Lobe(tiny), Lobe(tiny)), task="addition")
    cfg = dict(TINY_TASKS, sft_ckpt=str(tmp_path / "sft.pt"), **extra)
    rows = ac.main(ac.Config(out_dir=str(tmp_path), **cfg))
    assert [r["iter"] for r in rows] == [0, 1, 2] and rows[1]["ratio"] == 1.0
    assert rows[1]["self_play"] == 1                     # satisfied=1.0 is never reached: the cap stops it
    more = ac.main(ac.Config(out_dir=str(tmp_path), init_from="resume", **{**cfg, "iters": 3}))
    assert [r["iter"] for r in more] == [0, 1, 2, 3]


def test_task_critic_loss_plain_is_eq7_on_whole_answers(tiny_lobe):
    # one prompt, one attempt, lambda 0: (BCE(y_true, 1) + BCE(attempt, 0)) / 2 on whole sequences
    cfg = ac.Config(reward="critic", pavlov_lambda=0.0)
    d = ac.lateralized(tiny_lobe, tiny_lobe, ["12+3"], idl_limit=1, max_new_tokens=3)
    rows = ac.attempt_rows(d)
    loss = ac.task_critic_loss(tiny_lobe, None, d, rows, [("12+3", "15")], cfg)
    x = prompt_ids("12+3")
    s = tiny_lobe.score([x + ac.answer_ids("15"), x + ac.answer_ids(d.attempts[0][0])])
    want = (critic_loss(s[:1], torch.ones(1)) + critic_loss(s[1:], torch.zeros(1))) / 2
    torch.testing.assert_close(loss, want)


def test_bad_options_are_one_line_usage_errors():
    for bad in (dict(reward="thumbs"), dict(opponent="optimal,minimax"), dict(gae_lambda=1.5),
                dict(reward_transform="exp")):
        with pytest.raises(ac.UsageError):
            ac.check(ac.Config(**bad))
