"""
Actor-critic training of a lateralized SLN (paper §5.3-5.5: Algorithm 2, PPO-clip eq 8, the TD
note after eq 8, self-play §5.4, Pavlovian gradient decay eq 9; eq 2's KL to a reference, §5.1).

    for each minibatch:                                                Alg 2 lines 1-2
        the left lobe (actor) answers, sampling at `temperature`; the right lobe (critic)
        scores each answer                                              lines 4-18
        right <- eq 7: x + y_true (label 1) against the actor's x_left  lines 22-24 (eq 9: §5.5)
        left  <- PPO-clip (eq 8), the ratio against the rollout's own log-probs, with
                 advantage = reward - baseline, + kl_coef * KL to the warm start (eq 2)
                                                                        lines 19-20, 27-28
        §5.4: while the critic is not satisfied (capped): sample again, score, update the left lobe

Two modes; --task picks one:
    tasks  (addition, wordproblems, ...) through the Inner Dialogue Loop. Reward: the checker's 0/1
           (external reward, the default) or the critic's probability D alone (--reward=critic).
           Baseline: the mean reward of the other samples of the same prompt (leave-one-out).
    games  (--task=tictactoe) whole games: the left lobe reads the board and writes its move, the
           right lobe is V over positions, the reward +1/0/-1 arrives at the end (an illegal move
           forfeits) and the TD error delta = r + gamma V(next) - V(now) gives the advantages (GAE).
           Opponents: self | random | optimal. The warm start is a left lobe trained with eq 1 on
           uniformly random legal moves only; evaluation is exact (games.tictactoe.exact_outcome):
           the greedy lobe against the optimal player from each seat.

    $ python train_actor_critic.py                                    # tic-tac-toe, 6.5 min on 2 cores
    $ python train_actor_critic.py --task=addition --out_dir=out/ac_add   # from out/sft/ckpt.pt
    $ python train_actor_critic.py --init_from=resume                 # continue an interrupted run

Measured (one CPU thread, seed 1337). Tic-tac-toe with the defaults, exact loss rate of the greedy
lobe against the optimal player: as X 100% -> 0%, as O 97.2% -> 64.3% (51.0% at batch 1000; the
goal of 0% from both seats is not reached: O must answer all nine optimal openings). §5.4 self-play
(--self_play_max=1) on the same budget did worse after 400 batches (X 75%, O 96% against 0%, 64%
without), so it is off by default. Addition from out/sft/ckpt.pt, 60 minibatches of 32 prompts x 4
samples, checker reward: left lobe alone (A) test 99.4% -> 99.8%, ood 9.2% -> 9.6% (plain eq 7)
or 99.6%, 10.0% (pavlov_lambda 0.3); the IDL (F) ood 9.2% -> 9.4% / 10.0%. The critic starts out
accepting correct answers (its score reads its likelihood, lobes.py), so the checker teaches little.
"""
import copy
import dataclasses
import os
import random
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import train_sft
from common import (Logger, UsageError, autocast, get_device, load_task, lr_at, make_optimizer, markdown_table,
                    optimize, run, save_checkpoint, save_lobes, seed_everything, set_lr, set_rng_state)
from data.tokenizer import EOS, decode_answer
from games.tictactoe import (after, exact_outcome, is_over, moves, play_batch, reachable_positions, read_move,
                             to_prompt, winner)
from idl import attempt_rows, lateralized
from lobes import Lobe, LobeConfig, answer_ids, answer_scores, pad_right, prompt_ids, span_mask
from losses import (critic_loss, gae_advantages, leave_one_out_baseline, pavlovian_weights, ppo_clip_loss,
                    reward_transform, token_kl)
from sln import evaluate_pair, load_lobes

GAMES = ("tictactoe",)   # tasks that run in games mode
# Per mode, what a 0 in the config means: games train fresh lobes hard; tasks fine-tune an SFT lobe gently
MODE_DEFAULTS = {"games": dict(iters=1500, lr_left=1e-3, lr_right=1e-3),
                 "tasks": dict(iters=100, lr_left=1e-5, lr_right=1e-4)}
