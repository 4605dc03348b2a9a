"""play.py end to end: one dialogue shown, the interactive loop, a game match, bad input."""
import pytest
import torch

import play
from common import save_lobes
from lobes import Lobe, LobeConfig


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    cfg = LobeConfig(n_layer=1, n_head=2, n_embd=32)
    path = str(tmp_path_factory.mktemp("ckpt") / "ckpt.pt")
    save_lobes(path, Lobe(cfg), Lobe(cfg), task="addition")
    return path


def test_prompt_prints_every_loop_and_why_it_stopped(ckpt, capsys):
    play.main(play.Config(ckpt=ckpt, prompt="48213+9924", idl_limit=3, threshold=1.0))
    out = capsys.readouterr().out
    assert "31284000+42990000" in out                      # the question, posed as the task's prompt
    assert out.count("loop ") == 3 and "stop: limit after 3 loop(s)" in out


def test_interactive_mode_reprompts_on_bad_input_and_exits_on_eof(ckpt, cli):
    r = cli("play.py", f"--ckpt={ckpt}", "--idl_limit=2", stdin="not a sum\n12+5\n")
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert "is not a question for the addition task" in r.stderr and "21000000+50000000" in r.stdout


def test_bad_prompt_and_missing_checkpoint_exit_2_with_one_line(ckpt, tmp_path, cli):
    for args in ([f"--ckpt={ckpt}", "--prompt=hello"], [f"--ckpt={tmp_path}/none.pt", "--prompt=1+1"]):
        r = cli("play.py", *args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_match_between_a_network_and_the_optimal_player_reports_w_d_l(ckpt, capsys):
    play.main(play.Config(ckpt=ckpt, game="tictactoe", you="lobe", opponent="optimal", n_games=4, idl_limit=1))
    out = capsys.readouterr().out
    assert "W 0 / D" in out and "lost by illegal moves" in out  # an untrained lobe never beats it


def test_a_game_checkpoint_read_with_another_view_is_a_usage_error(tmp_path, cli):
    torch.manual_seed(0)
    path = str(tmp_path / "ckpt.pt")
    cfg = LobeConfig(n_layer=1, n_head=2, n_embd=32)
    save_lobes(path, Lobe(cfg), Lobe(cfg), task="tictactoe", board_view="rows")
    r = cli("play.py", f"--ckpt={path}", "--game=tictactoe", "--you=lobe", "--opponent=random")
    assert r.returncode == 2 and "reads the board as 'rows'" in r.stderr, r.stderr


def test_a_game_checkpoints_f_plays_as_train_games_measured_it(tmp_path, capsys, monkeypatch):
    """F of a train_games.py checkpoint: the critic scores the position each proposal leads to
    (idl.critic_moves) at the threshold the checkpoint was evaluated with, or the one given."""
    import train_games
    from games import tictactoe
    torch.manual_seed(0)
    cfg, path = LobeConfig(n_layer=1, n_head=2, n_embd=32), str(tmp_path / "ckpt.pt")
    save_lobes(path, Lobe(cfg), Lobe(cfg), cfg=train_games.Config(threshold=0.7),
               task="tictactoe", board_view=tictactoe.VIEW)
    seen = []

    def recorded(game, left, right, boards, idl_limit, threshold):
        seen.append((game, idl_limit, threshold))
        return play_critic_moves(game, left, right, boards, idl_limit, threshold)
    play_critic_moves = play.critic_moves
    monkeypatch.setattr(play, "critic_moves", recorded)
    play.main(play.Config(ckpt=path, game="tictactoe", you="lobe", opponent="random", idl_limit=2))
    assert "W " in capsys.readouterr().out
    assert seen and set(seen) == {(tictactoe, 2, 0.7)}       # each of the lobe's moves
    seen.clear()
    play.main(play.Config(ckpt=path, game="tictactoe", you="lobe", opponent="random",
                          threshold=0.6))
    assert seen and {t for _, _, t in seen} == {0.6}


def test_wide_sln_prints_the_lobe_and_expert_of_every_loop(tmp_path, capsys):
    from wide import WideConfig, WideSLN, save_wide
    torch.manual_seed(0)
    path = str(tmp_path / "wide.pt")
    save_wide(path, WideSLN(WideConfig(n_head=2, n_embd=32, n_expert=2, max_loops=3)), task="parity")
    play.main(play.Config(task="parity", ckpt=path, system="G", prompt="0110"))
    out = capsys.readouterr().out
    assert "system G (lateralized wide SLN)" in out and "prompt  0110" in out
    loops = [line for line in out.splitlines() if line.startswith("loop ")]
    assert len(loops) == 3 and all(" lobe, expert " in line for line in loops)  # untrained: P(stop) ~ 0.1 a loop
    assert "stop: limit after 3 loop(s)" in out


def test_lobe_player_reads_the_board_from_the_mover_side_when_trained_so():
    from types import SimpleNamespace
    from games import checkers, tictactoe
    seen = []

    class Echo:
        def __init__(self, move):
            self.move = move

        def answer(self, prompts, max_new_tokens):
            seen.extend(prompts)
            return SimpleNamespace(final=[self.move])
    game = tictactoe.TicTacToe()
    game.play(0)                                      # X in the corner: O to move
    for module in (tictactoe, None):
        assert play.lobe_player(Echo("5"), module)(game, None) == "5"
    assert seen == ["...|...|..o", "x..|...|..."]     # train_games.py's view, then the board's
    game = checkers.Checkers()
    game.play(game.legal_moves()[0])                  # 9-13: white to move, its board turned
    move = play.lobe_player(Echo("g"), checkers)(game, None)     # its letter for 12-16
    assert seen[-1].startswith("xxxx|xxxx|xxxx|....|...o|") and move == "21-17"
    assert game.parse_move(move)[1] is None           # legal in the board's own numbering
    try:
        from games import chess
        game = chess.ChessGame()
    except ImportError:                               # python-chess is optional
        return
    game.play(game.read_move("e2e4"))                 # black to move sees the board mirrored
    move = play.lobe_player(Echo("o"), chess)(game, None)        # its label for g1f3
    assert seen[-1].startswith("RNBQKBNR|PPPPPPPP|........|........|....p...|") and move == "g8f6"
