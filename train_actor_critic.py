"""
Actor-critic training of a lateralized SLN on a task through the Inner Dialogue Loop (§5.3-5.5).

Algorithm 2 with PPO-clip (eq 8), self-play (§5.4), Pavlovian gradient decay (eq 9, §5.5) and
eq 2's KL to the warm start:

    for each minibatch:                                               Alg 2 lines 1-2
        the left lobe (actor) answers through the IDL, sampling at `temperature`; the
        right lobe (critic) scores each attempt and feeds its score back until it accepts
                                                                      lines 4-18
        right <- eq 7: x + y_true (label 1) against every attempt     lines 22-24, 27 (eq 9: §5.5)
        left  <- PPO-clip (eq 8), the ratio against the rollout's own log-probs, with
                 advantage = reward - baseline, + kl_coef * KL to the warm start (eq 2)
                                                                      lines 19-20, 28
        §5.4: while the critic is not satisfied (capped): sample again, score, update the left lobe
              with the critic's score as reward (step 2(d); --self_play_reward=checker: the checker)

Reward: the checker's 0/1 (an external reward, the NOTE after eq 8: where one exists, use it) or
the critic's probability D alone (--reward=critic, eq 8 as printed). Baseline: the mean reward of
the other samples of the same prompt (leave-one-out), so the policy gradient stays unbiased.
Both lobes start from train_sft.py's checkpoint (§5.1, trained first if missing); eq 2's reference
is that checkpoint's left lobe. Whole games (tic-tac-toe, TD errors) are train_games.py.

    $ python train_actor_critic.py --task=addition                    # from out/sft/ckpt.pt
    $ python train_actor_critic.py --task=addition --reward=critic    # the critic's D as reward
    $ python train_actor_critic.py --task=addition --init_from=resume # continue an interrupted run
    $ torchrun --standalone --nproc_per_node=2 train_actor_critic.py  # rollouts split in 2
"""
import dataclasses
import os
import random
import time
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from common import (Checked, Decay, Logger, PosFloat, PosInt, Prob, UsageError, autocast, frozen,
                    get_device, load_task, make_optimizer, markdown_table, optimize, resume, run,
                    save_lobes, seed_everything, writable_dir)
from ranks import averaged, seed_ranks, shard, share
from idl import lateralized, speak
from lobes import answer_ids, answer_scores, prompt_ids
from losses import critic_loss, leave_one_out_baseline, pavlovian_weights, reward_transform
from measure import eval_splits, evaluate_pair
from ppo import actor_update, make_rollout
from sln import load_lobes
from train_sft import warm_start, warm_start_path


