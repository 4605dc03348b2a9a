"""
Watch the two lobes talk, or play a game against a trained network or a search opponent.

    $ python play.py --task=addition --prompt="48213+9924"      # one Inner Dialogue Loop, shown
    $ python play.py --task=addition                            # interactive; Ctrl-D exits
    $ python play.py --task=parity --system=E --ckpt=out/wide/ckpt.pt --prompt=0110100101101
                                                                # the wide SLN: lobe and expert
                                                                #   per loop
    $ python play.py --game=tictactoe --opponent=optimal        # you against the perfect player
    $ python play.py --game=tictactoe --you=lobe --opponent=random --n_games=100   # a match: W/D/L

Each loop prints the left lobe's attempt, the right lobe's score as a bar and a number, and why
the loop stopped. It loads any checkpoint the training scripts write (--ckpt).
"""
import importlib
import random
import sys
from dataclasses import dataclass

from common import Checked, PosInt, Prob, UsageError, get_device, load_task, run
from idl import critic_moves
from sln import SYSTEMS, load_lobes, load_system


@dataclass
class Config(Checked):
    task: str = "addition"        # the task the checkpoint was trained on
    ckpt: str = "out/sft/ckpt.pt"  # any checkpoint a training script wrote
    system: str = "F"             # A B C D F E G (sln.py): F = lateralized IDL, E/G = wide SLN
    prompt: str = ""              # a question, e.g. "48213+9924"; empty: ask interactively
    idl_limit: PosInt = 4            # most loops of the dialogue
    threshold: Prob = 0.0        # the right lobe's acceptance threshold (0: 0.5; a game
                                 #   checkpoint's F: the one train_games.py evaluated it with)
    temperature: float = 0.0      # sampling temperature of the speaking lobe (0 = greedy)
    device: str = "cpu"           # auto | cpu | cuda | mps
    game: str = ""                # tictactoe | checkers | chess | gridworld: play a game instead
    you: str = "human"            # your side in a game: human | lobe | random | search | optimal
    opponent: str = "search"      # the other side: lobe | random | search | optimal
    depth: PosInt = 4                # search depth of the alpha-beta opponent
    n_games: PosInt = 1              # games to play; more than 1 prints the match's W/D/L


# -----------------------------------------------------------------------------
def bar(p, width=20):
    """The right lobe's probability as a coloured bar: red below 0.5, green from 0.5."""
    colour = "\033[32m" if p >= 0.5 else "\033[31m"
    filled = round(p * width)
    return f"{colour}{'#' * filled}{'.' * (width - filled)}\033[0m {p:.3f}"


def print_answer(task, prompt, d):
    """How the dialogue ended, and its answer as the model wrote it and as a human writes it."""
    answer = d.final[0]
    verdict = "correct" if task.check(prompt, answer) else "wrong"
    human = task.show(answer)
    wrote = f" (the model wrote {answer!r})" if human != answer else ""
    print(f"stop: {d.stop[0]} after {d.loops[0]} loop(s), {d.forward_passes[0]} forward passes; "
          f"answer {human}{wrote}: {verdict}")


def pose(task, question):
    """A human's question as the task's prompt; a question the task cannot pose is a UsageError."""
    try:
        return task.pose(question)
    except (ValueError, TypeError):
        raise UsageError(f"{question!r} is not a question for the {task.name} task") from None


def show_dialogue(system, task, question):
    """Run one prompt through the system and print every loop; a bad question is a UsageError."""
    prompt = pose(task, question)
    d = system.answer([prompt], max_new_tokens=64)
    print(f"prompt  {prompt}")
    for j, attempt in enumerate(d.attempts[0]):
        score = f"  right {bar(d.scores[0][j])}" if d.scores[0] else ""
        print(f"loop {j + 1}  left  {attempt!r:<24}{score}")
    print_answer(task, prompt, d)


def show_wide(system, task, question):
    """The wide SLN (E, G) on one prompt: the lobe and expert each loop ran, and the stop
    probability after it (P(halted by this loop); E reads the main gate, G the right lobe)."""
    prompt = pose(task, question)
    print(f"prompt  {prompt}")
    for j, (lobe, expert, stop) in enumerate(system.route(prompt)):
        print(f"loop {j + 1}  {lobe:>5} lobe, expert {expert}  stop {bar(stop)}")
    d = system.answer([prompt], max_new_tokens=64)
    print_answer(task, prompt, d)


def lobe_player(system, module=None):
    """A game player backed by a network: the board text is the prompt, the answer the move.
    A lobe of train_games.py reads its own view of the board (module.learner_prompt: tic-tac-toe,
    checkers and chess from the side to move, gridworld around the agent); a checkers or chess
    lobe answers with the label of a listed move, which module.board_move turns into the
    board's move."""
    def player(game, rng):
        board = game.render()
        said = system.answer([module.learner_prompt(board) if module else board],
                             max_new_tokens=16).final[0]
        return getattr(module, "board_move", lambda b, t: t)(board, said)
    return player


