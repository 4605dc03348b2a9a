"""
Tests for games/: the shared interface, each game's rules, the solvers, the exact tic-tac-toe
evaluator and data task, and how a lobe's illegal move is handled. Every test is seeded.

    $ python -m pytest tests/test_games.py -q --durations=5
"""
import itertools
import random
import subprocess
import sys
from fractions import Fraction
from functools import partial

import pytest

from data import get_task
from games import GAMES, Checkers, Gridworld, TicTacToe, alphabeta_player, human_player, match
from games import negamax, play_game, random_player
from games import gridworld as gw
from games import tictactoe as ttt
from games.checkers import square_index


def _after(game, move):
    """A copy of game with move played."""
    child = game.clone()
    child.play(move)
    return child


def lobe_says(text):
    """A stand-in for a language-model player that always answers `text`."""
    return lambda game, rng: text


# -----------------------------------------------------------------------------
# Tic-tac-toe: the solved game

def test_tictactoe_has_5478_positions_4520_not_over_and_is_a_draw():
    positions = ttt.reachable_positions()
    assert len(positions) == 5478
    assert sum(not ttt.is_over(b) for b in positions) == 4520
    assert ttt.value(ttt.EMPTY) == 0


def test_minimax_values_agree_with_plain_alpha_beta_search():
    """The memoised values against an independent search (games/base.py negamax, no memo)."""
    rng = random.Random(0)
    boards = sorted(b for b in ttt.reachable_positions() if b.count(".") <= 5)
    for board in rng.sample(boards, 150):
        game = TicTacToe()
        game.board = board
        score = negamax(game, depth=9)
        assert (score > 0) - (score < 0) == ttt.value(board), board


def test_random_x_loses_77_75_percent_against_the_optimal_o_exactly():
    """Random X = uniform over legal moves; optimal O = uniform over its optimal moves."""
    result = ttt.exact_outcome(ttt.uniform_policy, seat=0)
    assert sum(result.values()) == 1
    assert result["loss"] == Fraction(2645, 3402)  # = 77.748...%
    assert round(100 * float(result["loss"]), 2) == 77.75


def test_optimal_player_never_loses_from_either_seat():
    def first_optimal(board):  # a deterministic policy: a single move, not a distribution
        return ttt.optimal_moves(board)[0]
    for seat in (0, 1):
        assert ttt.exact_outcome(ttt.optimal_policy, seat)["loss"] == 0
        assert ttt.exact_outcome(first_optimal, seat) == {"win": 0, "draw": 1, "loss": 0}


def test_exact_evaluator_counts_an_illegal_move_as_a_loss():
    def always_centre(board):  # legal once at most: its next turn the centre is taken
        return 4
    assert ttt.exact_outcome(always_centre, seat=0)["loss"] == 1
    assert ttt.exact_outcome(always_centre, seat=1)["loss"] == 1


def test_blunders_are_where_the_exact_losses_come_from():
    def edge_after_corner(board):   # optimal, but answers X's corner opening on an edge
        return 1 if board == "x" + "." * 8 else ttt.optimal_moves(board)[0]
    # X opens with any of 9 cells (all draw); after the corner x1 only the centre holds for O
    assert ttt.blunders(edge_after_corner, seat=1) == [(Fraction(1, 9), "x" + "." * 8, 1)]
    assert ttt.exact_outcome(edge_after_corner, seat=1)["loss"] == Fraction(1, 9)
    assert ttt.blunders(edge_after_corner, seat=0) == []

    def first_cell_early(board):    # as O: the first empty cell on its first two moves
        return ttt.moves(board)[0] if board.count(".") >= 6 else ttt.optimal_moves(board)[0]
    found = ttt.blunders(first_cell_early, seat=1)        # losing moves at many depths
    assert len(found) == 17 and [r for r, _, _ in found] == sorted([r for r, _, _ in found])[::-1]
    assert sum(r for r, _, _ in found) == ttt.exact_outcome(first_cell_early, 1)["loss"] < 1
    assert ttt.blunders(lambda board: 4, seat=0)[-1][2] == 4      # illegal moves are blunders too
    text = ttt.explain(lambda boards: [ttt.learner_text(b, edge_after_corner(b)) for b in boards])
    assert "as O: 1 losing move, reached in 11.11% of games" in text
    assert "x..|...|... (O to move) played 2, optimal 5" in text