@dataclass
class Config(Checked):
    task: str = "addition"        # addition | multiplication | parity | wordproblems | tictactoe
                                  #   (one move per prompt; whole games are train_games.py)
    out_dir: str = "out/actor_critic"  # ckpt.pt and metrics.jsonl are written here
    init_from: str = "sft"        # sft (sft_dir/ckpt.pt, trained first if missing) | resume |
                                  #   a ckpt path
    sft_dir: str = "out/sft"      # where the SFT warm start lives (shared with the other scripts)
    sft_iters: int = 0            # steps of the warm start if it must be trained
                                  #   (0: train_sft's default)
    device: str = "auto"          # auto (cuda, then mps, then cpu) | cpu | cuda | mps
    seed: int = 1337              # seeds the warm start, the prompts and the sampling
    max_iters: PosInt = 100       # minibatches (Alg 2 line 1)
    batch_size: PosInt = 64       # b: prompts per minibatch (Alg 2 line 2)
    group: PosInt = 4             # samples per prompt; each one's baseline is the others' mean
    temperature: PosFloat = 1.0   # sampling temperature at rollout AND in the update
                                  #   (so the first PPO ratio is 1)
    idl_limit: PosInt = 2         # IDL loops per rollout (Alg 2 line 5)
    threshold: Prob = 0.5         # the critic accepts an answer at this probability (Alg 2 line 15)
    reward: str = "checker"       # checker (external reward) | critic (the right lobe's D alone)
    reward_transform: str = "D"   # the critic's D as a reward: D (eq 8 as printed) | logD |
                                  #   logitD | 2D-1
    clip_eps: float = 0.2         # eq 8's epsilon
    ppo_epochs: PosInt = 2        # PPO updates per rollout (the first has ratio exactly 1)
    kl_coef: float = 0.0          # eq 2's lambda: per-token KL to the warm start (0 = off)
    self_play_max: int = 0        # §5.4: extra sample-and-update rounds per minibatch until the
                                  #   critic is satisfied; 0 = off, as §5.4 warns that many
                                  #   actor updates per critic update overfit the actor to
                                  #   the minibatch
    satisfied: Prob = 0.9         # §5.4: the critic is satisfied when its mean score is >= this
    self_play_reward: str = "critic"  # §5.4's reward: critic (step 2(d): the critic's score, as
                                  #   --reward=critic) | checker (as --reward=checker)
    pavlov_lambda: Decay = 0.0    # eq 9 decay over y_true's prefixes and IDL loops (0 = plain eq 7)
    lr_left: PosFloat = 1e-5      # left lobe (actor) AdamW learning rate: gentle on an SFT lobe
    lr_right: PosFloat = 1e-4     # right lobe (critic) AdamW learning rate
    weight_decay: float = 0.01    # §5.4 guard against overfitting a minibatch (AdamW, matrices)
    grad_clip: float = 1.0        # §5.4 guard: clip each lobe's gradient norm (0 = off)
    eval_interval: PosInt = 100   # evaluate and checkpoint every this many minibatches
    n_eval: PosInt = 500          # test and ood problems per evaluation
    max_new_tokens: int = 0       # generation budget (0: the task's longest ood answer + 4)
    wandb_project: str = ""       # log to this wandb project (needs `pip install wandb`)

    def check(self):
        for k in ("reward", "self_play_reward"):
            if getattr(self, k) not in ("checker", "critic"):
                raise UsageError(f"--{k} must be checker or critic, got {getattr(self, k)!r}")
        try:
            reward_transform(torch.zeros(1), self.reward_transform)
        except ValueError as e:
            raise UsageError(f"--reward_transform: {e}") from None


class Attempt(NamedTuple):
    """One answer the left lobe gave in the IDL (Alg 2 lines 6-13), and what it read to give it."""
    row: int        # i, the dialogue's row: rows i // group share a prompt
    loop: int       # j, the IDL loop that made it (0: the first answer)
    prompt: str
    answer: str     # the attempt as text
    score: float    # the critic's probability of it (Alg 2 line 14)
    context: list   # the tokens the left lobe read: d.contexts[i][j] (eq 6's feedback if j > 0)
    tokens: list    # the tokens it wrote, <|eos|> included: d.tokens[i][j]


# -----------------------------------------------------------------------------
def attempts_of(d):
    """Every attempt of a lateralized Dialogue d, row by row, loop by loop."""
    return [Attempt(i, j, p, d.attempts[i][j], d.scores[i][j], d.contexts[i][j], d.tokens[i][j])
            for i, p in enumerate(d.prompts) for j in range(len(d.tokens[i]))]


def rewards_of(task, prompts, answers, p_right, cfg, reward=None):
    """The reward of each answer: the checker's 0/1, or the critic's probability D transformed
    (reward: checker | critic, default cfg.reward)."""
    if (reward or cfg.reward) == "checker":
        return torch.tensor([task.check(p, a) for p, a in zip(prompts, answers)])
    return reward_transform(torch.as_tensor(p_right, dtype=torch.float32), cfg.reward_transform)


