"""
Tic-tac-toe, solved: exhaustive memoised minimax, a perfect player, an exact evaluator and the
positions a policy's exact losses come from (blunders). The 'tictactoe' data task (board ->
optimal move) built on it lives in data/tasks.py.

A board is a 9-character string, row-major, 'x', 'o' or '.': "x.o.x...o". X moves first, so
the side to move is X when the counts of x and o are equal, else O. Cells are numbered 1-9
row-major for players and prompts; inside the code a move is the cell index 0-8. A board as a
prompt is written in rows: "x.o|.x.|..o". The lobes of train_games.py see a board in their own
frame (learner_frame: from the side to move, turned and mirrored into one fixed image of its 8)
and name cells in that frame (board_move turns their text into the board's move).

A move is *optimal* when it keeps the minimax value (win / draw / loss); the value ignores how
soon the game ends, so a slow win is as optimal as a quick one, and in a lost position every move
is optimal. The optimal player picks uniformly among the optimal moves.

The game has 5,478 reachable positions (4,520 not over) and is a draw with perfect play. A
uniformly random X loses exactly 2645/3402 = 77.748% (77.75% to two places) of its games against
the optimal O; `exact_outcome` computes such numbers by enumerating every reply, no sampling.

    $ python -m games.tictactoe          # prints those figures
    $ python -c "from data import get_task; print(get_task('tictactoe').dataset('train', 3))"
"""
import re
from fractions import Fraction
from functools import lru_cache

from games.base import Game

LINES = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6)]
EMPTY = "." * 9


def winner(board):
    """'x' or 'o' if that mark has three in a line, else None."""
    for a, b, c in LINES:
        if board[a] != "." and board[a] == board[b] == board[c]:
            return board[a]
    return None


def mark_to_move(board):
    """'x' when the counts are equal (X moves first), else 'o'."""
    return "x" if board.count("x") == board.count("o") else "o"


def is_over(board):
    return winner(board) is not None or "." not in board


def moves(board):
    """The empty cells (0-8), or none when the game is over."""
    return [] if is_over(board) else [i for i, c in enumerate(board) if c == "."]


def after(board, move):
    """The board after the side to move marks cell `move`."""
    return board[:move] + mark_to_move(board) + board[move + 1:]


# -----------------------------------------------------------------------------
# Solving

@lru_cache(maxsize=None)
def value(board):
    """The game value for the side to move under perfect play: +1 win, 0 draw, -1 loss."""
    if winner(board) is not None:
        return -1  # the previous move made a line, so the side to move has lost
    if "." not in board:
        return 0
    return max(-value(after(board, m)) for m in moves(board))  # negamax


def optimal_moves(board):
    """Every move that keeps the game value: the perfect player's choices (sorted)."""
    return [m for m in moves(board) if -value(after(board, m)) == value(board)]


@lru_cache(maxsize=None)
def reachable_positions():
    """Every board reachable from the empty board by legal play, final ones included."""
    seen, stack = {EMPTY}, [EMPTY]
    while stack:
        board = stack.pop()
        for m in moves(board):
            child = after(board, m)
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return frozenset(seen)


def exact_outcome(policy, seat):
    """A policy's exact {'win', 'draw', 'loss'} probabilities (Fractions) against the optimal
    player, which picks uniformly among its optimal moves. Every reply is enumerated.

    policy(board) -> {move: probability} or a single move (cell 0-8); it plays seat 0 (X) or
    seat 1 (O). Use Fraction probabilities for exact answers. An illegal move loses the game,
    as it does in a match.
    """
    mark = "xo"[seat]

    @lru_cache(maxsize=None)
    def dist(board):  # (win, draw, loss) for `mark` from this board on
        if is_over(board):
            w = winner(board)
            return (Fraction(w == mark), Fraction(w is None), Fraction(w not in (mark, None)))
        if mark_to_move(board) == mark:
            choice = policy(board)
            probs = choice if isinstance(choice, dict) else {choice: 1}
        else:  # the optimal opponent: uniform over its optimal moves
            best = optimal_moves(board)
            probs = {m: Fraction(1, len(best)) for m in best}
        total = [Fraction(0)] * 3
        for m, p in probs.items():
            legal = m in moves(board)
            child = dist(after(board, m)) if legal else (Fraction(0), Fraction(0), Fraction(1))
            total = [t + Fraction(p) * c for t, c in zip(total, child)]
        return tuple(total)

    win, draw, loss = dist(EMPTY)
    return {"win": win, "draw": draw, "loss": loss}