def test_optimal_player_never_loses_a_match_and_beats_random():
    counts = match(TicTacToe, ttt.optimal_player, random_player, n=40, seed=0)
    assert counts["loss"] == 0 and counts["win"] > counts["draw"]


def test_tictactoe_task_splits_answers_and_checker():
    task = get_task("tictactoe")
    train, test = task.dataset("train", 300, seed=0), task.dataset("test", 50, seed=0)
    ood = task.dataset("ood", 100, seed=0)
    assert not {p for p, _ in train} & {p for p, _ in test}
    assert train == task.dataset("train", 300, seed=0)  # reproducible from the seed
    ood_prompts = {p for p, _ in ood}
    for prompt, answer in train + test + ood:
        board = ttt.from_prompt(prompt)
        assert (9 - board.count(".") <= 3) == (prompt in ood_prompts)
        assert not ttt.is_over(board) and answer in "123456789" and len(answer) == 1
        assert task.check(prompt, answer) == 1.0
        assert task.check(prompt, f" {answer}\n") == 1.0
        for junk in (f"junk {answer} 7", f"x{answer}", f"{answer} 7", f"{answer}{answer}",
                     f"{answer}.", f"0{answer}"):
            assert task.check(prompt, junk) == 0.0, junk  # one digit and nothing else
        wrong = task.corrupt(prompt, answer, random.Random(prompt))
        assert task.check(prompt, wrong) == 0.0


def test_tictactoe_task_side_to_move_and_garbage():
    task = get_task("tictactoe")
    assert ttt.mark_to_move("x.o.x...o") == "x" and ttt.mark_to_move("xx.o.....") == "o"
    assert task.check("xx.|oo.|...", "3") == 1.0 and task.check("xx.|oo.|...", "7") == 0.0
    for prompt, completion in [("x.o|.x.|..o", None), ("hello", "5"), ("xxx|ooo|...", "7"),
                               ("xxxx|...|...", "1"), ("x.o|.x.|..o", "no digits"), (None, "1")]:
        assert task.check(prompt, completion) == 0.0
    assert task.corrupt("...|...|...", "5", random.Random(0)) == "0"  # every move is optimal


def test_tictactoe_task_rejects_a_right_move_among_junk():
    # 'xx.|oo.|...': X to move, and 3 (finish the top row) is the only optimal move
    task = get_task("tictactoe")
    assert ttt.optimal_moves("xx.oo....") == [2]
    assert task.check("xx.|oo.|...", " 3 ") == 1.0
    for junk in ("x3", "3 7", "7 3", "cell 3", "3.", "33", "03", "3\n3", "٣"):
        assert task.check("xx.|oo.|...", junk) == 0.0, junk


def test_tictactoe_read_move_is_one_digit_1_to_9_and_nothing_else():
    assert [ttt.read_move(str(d)) for d in range(1, 10)] == list(range(9))
    assert ttt.read_move(" 5\n") == 4
    for text in ("", " ", "0", "x5", "5 7", "57", "5.", "move 5", "٥", "-5", None, 5):
        assert ttt.read_move(text) is None, text


def test_tictactoe_game_parses_moves():
    game = TicTacToe()
    game.play(4)
    assert game.render() == "...|.x.|..." and game.to_move == 1
    assert game.parse_move("5") == (None, "illegal move: 5")
    assert game.parse_move("hello") == (None, "unparsable move: 'hello'")
    assert game.parse_move(" 1 ") == (0, None)
    assert game.parse_move("1 3") == (None, "unparsable move: '1 3'")


# -----------------------------------------------------------------------------
# Gridworld

def brute_force_length(text):
    """The shortest goal-reaching length over every self-avoiding walk (slow, independent)."""
    rows, start = gw.parse_map(text)
    best = [None]

    def walk(pos, seen):
        cell = rows[pos[0]][pos[1]]
        if cell == "G":
            best[0] = len(seen) - 1 if best[0] is None else min(best[0], len(seen) - 1)
            return
        if cell == "H":
            return
        for dr, dc in gw.MOVES.values():
            r, c = pos[0] + dr, pos[1] + dc
            if 0 <= r < len(rows) and 0 <= c < len(rows[0]) and rows[r][c] != "#" \
                    and (r, c) not in seen:
                walk((r, c), seen | {(r, c)})

    walk(start, {start})
    return best[0]


