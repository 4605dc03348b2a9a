"""
Actor-critic training of a lateralized SLN on whole games (paper §5.3-5.5, the games of §4.1):
tic-tac-toe against the perfect player, gridworld mazes, checkers and chess (python-chess).

Algorithm 2 with an external reward and TD errors (the NOTE after eq 8), PPO-clip (eq 8),
self-play against the critic (§5.4), Pavlovian gradient decay over moves (eq 9), eq 2's KL:

    for each batch of games:                                         Alg 2 lines 1-2
        the left lobe (actor) reads the board from the mover's side and writes its move
        (sampling at `temperature`) against an opponent (self | random | optimal), from the
        empty board or after 0..openings random moves; +1/0/-1 arrives at the end, and an
        illegal move forfeits                                        lines 4-18 as a game
        the right lobe is V over positions for the side to move, so one V covers both seats;
        the TD error is negamax, delta = r - gamma V(next) - V(now) (one player:
        r + gamma V(next) - V(now)), and gives the advantages (GAE)   the NOTE, steps 1-4
        right <- BCE toward (return + 1) / 2 on every move, eq 9     step 5, lines 22-24, 27
        left  <- PPO-clip (eq 8) with those advantages on its own moves, + kl_coef * eq 2
                                                                     steps 6-7, lines 19-20, 28
        §5.4: while the critic is not satisfied with the moves (capped), self_play=sampled:
        the left lobe samples a move at each of its positions, the critic scores it by one
        TD step (discounted as V is), eq 8;
        self_play=every: the critic values every legal move of every position of the batch by
        one TD step (move_values), and the left lobe takes eq 8 in expectation over its moves;
        critic_target=best also steps the critic toward each position's best move's value

The warm start (out_dir/warm) is a left lobe trained with eq 1 on uniformly random legal moves
only: it learns the format and the rules, no strategy; both lobes start from it and eq 2's
reference is its left lobe. With --warm_critic=random (checkers' default) the critic then learns by
eq 7 the values of random games' positions, as little strategy as the rules: what random play's
results say of a position. With --warm_moves=optimal the left lobe learns the perfect player's
moves instead: not Algorithm 2 but its ceiling, what this lobe learns from perfect labels in a
budget (row 0 of the table). Each evaluation measures the greedy left lobe alone (A) and the
lateralized IDL (F), where the critic accepts or rejects the left lobe's moves: tic-tac-toe exactly
(games.tictactoe.exact_outcome: against the optimal player from each seat, every optimal reply
enumerated), gridworld on 4x4-5x5 test maps and 8x8 ood maps (success, moves against the BFS
optimum), checkers in games against the random player and alpha-beta at depths 1 and 2, chess
against the random player and alpha-beta at depth 1; a tic-tac-toe run ends by listing the
positions A's exact losses come from (games.tictactoe.explain). What a game gives the learner lives
in games/<game>.py (PLAYERS, learner_prompt, play_batch, result, evaluate, ...): a tic-tac-toe lobe
reads the board from the mover's side and turned into one fixed image of its 8 symmetric ones, and
names its move in that frame; a gridworld walker sees the 5 x 5 cells around it, its trail counted
to two and the goal's direction, the same text on any map; it starts part way along a random walk
(exploring starts of its own) and has one seat, so the opponent and openings options are the
two-player games'; a checkers lobe reads the board turned to its side and its lettered legal moves,
and answers with a letter (the 'optimal' opponent there is alpha-beta at depth 2), and a chess lobe
the same way (games/listed.py; its 'optimal' is alpha-beta at depth 1).

    $ python train_games.py                                  # CPU, minutes
    $ python train_games.py --game=gridworld
    $ python train_games.py --game=checkers
    $ python train_games.py --game=chess                     # needs `pip install chess`
    $ python train_games.py --self_play_max=0 --opponent=optimal,self
    $ python train_games.py --init_from=resume               # continue an interrupted run
"""
import dataclasses
import importlib
import os
import random
import time
from dataclasses import dataclass
from typing import NamedTuple