MOVE_TOKENS = 2          # a move is written as one digit 1-9, then <|eos|>


@dataclass
class Config:
    task: str = "tictactoe"       # tictactoe (games mode) | addition | wordproblems | multiplication | parity (tasks)
    out_dir: str = "out/actor_critic"  # ckpt.pt, metrics.jsonl and the games warm start (out_dir/warm) go here
    init_from: str = "warm"       # warm (tasks: sft_ckpt; games: out_dir/warm, trained if missing) | resume | a path
    sft_ckpt: str = "out/sft/ckpt.pt"  # tasks mode's warm start (train_sft.py writes it if missing)
    device: str = "auto"          # auto (cuda, then mps, then cpu) | cpu | cuda | mps
    seed: int = 1337              # seeds the warm start, the prompts, the games and the sampling
    iters: int = 0                # minibatches (Alg 2 line 1; games: batches of games); 0: the mode's default
    batch_size: int = 64          # b: prompts per minibatch (Alg 2 line 2); games: games per batch
    group: int = 4                # tasks: samples per prompt; each one's baseline is the others' mean
    temperature: float = 1.0      # sampling temperature at rollout AND in the update (first PPO ratio = 1)
    idl_limit: int = 2            # tasks: IDL loops per rollout (Alg 2 line 5)
    threshold: float = 0.5        # tasks: the critic accepts an answer at this probability (Alg 2 line 15)
    reward: str = "checker"       # tasks: checker (external reward) | critic (the right lobe's D alone)
    reward_transform: str = "D"   # the critic's D as a reward: D (eq 8 as printed) | logD | logitD | 2D-1
    clip_eps: float = 0.2         # eq 8's epsilon
    ppo_epochs: int = 2           # PPO updates per rollout (the first has ratio exactly 1)
    gamma: float = 1.0            # games: TD discount
    gae_lambda: float = 1.0       # games: GAE lambda; 1 = return - V (unbiased), 0 = the TD error delta
    kl_coef: float = 0.0          # eq 2's lambda: per-token KL to the warm start (0 = off)
    self_play_max: int = 0        # §5.4: extra sample-and-update rounds per minibatch until satisfied (0 = off)
                                  # (off by default: see the measurements in the docstring)
    satisfied: float = 0.9        # §5.4: the critic is satisfied when its mean score is >= this
    pavlov_lambda: float = 0.0    # eq 9 decay (tasks: y_true's prefixes, IDL loops; games: moves to the reward); 0 = plain
    opponent: str = "optimal,random,self"  # games: opponents cycled over a batch, from: self | random | optimal
    lr_left: float = 0.0          # left lobe (actor) AdamW learning rate; 0: the mode's default
    lr_right: float = 0.0         # right lobe (critic) AdamW learning rate; 0: the mode's default
    weight_decay: float = 0.01    # §5.4 guard against overfitting a minibatch (AdamW, matrices only)
    grad_clip: float = 1.0        # §5.4 guard: clip each lobe's gradient norm (0 = off)
    warm_iters: int = 500         # games: eq 1 steps on uniformly random legal moves (the warm start)
    n_layer: int = 2              # games: blocks per lobe (tasks take the SFT checkpoint's lobes)
    n_head: int = 4               # games: attention heads per block
    n_embd: int = 64              # games: residual width per lobe
    eval_interval: int = 100      # evaluate and checkpoint every this many minibatches
    n_eval: int = 500             # tasks: test and ood problems per evaluation
    max_new_tokens: int = 0       # tasks: generation budget (0: the task's longest ood answer + 4)
    sft_iters: int = 0            # steps of the tasks warm start if it must be trained (0: train_sft's default)
    wandb_project: str = ""       # log to this wandb project (needs `pip install wandb`)