def test_bfs_path_is_optimal_against_brute_force():
    for text in gw.make_maps("train", 40, seed=1):
        path = gw.solve(text)
        assert len(path) == brute_force_length(text)
        game = Gridworld(grid=text)  # the path really reaches the goal
        for move in path:
            assert not game.over()
            game.play(game.parse_move(move)[0])
        assert game.over() and game.outcome(0) == 1


def test_map_sets_are_disjoint_sized_and_reproducible():
    train, test, ood = (gw.make_maps(s, n, seed=0) for s, n in [("train", 200), ("test", 20),
                                                                 ("ood", 30)])
    assert train == gw.make_maps("train", 200, seed=0) and ood == gw.make_maps("ood", 30, seed=0)
    assert train != gw.make_maps("train", 200, seed=1)
    assert not set(train) & set(ood) and not set(train) & set(test)
    assert {len(m.split("\n")) for m in train + test} == {4, 5}
    assert {len(m.split("\n")) for m in ood} == {8}
    assert {gw.split_of(m) for m in train} == {"train"}
    assert {gw.split_of(m) for m in test} == {"test"}
    assert Gridworld(split="ood").reset(seed=3).render() == Gridworld(split="ood").reset(3).render()


def test_gridworld_rules_walls_holes_slip_and_timeout():
    game = Gridworld(grid="A#\n.H\n.G")
    assert game.parse_move("right") == (None, "illegal move: right")  # a wall
    assert game.parse_move("jump") == (None, "unparsable move: 'jump'")
    assert game.parse_move(" Down\n") == ("down", None) and game.parse_move("d") == ("down", None)
    for junk in ("down left", "down.", "go down"):
        assert game.parse_move(junk) == (None, f"unparsable move: {junk!r}")
    game.play("down")
    game.play("right")
    assert game.over() and game.outcome(0) == -1  # fell in the hole
    slippy = [Gridworld(grid="....\n.A..\n....\n...G", slip=0.5).reset(seed=7) for _ in range(2)]
    for game in slippy:
        for _ in range(6):
            game.play("down" if "down" in game.legal_moves() else "up")
    assert slippy[0].render() == slippy[1].render()  # slips are reproducible from the seed
    stuck = Gridworld(grid="A.\n.G", max_steps=3)
    for _ in range(3):
        stuck.play("right" if stuck.pos == (0, 0) else "left")
    assert stuck.over() and stuck.outcome(0) == 0


def test_optimal_agent_reaches_every_ood_goal_in_the_shortest_time():
    for seed in range(10):
        game = Gridworld(split="ood").reset(seed)
        shortest = len(gw.solve(game.render()))
        outcomes, forfeit = play_game(game, [gw.optimal_player], random.Random(seed))
        assert outcomes == [1] and forfeit is None and game.steps == shortest


# -----------------------------------------------------------------------------
# Checkers

def position(pieces, to_move=0, draw_plies=80):
    """A checkers position from {square number: piece}."""
    board = ["."] * 64
    for n, piece in pieces.items():
        board[square_index(n)] = piece
    return Checkers(draw_plies).reset(board="".join(board), to_move=to_move)


def perft(game, depth):
    """The number of move sequences `depth` plies long: a standard move-generator check."""
    if depth == 0:
        return 1
    return sum(perft(_after(game, m), depth - 1) for m in game.legal_moves())


def test_checkers_move_counts_match_known_perft():
    assert [perft(Checkers(), d) for d in range(1, 6)] == [7, 49, 302, 1469, 7361]


def test_checkers_capture_is_forced():
    game = position({14: "b", 18: "w", 1: "b"})  # black on 14 can jump 18; 1 could step
    assert [game.move_text(m) for m in game.legal_moves()] == ["14x23"]
    assert game.parse_move("1-5") == (None, "illegal move: 1-5")
    assert game.parse_move(" 14x23\n")[1] is None
    for junk in ("14x23 then 1-5", "move 14x23", "14x23."):
        assert game.parse_move(junk) == (None, f"unparsable move: {junk!r}")