def critic_player(left, right, module, idl_limit, threshold):
    """System F of a train_games.py checkpoint, as that script measured it: the left lobe proposes
    moves and the critic scores the position each leads to (idl.critic_moves), where the text
    IDL would show it the move's text and feed a rejection back into a prompt it never read."""
    def player(game, rng):
        board = game.render()
        (said,), _ = critic_moves(module, left, right, [board], idl_limit, threshold)
        return getattr(module, "board_move", lambda b, t: t)(board, said)
    return player


def make_player(name, cfg, game_name):
    from games import alphabeta_player, human_player, random_player
    if name == "lobe":
        system = load_system(cfg.ckpt, cfg.system, get_device(cfg.device),
                             idl_limit=cfg.idl_limit, threshold=cfg.threshold or 0.5,
                             temperature=cfg.temperature)
        ckpt = {} if cfg.system in ("E", "G") else load_lobes(cfg.ckpt, "cpu")[2]
        view = ckpt.get("board_view")
        if not view:
            return lobe_player(system)
        # a checkpoint of train_games.py reads the board as games.<game>.learner_prompt shows it
        module = importlib.import_module(f"games.{game_name}")
        if view != module.VIEW:
            raise UsageError(f"{cfg.ckpt} reads the board as {view!r}, {game_name} today writes "
                             f"it as {module.VIEW!r}: train it again with train_games.py")
        if cfg.system == "F":      # train_games' F: the critic scores where a move leads
            threshold = cfg.threshold or ckpt.get("config", {}).get("threshold", 0.5)
            return critic_player(system.left, system.right, module, cfg.idl_limit, threshold)
        return lobe_player(system, module)
    if name == "optimal":
        module = __import__(f"games.{game_name}", fromlist=["optimal_player"])
        if not hasattr(module, "optimal_player"):
            raise UsageError(f"{game_name} has no optimal player; use --opponent=search")
        return module.optimal_player
    players = {"human": human_player, "random": random_player,
               "search": alphabeta_player(cfg.depth)}
    if name not in players:
        raise UsageError(f"unknown player {name!r}: human, lobe, random, search or optimal")
    return players[name]


def play_games(cfg):
    import games
    if cfg.game not in ("tictactoe", "checkers", "chess", "gridworld"):
        raise UsageError(f"unknown game {cfg.game!r}: tictactoe, checkers, chess or gridworld")
    try:
        factory = games.GAMES[cfg.game]
        you = make_player(cfg.you, cfg, cfg.game)
        opponent = make_player(cfg.opponent, cfg, cfg.game)
        if cfg.game == "gridworld":  # one player: you walk the maze
            outcomes, forfeit = games.play_game(factory().reset(seed=0), [you], random.Random(0))
            print("reached the goal" if outcomes[0] > 0 else
                  f"failed{': ' + forfeit[1] if forfeit else ''}")
            return
        counts = games.match(factory, you, opponent, cfg.n_games, seed=0)
    except ImportError as e:
        raise UsageError(str(e)) from None
    except (EOFError, KeyboardInterrupt):
        print("\nbye")
        return
    print(f"you ({cfg.you}) vs {cfg.opponent}: "
          f"W {counts['win']} / D {counts['draw']} / L {counts['loss']}"
          f" ({counts['illegal']} lost by illegal moves)")
    for e in counts["errors"][:5]:
        print("  ", e)


def main(cfg: Config):
    if cfg.game:
        return play_games(cfg)
    if cfg.system not in SYSTEMS:
        raise UsageError(f"unknown system {cfg.system!r}: choose from {', '.join(SYSTEMS)}")
    task = load_task(cfg.task)
    system = load_system(cfg.ckpt, cfg.system, get_device(cfg.device), idl_limit=cfg.idl_limit,
                         threshold=cfg.threshold or 0.5, temperature=cfg.temperature)
    print(f"system {cfg.system} ({SYSTEMS[cfg.system]}), {system.num_params():,} parameters, "
          f"from {cfg.ckpt}")
    show = show_wide if cfg.system in ("E", "G") else show_dialogue
    if cfg.prompt:
        return show(system, task, cfg.prompt)
    while True:  # interactive: bad input re-prompts, Ctrl-D exits cleanly
        try:
            question = input(f"{task.name}> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if question:
            try:
                show(system, task, question)
            except UsageError as e:
                print(f"error: {e}", file=sys.stderr)


if __name__ == "__main__":
    run(main, Config)