def check(cfg):
    """The ranges check_config cannot know."""
    if cfg.reward not in ("checker", "critic"):
        raise UsageError(f"--reward must be checker or critic, got {cfg.reward!r}")
    if cfg.reward_transform not in ("D", "logD", "logitD", "2D-1"):
        raise UsageError(f"--reward_transform must be D, logD, logitD or 2D-1, got {cfg.reward_transform!r}")
    bad = set(cfg.opponent.split(",")) - {"self", "random", "optimal"}
    if bad:
        raise UsageError(f"--opponent takes self, random, optimal (comma-separated), got {', '.join(sorted(bad))}")
    for name in ("gamma", "gae_lambda", "satisfied"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise UsageError(f"--{name} must be in [0, 1], got {getattr(cfg, name)}")
    for name in ("group", "ppo_epochs", "temperature"):
        if getattr(cfg, name) <= 0:
            raise UsageError(f"--{name} must be > 0, got {getattr(cfg, name)}")


# -----------------------------------------------------------------------------
# The actor's update, both modes: eq 8 against the rollout policy, eq 2 against the reference
@dataclass
class Rollout:
    contexts: list            # what the left lobe read (token lists)
    actions: list             # what it wrote (token lists, <|eos|> included)
    advantages: torch.Tensor  # (N,) one per answer; the same on each of its tokens
    old_logp: torch.Tensor    # (N, T) per-token log-probs under the rollout policy


def policy_logprobs(model, contexts, actions, temperature):
    """log pi(action tokens | context) at temperature: per token (B, T), full (B, T, V), mask (B, T)."""
    dev = model.wte.weight.device
    idx, _ = pad_right([c + a for c, a in zip(contexts, actions)], dev)
    logits, _, _ = model(idx[:, :-1])
    full = F.log_softmax(logits.float() / temperature, dim=-1)                 # (B, T, V)
    mask = span_mask([len(c) - 1 for c in contexts], [len(a) for a in actions], full.size(1), dev)
    return full.gather(2, idx[:, 1:, None]).squeeze(2) * mask, full, mask


def make_rollout(left, contexts, actions, advantages, cfg):
    """Freeze the rollout policy's log-probs: the same lobe, temperature and batch as the update."""
    with torch.no_grad():
        old, _, _ = policy_logprobs(left, contexts, actions, cfg.temperature)
    return Rollout(contexts, actions, advantages.to(old.device).float(), old)


def ppo_step(left, ref, ro, cfg):
    """Eq 8 on a rollout, + kl_coef * eq 2. Returns (loss, mean ratio over answer tokens, KL)."""
    logp, full, mask = policy_logprobs(left, ro.contexts, ro.actions, cfg.temperature)
    loss, ratio = ppo_clip_loss(logp, ro.old_logp, ro.advantages, mask, cfg.clip_eps)
    kl = torch.zeros((), device=logp.device)
    if cfg.kl_coef > 0:
        with torch.no_grad():
            _, ref_full, _ = policy_logprobs(ref, ro.contexts, ro.actions, cfg.temperature)
        kl = token_kl(full, ref_full, mask)
    return loss + cfg.kl_coef * kl, ((ratio * mask).sum() / mask.sum()).detach(), kl.detach()


def actor_update(left, opt_left, ref, ro, cfg):
    """ppo_epochs updates on one rollout (Alg 2 lines 19-20, 27-28); the first update's stats."""
    first = None
    for _ in range(cfg.ppo_epochs):
        loss, ratio, kl = ppo_step(left, ref, ro, cfg)
        optimize(left, opt_left, loss, cfg.grad_clip)
        first = first or dict(loss_left=loss.item(), ratio=ratio.item(), kl=kl.item())
    return first


def sample(left, contexts, max_new_tokens, temperature):
    """The left lobe's sampled answers: token lists up to and including <|eos|>, and their text.
    Every sampled token stays in the action, a <|pad|> drawn mid-answer too: dropping it would
    leave its probability out of eq 8, and a policy can drift toward tokens it is never charged for."""
    tokens, _ = left.generate(contexts, max_new_tokens, temperature)
    actions = [row[:row.index(EOS) + 1] if EOS in row else row for row in tokens.tolist()]
    return actions, [decode_answer(a) for a in actions]


# -----------------------------------------------------------------------------
# Tasks mode: the IDL's attempts, checker or critic rewards, a leave-one-out baseline
def rewards_of(task, prompts, answers, d_right, cfg):
    """The reward of each answer: the checker's 0/1, or the critic's probability D transformed."""
    if cfg.reward == "checker":
        return torch.tensor([task.check(p, a) for p, a in zip(prompts, answers)])
    return reward_transform(torch.as_tensor(d_right, dtype=torch.float32), cfg.reward_transform)


def task_critic_loss(right, task, d, rows, pairs, cfg):
    """Alg 2 lines 22-24, eq 7: y_true (label 1) against every IDL attempt (label 0, or the checker's
    verdict with --reward=checker). pavlov_lambda > 0 is §5.5: every prefix of y_true is a positive
    and the attempts of a row decay over IDL loops, both weighted by eq 9; 0 is plain eq 7 (whole
    y_true, every attempt weight 1). Positives and negatives weigh the same in total (line 435)."""
    ctx, truths = [prompt_ids(p) for p, _ in pairs], [answer_ids(a) for _, a in pairs]
    scores, mask = answer_scores(right, ctx, truths)                           # every prefix's score
    w = torch.zeros_like(mask)
    for i, (c, y) in enumerate(zip(ctx, truths)):
        lam = cfg.pavlov_lambda
        w[i, len(c):len(c) + len(y)] = pavlovian_weights(len(y), lam) if lam > 0 else F.one_hot(
            torch.tensor(len(y) - 1), len(y)).float()
    pos = critic_loss(scores[mask > 0], torch.ones(int(mask.sum().item()), device=mask.device), w[mask > 0])
    seqs = [prompt_ids(d.prompts[i]) + answer_ids(d.attempts[i][j]) for i, j, _, _ in rows]
    labels = torch.tensor([task.check(d.prompts[i], d.attempts[i][j]) if cfg.reward == "checker" else 0.0
                           for i, j, _, _ in rows])
    loop_w = torch.tensor([float(pavlovian_weights(d.loops[i], cfg.pavlov_lambda)[j] * d.loops[i])
                           if cfg.pavlov_lambda > 0 else 1.0 for i, j, _, _ in rows])
    dev = mask.device
    neg = critic_loss(right.score(seqs), labels.to(dev), loop_w.to(dev))
    return (pos + neg) / 2


def tasks_iteration(left, right, ref, opt_left, opt_right, task, rng, cfg):
    """One minibatch of Algorithm 2 on a task (lines in the comments), then §5.4's self-play."""
    pairs = [task.sample(rng, "train") for _ in range(cfg.batch_size)]         # Alg 2 line 2
    prompts = [p for p, _ in pairs for _ in range(cfg.group)]                  # `group` samples per prompt
    left.eval(), right.eval()
    # LOOP LOGIC: Alg 2 lines 4-18, the IDL sampling at `temperature`; line 13's critic scores
    d = lateralized(left, right, prompts, cfg.idl_limit, cfg.threshold, cfg.temperature, cfg.max_new_tokens)
    rows = attempt_rows(d)
    r = rewards_of(task, [d.prompts[i] for i, _, _, _ in rows], [d.attempts[i][j] for i, j, _, _ in rows],
                   [d.scores[i][j] for i, j, _, _ in rows], cfg)
    adv = r - leave_one_out_baseline(r, [i // cfg.group for i, _, _, _ in rows], [i for i, _, _, _ in rows])
    ro = make_rollout(left, [c for _, _, c, _ in rows], [a for _, _, _, a in rows], adv, cfg)
    left.train(), right.train()
    # LOOP LOGIC: Alg 2 lines 22-24, the critic's eq 7 (§5.5's eq 9 when pavlov_lambda > 0)
    loss_right = task_critic_loss(right, task, d, rows, pairs, cfg)
    optimize(right, opt_right, loss_right, cfg.grad_clip)
    # LOOP LOGIC: Alg 2 lines 19-20 and 27-28, the actor's PPO-clip (eq 8) against the rollout
    stats = actor_update(left, opt_left, ref, ro, cfg)
    # LOOP LOGIC: §5.4, sample and update again until the (updated) critic is satisfied
    rounds = self_play_tasks(left, right, ref, opt_left, task, prompts, cfg)
    return dict(stats, loss_right=loss_right.item(), reward=r.mean().item(), self_play=rounds,
                critic_p=sum(s[-1] for s in d.scores) / len(d.scores))


def self_play_tasks(left, right, ref, opt_left, task, prompts, cfg):
    """§5.4 steps 2(a)-(e): sample x_left ~ Actor(x), score it with the critic, and update the actor
    (eq 8) until the critic's mean probability reaches `satisfied`, at most self_play_max rounds.
    Returns the rounds that updated. Clipping (eq 8 and grad_clip) and weight decay guard the minibatch."""
    ctx, ids = [prompt_ids(p) for p in prompts], list(range(len(prompts)))
    for rounds in range(cfg.self_play_max):
        with torch.no_grad():
            actions, answers = sample(left.eval(), ctx, cfg.max_new_tokens, cfg.temperature)
            p_right = torch.sigmoid(right.score([c + answer_ids(a) for c, a in zip(ctx, answers)])).cpu()
        left.train()
        if p_right.mean() >= cfg.satisfied:                    # the critic is satisfied: stop
            return rounds
        r = rewards_of(task, prompts, answers, p_right, cfg)
        adv = r - leave_one_out_baseline(r, [i // cfg.group for i in ids], ids)
        actor_update(left, opt_left, ref, make_rollout(left, ctx, actions, adv, cfg), cfg)
    return cfg.self_play_max


# -----------------------------------------------------------------------------
# Games mode (tic-tac-toe): whole games, +1/0/-1 at the end, TD errors with the right lobe as V
def board_ids(board):
    """A position as the lobes read it: <|bos|> x.o|.x.|..o <|sep|>."""
    return prompt_ids(to_prompt(board))


def warm_start_games(cfg, device, path):
    """The games warm start: a lobe trained with eq 1 on uniformly random legal moves from uniformly
    drawn positions (it learns the format and the rules, no strategy). Both lobes start from it, as
    both start from train_sft's eq 1 in tasks mode; the right lobe's score head is untrained."""
    seed_everything(cfg.seed)
    lcfg = LobeConfig(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd)
    left, right = Lobe(lcfg).to(device), Lobe(lcfg).to(device)
    opt = make_optimizer(left, 2e-3, 0.1)
    boards = sorted(b for b in reachable_positions() if not is_over(b))
    rng = random.Random(f"{cfg.seed}/warm")
    for step in range(cfg.warm_iters):
        batch = [rng.choice(boards) for _ in range(64)]
        answers = [answer_ids(str(rng.choice(moves(b)) + 1)) for b in batch]
        set_lr(opt, lr_at(step, cfg.warm_iters, 2e-3, warmup=min(50, cfg.warm_iters // 5)))
        with autocast(device):
            loss = train_sft.lm_step(left, [board_ids(b) for b in batch], answers)   # eq 1
        optimize(left, opt, loss, cfg.grad_clip)
    print(f"warm start: {cfg.warm_iters} eq 1 steps on random legal moves, last loss {loss.item():.3f} "
          f"(uniform over legal moves is about 1.6)")
    right.load_state_dict(left.state_dict())   # the critic starts from the same board-reading features
    save_checkpoint(path, left=left.state_dict(), right=right.state_dict(), left_config=dataclasses.asdict(lcfg),
                    right_config=dataclasses.asdict(lcfg), config=dataclasses.asdict(cfg), task=cfg.task)


@torch.no_grad()
def play_games(left, n_games, opponents, cfg, rng):
    """n_games of tic-tac-toe in one batch (games.tictactoe.play_batch); the left lobe samples its
    moves at `temperature`. Returns history[g] = [(seat, board, context or None, action or None)]
    and outcome[g] = (r_X, r_O)."""
    def mover(boards):
        ctx = [board_ids(b) for b in boards]
        actions, texts = sample(left, ctx, MOVE_TOKENS, cfg.temperature)
        return [(t, (c, a)) for t, c, a in zip(texts, ctx, actions)]
    history, outcome = play_batch(n_games, opponents, mover, rng)
    return [[(seat, board, *(note or (None, None))) for seat, board, note in h] for h in history], outcome


def td_targets(history, outcome, values, cfg):
    """Per game and seat, the positions where that seat moved, with GAE advantages and returns.
    The TD error is delta_t = r_t + gamma V(s_{t+1}) - V(s_t) (the note after eq 8, step 4): s_{t+1} is
    the seat's next turn, r is 0 until the final +1/0/-1, V of the end is 0. values: V of every
    history entry in order. Returns rows (entry, advantage, return, eq 9 weight): with pavlov_lambda
    > 0 a move dT moves before the reward weighs C0 exp(-lambda dT) (mean 1 per trajectory), else 1."""
    rows, k = [], 0
    for h, out in zip(history, outcome):
        v = values[k:k + len(h)]
        k += len(h)
        for s in (0, 1):
            idx = [i for i, e in enumerate(h) if e[0] == s]
            if not idx:
                continue
            rewards = torch.zeros(len(idx))
            rewards[-1] = float(out[s])
            adv, ret = gae_advantages(rewards, torch.cat([v[idx], torch.zeros(1)]), cfg.gamma, cfg.gae_lambda)
            w = pavlovian_weights(len(idx), cfg.pavlov_lambda) * len(idx)   # lambda 0: all 1
            rows += [(h[i], adv[n].item(), ret[n].item(), w[n].item()) for n, i in enumerate(idx)]
    return rows


def move_scores(right, boards, texts):
    """The critic's expected score (win 1, draw 1/2, loss 0) of each move: the final result if the
    move ends the game, 0 if it is illegal, else 1 - sigma(V logit of the position after it)
    (the critic scores a position for the side to move, here the opponent)."""
    scores, ask = [0.0] * len(boards), []
    for i, (b, text) in enumerate(zip(boards, texts)):
        m = read_move(text)
        if m in moves(b):
            nxt = after(b, m)
            if is_over(nxt):
                scores[i] = 1.0 if winner(nxt) else 0.5
            else:
                ask.append((i, nxt))
    if ask:
        p = torch.sigmoid(right.score([board_ids(b) for _, b in ask])).tolist()
        for (i, _), pi in zip(ask, p):
            scores[i] = 1.0 - pi
    return torch.tensor(scores)


def self_play_games(left, right, ref, opt_left, boards, cfg):
    """§5.4 on a batch's positions: the left lobe samples a move at each, the critic scores it
    (move_scores), and eq 8 updates the lobe with advantage = reward(move) - reward(V(position)),
    a baseline the move does not change, until the critic's mean score reaches `satisfied`."""
    ctx = [board_ids(b) for b in boards]
    with torch.no_grad():
        base = reward_transform(torch.sigmoid(right.score(ctx)).cpu(), cfg.reward_transform)
    for rounds in range(cfg.self_play_max):
        with torch.no_grad():
            actions, texts = sample(left.eval(), ctx, MOVE_TOKENS, cfg.temperature)
            p = move_scores(right, boards, texts)
        left.train()
        if p.mean() >= cfg.satisfied:
            return rounds
        adv = reward_transform(p, cfg.reward_transform) - base
        actor_update(left, opt_left, ref, make_rollout(left, ctx, actions, adv, cfg), cfg)
    return cfg.self_play_max


def games_iteration(left, right, ref, opt_left, opt_right, task, rng, cfg):
    """One batch of games: Algorithm 2 with the external reward (TD), then §5.4's self-play."""
    left.eval(), right.eval()
    # LOOP LOGIC: Alg 2 lines 4-18 as games: the actor moves, the opponent replies, +1/0/-1 at the end
    history, outcome = play_games(left, cfg.batch_size, cfg.opponent.split(","), cfg, rng)
    entries = [e for h in history for e in h]
    with torch.no_grad():                                       # V(s) = 2 sigma(score) - 1, side to move
        values = 2 * torch.sigmoid(right.score([board_ids(e[1]) for e in entries])).cpu() - 1
    rows = [r for r in td_targets(history, outcome, values, cfg) if r[0][2] is not None]   # the lobe's moves
    left.train(), right.train()
    # LOOP LOGIC: the critic (step 5 of the note): BCE toward (return + 1) / 2, whose gradient on the
    # score logit is -delta / 2 at lambda 0; eq 9 weighs a move by its distance to the reward (§5.5).
    # V is the lobe's expected result when it is to move: the opponent's positions would teach the
    # opposite value for boards that look the same (who is the lobe is not on the board)
    ret, w = torch.tensor([g for _, _, g, _ in rows]), torch.tensor([wi for _, _, _, wi in rows])
    dev = left.wte.weight.device
    scores = right.score([board_ids(e[1]) for e, _, _, _ in rows])
    loss_right = critic_loss(scores, ((ret + 1) / 2).to(dev), w.to(dev))
    optimize(right, opt_right, loss_right, cfg.grad_clip)
    # LOOP LOGIC: the actor (steps 6-7 as eq 8): PPO-clip with the TD/GAE advantages
    mine = [(e, a) for e, a, _, _ in rows]
    ro = make_rollout(left, [e[2] for e, _ in mine], [e[3] for e, _ in mine], torch.tensor([a for _, a in mine]), cfg)
    stats = actor_update(left, opt_left, ref, ro, cfg)
    # LOOP LOGIC: §5.4, self-play against the updated critic on this batch's positions
    rounds = self_play_games(left, right, ref, opt_left, [e[1] for e, _ in mine], cfg)
    seat_of = [g % 2 for g in range(len(outcome))]
    score = sum(o[s] for o, s in zip(outcome, seat_of)) / len(outcome)
    forfeits = sum(e[2] is not None and read_move(decode_answer(e[3])) not in moves(e[1]) for e, _ in mine)
    return dict(stats, loss_right=loss_right.item(), reward=score, forfeits=forfeits, self_play=rounds)


@torch.no_grad()
def evaluate_games(left):
    """Exact results of the greedy left lobe against the optimal player from each seat
    (games.tictactoe.exact_outcome enumerates every optimal reply), and its illegal-move rate
    over all 4,520 positions that are not over."""
    left.eval()
    boards = sorted(b for b in reachable_positions() if not is_over(b))
    texts = []
    for i in range(0, len(boards), 1024):
        texts += left.answer([to_prompt(b) for b in boards[i:i + 1024]], MOVE_TOKENS)
    table = {b: read_move(t) for b, t in zip(boards, texts)}
    r = {"illegal": sum(table[b] not in moves(b) for b in boards) / len(boards)}
    for seat in (0, 1):
        out = exact_outcome(lambda b: table[b], seat)
        r.update({f"loss_{'XO'[seat]}": float(out["loss"]), f"draw_{'XO'[seat]}": float(out["draw"])})
    left.train()
    return r


# -----------------------------------------------------------------------------
def frozen(model):
    """The reference policy of eq 2: a copy no optimizer holds and no gradient reaches."""
    return copy.deepcopy(model).eval().requires_grad_(False)


def warm_start(cfg, device):
    """Both lobes from resume, a path, or the warm start (trained if missing), and eq 2's reference."""
    games = cfg.task in GAMES
    path = os.path.join(cfg.out_dir, "ckpt.pt") if cfg.init_from == "resume" else cfg.init_from
    if cfg.init_from == "warm":
        path = os.path.join(cfg.out_dir, "warm", "ckpt.pt") if games else cfg.sft_ckpt
        if not os.path.exists(path) and games:
            warm_start_games(cfg, device, path)
        elif not games:
            train_sft.warm_start(path, cfg.task, cfg.device, cfg.seed, cfg.sft_iters, n_eval=cfg.n_eval)
    left, right, ckpt = load_lobes(path, device, cfg.task)
    ref_path = ckpt.get("ref_path", path)          # a resumed run keeps the reference it started from
    return left.train(), right.train(), frozen(load_lobes(ref_path, device)[0]), ref_path, ckpt


def main(cfg: Config):
    t_start = time.time()
    check(cfg)
    device = get_device(cfg.device)
    games = cfg.task in GAMES
    defaults = MODE_DEFAULTS["games" if games else "tasks"]
    cfg = dataclasses.replace(cfg, **{k: v for k, v in defaults.items() if not getattr(cfg, k)})
    task = None if games else load_task(cfg.task)
    test = ood = None
    if not games:
        cfg, test, ood = train_sft.eval_splits(cfg, task)
    seed_everything(cfg.seed)
    left, right, ref, ref_path, ckpt = warm_start(cfg, device)
    opt_left = make_optimizer(left, cfg.lr_left, cfg.weight_decay)
    opt_right = make_optimizer(right, cfg.lr_right, cfg.weight_decay)
    evaluate = (lambda: evaluate_games(left)) if games else (lambda: evaluate_pair(left, right, task, test, ood, cfg.idl_limit, cfg.threshold,
                                                                      cfg.max_new_tokens))
    iteration = games_iteration if games else tasks_iteration
    start, rows = 0, []
    if cfg.init_from == "resume":
        opt_left.load_state_dict(ckpt["opt_left"]), opt_right.load_state_dict(ckpt["opt_right"])
        start, rows = ckpt["iteration"], ckpt["rows"]
        set_rng_state(ckpt["rng"])
    else:
        rows = [dict(iter=0, **evaluate(), minutes=0.0)]
    print(f"{'games' if games else 'tasks'} mode, {cfg.task}: left {left.num_params():,} + right "
          f"{right.num_params():,} parameters on {device}")
    log = Logger(cfg.out_dir, start, cfg.iters, "actor-critic", cfg.wandb_project, dataclasses.asdict(cfg))
    if not start:
        log.print_row(rows[0], digits=4)
    t0 = time.time() - 60 * rows[-1]["minutes"]
    for it in range(start, cfg.iters):                                   # Alg 2 line 1
        rng = random.Random(f"{cfg.seed}/ac/{it}")   # the minibatch, reproducible for exact resume
        with autocast(device):
            stats = iteration(left, right, ref, opt_left, opt_right, task, rng, cfg)
        log.tick(left=stats["loss_left"], right=stats["loss_right"], reward=stats["reward"])
        log.log(it + 1, **stats)
        if (it + 1) % cfg.eval_interval and it + 1 < cfg.iters:
            continue
        row = dict(iter=it + 1, **evaluate(), **stats, minutes=(time.time() - t0) / 60)
        rows.append(row)
        log.log(it + 1, **row)
        log.print_row(row, digits=4)
        save_lobes(os.path.join(cfg.out_dir, "ckpt.pt"), left, right, opt_left, opt_right, cfg, task=cfg.task,
                   iteration=it + 1, rows=rows, ref_path=ref_path)
    log.close()
    print(table(rows, games))
    print(f"wall time {(time.time() - t_start) / 60:.1f} minutes, warm start and evaluations included")
    return rows


def table(rows, games):
    """The results per evaluation as a markdown table (iteration 0 is the warm start)."""
    if games:
        cols = [("iter", "iter", "{}"), ("loss_X", "loss as X", "{:.2%}"), ("loss_O", "loss as O", "{:.2%}"),
                ("draw_X", "draw as X", "{:.2%}"), ("draw_O", "draw as O", "{:.2%}"), ("illegal", "illegal", "{:.2%}"),
                ("reward", "mean reward", "{:.3f}"), ("minutes", "minutes", "{:.1f}")]
    else:
        cols = [("iter", "iter", "{}"), ("A_test", "A test", "{:.1%}"), ("A_ood", "A ood", "{:.1%}"),
                ("F_test", "F test", "{:.1%}"), ("F_ood", "F ood", "{:.1%}"), ("loops_test", "loops test", "{:.2f}"),
                ("reward", "reward", "{:.3f}"), ("minutes", "minutes", "{:.1f}")]
    return markdown_table(rows, cols)


if __name__ == "__main__":
    run(main, Config, gpu_preset={"batch_size": 256, "n_eval": 2000})