def test_checkers_multi_jump_is_one_move_and_removes_both():
    game = position({1: "b", 6: "w", 15: "w", 30: "w"})
    assert [game.move_text(m) for m in game.legal_moves()] == ["1x10x19"]
    move, error = game.parse_move("1x19")  # start and end suffice when only one sequence fits
    assert error is None and game.move_text(move) == "1x10x19"
    game.quiet = 5
    game.play(move)  # a capture restarts the draw rule's count
    assert game.board[square_index(6)] == game.board[square_index(15)] == "."
    assert game.board[square_index(19)] == "b" and game.to_move == 1 and game.quiet == 0


def test_checkers_kinging_and_kings_move_backwards():
    game = position({25: "b", 10: "w"})
    game.play(game.parse_move("25-29")[0])
    assert game.board[square_index(29)] == "B"
    game.play(game.parse_move("10-6")[0])  # white men move up
    assert "29-25" in [game.move_text(m) for m in game.legal_moves()]
    crowned = position({22: "b", 26: "w", 27: "w"})  # jumping into the king row ends the move
    assert [game.move_text(m) for m in crowned.legal_moves()] == ["22x31"]


def test_checkers_no_capture_draw_rule():
    game = position({1: "B", 32: "W"}, draw_plies=4)  # two kings shuffle, nothing is taken
    for text in ["1-5", "32-28", "5-1", "28-32"]:
        assert not game.over()
        game.play(game.parse_move(text)[0])
    assert game.over() and game.outcome(0) == game.outcome(1) == 0
    blocked = position({29: "w", 25: "b", 22: "b"}, to_move=1)  # white has no move: it lost
    assert blocked.over() and blocked.outcome(1) == -1 and blocked.outcome(0) == 1


def test_alpha_beta_beats_random_at_checkers():
    counts = match(Checkers, alphabeta_player(2), random_player, n=4, seed=0)
    assert counts["win"] > counts["loss"] and counts["illegal"] == 0


# -----------------------------------------------------------------------------
# Chess (python-chess optional)

def test_chess_legal_move_counts():
    pytest.importorskip("chess")
    game = GAMES["chess"]()
    assert len(game.legal_moves()) == 20 and game.render().isascii()
    assert sum(len(_after(game, m).legal_moves()) for m in game.legal_moves()) == 400
    kiwipete = "r3k2r/p1ppqpb1/bn2pnp1/3PN3/1p2P3/2N2Q1p/PPPBBPPP/R3K2R w KQkq - 0 1"
    assert len(GAMES["chess"](fen=kiwipete).legal_moves()) == 48


def test_chess_checkmate_and_uci_parsing():
    pytest.importorskip("chess")
    game = GAMES["chess"]()
    assert game.parse_move("e2e5") == (None, "illegal move: e2e5")
    assert game.parse_move("hello") == (None, "unparsable move: 'hello'")
    assert game.parse_move(" e2e4\n")[1] is None
    for junk in ("e2e4 e7e5", "move e2e4", "e2e4."):
        assert game.parse_move(junk) == (None, f"unparsable move: {junk!r}")
    for uci in ["f2f3", "e7e5", "g2g4", "d8h4"]:  # fool's mate
        move, error = game.parse_move(uci)
        assert error is None and game.move_text(move) == uci
        game.play(move)
    assert game.over() and game.outcome(0) == -1 and game.outcome(1) == 1
    promote = GAMES["chess"](fen="8/4P3/8/8/8/8/k7/4K3 w - - 0 1")
    assert promote.parse_move("e7e8q")[1] is None
    assert promote.parse_move("e7e8") == (None, "illegal move: e7e8")  # a pawn must promote


def test_chess_search_finds_mate_in_one_and_takes_material():
    pytest.importorskip("chess")
    fen = "r1bqkb1r/pppp1ppp/2n2n2/4p2Q/2B1P3/8/PPPP1PPP/RNB1K1NR w KQkq - 4 4"
    game = GAMES["chess"](fen=fen)
    assert alphabeta_player(2)(game, random.Random(0)) == "h5f7"  # scholar's mate
    hanging = GAMES["chess"](fen="4k3/8/8/3q4/8/8/3R4/4K3 w - - 0 1")
    assert alphabeta_player(1)(hanging, random.Random(0)) == "d2d5"


def test_missing_python_chess_gives_a_clear_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "chess", None)  # make `import chess` fail
    with pytest.raises(ImportError, match="pip install chess"):
        GAMES["chess"]()
    code = "import sys; sys.modules['chess'] = None; import games; print(sorted(games.GAMES))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "tictactoe" in out.stdout  # importing games does not need python-chess


