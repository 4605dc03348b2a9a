"""Actor-critic on games (train_games.py, Alg 2 with TD/GAE, §5.4, eq 9): the critic's move
scores, TD targets and eq 9 weights per seat, forfeits, bad options, and a smoke run with exact
resume."""
import math
import random
import sys

import pytest
import torch

import train_games as tg
from common import UsageError
from data.tokenizer import decode_answer
from games import checkers as ck
from games import gridworld as gw
from games import tictactoe as ttt
from games.tictactoe import moves, read_move

TINY_GAMES = dict(device="cpu", n_layer=1, n_head=2, n_embd=32, warm_iters=4, max_iters=2,
                  batch_size=6, eval_interval=1, self_play_max=1, kl_coef=0.1)


def test_move_scores_win_draw_illegal_and_the_critic_for_the_rest(tiny_lobe):
    right = tiny_lobe
    boards = ["xx.oo....", "xoxxoo.x.", "xx.oo....", "x........", ".oooxxxxo"]
    # X completes a row; a legal move; an occupied cell; legal; the draw
    texts = [ttt.learner_text(b, m) for b, m in zip(boards, [2, 6, 0, 4, 0])]  # the lobe's frame
    s = tg.move_scores(ttt, right, boards, texts)
    assert s[0] == 1.0 and s[2] == 0.0 and s[4] == 0.5
    p = torch.sigmoid(right.score([tg.board_ids(ttt, "x...o....")]))[0]
    assert math.isclose(s[3].item(), 1 - p.item(), rel_tol=1e-5)
    assert 0 < s[1] < 1


def test_move_values_are_one_td_step_results_undiscounted(tiny_lobe):
    right = tiny_lobe

    def v(game, board):
        return 2 * torch.sigmoid(right.score([tg.board_ids(game, board)]))[0].item() - 1
    # X completes a row; goes on with O to move; an occupied cell; the last cell draws
    boards = ["xx.oo....", "xx.oo....", "xx.oo....", ".oooxxxxo"]
    texts = [ttt.learner_text(b, m) for b, m in zip(boards, [2, 5, 0, 0])]
    q = tg.move_values(ttt, right, boards, texts, gamma=0.5)
    assert q[0] == 1.0 and q[2] == -1.0 and q[3] == 0.0       # results are not discounted
    assert math.isclose(q[1].item(), -0.5 * v(ttt, "xx.oox..."), rel_tol=1e-5)     # negamax
    # one player: + gamma V(next); the goal is +1, a hole -1
    q = tg.move_values(gw, right, ["HA.\n.G."] * 3, ["d", "l", "r"], gamma=0.9)
    assert q[0] == 1.0 and q[1] == -1.0
    assert math.isclose(q[2].item(), 0.9 * v(gw, "H+A\n.G."), rel_tol=1e-5)


def test_board_scores_run_each_class_of_positions_once(tiny_lobe):
    # a position, a turned image of it (the same prompt up to symmetry) and another position
    boards = ["x........", "..x......", "x........", "....x...."]
    assert tg.board_ids(ttt, boards[0]) == tg.board_ids(ttt, boards[1])
    rows = []
    hook = tiny_lobe.wte.register_forward_hook(lambda m, i, o: rows.append(i[0].size(0)))
    got = tg.board_scores(ttt, tiny_lobe, boards)
    hook.remove()
    assert rows == [2]                                          # one forward pass, two prompts
    want = tiny_lobe.score([tg.board_ids(ttt, b) for b in boards])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_every_move_play_backs_the_critic_up_to_the_best_move(tiny_cfg):
    from lobes import Lobe
    torch.manual_seed(0)
    left, right = Lobe(tiny_cfg), Lobe(tiny_cfg)
    cfg = tg.Config(kl_coef=0.0)                   # tic-tac-toe: self_play every, target best
    boards = ["xx.oo....", ".oooxxxxo", "xx.oo...."]       # a win among X's moves; a forced draw
    s = right.score([tg.board_ids(ttt, b) for b in boards[:2]]).detach()
    p = torch.sigmoid(s)                                    # BCE toward 1 and toward 1/2
    by_hand = (-torch.log(p[0]) - 0.5 * torch.log(p[1]) - 0.5 * torch.log(1 - p[1])) / 2
    sgd = lambda m: torch.optim.SGD(m.parameters(), lr=0.1)
    rounds, loss = tg.every_move_play(ttt, left, right, None, sgd(left), sgd(right), boards, cfg)
    assert rounds == 1 and math.isclose(loss, by_hand.item(), rel_tol=1e-5)


