"""
The one game interface every game here shares, the generic opponents, and the match loop.

A game is a mutable position plus the rules. Seats are numbered 0 and 1; seat 0 moves first
(X in tic-tac-toe, black in checkers, white in chess). A one-player game (gridworld) has only
seat 0. A *player* is any callable `(game, rng) -> move_text`: a random mover, an alpha-beta
search, a human at the terminal, or a language model (play.py). The match turns the text back
into a move with `game.parse_move`; a player that answers with an illegal or unparsable move
loses that game on the spot (the forfeit is recorded), nothing raises.

    >>> from games import Checkers, random_player, alphabeta_player, match
    >>> match(Checkers, alphabeta_player(3), random_player, n=4, seed=0)
    {'win': 4, 'draw': 0, 'loss': 0, 'illegal': 0, 'opponent_illegal': 0, 'errors': []}

    $ python -m pytest tests/test_games.py -q
"""
import copy
import math
import random
from abc import ABC, abstractmethod

WIN = 1000.0  # a won position's search score; heuristics stay inside (-1, 1)


class Game(ABC):
    """The interface. Subclasses fill in the rules; `parse_move` and `clone` come for free."""
    name = "game"
    num_players = 2

    @abstractmethod
    def reset(self, seed=None) -> "Game":
        """Back to a start position (seed picks it where the game has several). Returns self."""

    @property
    @abstractmethod
    def to_move(self) -> int:
        """The seat whose turn it is: 0 or 1."""

    @abstractmethod
    def legal_moves(self) -> list:
        """Every legal move object in this position; empty when the game is over."""

    @abstractmethod
    def play(self, move) -> None:
        """Make a legal move (an object from legal_moves or parse_move)."""

    @abstractmethod
    def over(self) -> bool:
        """True once the game has ended."""

    @abstractmethod
    def outcome(self, player: int) -> int:
        """+1 won, 0 drawn, -1 lost, from seat `player`'s view. Only meaningful when over."""

    @abstractmethod
    def render(self) -> str:
        """The position as compact ASCII text: what a lobe reads as its prompt."""

    @abstractmethod
    def move_text(self, move) -> str:
        """A move as the text a player would type ('5', 'up', '11-15', 'e2e4')."""

    @abstractmethod
    def read_move(self, text: str):
        """The move that `text` spells, legal or not, or None when it spells no move at all."""

    def heuristic(self, player: int) -> float:
        """A guess in (-1, 1) at how good a non-final position is for `player` (search leaves)."""
        return 0.0

    # ------------------------------------------------------------------------
    def parse_move(self, text):
        """(move, None) for a legal move, else (None, "illegal move: e2e5") or
        (None, "unparsable move: 'hello'"). Never raises, whatever the text."""
        move = self.read_move(text) if isinstance(text, str) else None
        shown = text[:40] if isinstance(text, str) else text  # a lobe may ramble: quote a bit
        if move is None:
            return None, f"unparsable move: {shown!r}"
        if move not in self.legal_moves():
            return None, f"illegal move: {shown.strip()}"
        return move, None

    def clone(self) -> "Game":
        """An independent copy: playing on it leaves this game untouched."""
        return copy.deepcopy(self)


# -----------------------------------------------------------------------------
# Opponents that work for every game

def random_player(game, rng):
    """A uniformly random legal move."""
    return game.move_text(rng.choice(game.legal_moves()))


def negamax(game, depth, alpha=-math.inf, beta=math.inf):
    """Alpha-beta search: the score of `game` for the side to move, `depth` plies deep.

    Final positions score +-(WIN + depth) so a quicker win (more depth left) scores higher; at
    depth 0 the game's heuristic guesses. Negamax: my score is minus my opponent's best score.
    """
    if game.over():
        return game.outcome(game.to_move) * (WIN + depth)
    if depth == 0:
        return game.heuristic(game.to_move)
    best = -math.inf
    for move in game.legal_moves():
        child = game.clone()
        child.play(move)
        best = max(best, -negamax(child, depth - 1, -beta, -alpha))
        alpha = max(alpha, best)
        if alpha >= beta:  # the opponent will never allow this line: prune the rest
            break
    return best


def search_move(game, depth, rng):
    """The best move by alpha-beta at `depth`; ties go to a random one (moves are shuffled)."""
    moves = list(game.legal_moves())
    rng.shuffle(moves)
    best_move, alpha = None, -math.inf
    for move in moves:
        child = game.clone()
        child.play(move)
        score = -negamax(child, depth - 1, -math.inf, -alpha)
        if best_move is None or score > alpha:  # strictly better: keep the first of equals
            best_move, alpha = move, score
    return best_move


def alphabeta_player(depth):
    """A player that searches `depth` plies with alpha-beta and the game's heuristic."""
    def player(game, rng):
        return game.move_text(search_move(game, depth, rng))
    player.__name__ = f"alphabeta{depth}"
    return player


def human_player(game, rng, ask=None, show=print):
    """A person at the terminal: shows the board, re-asks until the move is legal.

    `ask` defaults to input(); an EOFError (Ctrl-D) propagates so the caller can exit cleanly.
    """
    ask = ask or input
    show(game.render())
    while True:
        move, error = game.parse_move(ask("your move: "))
        if error is None:
            return game.move_text(move)
        show(f"{error}; legal: {' '.join(game.move_text(m) for m in game.legal_moves())}")


# -----------------------------------------------------------------------------
# Playing games

def play_game(game, players, rng):
    """Play `game` to the end; players[seat] chooses for each seat. Returns (outcomes, forfeit).

    outcomes[seat] is +1/0/-1. A player whose text is illegal or unparsable loses at once:
    forfeit is then (seat, error message), else None.
    """
    while not game.over():
        seat = game.to_move
        text = players[seat](game, rng)
        move, error = game.parse_move(text)
        if error is not None:  # a forfeit: this seat loses, every other seat wins
            outcomes = [1 if s != seat else -1 for s in range(game.num_players)]
            return outcomes, (seat, error)
        game.play(move)
    return [game.outcome(s) for s in range(game.num_players)], None


def match(game_factory, player_a, player_b, n, seed=0):
    """Play n games of a two-player game, player_a taking seat 0 in even games, seat 1 in odd.

    Returns player_a's counts: {'win', 'draw', 'loss', 'illegal' (games a forfeited),
    'opponent_illegal' (games b forfeited), 'errors' (the forfeit messages, in order)}.
    Each game has its own rng seeded from (seed, game index), so a match is reproducible.
    """
    counts = {"win": 0, "draw": 0, "loss": 0, "illegal": 0, "opponent_illegal": 0, "errors": []}
    for i in range(n):
        rng = random.Random(f"match/{seed}/{i}")
        game = game_factory()
        if game.num_players != 2:
            raise ValueError(f"match needs a two-player game; {game.name} has {game.num_players}")
        game.reset(seed=rng.randrange(2**31))
        seat_a = i % 2  # alternate seats: a moves first in even games
        players = [player_a, player_b] if seat_a == 0 else [player_b, player_a]
        outcomes, forfeit = play_game(game, players, rng)
        counts[{1: "win", 0: "draw", -1: "loss"}[outcomes[seat_a]]] += 1
        if forfeit is not None:  # record who forfeited and why
            who = "a" if forfeit[0] == seat_a else "b"
            counts["illegal" if who == "a" else "opponent_illegal"] += 1
            counts["errors"].append(f"game {i}: player {who}: {forfeit[1]}")
    return counts