def advantages(r, rows, group):
    """r minus the leave-one-out baseline: the mean reward of the other samples of row i's
    prompt (rows i // group); it does not depend on the answer, so the gradient stays unbiased."""
    return r - leave_one_out_baseline(r, [i // group for i in rows], rows)


def rollout_of(left, task, d, cfg):
    """Every IDL attempt of d as eq 8's rollout: scored in exactly the context the left lobe read
    (d.contexts), so pi_old is the policy that wrote it. Returns (rewards, Rollout)."""
    tried = attempts_of(d)
    r = rewards_of(task, [a.prompt for a in tried], [a.answer for a in tried],
                   [a.score for a in tried], cfg)
    adv = advantages(r, [a.row for a in tried], cfg.group)
    return r, make_rollout(left, [a.context for a in tried], [a.tokens for a in tried], adv, cfg)


def critic_step(right, task, pairs, d, cfg):
    """Alg 2 lines 22-24, eq 7: y_true (label 1) against every IDL attempt of d (label 0, or the
    checker's verdict with --reward=checker). pavlov_lambda > 0 is §5.5: every prefix of y_true is
    a positive and the attempts of a row decay over IDL loops, both weighted by eq 9; 0 is plain
    eq 7 (whole y_true, every attempt weight 1). Positives and negatives weigh the same in total
    (§5.5: the minibatch must represent both equally). Under torchrun: this rank's part of the
    whole minibatch's loss (ranks.share)."""
    lam = cfg.pavlov_lambda
    ctx, truths = [prompt_ids(p) for p, _ in pairs], [answer_ids(a) for _, a in pairs]
    scores, mask = answer_scores(right, ctx, truths)                   # every prefix's score (b, T)
    w = torch.zeros_like(mask)
    for i, (c, y) in enumerate(zip(ctx, truths)):
        last = F.one_hot(torch.tensor(len(y) - 1), len(y)).float()     # plain eq 7: whole y_true
        w[i, len(c):len(c) + len(y)] = pavlovian_weights(len(y), lam) if lam > 0 else last
    ones = torch.ones(int(mask.sum().item()), device=mask.device)
    pos = share(critic_loss(scores[mask > 0], ones, w[mask > 0]), w.sum())
    tried = attempts_of(d)
    seqs = [prompt_ids(a.prompt) + answer_ids(a.answer) for a in tried]
    labels = torch.tensor([task.check(a.prompt, a.answer) if cfg.reward == "checker" else 0.0
                           for a in tried])
    loop_w = torch.tensor([float(pavlovian_weights(d.loops[a.row], lam)[a.loop] * d.loops[a.row])
                           if lam > 0 else 1.0 for a in tried])
    neg = critic_loss(right.score(seqs), labels.to(mask.device), loop_w.to(mask.device))
    neg = share(neg, loop_w.sum())
    return (pos + neg) / 2


def self_play(left, right, ref, opt_left, task, prompts, cfg):
    """§5.4 steps 2(a)-(e): sample x_left ~ Actor(x), score it with the critic, and update the
    actor (eq 8) until the critic's mean probability reaches `satisfied`, at most self_play_max
    rounds. Returns the rounds that updated. Clipping (eq 8, grad_clip) and weight decay guard
    the minibatch (§5.4's remedies 3 and 4). Under torchrun the critic's mean is the whole
    minibatch's, so every rank stops at the same round."""
    ctx, rows = [prompt_ids(p) for p in prompts], list(range(len(prompts)))
    for rounds in range(cfg.self_play_max):
        with torch.no_grad():
            answers, actions, _ = speak(left.eval(), ctx, cfg.max_new_tokens, cfg.temperature)
            seqs = [c + answer_ids(a) for c, a in zip(ctx, answers)]
            p_right = torch.sigmoid(right.score(seqs)).cpu()
        left.train()
        if averaged(p_right.mean()) >= cfg.satisfied:          # the critic is satisfied: stop
            return rounds
        # step 2(d): the policy gradient weighs log pi by the critic's score (self_play_reward)
        r = rewards_of(task, prompts, answers, p_right, cfg, cfg.self_play_reward)
        actor_update(left, opt_left, ref, make_rollout(left, ctx, actions,
                                                       advantages(r, rows, cfg.group), cfg), cfg)
    return cfg.self_play_max


def reference(cfg, ckpt, device):
    """Eq 2's reference policy, frozen: the warm start's left lobe, read from its checkpoint; a
    resumed run reads the one it started from (saved as ref_path). Returns (lobe, its path)."""
    path = ckpt.get("ref_path", warm_start_path(cfg))
    return frozen(load_lobes(path, device)[0]), path


def evaluate(left, right, task, test, ood, cfg):
    """F (the IDL, greedy) and A (the left lobe alone) on test and ood (measure.evaluate_pair)."""
    return evaluate_pair(left, right, task, test, ood, cfg.idl_limit, cfg.threshold,
                         cfg.max_new_tokens)


# -----------------------------------------------------------------------------
def main(cfg: Config):
    t_start = time.time()
    device = get_device(cfg.device)
    writable_dir(cfg.out_dir)        # before minutes of warm start, not at the first save
    task = load_task(cfg.task)
    cfg, test, ood = eval_splits(cfg, task)
    seed_everything(cfg.seed)
    left, right, ckpt = warm_start(cfg, device)                   # §5.1: train_sft.py's lobes
    ref, ref_path = reference(cfg, ckpt, device)                  # eq 2's p_ref
    opt_left = make_optimizer(left, cfg.lr_left, cfg.weight_decay)
    opt_right = make_optimizer(right, cfg.lr_right, cfg.weight_decay)
    ckpt_path = os.path.join(cfg.out_dir, "ckpt.pt")
    if cfg.init_from == "resume":
        resume(ckpt, ckpt_path, opt_left=opt_left, opt_right=opt_right)
        start, rows = ckpt["iteration"], ckpt["rows"]
    else:
        start, rows = 0, [dict(iter=0, **evaluate(left, right, task, test, ood, cfg), minutes=0.0)]
    print(f"task {task.name}: left {left.num_params():,} + right {right.num_params():,} "
          f"parameters on {device}")
    log = Logger(cfg.out_dir, start, cfg.max_iters, "actor-critic", cfg.wandb_project,
                 dataclasses.asdict(cfg))
    if not start:
        log.print_row(rows[0], digits=4)
    t0 = time.time() - 60 * rows[-1]["minutes"]
    for it in range(start, cfg.max_iters):                                     # Alg 2 line 1
        rng = random.Random(f"{cfg.seed}/ac/{it}")    # the minibatch, reproducible for exact resume
        # under torchrun each rank rolls out its share of the prompts from its own seed, and the
        # gradients are averaged (common.optimize): one process's estimate, at other samples
        seed_ranks(f"{cfg.seed}/ac/{it}")
        with autocast(device):
            pairs = shard([task.sample(rng, "train") for _ in range(cfg.batch_size)])  # line 2
            prompts = [p for p, _ in pairs for _ in range(cfg.group)]      # `group` samples each
            left.eval(), right.eval()
            # LOOP LOGIC: Alg 2 lines 4-18, the IDL sampling at `temperature`; line 14's scores
            d = lateralized(left, right, prompts, cfg.idl_limit, cfg.threshold, cfg.temperature,
                            cfg.max_new_tokens)
            r, ro = rollout_of(left, task, d, cfg)      # every attempt, in the context it read
            left.train(), right.train()
            # LOOP LOGIC: Alg 2 lines 22-24 and 27, the critic's eq 7 (eq 9 if pavlov_lambda > 0)
            loss_right = critic_step(right, task, pairs, d, cfg)
            optimize(right, opt_right, loss_right, cfg.grad_clip)
            # LOOP LOGIC: Alg 2 lines 19-20 and 28, the actor's PPO-clip (eq 8) against the
            # rollout; its advantages were fixed before the critic stepped
            stats = actor_update(left, opt_left, ref, ro, cfg)
            # LOOP LOGIC: §5.4, sample and update again until the (updated) critic is satisfied
            rounds = self_play(left, right, ref, opt_left, task, prompts, cfg)
        stats = dict(stats, loss_right=loss_right.item(), reward=r.mean().item(), self_play=rounds,
                     critic_p=sum(s[-1] for s in d.scores) / len(d.scores))
        stats = dict(zip(stats, averaged(list(stats.values()))))     # the whole minibatch's
        log.tick(left=stats["loss_left"], right=stats["loss_right"], reward=stats["reward"])
        log.log(it + 1, **stats)
        if (it + 1) % cfg.eval_interval and it + 1 < cfg.max_iters:
            continue
        row = dict(iter=it + 1, **evaluate(left, right, task, test, ood, cfg), **stats,
                   minutes=(time.time() - t0) / 60)
        log.report(it + 1, row, rows, digits=4)
        save_lobes(ckpt_path, left, right, opt_left, opt_right, cfg, task=cfg.task,
                   iteration=it + 1, rows=rows, ref_path=ref_path)
    log.close()
    print(table(rows))
    print(f"wall time {(time.time() - t_start) / 60:.1f} minutes, warm start and evaluations "
          "included")
    return rows


def table(rows):
    """The results per evaluation as a markdown table (iteration 0 is the warm start)."""
    cols = [("iter", "iter", "{}"), ("A_test", "A test", "{:.1%}"), ("A_ood", "A ood", "{:.1%}"),
            ("F_test", "F test", "{:.1%}"), ("F_ood", "F ood", "{:.1%}"),
            ("loops_test", "loops test", "{:.2f}"), ("reward", "reward", "{:.3f}"),
            ("minutes", "minutes", "{:.1f}")]
    return markdown_table(rows, cols)


if __name__ == "__main__":
    run(main, Config, gpu_preset={"batch_size": 256, "n_eval": 2000})
