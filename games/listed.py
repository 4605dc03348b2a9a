"""
A two-player board game as train_games.py's learner plays it: the lobe reads the position from
the side to move with its legal moves listed, each after a label, and answers with a label
(checkers, chess). Why a label and not the move written out: a game asks for 20-50 legal moves
in a row, and copying five characters exactly is a skill a 2-layer lobe learns slowly under
eq 1; one label leaves its games to strategy.

Every function takes the game's module, `rules`, first; a module binds them to itself (bind):

    rules.new_game()        a game at the start position
    rules.state(game)       the board as train_games.py passes it around (a string)
    rules.restore(board)    the game back from state() (or from render(): play.py)
    rules.choices(game)     {label: (the move as the mover sees it, the move)}
    rules.OPPONENTS         evaluation opponents: name -> alpha-beta depth (0: random)
    rules.EVAL_GAMES        games against each at evaluation, half from each seat
    rules.OPTIMAL_DEPTH     the depth of the 'optimal' opponent, the strongest here
"""
import random
from functools import partial

from games.base import negamax, search_move


def read_choice(rules, game, text):
    """The legal move a lobe's label picks, or None."""
    return rules.choices(game).get(text.strip() if isinstance(text, str) else None,
                                   (None, None))[1]


def result(rules, board, text):
    """What the label `text` does: (the board after its move, the mover's final score: 1 won,
    0.5 drawn, None while the game goes on); anything but a listed label is (None, 0.0), a
    forfeit."""
    game = rules.restore(board)
    move = read_choice(rules, game, text)
    if move is None:
        return None, 0.0
    game.play(move)
    return rules.state(game), (None if not game.over() else 0.5 if game.outcome(0) == 0 else 1.0)


def board_move(rules, board, text):
    """The move a lobe's label picks as the board writes it (play.py), else the text itself."""
    game = rules.restore(board)
    move = read_choice(rules, game, text)
    return text if move is None else game.move_text(move)


def move_texts(rules, board, optimal=False):
    """The labels of the legal moves, or (optimal) of those alpha-beta at OPTIMAL_DEPTH scores
    best: the strongest player here, a ceiling to compare with, not a solved game's optimum."""
    picks = rules.choices(rules.restore(board))
    if optimal:       # negamax scores the position after the move for the opponent
        scores = {k: -negamax(rules.restore(result(rules, board, k)[0]), rules.OPTIMAL_DEPTH - 1)
                  for k in picks}
        return [k for k in picks if scores[k] == max(scores.values())]
    return list(picks)


def random_games(rules, rng, n_games):
    """n_games between two uniformly random players: each game's positions not over, as
    (board, side to move), and the game at its end."""
    played = []
    for _ in range(n_games):
        game, seen = rules.new_game(), []
        while not game.over():
            seen.append((rules.state(game), game.to_move))
            game.play(rng.choice(game.legal_moves()))
        played.append((seen, game))
    return played


def warm_positions(rules, rng, n_games=200):
    """The warm start's boards: every position not over of n_games random games."""
    return [board for seen, _ in random_games(rules, rng, n_games) for board, _ in seen]


def warm_values(rules, rng, gamma, n_games=200):
    """The critic's warm start: every position not over of n_games random games with its value
    under random play, as negamax TD defines V (train_games.td_targets at gae_lambda 1): the
    game's result for the side to move, discounted by gamma per ply to the end. [(board, v)]."""
    return [(board, game.outcome(seat) * gamma ** (len(seen) - 1 - k))
            for seen, game in random_games(rules, rng, n_games)
            for k, (board, seat) in enumerate(seen)]


def starts(rules, n, rng, openings):
    """n games' first boards, each after 0..openings uniformly random plies."""
    boards = []
    for _ in range(n):
        game = rules.new_game()
        for _ in range(rng.randint(0, openings)):
            game.play(rng.choice(game.legal_moves()))
        boards.append(rules.state(game))
    return boards


