"""
Games: environments with rewards and opponents, all behind one small interface (games/base.py).

    base.py        the Game interface, random and alpha-beta players, the human player, match()
    gridworld.py   one-player text mazes (walls, holes, goal), random maps, a BFS solver
    tictactoe.py   solved by memoised minimax; exact evaluator; the 'tictactoe' data task
    checkers.py    American checkers: forced captures, multi-jumps, kinging, a draw rule
    chess.py       python-chess (optional, imported lazily) with UCI moves
    listed.py      a two-player game played by the label of a listed move (checkers, chess)

Every game also gives train_games.py what it needs to learn it by Algorithm 2 (PLAYERS,
learner_prompt, play_batch, result, evaluate, ...): a board as the lobes read it, batched play,
and an evaluation; checkers and chess share theirs (listed.py).

A player is a callable (game, rng) -> move text. Every game has random_player and an opponent
that plays well: alphabeta_player(depth) for two-player games, optimal_player for the solved
ones (tictactoe, gridworld). match() plays n games alternating seats.

    >>> from games import GAMES, match, random_player
    >>> from games.tictactoe import optimal_player
    >>> match(GAMES["tictactoe"], random_player, optimal_player, n=100, seed=0)["win"]
    0
    $ python -m pytest tests/test_games.py -q
"""
import importlib

from games.base import (Game, alphabeta_player, human_player, match, negamax, play_game,
                        random_player, search_move)

HOMES = {"Gridworld": "gridworld", "TicTacToe": "tictactoe", "Checkers": "checkers",
         "ChessGame": "chess"}  # each game class and the module it lives in


def __getattr__(attr):
    """`games.GAMES` (name -> class) and the game classes, loaded on first use (PEP 562).

    Loading late keeps `import games` free of python-chess and lets `python -m games.tictactoe`
    run without Python's warning about a module imported twice.
    """
    if attr == "GAMES":
        return {module: __getattr__(cls) for cls, module in HOMES.items()}
    if attr in HOMES:
        return getattr(importlib.import_module(f"games.{HOMES[attr]}"), attr)
    raise AttributeError(f"module 'games' has no attribute {attr!r}")
