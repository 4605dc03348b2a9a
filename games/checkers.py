"""
American checkers (English draughts) on 8x8: forced captures, multi-jumps, kinging, and a
no-capture draw rule, with random and alpha-beta opponents (games/base.py).

The board is 64 characters, row-major from the top: 'b' / 'w' a black / white man, 'B' / 'W'
a king, '.' empty. Only dark squares (row + col odd) are used. Black (seat 0) starts on rows
0-2, moves first and moves down the board; white (seat 1) starts on rows 5-7 and moves up.
A man that reaches the far row is crowned and may then move both ways.

The rules that make checkers checkers:
- forced capture: if any jump is possible, the side to move must jump;
- multi-jump: a jump continues while the same piece can jump again; the whole sequence is one
  move (a man that is crowned mid-sequence stops there);
- the draw rule: after draw_plies plies (default 80, 40 moves each) with no capture, a draw;
- a side with no legal move (no pieces, or all blocked) loses.

Moves use the standard numbering of the 32 dark squares, 1-32 row-major from black's side:
'11-15' is a step, '15x24' a jump, '15x24x31' a double jump ('15x31' also parses when only one
jump sequence fits).

    $ python -m games.checkers          # random vs alpha-beta, a few games
"""
import re

from games.base import Game

START = "".join(("b" if r < 3 else "w" if r > 4 else ".") if (r + c) % 2 else "."
                for r in range(8) for c in range(8))
FORWARD = {"b": [(1, -1), (1, 1)], "w": [(-1, -1), (-1, 1)]}
KING_DIRS = [(1, -1), (1, 1), (-1, -1), (-1, 1)]


def square_number(i):
    """Board index 0-63 of a dark square -> its number 1-32 (four dark squares per row)."""
    return i // 2 + 1


def square_index(n):
    """Square number 1-32 -> board index 0-63."""
    r, k = divmod(n - 1, 4)
    return 8 * r + 2 * k + (1 if r % 2 == 0 else 0)


def directions(piece):
    return KING_DIRS if piece.isupper() else FORWARD[piece]


def crowns(piece, i):
    """True when a man standing on index i has reached its far row."""
    return (piece == "b" and i >= 56) or (piece == "w" and i < 8)


class Checkers(Game):
    """Seat 0 is black (b/B), seat 1 white (w/W). A move is a tuple of board indices."""
    name = "checkers"

    def __init__(self, draw_plies=80):
        self.draw_plies = draw_plies
        self.reset()

    def reset(self, seed=None, board=START, to_move=0):
        """The start position, or any position given as 64 characters and a side to move."""
        self.board, self.turn, self.quiet, self._moves = list(board), to_move, 0, None
        return self

    @property
    def to_move(self):
        return self.turn

    def mine(self, piece, player):
        return piece != "." and (piece.lower() == "b") == (player == 0)

    # ------------------------------------------------------------------------
    # Move generation
    def jumps_from(self, i, piece, captured):
        """Every complete jump sequence from index i, as lists of landing squares."""
        paths = []
        r, c = divmod(i, 8)
        for dr, dc in directions(piece):
            mid, land = (r + dr, c + dc), (r + 2 * dr, c + 2 * dc)
            if not (0 <= land[0] < 8 and 0 <= land[1] < 8):
                continue
            m, j = 8 * mid[0] + mid[1], 8 * land[0] + land[1]
            enemy = self.board[m] != "." and not self.mine(self.board[m], self.turn)
            if enemy and m not in captured and self.board[j] == ".":
                # a man crowned by this jump stops there; otherwise it keeps jumping if it can
                more = [] if crowns(piece, j) else self.jumps_from(j, piece, captured | {m})
                paths += [[j] + p for p in more] or [[j]]
        return paths

    def legal_moves(self):
        """All jump sequences if any exist (captures are forced), else all simple steps."""
        if self._moves is None:
            jumps, steps = [], []
            for i, piece in enumerate(self.board):
                if not self.mine(piece, self.turn):
                    continue
                self.board[i] = "."  # lift the piece: a king's loop may land on its start
                jumps += [(i, *p) for p in self.jumps_from(i, piece, frozenset())]
                self.board[i] = piece
                r, c = divmod(i, 8)
                for dr, dc in directions(piece):
                    j = 8 * (r + dr) + c + dc
                    if 0 <= r + dr < 8 and 0 <= c + dc < 8 and self.board[j] == ".":
                        steps.append((i, j))
            over = self.quiet >= self.draw_plies
            self._moves = [] if over else (jumps or steps)
        return self._moves

    def play(self, move):
        piece = self.board[move[0]]
        self.board[move[0]] = "."
        for a, b in zip(move, move[1:]):
            if abs(a - b) > 9:  # a jump: remove the piece jumped over
                self.board[(a + b) // 2] = "."
        end = move[-1]
        self.board[end] = piece.upper() if crowns(piece, end) else piece
        self.quiet = 0 if abs(move[0] - move[1]) > 9 else self.quiet + 1
        self.turn, self._moves = 1 - self.turn, None

    def over(self):
        return not self.legal_moves()

    def outcome(self, player):
        if self.quiet >= self.draw_plies:
            return 0  # the no-capture draw rule
        return -1 if player == self.turn else 1  # the side to move has no move: it lost

    # ------------------------------------------------------------------------
    def heuristic(self, player):
        """Material, man 1 and king 1.5, as (mine - theirs) / total: inside (-1, 1)."""
        mine = theirs = 0.0
        for piece in self.board:
            if piece == ".":
                continue
            worth = 1.5 if piece.isupper() else 1.0
            if self.mine(piece, player):
                mine += worth
            else:
                theirs += worth
        return 0.99 * (mine - theirs) / max(mine + theirs, 1.0)

    def render(self):
        """'black to move' then the 8 rows, black's side on top."""
        rows = ["".join(self.board[8 * r:8 * r + 8]) for r in range(8)]
        return f"{('black', 'white')[self.turn]} to move\n" + "\n".join(rows)

    def move_text(self, move):
        sep = "x" if abs(move[0] - move[1]) > 9 else "-"
        return sep.join(str(square_number(i)) for i in move)

    def read_move(self, text):
        """'11-15' / '15x24x31' -> a tuple of indices; 'a-b' alone may stand for a unique jump.
        The move is the whole text, surrounding whitespace aside: '11-15 then 15-19' is none."""
        m = re.fullmatch(r"\s*(\d{1,2}(?:\s*[-x]\s*\d{1,2})+)\s*", text, re.IGNORECASE)
        numbers = [int(n) for n in re.findall(r"\d+", m[1])] if m else []
        if not numbers or not all(1 <= n <= 32 for n in numbers):
            return None
        move = tuple(square_index(n) for n in numbers)
        fits = [mv for mv in self.legal_moves() if (mv[0], mv[-1]) == (move[0], move[-1])]
        return fits[0] if len(move) == 2 and len(fits) == 1 else move

    def clone(self):
        game = Checkers(self.draw_plies)
        game.board, game.turn, game.quiet = self.board[:], self.turn, self.quiet
        game._moves = self._moves  # the cached move list is never mutated: sharing is safe
        return game


if __name__ == "__main__":
    from games.base import alphabeta_player, match, random_player
    print("alpha-beta(3) vs random:", match(Checkers, alphabeta_player(3), random_player, n=4))