import torch

from common import (Checked, Decay, Logger, PosFloat, PosInt, Prob, UsageError, autocast, frozen,
                    get_device, lr_at, make_optimizer, markdown_table, optimize, resume, run,
                    save_lobes, seed_everything, set_lr, writable_dir)
from data.tokenizer import decode_answer
from idl import board_ids, board_scores, critic_moves, move_scores, move_values, speak
from lobes import Lobe, LobeConfig, answer_ids, teacher_forced
from losses import critic_loss, gae_advantages, pavlovian_weights, reward_transform, sft_loss
from ppo import actor_update, expected_update, make_candidates, make_rollout
from sln import load_lobes

# what makes the warm start (out_dir/warm): a run that sets any of them otherwise cannot reuse it
WARM_KEYS = ("seed", "warm_iters", "warm_moves", "warm_critic", "n_layer", "n_head", "n_embd")
GAMES = ("tictactoe", "gridworld", "checkers", "chess")   # with a learner's interface (games/)


@dataclass
class Config(Checked):
    game: str = "tictactoe"       # tictactoe | gridworld | checkers | chess (one move per
                                  #   prompt through the IDL: train_actor_critic.py
                                  #   --task=tictactoe)
    out_dir: str = ""             # ckpt.pt, metrics.jsonl and the warm start (out_dir/warm) go
                                  #   here ('': out/<game>)
    init_from: str = "warm"       # warm (out_dir/warm/ckpt.pt, trained first if missing) | resume |
                                  #   a ckpt path
    device: str = "auto"          # auto (cuda, then mps, then cpu) | cpu | cuda | mps
    seed: int = 1337              # seeds the warm start, the games and the sampling
    max_iters: int = 0            # batches of games (Alg 2 line 1; 0: the game's DEFAULTS,
                                  #   tictactoe 1500, gridworld 300, checkers 30, chess 12)
    batch_size: int = 0           # games per batch (Alg 2 line 2; 0: tictactoe 64, gridworld 16
                                  #   walks, about as many of the lobe's moves; checkers, chess 16)
    temperature: PosFloat = 1.0   # sampling temperature at rollout AND in the update
                                  #   (so the first PPO ratio is 1)
    reward_transform: str = "D"   # §5.4: the critic's D as a reward: D | logD | logitD | 2D-1
    clip_eps: float = 0.2         # eq 8's epsilon
    ppo_epochs: PosInt = 2        # PPO updates per rollout (the first has ratio exactly 1)
    gamma: Prob = 0.0             # TD discount (0: the game's, tictactoe 1, gridworld 0.9: a
                                  #   walk's value falls with its length, so the critic can tell
                                  #   a nearer goal; checkers, chess 0.99)
    gae_lambda: Prob = 1.0        # GAE lambda; 1 = return - V (unbiased), 0 = the TD error delta
    kl_coef: float = 0.1          # eq 2's lambda: per-token KL to the warm start (0 = off); it
                                  #   keeps the rules the warm start knows (illegal moves grow
                                  #   without it)
    self_play_max: int = 1        # §5.4: extra rounds of eq 8 per batch until the critic is
                                  #   satisfied (0 = off); §5.4 warns that many actor updates
                                  #   per critic update overfit the actor to the batch
    satisfied: Prob = 0.9         # §5.4: the critic is satisfied when its mean score is >= this
    self_play: str = ""           # §5.4's moves: sampled (one per position of the lobe's, the
                                  #   critic scores it) | every (every legal move at every
                                  #   position of the batch, eq 8 in expectation over the lobe's
                                  #   distribution) ('': the game's, DEFAULTS)
    critic_target: str = ""       # the critic's TD targets: return (the games' returns: the value
                                  #   of the policies that played) | best (also every position's
                                  #   best move's value, the negamax backup: the value under best
                                  #   play; needs self_play=every) ('': the game's)
    pavlov_lambda: Decay = 0.0    # eq 9 decay over the moves before the reward (0 = every move 1)
    openings: int = 2             # each game starts after 0..openings uniformly random moves
                                  #   (exploring starts: every position keeps being visited)
    opponent: str = "optimal,random,self"  # opponents cycled over a batch, from: self | random |
                                  #   optimal (checkers: alpha-beta at depth 2; chess: 1)
    lr_left: PosFloat = 1e-3      # left lobe (actor) AdamW learning rate: lobes trained hard
    lr_right: PosFloat = 1e-3     # right lobe (critic) AdamW learning rate
    weight_decay: float = 0.01    # §5.4 guard against overfitting a batch (AdamW, matrices only)
    grad_clip: float = 1.0        # §5.4 guard: clip each lobe's gradient norm (0 = off)
    warm_iters: PosInt = 500      # eq 1 steps of the warm start (out_dir/warm)
    warm_moves: str = "random"    # its targets: random (uniform legal moves: the rules, no
                                  #   strategy) | optimal (the perfect player's: a supervised
                                  #   ceiling to compare with, not Algorithm 2)
    warm_critic: str = ""         # the critic's warm start: random (eq 7, warm_iters steps,
                                  #   toward the values of random games' positions: checkers,
                                  #   chess) | none (an untrained score head) ('': the game's,
                                  #   checkers random, the others none)
    n_layer: PosInt = 2           # blocks per lobe
    n_head: PosInt = 4            # attention heads per block
    n_embd: PosInt = 64           # residual width per lobe
    idl_limit: PosInt = 4         # F's attempts per move at evaluation (Alg 2 line 5)
    threshold: Prob = 0.0         # F plays the first proposal the critic scores >= this (Alg 2
                                  #   line 15), else the best-scored of idl_limit; 1: only a
                                  #   move that wins at once stops the search early (0: the
                                  #   game's, checkers 1, the others 0.5)
    eval_interval: PosInt = 100   # evaluate and checkpoint every this many batches
    wandb_project: str = ""       # log to this wandb project (needs `pip install wandb`)

    def check(self):
        if not 0 <= self.openings <= 4:
            raise UsageError(f"--openings must be 0..4 (five moves can end a game), "
                             f"got {self.openings}")
        if self.warm_moves not in ("random", "optimal"):
            raise UsageError(f"--warm_moves must be random or optimal, got {self.warm_moves!r}")
        if self.game not in GAMES:
            raise UsageError(f"--game must be one of {', '.join(GAMES)}, got {self.game!r}")
        if self.game == "chess":
            try:
                game_of(self).load_python_chess()
            except ImportError as e:
                raise UsageError(str(e)) from None
        # 0 or '': the game's own value (games/<game>.py DEFAULTS), filled in as the Config is
        # built, so every Config holds the values a run uses
        own = {"warm_critic": "none", "threshold": 0.5, **game_of(self).DEFAULTS,
               "out_dir": os.path.join("out", self.game)}
        for k, v in own.items():
            setattr(self, k, getattr(self, k) or v)
        if self.warm_critic not in ("random", "none"):
            raise UsageError(f"--warm_critic must be random or none, got {self.warm_critic!r}")
        if self.warm_critic == "random" and not hasattr(game_of(self), "warm_values"):
            raise UsageError(f"--warm_critic=random learns the values of random games' positions: "
                             f"checkers and chess have them, {self.game} does not")
        if self.self_play not in ("sampled", "every"):
            raise UsageError(f"--self_play must be sampled or every, got {self.self_play!r}")
        if self.critic_target not in ("return", "best"):
            raise UsageError(f"--critic_target must be return or best, got "
                             f"{self.critic_target!r}")
        if self.self_play == "sampled" and self.critic_target == "best":
            raise UsageError("--critic_target=best values every legal move: it needs "
                             "--self_play=every")
        if self.self_play == "every" and self.reward_transform != "D":
            raise UsageError("--self_play=every takes the critic's score D as the reward: "
                             "--reward_transform applies to --self_play=sampled")
        bad = set(self.opponent.split(",")) - {"self", "random", "optimal"}
        if bad:
            raise UsageError(f"--opponent takes self, random, optimal (comma-separated), "
                             f"got {', '.join(sorted(bad))}")
        try:
            reward_transform(torch.zeros(1), self.reward_transform)
        except ValueError as e:
            raise UsageError(f"--reward_transform: {e}") from None


