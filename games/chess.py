"""
Chess through python-chess, an optional dependency: python-chess does the rules, this file
only fits them to the game interface (games/base.py) and adds a material-count heuristic for
a shallow alpha-beta opponent.

python-chess is imported lazily, when a ChessGame is made, so `import games` works without it;
without it ChessGame() raises an ImportError that says "pip install chess". Moves are UCI text:
'e2e4', 'e7e8q' (promotion), 'e1g1' (castling). Seat 0 is white. The game ends as python-chess
rules it (checkmate, stalemate, insufficient material, the 75-move rule, fivefold repetition),
or, if max_plies is set, after that many plies as a draw (adjudication, to bound random games).

    $ pip install chess
    $ python -m games.chess              # alpha-beta(2) vs random, two games
"""
from __future__ import annotations

from games.base import Game

PIECE_VALUES = {"p": 1, "n": 3, "b": 3, "r": 5, "q": 9, "k": 0}


class MissingChess(ImportError):
    """python-chess is not installed."""


def load_python_chess():
    """The python-chess module (absolute import: never this file), or a clear ImportError."""
    try:
        import chess  # absolute: the installed python-chess package, not games/chess.py
    except ImportError as e:
        raise MissingChess("games/chess.py needs python-chess: pip install chess") from e
    if not hasattr(chess, "Board"):  # e.g. `python games/chess.py` put games/ first on sys.path
        raise MissingChess("games/chess.py needs python-chess: pip install chess "
                           "(and run it as `python -m games.chess`)")
    return chess


class ChessGame(Game):
    """ChessGame() from the start, ChessGame(fen=...) from a position; moves are chess.Move."""
    name = "chess"

    def __init__(self, fen=None, max_plies=None):
        self.lib = load_python_chess()
        self.fen, self.max_plies = fen, max_plies
        self.reset()

    def reset(self, seed=None):
        self.board = self.lib.Board(self.fen) if self.fen else self.lib.Board()
        self.plies = 0
        return self

    @property
    def to_move(self):
        return 0 if self.board.turn == self.lib.WHITE else 1

    def legal_moves(self):
        return [] if self.over() else list(self.board.legal_moves)

    def play(self, move):
        self.board.push(move)
        self.plies += 1

    def over(self):
        capped = self.max_plies is not None and self.plies >= self.max_plies
        return capped or self.board.is_game_over()

    def outcome(self, player):
        result = self.board.outcome()
        if result is None or result.winner is None:
            return 0  # a draw, or a game stopped at max_plies
        return 1 if result.winner == (player == 0) else -1  # winner is True for white

    def heuristic(self, player):
        """Material count (P1 N3 B3 R5 Q9), mine minus theirs, scaled into (-1, 1)."""
        score = 0
        for piece in self.board.piece_map().values():
            worth = PIECE_VALUES[piece.symbol().lower()]
            score += worth if piece.color == (player == 0) else -worth
        return score / 40

    def render(self):
        """The ASCII board (white at the bottom, uppercase white) and then the FEN line."""
        return f"{self.board}\n{self.board.fen()}"

    def move_text(self, move):
        return move.uci()

    def read_move(self, text):
        """A UCI move ('e2e4', 'e7e8q') as the whole text, surrounding whitespace aside."""
        try:
            return self.lib.Move.from_uci(text.strip())
        except ValueError:  # python-chess raises InvalidMoveError, a ValueError, for '' too
            return None

    def clone(self):
        game = ChessGame.__new__(ChessGame)
        game.__dict__.update(self.__dict__)
        game.board = self.board.copy()
        return game


if __name__ == "__main__":
    from games.base import alphabeta_player, match, random_player
    print("alpha-beta(2) vs random:",
          match(lambda: ChessGame(max_plies=200), alphabeta_player(2), random_player, n=2))
