"""
Chess through python-chess, an optional dependency: python-chess does the rules, this file
fits them to the game interface (games/base.py), adds a material-count heuristic for a shallow
alpha-beta opponent, and ends with what train_games.py needs to learn the game by Algorithm 2
(the board from the mover's side and its labelled moves, as checkers has it: games/listed.py).

python-chess is imported lazily, when a ChessGame is made, so `import games` works without it;
without it ChessGame() raises an ImportError that says "pip install chess". Moves are UCI text:
'e2e4', 'e7e8q' (promotion), 'e1g1' (castling). Seat 0 is white. The game ends as python-chess
rules it (checkmate, stalemate, insufficient material, the 75-move rule, fivefold repetition),
or, if max_plies is set, after that many plies as a draw (adjudication, to bound random games).

    $ pip install chess
    $ python -m games.chess              # alpha-beta(2) vs random, two games
    $ python train_games.py --game=chess
"""
from __future__ import annotations

import string
import sys

from games import listed
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


# -----------------------------------------------------------------------------
# What train_games.py needs to learn the game by Algorithm 2, as checkers has it (games/listed.py:
# play, results, evaluation). The lobe reads the board from the side to move (python-chess's
# mirror() when black moves: its pieces are always the capitals and its back rank comes first),
# then its legal moves in UCI as it sees them, each after a label, and answers with a label.
# A board is state(game): the FEN and the plies played, as games stop at MAX_PLIES (a draw);
# a position restored from a FEN has no move history, so repetitions do not end a game here.

PLAYERS = 2               # two seats: TD is negamax over plies (train_games.td_targets)
VIEW = "mover"            # the checkpoint's board_view: the lobes read learner_prompt (play.py)
MOVE_TOKENS = 2           # a label, then <|eos|>
LABELS = (string.ascii_letters + string.digits +       # one character a move: a position lists
          string.punctuation.replace("|", ""))         #   at most 93 (the first in UCI order;
                          #   20-40 are usual, more than 62 happen with queens on the board)
MAX_PLIES = 100           # a game not over after 50 moves a side is drawn (adjudication)
DEFAULTS = dict(max_iters=12, batch_size=16, gamma=0.99,   # train_games.py's budget, discount
                self_play="sampled", critic_target="return")   # and §5.4
EVAL_GAMES = 40           # games against each opponent at evaluation, half from each seat
OPPONENTS = {"random": 0, "alphabeta1": 1}   # name -> search depth (0: random)
OPTIMAL_DEPTH = 1         # the 'optimal' opponent: alpha-beta at depth 1, material-greedy
                          #   (depth 2 takes about 10 times as long a move in python-chess)
COLUMNS = listed.columns(sys.modules[__name__])


def new_game():
    return ChessGame(max_plies=MAX_PLIES)


def state(game):
    """The learner's board: the FEN, then the plies played (MAX_PLIES's clock)."""
    return f"{game.board.fen()}\n{game.plies}"


def restore(board):
    """A game from state(), or from render() (play.py: the FEN is its last line; plies 0)."""
    lines = board.split("\n")
    game = ChessGame(fen=next(line for line in lines if "/" in line), max_plies=MAX_PLIES)
    game.plies = int(lines[-1]) if lines[-1].isdigit() else 0
    return game


def seen_board(game):
    """The board as the side to move sees it: python-chess's mirror() when black moves."""
    return game.board if game.board.turn == game.lib.WHITE else game.board.mirror()


def choices(game):
    """The legal moves as the side to move sees them: {label: (UCI in its view, move)}, in UCI
    order, so a position reads the same from either seat."""
    lib, mirrored = game.lib, game.board.turn != game.lib.WHITE

    def real(m):                                       # a move of seen_board on the board itself
        return lib.Move(lib.square_mirror(m.from_square), lib.square_mirror(m.to_square),
                        m.promotion) if mirrored else m
    return {k: (m.uci(), real(m))
            for k, m in zip(LABELS, sorted(seen_board(game).legal_moves, key=str))}


def learner_prompt(board):
    """The 64 squares from the mover's side, its back rank first, its pieces in capitals; then
    its labelled moves, e.g. 'RNBQKBNR|PPPPPPPP|........|........|........|........|pppppppp|
    rnbqkbnr aa2a3 ba2a4 cb1a3 db1c3 eb2b3 ...' at the start."""
    game = restore(board)
    seen = seen_board(game)
    rows = "|".join("".join(str(seen.piece_at(8 * rank + file) or ".") for file in range(8))
                    for rank in range(8))
    return " ".join([rows] + [k + text for k, (text, _) in choices(game).items()])


# the rest of the learner's interface, shared with checkers (games/listed.py), bound to here
(read_choice, result, board_move, move_texts, warm_positions, warm_values, starts, opponent_move,
 play_batch, evaluate) = listed.bind(sys.modules[__name__])


if __name__ == "__main__":
    from games.base import alphabeta_player, match, random_player
    print("alpha-beta(2) vs random:",
          match(lambda: ChessGame(max_plies=200), alphabeta_player(2), random_player, n=2))