class Turn(NamedTuple):
    """One move: who made it from which board; for the lobe's moves, what it read and wrote."""
    seat: int             # 0 = X, 1 = O (tic-tac-toe); black, white (checkers); white,
                          #   black (chess); 0 (gridworld)
    board: str            # the position before the move
    context: list = None  # the tokens the lobe read (None: the opponent moved)
    action: list = None   # the tokens it wrote, <|eos|> included


class Target(NamedTuple):
    """A move with what TD learning makes of it (td_targets)."""
    turn: Turn
    advantage: float      # GAE advantage: the actor's eq 8 weight
    ret: float            # the return, advantage + V(s): the critic's target
    weight: float         # eq 9's weight by the move's distance to the reward


# -----------------------------------------------------------------------------
def game_of(cfg):
    """The game's module: its rules and the learner's interface train_games needs (PLAYERS,
    learner_prompt, warm_positions, move_texts, starts, play_batch, result, evaluate, COLUMNS;
    move_reward(board, text) where a move earns a reward before the outcome: gridworld)."""
    return importlib.import_module(f"games.{cfg.game}")


def warm_steps(model, iters, batch_loss, cfg, device):
    """iters AdamW steps on batch_loss() (a fresh batch each) at train_sft.py's lr and weight
    decay, warm-up and decay: the warm starts' optimisation. Returns the last loss."""
    opt = make_optimizer(model, 2e-3, 0.1)
    for step in range(iters):
        set_lr(opt, lr_at(step, iters, 2e-3, warmup=min(50, iters // 5)))
        with autocast(device):
            loss = batch_loss()
        optimize(model, opt, loss, cfg.grad_clip)
    return loss.item()


def move_sft(cfg, device, path):
    """The games warm start: a lobe trained with eq 1 on uniformly drawn positions, each with a
    uniformly drawn legal move (warm_moves=random: the format and the rules, no strategy) or
    optimal move (optimal). Both lobes start from it, as both start from train_sft's eq 1 on
    tasks. With warm_critic=random the critic then takes eq 7 toward the values of random games'
    positions (game.warm_values), what random play's results say of a position (material, a man
    the opponent's listed jumps take); else its score head is untrained and F's first searches
    score at random."""
    seed_everything(cfg.seed)
    game = game_of(cfg)
    lcfg = LobeConfig(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd)
    left, right = Lobe(lcfg).to(device), Lobe(lcfg).to(device)
    rng = random.Random(f"{cfg.seed}/warm")
    optimal = cfg.warm_moves == "optimal"
    boards = [b for b in game.warm_positions(rng) if game.move_texts(b, optimal)]

    def moves_loss():                                                                   # eq 1
        batch = [rng.choice(boards) for _ in range(64)]
        answers = [answer_ids(rng.choice(game.move_texts(b, optimal))) for b in batch]
        return sft_loss(*teacher_forced(left, [board_ids(game, b) for b in batch], answers))
    loss = warm_steps(left, cfg.warm_iters, moves_loss, cfg, device)
    print(f"warm start: {cfg.warm_iters} eq 1 steps on {cfg.warm_moves} legal moves of "
          f"{len(boards)} positions, last loss {loss:.3f}")
    right.load_state_dict(left.state_dict())   # the critic starts from the same board features
    if cfg.warm_critic == "random":
        crng = random.Random(f"{cfg.seed}/critic")
        values = game.warm_values(crng, cfg.gamma)

        def values_loss():                                                              # eq 7
            batch = [crng.choice(values) for _ in range(64)]
            v = torch.tensor([v for _, v in batch], device=device)
            return critic_loss(board_scores(game, right, [b for b, _ in batch]), (v + 1) / 2)
        loss = warm_steps(right, cfg.warm_iters, values_loss, cfg, device)
        print(f"critic's warm start: {cfg.warm_iters} eq 7 steps on the values of "
              f"{len(values)} positions of random games, last loss {loss:.3f}")
    save_lobes(path, left, right, cfg=cfg, task=cfg.game, board_view=game.VIEW)


def warm_start(cfg, device):
    """Both lobes by --init_from: warm takes out_dir/warm/ckpt.pt (move_sft writes it when missing;
    one made with other WARM_KEYS is a usage error), resume continues out_dir/ckpt.pt, anything
    else is a checkpoint path. Returns left and right in train mode, the checkpoint and its
    path."""
    path = {"warm": os.path.join(cfg.out_dir, "warm", "ckpt.pt"),
            "resume": os.path.join(cfg.out_dir, "ckpt.pt")}.get(cfg.init_from, cfg.init_from)
    if cfg.init_from == "warm" and not os.path.exists(path):
        move_sft(cfg, device, path)
    left, right, ckpt = load_lobes(path, device, cfg.game)
    made, want = ckpt["config"], game_of(cfg).VIEW
    view = ckpt.get("board_view", want)
    keys = WARM_KEYS + (("gamma",) if cfg.warm_critic == "random" else ())  # critic's targets
    stale = [f"--{k}={made.get(k)}" for k in keys
             if cfg.init_from == "warm" and made.get(k) != getattr(cfg, k)]
    if stale or view != want:
        made_with = " ".join(stale) or f"lobes that read the board as {view!r}"
        raise UsageError(f"{path} was made with {made_with}: pick another --out_dir or delete it")
    return left.train(), right.train(), ckpt, path


@torch.no_grad()
def play_games(game, left, n_games, opponents, cfg, rng):
    """n_games in one batch (game.play_batch) from the game's exploring starts (tic-tac-toe: after
    0..openings random moves; gridworld: random train maps part way along a random walk); the
    left lobe samples its moves at `temperature`. Returns history[g] = [Turn] and outcome[g], the
    result of each seat."""
    def mover(boards):
        ctx = [board_ids(game, b) for b in boards]
        texts, actions, _ = speak(left, ctx, game.MOVE_TOKENS, cfg.temperature)
        return [(t, (c, a)) for t, c, a in zip(texts, ctx, actions)]
    starts = game.starts(n_games, rng, cfg.openings)
    history, outcome = game.play_batch(n_games, opponents, mover, rng, starts)
    return [[Turn(seat, board, *(note or ())) for seat, board, note in h] for h in history], outcome


@torch.no_grad()
def values_of(game, right, history):
    """V(s) in [-1, 1] of every position of every game, in order: 2 sigma(score) - 1, the
    expected result of the side to move."""
    scores = board_scores(game, right, [t.board for h in history for t in h])
    return 2 * torch.sigmoid(scores).cpu() - 1


def td_targets(history, outcome, values, cfg, players=2, move_reward=None):
    """Every move of every game with its GAE advantage and return, by negamax TD over plies.

    V is the expected result of the side to move (the board is seen from its side), so in a
    two-player game the next position's value is the opponent's and enters with a minus sign:
    the TD error (the NOTE after eq 8, step 4) is delta_t = r_t - gamma V(s_{t+1}) - V(s_t),
    i.e. GAE with discount -gamma; with one player (gridworld) it is the usual r_t +
    gamma V(s_{t+1}) - V(s_t). r_t is the game's move_reward(board, move text) for the lobe's
    moves (0 without one) and the last move adds the mover's +1/0/-1 (a forfeit is -1); V of the
    end is 0. values: V of every history entry in order. Returns [Target] (with move_reward,
    returns clipped to [-1, 1]); with pavlov_lambda > 0 a move dT of its seat's moves before
    that seat's reward weighs C0 exp(-lambda dT) (mean 1 per seat), else 1."""
    targets, k = [], 0
    for h, out in zip(history, outcome):
        v = values[k:k + len(h)]
        k += len(h)
        rewards = torch.tensor([move_reward(t.board, decode_answer(t.action))
                                if move_reward and t.action else 0.0 for t in h])
        rewards[-1] += float(out[h[-1].seat])
        adv, ret = gae_advantages(rewards, torch.cat([v, torch.zeros(1)]),
                                  -cfg.gamma if players == 2 else cfg.gamma, cfg.gae_lambda)
        if move_reward:          # costs on the way can take a return below V's range [-1, 1]
            ret = ret.clamp(-1.0, 1.0)
        w = torch.ones(len(h))
        for s in (0, 1):
            idx = [i for i, turn in enumerate(h) if turn.seat == s]
            if idx:
                w[idx] = pavlovian_weights(len(idx), cfg.pavlov_lambda) * len(idx)  # lambda 0: 1
        targets += [Target(turn, adv[i].item(), ret[i].item(), w[i].item())
                    for i, turn in enumerate(h)]
    return targets


def critic_step(game, right, targets):
    """The NOTE's step 5 as eq 7 on every move of the batch, the opponents' too: BCE toward
    (return + 1) / 2, whose gradient on the score logit is -delta / 2 at gae_lambda 0; eq 9 weighs
    a move by its distance to the reward (§5.5). Seen from the mover's side, one V covers both
    seats and every player's positions."""
    dev = right.wte.weight.device
    ret, w = torch.tensor([t.ret for t in targets]), torch.tensor([t.weight for t in targets])
    scores = board_scores(game, right, [t.turn.board for t in targets])
    return critic_loss(scores, ((ret + 1) / 2).to(dev), w.to(dev))


def sampled_play(game, left, right, ref, opt_left, boards, cfg):
    """§5.4 on a batch's positions, sampled: the left lobe samples a move at each, the critic
    scores it (move_scores, discounted by the game's gamma as V is), and eq 8 updates the lobe
    with advantage = reward(move) - reward(V(position)), a baseline the move does not change,
    until the critic's mean score reaches `satisfied`. With reward D that advantage is half the
    TD error r + gamma V(next) - V(position); undiscounted it would add (1 - gamma) V(next) / 2
    to every move into a position the critic likes, going round in one included."""
    ctx = [board_ids(game, b) for b in boards]
    with torch.no_grad():
        base = reward_transform(torch.sigmoid(board_scores(game, right, boards)).cpu(),
                                cfg.reward_transform)
    for rounds in range(cfg.self_play_max):
        with torch.no_grad():
            texts, actions, _ = speak(left.eval(), ctx, game.MOVE_TOKENS, cfg.temperature)
            p = move_scores(game, right, boards, texts, cfg.gamma)
        left.train()
        if p.mean() >= cfg.satisfied:
            return rounds
        adv = reward_transform(p, cfg.reward_transform) - base
        actor_update(left, opt_left, ref, make_rollout(left, ctx, actions, adv, cfg), cfg)
    return cfg.self_play_max


def every_move_play(game, left, right, ref, opt_left, opt_right, boards, cfg):
    """§5.4 on every legal move (game.move_texts): at each position of the batch the critic
    values every legal move (move_values), and
      - critic_target best: the critic steps toward each position's best move's value, the
        negamax TD backup (Q-learning's max): what bootstraps toward the value under best play,
        where the games' returns give the value of the policies that played them
      - the left lobe takes eq 8 in expectation over its own distribution of the moves
        (ppo.expected_update), until the critic's expected score reaches `satisfied`
    Returns the rounds of eq 8 and the critic's backup loss (0 without it)."""
    boards = list(dict.fromkeys(boards))      # each once, however many games reached it
    ctx = [board_ids(game, b) for b in boards]
    rows = [(i, t) for i, b in enumerate(boards) for t in game.move_texts(b)]
    group = torch.tensor([i for i, _ in rows])
    token = torch.tensor([answer_ids(t)[0] for _, t in rows])    # a game's move is one token
    q = move_values(game, right, [boards[i] for i, _ in rows], [t for _, t in rows], cfg.gamma)
    loss = torch.zeros(())
    if cfg.critic_target == "best":
        best = torch.full((len(boards),), -1.0).scatter_reduce(0, group, q, "amax")
        loss = critic_loss(board_scores(game, right, boards),
                           ((best + 1) / 2).to(right.wte.weight.device))
        optimize(right, opt_right, loss, cfg.grad_clip)
    score = (q + 1) / 2                 # the critic's expected score of each move (move_scores)
    for rounds in range(cfg.self_play_max):
        cand = make_candidates(left.eval(), ref, ctx, group, token, score, cfg)
        left.train()
        if cand.expected.mean() >= cfg.satisfied:
            return rounds, loss.item()
        expected_update(left, opt_left, cand, cfg)
    return cfg.self_play_max, loss.item()


@torch.no_grad()
def greedy_moves(game, left, boards, chunk=1024):
    """The greedy left lobe's move texts for boards, `chunk` boards a batch: system A's play."""
    return [t for i in range(0, len(boards), chunk) for t in
            left.answer([game.learner_prompt(b) for b in boards[i:i + chunk]], game.MOVE_TOKENS)]


@torch.no_grad()
def evaluate_games(game, left, right, cfg, chunk=1024):
    """game.evaluate (tic-tac-toe: exact results against the optimal player from each seat;
    gridworld: walks on test and ood maps) of the greedy left lobe alone (A) and of the
    lateralized IDL (F, critic_moves at cfg's idl_limit and threshold), with F's mean attempts
    per move."""
    left.eval(), right.eval()
    attempts = []

    def idl(boards):
        texts = []
        for i in range(0, len(boards), chunk):
            said, n = critic_moves(game, left, right, boards[i:i + chunk], cfg.idl_limit,
                                   cfg.threshold, seed=i)
            texts += said
            attempts.extend(n)
        return texts
    r = {**game.evaluate(lambda boards: greedy_moves(game, left, boards, chunk)),
         **{f"F_{k}": v for k, v in game.evaluate(idl).items()}}
    left.train(), right.train()
    return dict(r, F_attempts=sum(attempts) / len(attempts))


# -----------------------------------------------------------------------------
def main(cfg: Config):
    t_start = time.time()
    game = game_of(cfg)
    device = get_device(cfg.device)
    writable_dir(cfg.out_dir)        # before minutes of warm start, not at the first save
    seed_everything(cfg.seed)
    left, right, ckpt, path = warm_start(cfg, device)
    ref_path = ckpt.get("ref_path", path)         # a resumed run keeps the one it started from
    ref = frozen(load_lobes(ref_path, device)[0])  # eq 2's p_ref: the warm start's left lobe
    opt_left = make_optimizer(left, cfg.lr_left, cfg.weight_decay)
    opt_right = make_optimizer(right, cfg.lr_right, cfg.weight_decay)
    ckpt_path = os.path.join(cfg.out_dir, "ckpt.pt")
    if cfg.init_from == "resume":
        resume(ckpt, ckpt_path, opt_left=opt_left, opt_right=opt_right)
        start, rows = ckpt["iteration"], ckpt["rows"]
    else:
        start, rows = 0, [dict(iter=0, **evaluate_games(game, left, right, cfg), minutes=0.0)]
    print(f"{cfg.game}: left {left.num_params():,} + right {right.num_params():,} "
          f"parameters on {device}")
    log = Logger(cfg.out_dir, start, cfg.max_iters, "games", cfg.wandb_project,
                 dataclasses.asdict(cfg))
    if not start:
        log.print_row(rows[0], digits=4)
    t0 = time.time() - 60 * rows[-1]["minutes"]
    for it in range(start, cfg.max_iters):                                     # Alg 2 line 1
        rng = random.Random(f"{cfg.seed}/ac/{it}")      # the games, reproducible for exact resume
        # the step decays to a tenth (common.lr_at), as PPO's step is usually annealed: late
        # batches refine the greedy policy rather than overturn it
        set_lr(opt_left, lr_at(it, cfg.max_iters, cfg.lr_left, warmup=0))
        set_lr(opt_right, lr_at(it, cfg.max_iters, cfg.lr_right, warmup=0))
        with autocast(device):
            left.eval(), right.eval()
            # LOOP LOGIC: Alg 2 lines 2-18 as games: the actor moves, the opponent replies, and
            # +1/0/-1 arrives at the end (the external reward of the NOTE after eq 8)
            history, outcome = play_games(game, left, cfg.batch_size, cfg.opponent.split(","),
                                          cfg, rng)
            # LOOP LOGIC: the NOTE's steps 1-4: V of every position, TD errors, GAE advantages
            targets = td_targets(history, outcome, values_of(game, right, history), cfg,
                                 game.PLAYERS, getattr(game, "move_reward", None))
            mine = [t for t in targets if t.turn.context is not None]       # the lobe's moves
            left.train(), right.train()
            # LOOP LOGIC: step 5 (Alg 2 lines 22-24, 27): the critic toward the returns, eq 9
            loss_right = critic_step(game, right, targets)
            optimize(right, opt_right, loss_right, cfg.grad_clip)
            # LOOP LOGIC: steps 6-7 as eq 8 (Alg 2 lines 19-20, 28): PPO-clip with the advantages
            ro = make_rollout(left, [t.turn.context for t in mine], [t.turn.action for t in mine],
                              torch.tensor([t.advantage for t in mine]), cfg)
            stats = actor_update(left, opt_left, ref, ro, cfg)
            # LOOP LOGIC: §5.4, self-play against the updated critic on this batch's positions
            if cfg.self_play == "sampled":
                rounds, loss_best = sampled_play(game, left, right, ref, opt_left,
                                                 [t.turn.board for t in mine], cfg), 0.0
            else:
                rounds, loss_best = every_move_play(game, left, right, ref, opt_left, opt_right,
                                                    [t.turn.board for t in targets], cfg)
        reward = sum(o[g % game.PLAYERS] for g, o in enumerate(outcome)) / len(outcome)  # its seat
        forfeits = sum(game.result(t.turn.board, decode_answer(t.turn.action))[0] is None
                       for t in mine)
        stats = dict(stats, loss_right=loss_right.item(), loss_best=loss_best, reward=reward,
                     forfeits=forfeits, self_play=rounds)
        log.tick(left=stats["loss_left"], right=stats["loss_right"], reward=stats["reward"])
        log.log(it + 1, **stats)
        if (it + 1) % cfg.eval_interval and it + 1 < cfg.max_iters:
            continue
        row = dict(iter=it + 1, **evaluate_games(game, left, right, cfg), **stats,
                   minutes=(time.time() - t0) / 60)
        log.report(it + 1, row, rows, digits=4)
        save_lobes(ckpt_path, left, right, opt_left, opt_right, cfg, task=cfg.game,
                   iteration=it + 1, rows=rows, ref_path=ref_path, board_view=game.VIEW)
    log.close()
    print(table(game, rows))
    if hasattr(game, "explain"):      # tic-tac-toe: the positions the exact losses come from
        print(f"A, the greedy left lobe, at batch {rows[-1]['iter']}:\n" +
              game.explain(lambda boards: greedy_moves(game, left.eval(), boards)))
    print(f"wall time {(time.time() - t_start) / 60:.1f} minutes, warm start and evaluations "
          "included")
    return rows


def table(game, rows):
    """Every evaluation (game.COLUMNS) as a markdown table: the left lobe alone (A) and the
    lateralized IDL (F); iteration 0 is the warm start."""
    cols = [("iter", "iter", "{}")]
    for name, system in (("", "A"), ("F_", "F")):
        cols += [(name + key, f"{system} {head}", fmt) for key, head, fmt in game.COLUMNS]
    cols += [("F_attempts", "F attempts", "{:.2f}"), ("reward", "mean reward", "{:.3f}"),
             ("minutes", "minutes", "{:.1f}")]
    return markdown_table(rows, cols)


if __name__ == "__main__":
    run(main, Config, gpu_preset={"batch_size": 256})