# -----------------------------------------------------------------------------
# Illegal moves, the match and the human player

GAME_FACTORIES = {"tictactoe": TicTacToe, "checkers": Checkers, "chess": GAMES["chess"],
                  "gridworld": lambda: Gridworld(grid="A#\n.G")}
ILLEGAL_TEXT = {"tictactoe": None, "checkers": "11-18", "chess": "e2e5", "gridworld": "right"}


@pytest.mark.parametrize("name", sorted(GAME_FACTORIES))
def test_a_lobes_illegal_move_is_reported_and_forfeits(name):
    if name == "chess":
        pytest.importorskip("chess")
    game = GAME_FACTORIES[name]()
    for text in ["hello", "", None, "!!" * 50]:
        move, error = game.parse_move(text)
        assert move is None and error.startswith("unparsable move")
    if ILLEGAL_TEXT[name]:
        assert game.parse_move(ILLEGAL_TEXT[name]) == (None, f"illegal move: {ILLEGAL_TEXT[name]}")
    outcomes, forfeit = play_game(GAME_FACTORIES[name](), [lobe_says("hello")] * 2,
                                  random.Random(0))
    assert outcomes[0] == -1 and forfeit == (0, "unparsable move: 'hello'")
    if game.num_players == 2:
        counts = match(GAME_FACTORIES[name], lobe_says("hello"), random_player, n=4, seed=0)
        assert counts["loss"] == counts["illegal"] == 4 and len(counts["errors"]) == 4


def test_tictactoe_lobe_playing_an_occupied_cell_loses_the_match_game():
    counts = match(TicTacToe, lobe_says("5"), random_player, n=2, seed=0)
    # first game: a plays 5 then 5 again (illegal); second: random may take 5 first
    assert counts["loss"] == 2 and counts["illegal"] == 2
    assert counts["errors"][0] == "game 0: player a: illegal move: 5"
    flipped = match(TicTacToe, random_player, lobe_says("5"), n=2, seed=0)
    assert flipped["win"] == 2 and flipped["opponent_illegal"] == 2


def test_match_alternates_seats_and_is_reproducible():
    seats = []

    def recorder(game, rng):
        seats.append(game.to_move)
        return random_player(game, rng)
    first = match(TicTacToe, recorder, random_player, n=6, seed=3)
    assert set(seats) == {0, 1}
    assert first == match(TicTacToe, random_player, random_player, n=6, seed=3)
    assert sum(first[k] for k in ("win", "draw", "loss")) == 6
    with pytest.raises(ValueError, match="two-player"):
        match(Gridworld, random_player, random_player, n=1)


def test_human_player_re_asks_and_eof_propagates():
    answers, shown = iter(["hello", "5", "1"]), []
    game = TicTacToe()
    game.play(4)  # X took the centre, so '5' is illegal for O
    ask = lambda prompt: next(answers)  # noqa: E731 (a person typing three lines)
    assert human_player(game, random.Random(0), ask=ask, show=shown.append) == "1"
    assert shown[0] == game.render()
    assert shown[1].startswith("unparsable move: 'hello'")  # then the legal moves are listed
    assert shown[2].startswith("illegal move: 5")

    def eof(prompt):
        raise EOFError  # Ctrl-D
    with pytest.raises(EOFError):
        human_player(game, random.Random(0), ask=eof, show=shown.append)
    typing = itertools.cycle("123456789")  # a person trying cells until one is free
    bob = partial(human_player, ask=lambda prompt: next(typing), show=shown.append)
    counts = match(TicTacToe, bob, random_player, n=2)  # plugs into match; never forfeits
    assert counts["illegal"] == 0 and counts["win"] + counts["draw"] + counts["loss"] == 2


def test_games_registry_and_interface():
    assert set(GAMES) == {"gridworld", "tictactoe", "checkers", "chess"}
    for name in ["gridworld", "tictactoe", "checkers"]:
        game = GAMES[name]().reset(seed=0)
        copy = game.clone()
        copy.play(copy.legal_moves()[0])
        assert game.render() != copy.render()  # a clone is independent
        assert game.render().isascii() and not game.over()
        for move in game.legal_moves():
            assert game.parse_move(game.move_text(move)) == (move, None)