def blunders(policy, seat):
    """Where a deterministic policy's exact losses come from: every position it reaches against
    the optimal player (every optimal reply enumerated) before any mistake of its own, where its
    move throws the game value away (a drawn position into a lost one) or is illegal. Returns
    [(reach, board, move)] with the Fraction of games reaching it, costliest first; against the
    optimal player a position once lost stays lost, so the reaches sum to exact_outcome's loss.

    policy(board) -> a cell 0-8 (or anything else: illegal); it plays seat 0 (X) or 1 (O).
    """
    mark, found, reach = "xo"[seat], [], {EMPTY: Fraction(1)}
    for board in sorted(reachable_positions(), key=lambda b: 9 - b.count(".")):   # move by move
        p = reach.pop(board, 0)
        if not p or is_over(board):
            continue
        if mark_to_move(board) == mark:
            m = policy(board)
            if m not in moves(board) or -value(after(board, m)) < value(board):
                found.append((p, board, m))
                continue
            children = {after(board, m): p}
        else:
            best = optimal_moves(board)
            children = {after(board, m): p / len(best) for m in best}
        for child, q in children.items():
            reach[child] = reach.get(child, 0) + q
    return sorted(found, key=lambda f: (-f[0], f[1]))


def uniform_policy(board):
    """The random player as a policy: every legal move with equal probability."""
    legal = moves(board)
    return {m: Fraction(1, len(legal)) for m in legal}


def optimal_policy(board):
    """The optimal player as a policy: uniform over its optimal moves."""
    best = optimal_moves(board)
    return {m: Fraction(1, len(best)) for m in best}


def opponent_move(kind, board, rng):
    """The opponent's move: uniformly random legal, or uniformly among the optimal moves."""
    return rng.choice(moves(board) if kind == "random" else optimal_moves(board))


def read_move(text):
    """The cell (0-8) a text names when it is one digit 1-9 and nothing else, surrounding
    whitespace aside; else None. The data task reads answers the same way: '5 7' or 'x5' names
    no move, so a lobe cannot hedge or ramble its way to a legal one."""
    text = text.strip() if isinstance(text, str) else ""
    return int(text) - 1 if len(text) == 1 and text in "123456789" else None