def test_td_targets_are_negamax_over_plies_with_eq9_weights_per_seat():
    # X moves, O moves, X moves and wins; V is each mover's expected result
    h = [tg.Turn(0, "b0", [1], [2]), tg.Turn(1, "b1"), tg.Turn(0, "b2", [1], [2])]
    v = torch.tensor([0.2, 0.0, 0.6])
    mc = tg.td_targets([h], [(1, -1)], v, tg.Config(gae_lambda=1.0, pavlov_lambda=float("inf")))
    # lambda 1: the return is each mover's result (+1, -1, +1), the advantage that minus V
    assert [t.turn.board for t in mc] == ["b0", "b1", "b2"]
    assert [round(t.ret, 5) for t in mc] == [1.0, -1.0, 1.0]
    assert [round(t.advantage, 5) for t in mc] == [0.8, -1.0, 0.4]
    # eq 9 with lambda inf: per seat, all weight on that seat's last move (X: 0, 2; O: 1)
    assert [t.weight for t in mc] == [0.0, 1.0, 2.0]
    # lambda 0: delta = r - V(next) - V(now): -0.0 - 0.2, -0.6 - 0.0, 1 - 0 - 0.6
    td = tg.td_targets([h], [(1, -1)], v, tg.Config(gae_lambda=0.0))
    assert [round(t.advantage, 5) for t in td] == [-0.2, -0.6, 0.4]
    assert [round(t.ret, 5) for t in td] == [0.0, -0.6, 1.0]
    assert [t.weight for t in td] == [1.0, 1.0, 1.0]


def test_the_learner_sees_the_board_from_the_mover_side_up_to_symmetry():
    from games.tictactoe import mover_view
    assert mover_view("x........") == "o........"          # O to move: its marks become x
    assert mover_view("xo.......") == "xo......."          # X to move: as it is
    # O to move: its marks as x, then the least of the 8 turned and mirrored images
    assert ttt.learner_prompt("xx.o.....") == "...|..o|.xo"
    for image in ("xx.|o..|...", ".xx..o...", "...o..xx.", "xo.x....."):   # rendered, mirrored,
        assert ttt.learner_prompt(image) == "...|..o|.xo"                   # turned: one prompt
    assert len({ttt.learner_frame(b)[0] for b in ttt.reachable_positions()}) == 765
    b = "xx.o....."
    assert [ttt.board_move(b, t) for t in ttt.move_texts(b)] == [str(m + 1) for m in moves(b)]