def opponent_move(rules, kind, game, rng):
    """random: a uniformly random legal move; optimal (the strongest here) or alphabeta<d>:
    alpha-beta at OPTIMAL_DEPTH or d, ties broken at random."""
    depth = rules.OPTIMAL_DEPTH if kind == "optimal" else rules.OPPONENTS.get(kind, 0)
    return search_move(game, depth, rng) if depth else rng.choice(game.legal_moves())


def play_batch(rules, n_games, opponents, mover, rng, starts):
    """n_games in lockstep from the boards `starts`. Game g: the learner sits at seat g % 2
    against opponents[(g // 2) % len(opponents)] (random | optimal | alphabeta<d> | self: it
    plays both seats). mover(boards) -> [(label, note)] for every game where the learner is to
    move. Returns history[g] = [(seat, board, note)] (note None for the opponent) and
    outcome[g] = (r_seat0, r_seat1) in {+1, 0, -1}; an unlisted label loses on the spot."""
    games = [rules.restore(b) for b in starts]
    history, outcome = [[] for _ in games], [None] * len(games)
    kinds = [opponents[(g // 2) % len(opponents)] for g in range(len(games))]
    learner = [(0, 1) if kinds[g] == "self" else (g % 2,) for g in range(len(games))]
    while any(o is None for o in outcome):
        live = [g for g, o in enumerate(outcome) if o is None]
        mine = [g for g in live if games[g].to_move in learner[g]]
        boards = [rules.state(games[g]) for g in mine]
        for g, b, (text, note) in zip(mine, boards, mover(boards) if mine else []):
            history[g].append((games[g].to_move, b, note))
            move = read_choice(rules, games[g], text)
            if move is None:                                   # forfeit: the mover loses
                outcome[g] = (-1, 1) if games[g].to_move == 0 else (1, -1)
            else:
                games[g].play(move)
        for g in live:
            if outcome[g] is None and not games[g].over() and games[g].to_move not in learner[g]:
                history[g].append((games[g].to_move, rules.state(games[g]), None))
                games[g].play(opponent_move(rules, kinds[g], games[g], rng))
            if outcome[g] is None and games[g].over():
                outcome[g] = (games[g].outcome(0), games[g].outcome(1))
    return history, outcome


def evaluate(rules, choose):
    """The policy choose(boards) -> labels in EVAL_GAMES games against each of OPPONENTS from the
    start position, half from each seat: its win and loss rates (the rest are draws) and the
    share of all games it lost to an unlisted label."""
    r, forfeits = {}, 0
    for name in rules.OPPONENTS:
        history, outcome = play_batch(rules, rules.EVAL_GAMES, [name], lambda boards: [
            (t, t) for t in choose(boards)], random.Random(name),
            [rules.state(rules.new_game())] * rules.EVAL_GAMES)
        mine = [o[g % 2] for g, o in enumerate(outcome)]
        r[f"win_{name}"] = sum(m == 1 for m in mine) / rules.EVAL_GAMES
        r[f"loss_{name}"] = sum(m == -1 for m in mine) / rules.EVAL_GAMES
        forfeits += sum(h[-1][2] is not None and result(rules, h[-1][1], h[-1][2])[0] is None
                        for h in history)                   # the game ended on the lobe's move
    r["illegal"] = forfeits / (rules.EVAL_GAMES * len(rules.OPPONENTS))
    return r


def columns(rules):
    """train_games.py's table columns: win and loss against each opponent, and forfeits."""
    return [(f"{k}_{name}", f"{k} vs {name}", "{:.1%}") for name in rules.OPPONENTS
            for k in ("win", "loss")] + [("illegal", "illegal", "{:.1%}")]


def bind(rules):
    """The functions above bound to a game module, in this order: read_choice, result,
    board_move, move_texts, warm_positions, warm_values, starts, opponent_move, play_batch,
    evaluate."""
    return tuple(partial(f, rules) for f in (read_choice, result, board_move, move_texts,
                                             warm_positions, warm_values, starts, opponent_move,
                                             play_batch, evaluate))