def play_batch(n_games, opponents, mover, rng, starts=None):
    """n_games in lockstep, for a learner that moves in batches, from the empty board or from
    starts[g] (positions not over). Game g: the learner sits at seat g % 2 against
    opponents[(g // 2) % len(opponents)]: 'random', 'optimal', or 'self' (it plays both seats).
    mover(boards) -> [(move text, note)] moves in every game where the learner is to move at
    once, each text in the learner's frame (board_move). Returns history[g] = [(seat, board,
    note)] (note None for the opponent's moves) and outcome[g] = (r_X, r_O) in {+1, 0, -1}; an
    unreadable or illegal move loses on the spot."""
    boards = list(starts) if starts else [EMPTY] * n_games
    history, outcome = [[] for _ in range(n_games)], [None] * n_games
    kinds = [opponents[(g // 2) % len(opponents)] for g in range(n_games)]
    learner = [(0, 1) if kinds[g] == "self" else (g % 2,) for g in range(n_games)]
    while any(o is None for o in outcome):
        seat = {g: "xo".index(mark_to_move(boards[g])) for g in range(n_games)
                if outcome[g] is None}
        mine = [g for g in seat if seat[g] in learner[g]]
        for g, (text, note) in zip(mine, mover([boards[g] for g in mine]) if mine else []):
            history[g].append((seat[g], boards[g], note))
            m = read_move(board_move(boards[g], text))
            if m not in moves(boards[g]):                   # forfeit: the mover loses
                outcome[g] = (-1, 1) if seat[g] == 0 else (1, -1)
            else:
                boards[g] = after(boards[g], m)
        for g in seat:
            if outcome[g] is None and seat[g] not in learner[g]:   # the opponent's move
                history[g].append((seat[g], boards[g], None))
                boards[g] = after(boards[g], opponent_move(kinds[g], boards[g], rng))
            if outcome[g] is None and is_over(boards[g]):
                w = winner(boards[g])
                outcome[g] = (0, 0) if w is None else (1, -1) if w == "x" else (-1, 1)
    return history, outcome


def optimal_player(game, rng):
    """The perfect player for a TicTacToe game: a uniformly random optimal move."""
    return str(rng.choice(optimal_moves(game.board)) + 1)


# -----------------------------------------------------------------------------
class TicTacToe(Game):
    """The game object: seat 0 is X, seat 1 is O. render() gives 'x.o|.x.|..o'."""
    name = "tictactoe"

    def __init__(self):
        self.reset()

    def reset(self, seed=None):
        self.board = EMPTY  # one start position: the seed has nothing to choose
        return self

    @property
    def to_move(self):
        return 0 if mark_to_move(self.board) == "x" else 1

    def legal_moves(self):
        return moves(self.board)

    def play(self, move):
        self.board = after(self.board, move)

    def over(self):
        return is_over(self.board)

    def outcome(self, player):
        w = winner(self.board)
        return 0 if w is None else (1 if w == "xo"[player] else -1)

    def render(self):
        return to_prompt(self.board)

    def move_text(self, move):
        return str(move + 1)

    def read_move(self, text):
        return read_move(text)

    def clone(self):
        game = TicTacToe()
        game.board = self.board  # strings are immutable: sharing is safe
        return game


# -----------------------------------------------------------------------------
# Boards as prompts: how a lobe reads a position

def to_prompt(board):
    """'x.o.x...o' -> 'x.o|.x.|..o'."""
    return "|".join(board[i:i + 3] for i in (0, 3, 6))


def mover_view(board):
    """The board from the side to move: its own marks as 'x', the other side's as 'o'. One
    network then plays both seats with one set of features, and a position's value for the side
    to move means the same from either seat (whose turn it is still shows in the counts)."""
    return board if mark_to_move(board) == "x" else board.translate(str.maketrans("xo", "ox"))


def _symmetries():
    """The 8 symmetries of the square as cell permutations p (the board seen through p is
    board[p[0]] board[p[1]] ...): the closure of a quarter turn and a mirror."""
    found, todo = set(), [tuple(range(9))]
    while todo:
        p = todo.pop()
        if p not in found:
            found.add(p)
            todo += [tuple(p[q] for q in g) for g in ((6, 3, 0, 7, 4, 1, 8, 5, 2),
                                                    (2, 1, 0, 5, 4, 3, 8, 7, 6))]
    return sorted(found)


SYMMETRIES = _symmetries()


@lru_cache(maxsize=None)
def learner_frame(board):
    """How train_games.py's lobes see a board: from the side to move (mover_view), turned and
    mirrored into the least of its 8 symmetric images (a fixed representative: 765 classes for
    the 5,478 positions, so a lobe learns each once). Returns that board and its permutation p:
    the learner's cell i is the board's cell p[i]."""
    view = mover_view(board)
    return min(("".join(view[j] for j in p), p) for p in SYMMETRIES)


def from_prompt(prompt):
    """The board a prompt shows if it is a reachable position, else None."""
    if not isinstance(prompt, str) or not re.fullmatch(r"[xo.]{3}\|[xo.]{3}\|[xo.]{3}", prompt):
        return None
    board = prompt.replace("|", "")
    return board if board in reachable_positions() else None


# -----------------------------------------------------------------------------
# What train_games.py needs to learn the game by Algorithm 2 (games/gridworld.py has the same)

PLAYERS = 2               # two seats: TD is negamax over plies (train_games.td_targets)
MOVE_TOKENS = 2           # a move is one character, then <|eos|>
VIEW = "symmetric"        # the checkpoint's board_view: the lobes read learner_prompt (play.py)
COLUMNS = [("loss_X", "loss as X", "{:.2%}"), ("loss_O", "loss as O", "{:.2%}"),
           ("illegal", "illegal", "{:.2%}")]
DEFAULTS = dict(max_iters=1500, batch_size=64, gamma=1.0,  # train_games.py's budget, discount,
                self_play="every", critic_target="best")  # and §5.4: at most 9 moves to value


def learner_prompt(board):
    """How train_games.py's lobes read a board, or the game's rendering 'x.o|.x.|..o' (play.py's
    lobe player): in the learner's frame (learner_frame), as rows."""
    return to_prompt(learner_frame(board.replace("|", ""))[0])


def board_move(board, text):
    """The move a learner's text names on the board itself: its cell i in the learner's frame is
    the board's cell p[i] (learner_frame); text naming no cell is kept as it is (a forfeit)."""
    board = board.replace("|", "")
    m = read_move(text)
    return text if m is None else str(learner_frame(board)[1][m] + 1)


def warm_positions(rng):
    """The warm start's boards: every one of the 4,520 positions not over."""
    return sorted(b for b in reachable_positions() if not is_over(b))


def learner_text(board, m):
    """What the learner writes for the board's cell m: its number 1-9 in the learner's frame."""
    return str(learner_frame(board)[1].index(m) + 1)


def move_texts(board, optimal=False):
    """The legal moves of a board as the lobe writes them (learner_text), or only the optimal
    ones."""
    return [learner_text(board, m) for m in (optimal_moves if optimal else moves)(board)]


def starts(n, rng, openings):
    """n games' first boards: each after 0..openings uniformly random moves (exploring starts:
    every position keeps being visited)."""
    boards = []
    for _ in range(n):
        board = EMPTY
        for _ in range(rng.randint(0, openings)):
            board = after(board, rng.choice(moves(board)))
        boards.append(board)
    return boards


def result(board, text):
    """What the move `text` does: (the board after it, the mover's final score: 1 won, 0.5 drawn,
    None while the game goes on); an illegal or unreadable move is (None, 0.0), a forfeit."""
    m = read_move(board_move(board, text))
    if m not in moves(board):
        return None, 0.0
    nxt = after(board, m)
    return nxt, (1.0 if winner(nxt) else 0.5) if is_over(nxt) else None


def move_table(choose):
    """The policy choose(boards) -> move texts, asked once for all 4,520 positions not over, as
    {board: cell 0-8, or None where its text names no cell}."""
    boards = warm_positions(None)
    return {b: read_move(board_move(b, t)) for b, t in zip(boards, choose(boards))}


def evaluate(choose):
    """Exact results against the optimal player from each seat (exact_outcome enumerates every
    optimal reply) of the policy choose(boards) -> move texts (move_table), and its illegal-move
    rate over the 4,520 positions not over."""
    table = move_table(choose)
    r = {"illegal": sum(m not in moves(b) for b, m in table.items()) / len(table)}
    for seat, mark in enumerate("XO"):
        out = exact_outcome(table.get, seat)
        r.update({f"loss_{mark}": float(out["loss"]), f"draw_{mark}": float(out["draw"])})
    return r


def explain(choose, top=3):
    """Where the exact losses of the policy choose(boards) -> move texts come from, as text: from
    each seat, its losing moves (blunders) and the `top` costliest, by the share of games that
    reach them against the optimal player."""
    table, lines = move_table(choose), []
    for seat, mark in enumerate("XO"):
        found = blunders(table.get, seat)
        lost = float(sum(r for r, _, _ in found))
        lines.append(f"as {mark}: {len(found)} losing move{'s' * (len(found) != 1)}, reached in "
                     f"{lost:.2%} of games against the optimal player")
        lines += [f"  {float(r):6.2%} {to_prompt(b)} ({mark} to move) played "
                  f"{'illegal' if m not in moves(b) else m + 1}, "
                  f"optimal {' or '.join(str(o + 1) for o in optimal_moves(b))}"
                  for r, b, m in found[:top]]
    return "\n".join(lines)


if __name__ == "__main__":
    positions = reachable_positions()
    print(f"reachable positions: {len(positions)}")
    print(f"not over:            {sum(not is_over(b) for b in positions)}")
    print(f"game value:          {value(EMPTY)} (0 = draw)")
    loss = exact_outcome(uniform_policy, seat=0)["loss"]
    print(f"random X vs optimal O loses {loss} = {float(loss):.4%}")
    for seat in (0, 1):
        print(f"optimal as {'XO'[seat]}: {exact_outcome(optimal_policy, seat)}")