def test_play_games_forfeits_illegal_moves_and_ends_every_game(tiny_lobe):
    cfg = tg.Config(temperature=1.0)
    torch.manual_seed(0)
    history, outcome = tg.play_games(ttt, tiny_lobe, 6, ["optimal", "random", "self"], cfg,
                                     random.Random(0))
    for g, (h, out) in enumerate(zip(history, outcome)):
        assert out in [(1, -1), (-1, 1), (0, 0)]
        last = h[-1]
        lobe_moved = last.context is not None
        said = decode_answer(last.action) if lobe_moved else ""
        if lobe_moved and read_move(ttt.board_move(last.board, said)) not in moves(last.board):
            assert out[last.seat] == -1                             # the untrained lobe forfeits
        lobe_seats = {t.seat for t in h if t.context is not None}
        assert lobe_seats <= ({0, 1} if g // 2 % 3 == 2 else {g % 2})


def test_openings_start_games_after_random_moves(tiny_lobe):
    cfg = tg.Config(openings=4)
    history, _ = tg.play_games(ttt, tiny_lobe, 12, ["random"], cfg, random.Random(0))
    marks = [9 - h[0].board.count(".") for h in history]
    assert max(marks) <= 4 and len(set(marks)) > 1       # 0..4 random moves before play
    with pytest.raises(UsageError):
        tg.Config(openings=5)                              # five moves can end a game


def test_critic_moves_play_the_first_move_the_critic_accepts(tiny_lobe):
    boards = ["xx.oo....", "x...o...."]
    texts, attempts = tg.critic_moves(ttt, tiny_lobe, tiny_lobe, boards, idl_limit=3,
                                      threshold=0.0)
    assert attempts == [1, 1]                            # threshold 0 accepts the greedy move
    greedy = tiny_lobe.answer([ttt.learner_prompt(b) for b in boards], ttt.MOVE_TOKENS)
    assert texts == greedy
    texts2, attempts = tg.critic_moves(ttt, tiny_lobe, tiny_lobe, boards, idl_limit=3,
                                       threshold=1.1)
    assert attempts == [3, 3]                            # never satisfied: every attempt, best kept
    again, _ = tg.critic_moves(ttt, tiny_lobe, tiny_lobe, boards, idl_limit=3, threshold=1.1)
    assert again == texts2                               # seeded: a board always gets one move


def test_smoke_games_run_and_exact_resume(tmp_path, capsys, monkeypatch):
    a = tg.main(tg.Config(out_dir=str(tmp_path / "a"), **TINY_GAMES))
    # the run ends with where A's exact losses come from: its blunders sum to the last row's
    printed = capsys.readouterr().out
    for mark in "XO":
        assert f"as {mark}: " in printed
        assert f"reached in {a[-1][f'loss_{mark}']:.2%} of games" in printed
    assert [r["iter"] for r in a] == [0, 1, 2] and a[1]["ratio"] == 1.0
    assert all(0 <= r["loss_X"] <= 1 and 0 <= r["loss_O"] <= 1 for r in a)
    assert (tmp_path / "a" / "ckpt.pt").exists() and (tmp_path / "a" / "warm" / "ckpt.pt").exists()
    assert torch.load(tmp_path / "a" / "ckpt.pt", weights_only=False)["board_view"] == "symmetric"
    assert {"F_loss_X", "F_loss_O", "F_attempts"} <= set(a[-1])          # A and F, exactly
    tg.main(tg.Config(out_dir=str(tmp_path / "b"), **{**TINY_GAMES, "max_iters": 1}))
    b = tg.main(tg.Config(out_dir=str(tmp_path / "b"), init_from="resume", **TINY_GAMES))
    assert [r["iter"] for r in b] == [0, 1, 2]
    assert b[2]["loss_left"] == a[2]["loss_left"] and b[2]["reward"] == a[2]["reward"]
    # a warm start made with other settings is not silently reused
    for other in (dict(seed=1), dict(warm_moves="optimal")):
        with pytest.raises(UsageError, match="was made with"):
            tg.main(tg.Config(out_dir=str(tmp_path / "a"), **{**TINY_GAMES, **other}))
    monkeypatch.setattr(ttt, "VIEW", "rows")       # nor lobes that learned another board view
    with pytest.raises(UsageError, match="read the board as 'symmetric'"):
        tg.main(tg.Config(out_dir=str(tmp_path / "a"), **TINY_GAMES))


def test_each_game_fills_in_its_own_budget_and_discount():
    ttt_cfg, gw_cfg = tg.Config(), tg.Config(game="gridworld")
    assert (ttt_cfg.max_iters, ttt_cfg.batch_size, ttt_cfg.gamma) == (1500, 64, 1.0)
    assert (gw_cfg.max_iters, gw_cfg.batch_size, gw_cfg.gamma) == (300, 16, 0.9)
    assert gw_cfg.out_dir == "out/gridworld"
    assert (ttt_cfg.self_play, ttt_cfg.critic_target) == ("every", "best")
    assert (gw_cfg.self_play, gw_cfg.critic_target) == ("sampled", "return")
    assert tg.Config(game="gridworld", gamma=0.5, batch_size=3).batch_size == 3     # given: kept
    # the critic's warm start: checkers' default, none for the others, and given: kept
    assert (tg.Config(game="checkers").warm_critic, ttt_cfg.warm_critic) == ("random", "none")
    assert tg.Config(game="checkers", warm_critic="none").warm_critic == "none"
    # F's threshold: checkers plays the best of its proposals unless one wins at once
    assert [tg.Config(game=g).threshold for g in ("checkers", "gridworld")] == [1.0, 0.5]
    assert tg.Config(game="checkers", threshold=0.7).threshold == 0.7


def test_bad_options_are_one_line_usage_errors():
    for bad in (dict(opponent="optimal,minimax"), dict(gae_lambda=1.5),
                dict(reward_transform="exp"), dict(game="go"), dict(warm_moves="best"),
                dict(self_play="all"), dict(critic_target="max"),
                dict(self_play="sampled", critic_target="best"),          # best values every move
                dict(self_play="every", reward_transform="logD"),        # every reads D itself
                dict(warm_critic="best"),
                dict(warm_critic="random")):               # tic-tac-toe has no warm_values
        with pytest.raises(UsageError):
            tg.Config(**bad)                  # checked as it is built


# -----------------------------------------------------------------------------
# Gridworld: the learner's interface (games/gridworld.py) and a run

def test_gridworld_ego_prompt_is_the_window_around_the_agent_and_the_goals_direction():
    board = "A.#\n.H.\n..G"
    assert gw.ego_prompt(board) == "#####|#####|##A.#|##.H.|##..G dr"
    # the agent in the middle of an 8x8 map reads text of the same shape as on a 3x3 one
    big = gw.make_maps("ood", 1)[0]
    assert len(gw.ego_prompt(big)) == len(gw.ego_prompt(board)) == 5 * 6 - 1 + 3


def test_gridworld_moves_results_and_one_player_td():
    board = "A..\n.#.\n..G"                        # two shortest paths: right first or down first
    assert gw.move_texts(board) == ["d", "r"]       # up and left leave the map
    assert gw.move_texts(board, optimal=True) == ["d", "r"]
    assert gw.move_texts("A.\nHH\n.G", optimal=True) == []         # holes cut it off the goal
    assert gw.result(board, "r") == ("+A.\n.#.\n..G", None)       # on, leaving a trail
    assert gw.move_texts("+A.\n.#.\n..G", optimal=True) == ["r"]   # the trail is floor
    game = gw.Gridworld(grid=board)
    for move in ("right", "left", "right", "left"):      # play.py's walker leaves the same trail
        board = gw.result(board, move)[0]
        game.play(move)
        assert game.render() == board
    # a cell left once is '+', left again '*'; the agent on its trail is 'a' (trail under it), so
    # the text alone says what the cell it stands on becomes when it leaves: '*'
    assert board == "a*.\n.#.\n..G" and gw.parse_map(board) == (["+*.", ".#.", "..G"], (0, 0))
    assert gw.result(board, "r")[0] == "*a.\n.#.\n..G"
    assert gw.ego_prompt(board) == "#####|#####|##A*.|##.#.|##..G dr"
    assert gw.result(board, "u") == (None, 0.0)                    # off the map: a forfeit
    assert gw.result(board, "hello") == (None, 0.0)
    assert gw.result("AG", "r")[1] == 1.0 and gw.result("AH", "right")[1] == 0.0
    # one seat: delta = r + gamma V(next) - V(now); gamma 0.5, lambda 0, V = 0.2 then 0.4, goal
    h = [tg.Turn(0, "b0", [1], [2]), tg.Turn(0, "b1", [1], [2])]
    td = tg.td_targets([h], [(1,)], torch.tensor([0.2, 0.4]), tg.Config(gamma=0.5,
                       gae_lambda=0.0), players=1)
    assert [round(t.advantage, 5) for t in td] == [0.0, 0.6]        # 0.5 * 0.4 - 0.2; 1 - 0.4
    assert [round(t.ret, 5) for t in td] == [0.2, 1.0]


def test_gridworld_training_walks_start_part_way_with_their_trail_laid():
    boards = gw.starts(40, random.Random(0), openings=2)
    assert boards == gw.starts(40, random.Random(0), openings=2)     # reproducible from the rng
    for b in boards:
        rows, (r, c) = gw.parse_map(b)
        assert 4 <= len(rows) <= 5 and rows[r][c] in ".+"          # on floor: the walk goes on
        assert sum(row.count("+") + row.count("*") for row in rows) <= gw.EXPLORE * len(rows) ** 2
    laid = [sum(b.count(m) for m in "+*a") for b in boards]
    assert min(laid) == 0 and max(laid) >= 5                          # 0..EXPLORE x cells moves


def test_gridworld_a_step_back_onto_the_trail_costs_and_the_returns_stay_in_range(tiny_lobe):
    board = "+A.\n...\n.HG"                                       # the walker came from the left
    assert gw.move_reward(board, "l") == -gw.REVISIT_COST == -0.1  # back onto its trail
    assert gw.move_reward(board, "r") == gw.move_reward(board, "u") == 0.0   # fresh; off the map
    assert gw.move_reward("*a.\n...\n.HG", "l") == -0.2       # a cell left twice costs twice
    # r_t = move_reward(board, move) and the last move adds the outcome: gamma 0.5, lambda 1,
    # V = 0, rewards -0.1 then +1: returns -0.1 + 0.5 * 1 = 0.4 and 1
    h = [tg.Turn(0, "b0", [1], [2]), tg.Turn(0, "b1", [1], [2])]
    earned = {"b0": -0.1, "b1": 0.0}
    td = tg.td_targets([h], [(1,)], torch.zeros(2), tg.Config(gamma=0.5, gae_lambda=1.0),
                       players=1, move_reward=lambda board, text: earned[board])
    assert [round(t.ret, 5) for t in td] == [0.4, 1.0]
    # costs before a loss would take the return below V's range: clipped at -1, as BCE needs
    td = tg.td_targets([h], [(-1,)], torch.zeros(2), tg.Config(gamma=1.0, gae_lambda=1.0),
                       players=1, move_reward=lambda board, text: -0.5)
    assert [round(t.ret, 5) for t in td] == [-1.0, -1.0]                      # -2.0, -1.5
    # the critic's one-step value of a move adds the cost: r + gamma V(next)
    q = tg.move_values(gw, tiny_lobe, [board, board], ["l", "r"], gamma=0.9)
    v = 2 * torch.sigmoid(tiny_lobe.score([tg.board_ids(gw, gw.result(board, m)[0])
                                           for m in ("l", "r")])) - 1
    assert torch.allclose(q, torch.tensor([-0.1, 0.0]) + 0.9 * v, atol=1e-5)


def test_sampled_play_advantage_is_half_the_discounted_td_error(sharp_lobe, monkeypatch):
    # §5.4 sampled, gridworld (gamma 0.9): advantage = D(r + gamma V(next)) - D(V(now)), half the
    # TD error, with V discounted as the critic learned it; an illegal move's Q is -1
    board, texts = "+A.\n...\n.HG", ["l", "r", "d", "u"]    # trail (cost 0.1), fresh, off the map
    seen = {}
    monkeypatch.setattr(tg, "speak", lambda *a: (texts, [[0]] * 4, None))
    monkeypatch.setattr(tg, "make_rollout", lambda left, ctx, acts, adv, cfg: seen.update(adv=adv))
    monkeypatch.setattr(tg, "actor_update", lambda *a: None)
    cfg = tg.Config(game="gridworld", satisfied=1.0)             # never satisfied: one round
    assert cfg.gamma == 0.9
    assert tg.sampled_play(gw, sharp_lobe, sharp_lobe, None, None, [board] * 4, cfg) == 1

    def v(b):
        return 2 * torch.sigmoid(sharp_lobe.score([tg.board_ids(gw, b)]))[0].item() - 1
    nxt = ["a+.\n...\n.HG", "++A\n...\n.HG", "++.\n.A.\n.HG"]
    assert [gw.result(board, t)[0] for t in texts] == nxt + [None]
    q = [-0.1 + 0.9 * v(nxt[0]), 0.9 * v(nxt[1]), 0.9 * v(nxt[2]), -1.0]
    assert seen["adv"].tolist() == pytest.approx([(qi - v(board)) / 2 for qi in q], abs=1e-5)
    assert min(abs(0.1 * v(b)) for b in nxt) > 1e-3       # undiscounted would fail the line above


def test_gridworld_walks_end_at_goal_hole_forfeit_or_the_limit(tiny_lobe):
    starts = ["AG", "AH", "A.", "A.\n.."]
    scripted = {"AG": "r", "AH": "r", "A.": "u", "A.\n..": "r", "+A\n..": "l", "a+\n..": "r",
                "*a\n..": "l"}
    history, outcome = gw.play_batch(4, None, lambda bs: [(scripted[b], b) for b in bs], None,
                                     starts)
    assert outcome == [(1,), (-1,), (-1,), (gw.RAN_OUT,)]  # goal, hole, off the map, out of moves
    assert [len(h) for h in history] == [1, 1, 1, 4]     # as many moves as the map has cells
    # the critic scores a one-player move by the position it leads to, not 1 minus it
    s = tg.move_scores(gw, tiny_lobe, ["A..\n..G", "AG", "AH"], ["r", "r", "r"])
    p = torch.sigmoid(tiny_lobe.score([tg.board_ids(gw, "+A.\n..G")]))[0]
    assert math.isclose(s[0].item(), p.item(), rel_tol=1e-5) and s[1:].tolist() == [1.0, 0.0]


def test_gridworld_evaluate_splits_walks_into_success_illegal_and_ran_out(monkeypatch):
    monkeypatch.setattr(gw, "EVAL_MAPS", 5)
    best = gw.evaluate(lambda boards: [gw.solve(b)[0][0] for b in boards])
    assert best["success_test"] == best["success_ood"] == 1.0 and best["path_ood"] == 1.0
    assert gw.evaluate(lambda boards: ["jump"] * len(boards))["illegal_test"] == 1.0

    def pace(board):           # back onto the trail if there is one, else a safe step off the start
        rows, (r, c) = gw.parse_map(board)
        moves = [(m, gw.MOVES[gw.ALIASES[m]]) for m in gw.move_texts(board)]
        back = [m for m, (dr, dc) in moves if rows[r + dr][c + dc] in gw.TRAIL]
        return (back or [m for m, _ in moves if gw.result(board, m)[1] is None])[0]
    r = gw.evaluate(lambda boards: [pace(b) for b in boards])
    assert r["ran_out_test"] == r["ran_out_ood"] == 1.0 and r["success_test"] == 0.0


def test_smoke_gridworld_run(tmp_path, monkeypatch):
    monkeypatch.setattr(gw, "EVAL_MAPS", 6)
    rows = tg.main(tg.Config(game="gridworld", out_dir=str(tmp_path), self_play="every",
                             critic_target="best", **TINY_GAMES))      # one player: + gamma V
    assert [r["iter"] for r in rows] == [0, 1, 2] and rows[-1]["loss_best"] > 0
    assert all(0 <= r[k] <= 1 for r in rows for k in ("success_test", "F_success_ood"))
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    assert ckpt["board_view"] == gw.VIEW == "ego 5x5, trail +*"   # play.py checks it
    with pytest.raises(UsageError, match="trained on gridworld"):   # not a tic-tac-toe one
        tg.main(tg.Config(out_dir=str(tmp_path), **TINY_GAMES))


def checkers_board(pieces, to_move=0, quiet=0):
    """A learner's checkers board from {square number: piece}."""
    cells = ["."] * 64
    for n, piece in pieces.items():
        cells[ck.square_index(n)] = piece
    game = ck.Checkers().reset(board="".join(cells), to_move=to_move)
    game.quiet = quiet
    return ck.state(game)


def test_checkers_learner_reads_its_side_of_the_board_and_picks_a_lettered_move():
    start = ck.starts(1, random.Random(0), 0)[0]
    assert ck.learner_prompt(start) == ("xxxx|xxxx|xxxx|....|....|oooo|oooo|oooo "
                                        "a9-13 b9-14 c10-14 d10-15 e11-15 f11-16 g12-16")
    # white to move: its man on 22 and king on 30, black's man on 9, worked out by hand with
    # the board turned (square n is 33 - n): 22 -> 11, 30 -> 3, 9 -> 24
    board = checkers_board({22: "w", 30: "W", 9: "b"}, to_move=1)
    assert ck.learner_prompt(board) == ("..X.|....|..x.|....|....|...o|....|.... "
                                        "a3-7 b3-8 c11-15 d11-16")
    assert ck.move_texts(board) == ["a", "b", "c", "d"]
    nxt, final = ck.result(board, "c")                      # 22-18 on the board itself
    assert final is None and ck.restore(nxt).board[ck.square_index(18)] == "w"
    assert ck.board_move(board, "c") == "22-18" and ck.board_move(board, "e") == "e"
    assert ck.result(board, " c\n")[0] == nxt
    assert [ck.result(board, t) for t in ("e", "11-15", "cd")] == [(None, 0.0)] * 3
    # a jump that takes the last white piece wins; a quiet ply that reaches the clock draws
    last = checkers_board({14: "b", 18: "w"})
    assert ck.learner_prompt(last).endswith(" a14x23") and ck.result(last, "a")[1] == 1.0
    assert ck.result(checkers_board({1: "b", 32: "w"}, quiet=79), "b")[1] == 0.5   # 1-6


def test_checkers_games_end_and_forfeit_unlisted_moves():
    def first(boards):                                      # the first listed move
        return [("a", b) for b in boards]
    history, outcome = ck.play_batch(4, ["random", "self"], first, random.Random(0),
                                     ck.starts(4, random.Random(0), 0))
    assert all(o[0] == -o[1] for o in outcome)             # a win is a loss for the other seat
    assert [h[0][0] for h in history] == [0, 0, 0, 0]      # black moves first in every game
    assert all(note is None for seat, _, note in history[0] if seat == 1)   # random played white
    assert all(note is not None for h in history[2:] for _, _, note in h)   # self: both seats
    history, outcome = ck.play_batch(2, ["random"], lambda bs: [("11-15", b) for b in bs],
                                     random.Random(0), ck.starts(2, random.Random(0), 0))
    assert outcome == [(-1, 1), (1, -1)] and [len(h) for h in history] == [1, 2]


@pytest.mark.parametrize("name", ["checkers", "chess"])
def test_smoke_listed_move_game_run(name, tmp_path, monkeypatch):
    if name == "chess":
        pytest.importorskip("chess")                               # python-chess is optional
    game = tg.game_of(tg.Config(game=name))
    monkeypatch.setattr(game, "EVAL_GAMES", 2)
    if name == "chess":
        monkeypatch.setattr(game, "MAX_PLIES", 8)                  # short games
    cfg = dict(TINY_GAMES, game=name, out_dir=str(tmp_path), warm_critic="random")
    rows = tg.main(tg.Config(**cfg))
    assert [r["iter"] for r in rows] == [0, 1, 2]
    assert all(0 <= r["win_random"] + r["loss_random"] <= 1 for r in rows)
    assert torch.load(tmp_path / "ckpt.pt", weights_only=False)["board_view"] == "mover"
    warm = torch.load(tmp_path / "warm" / "ckpt.pt", weights_only=False)  # the critic learned
    assert not torch.equal(warm["left"]["score_head.weight"], warm["right"]["score_head.weight"])
    for other in (dict(warm_critic="none"), dict(gamma=0.5)):     # its targets: not reused
        with pytest.raises(UsageError, match="was made with"):
            tg.main(tg.Config(**{**cfg, **other}))


def test_warm_values_are_random_games_results_discounted_for_the_side_to_move():
    values = ck.warm_values(random.Random(0), 0.9, n_games=2)
    assert [b for b, _ in values] == ck.warm_positions(random.Random(0), n_games=2)
    rng, game, n = random.Random(0), ck.new_game(), 0      # the first game, replayed by hand
    while not game.over():
        last = game.to_move
        game.play(rng.choice(game.legal_moves()))
        n += 1
    v = [v for _, v in values[:n]]
    assert v[-1] == game.outcome(last) != 0                # the last mover's result, undiscounted
    assert v[0] == pytest.approx(game.outcome(0) * 0.9 ** (n - 1))     # black moved first
    assert all(a == pytest.approx(-0.9 * b) for a, b in zip(v, v[1:]))  # negamax: each ply


def test_checkers_evaluate_counts_forfeits_as_losses(monkeypatch):
    monkeypatch.setattr(ck, "EVAL_GAMES", 2)
    r = ck.evaluate(lambda boards: ["zz"] * len(boards))
    assert r["illegal"] == 1.0 and r["loss_random"] == r["loss_alphabeta2"] == 1.0
    r = ck.evaluate(lambda boards: ["a"] * len(boards))    # always the first listed move
    assert r["illegal"] == 0.0 and r["win_alphabeta1"] + r["loss_alphabeta1"] <= 1.0


# -----------------------------------------------------------------------------
# Chess (python-chess optional): the same listed-move interface as checkers (games/listed.py)
def test_chess_learner_reads_its_side_of_the_board_and_picks_a_labelled_move():
    pytest.importorskip("chess")
    from games import chess as ch
    start = ch.starts(1, random.Random(0), 0)[0]
    prompt = ch.learner_prompt(start)
    assert prompt.startswith("RNBQKBNR|PPPPPPPP|........|........|........|........|pppppppp|"
                             "rnbqkbnr aa2a3 ba2a4 cb1a3 db1c3 ")
    assert len(ch.move_texts(start)) == 20 and ch.board_move(start, "l") == "e2e4"
    after, final = ch.result(start, "l")
    # black to move sees the board mirrored: its pieces in capitals, its back rank first, white's
    # pawn from e4 on e5, and its knight's g8f6 written g1f3
    prompt = ch.learner_prompt(after)
    assert final is None and prompt.startswith("RNBQKBNR|PPPPPPPP|........|........|....p...|")
    label = next(k for k, (text, _) in ch.choices(ch.restore(after)).items() if text == "g1f3")
    assert ch.board_move(after, label) == "g8f6"
    assert [ch.result(start, t) for t in ("z", "e2e4", "ab")] == [(None, 0.0)] * 3
    # a back-rank mate wins from either seat; a quiet ply at the cap draws
    for fen, seen, real in (("6k1/5ppp/8/8/8/8/5PPP/R5K1 w - - 0 1", "a1a8", "a1a8"),
                            ("r5k1/5ppp/8/8/8/8/5PPP/6K1 b - - 0 1", "a1a8", "a8a1")):
        board = f"{fen}\n0"
        label = next(k for k, (text, _) in ch.choices(ch.restore(board)).items() if text == seen)
        assert ch.board_move(board, label) == real and ch.result(board, label)[1] == 1.0
    capped = f"4k3/8/8/8/8/8/8/R3K3 w - - 0 1\n{ch.MAX_PLIES - 1}"
    assert ch.result(capped, "a")[1] == 0.5
    assert ch.restore(ch.ChessGame().render()).plies == 0      # play.py passes render()


def test_chess_without_python_chess_is_a_usage_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "chess", None)               # make `import chess` fail
    with pytest.raises(UsageError, match="pip install chess"):
        tg.Config(game="chess")
