"""
Self-Play Fine-Tuning of a lateralized SLN (paper §5.6, Algorithm 3, lines 498-527).

    for t = 0 .. T-1:                                            Alg 3 line 1
        the frozen left lobe of iteration t answers every prompt, then answers again through
        the Inner Dialogue Loop at temperatures spread over [0.1, 0.9], the frozen right lobe
        scoring every answer                                     lines 2-10
        left  <- argmin SPIN's logistic loss on log-ratios against the frozen lobe:
                 y_true chosen, the generated answers rejected   line 12
        right <- argmin BCE: y_true against all IDL samples      line 13 (eq 7, eq 9 optional)

Each iteration trains on its own generations and the previous iteration's. The opponent is a
frozen copy, replaced only at iteration boundaries. From a fresh clone this makes its data,
warm-starts both lobes with train_sft.py, runs T iterations, evaluates, saves and prints a table:

    $ python train_spin.py                       # CPU, a few minutes, the README's main job
    $ python train_spin.py --device=cuda         # a larger preset, the same code path
    $ python train_spin.py --init_from=resume    # continue after the last finished iteration
    $ torchrun --standalone --nproc_per_node=2 train_spin.py   # self-play and steps split in 2
"""
import dataclasses
import os
import random
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from common import (Checked, Decay, Logger, PosFloat, PosInt, Prob, UsageError, autocast, frozen,
                    get_device, load_task, make_optimizer, markdown_table, optimize, resume, run,
                    save_lobes, seed_everything, writable_dir)
from ranks import averaged, gather, seed_ranks, shard, share
from idl import lateralized
from lobes import answer_ids, answer_logprobs, prompt_ids, sequence_logprob
from losses import critic_loss, pavlovian_weights, spin_loss
from measure import eval_splits, evaluate_pair
from train_sft import warm_start


@dataclass
class Config(Checked):
    task: str = "addition"        # addition | multiplication | parity | wordproblems | tictactoe
    out_dir: str = "out/spin"     # ckpt.pt and metrics.jsonl are written here
    init_from: str = "sft"        # sft (sft_dir/ckpt.pt, trained first if missing) | resume |
                                  #   a ckpt path
    sft_dir: str = "out/sft"      # where the SFT warm start lives (shared with the other scripts)
    sft_iters: int = 0            # steps of the warm start if it must be trained
                                  #   (0: train_sft's default)
    device: str = "auto"          # auto (cuda, then mps, then cpu) | cpu | cuda | mps
    seed: int = 1337              # seeds the warm start, the prompts and the sampling
    iterations: PosInt = 3        # T, SPIN iterations (Alg 3 line 1), each of steps_per_iter steps
    n_prompts: PosInt = 512       # N, training prompts per iteration (Alg 3 line 2)
    idl_limit: PosInt = 3         # IDL loops after the first answer (Alg 3 line 6)
    t_min: float = 0.1            # lowest sampling temperature (Alg 3 line 8)
    t_max: float = 0.9            # highest sampling temperature
    spin_beta: PosFloat = 0.1     # the paper's lambda in Alg 3 line 12 (SPIN's beta)
    nll_weight: float = 1.0       # + this * eq 1 on y_true (0 = the paper's pure line 12;
                                  #   see spin_step)
    truncate: bool = True         # log-probs up to the first token where y' leaves y_true
                                  #   (see pair_ids)
    steps_per_iter: PosInt = 100  # optimisation steps per iteration, each lobe
    batch_size: PosInt = 64       # (chosen, rejected) pairs per step
    lr: PosFloat = 5e-6           # AdamW learning rate, both lobes (small: Adam moves every
                                  #   weight by ~lr)
    weight_decay: float = 0.0     # AdamW weight decay
    grad_clip: float = 1.0        # clip each lobe's gradient norm (0 = off)
    pavlov_lambda: Decay = 0.0    # eq 9 decay over IDL iterations for the right lobe (0 = uniform)
    threshold: Prob = 0.5         # the right lobe's acceptance threshold at evaluation
    n_eval: PosInt = 500          # test and ood problems per evaluation
    max_new_tokens: int = 0       # generation budget per answer (0: the task's longest ood
                                  #   answer + 4)
    wandb_project: str = ""       # log to this wandb project (needs `pip install wandb`)

    def check(self):
        if self.t_min > self.t_max:
            raise UsageError(f"--t_min ({self.t_min}) must not exceed --t_max ({self.t_max})")


class Rejected(NamedTuple):
    """A generated answer that SPIN pushes down against y_true (Alg 3 line 12)."""
    prompt: str
    y_true: str
    y_gen: str
    loop: int      # the IDL loop that generated it


class Judged(NamedTuple):
    """An answer the right lobe learns to judge (Alg 3 line 13), labelled by the checker."""
    prompt: str
    y_true: str    # the prompt's y_true, line 13's positive paired with this sample
    answer: str
    ok: float      # 1.0 if correct
    loop: int


# -----------------------------------------------------------------------------
def temperatures(cfg):
    """One temperature per generation, spread evenly over [t_min, t_max] (Alg 3 lines 3 and 8)."""
    return np.linspace(cfg.t_min, cfg.t_max, cfg.idl_limit + 1).round(3).tolist()


def self_play(left_t, right_t, task, pairs, cfg):
    """Alg 3 lines 2-10: the frozen lobes of iteration t generate; returns the rejected samples
    (prompt, y_true, y', loop j) and the right lobe's data (prompt, answer, label, loop j)."""
    d = lateralized(left_t, right_t, [p for p, _ in pairs], idl_limit=cfg.idl_limit + 1,
                    threshold=None, temperature=temperatures(cfg),
                    max_new_tokens=cfg.max_new_tokens)  # every loop runs
    rejected, judged = [], []
    for (p, y), attempts in zip(pairs, d.attempts):
        for j, a in enumerate(attempts):
            ok = task.check(p, a)
            judged.append(Judged(p, y, a, ok, j))
            # a correct generation is no "rejected" answer: skip it (SPIN's margin would be 0)
            if not ok:
                rejected.append(Rejected(p, y, a, j))
    return rejected, judged, d


def pair_ids(y_true, y_gen, truncate):
    """The chosen and rejected answers as tokens; truncate=True cuts both after the first token
    where they differ. Their shared prefix cancels in the margin either way; what truncation
    drops is the rejected answer's tail, whose tokens (often the very digits y_true has, after
    one wrong digit) SPIN would otherwise push down as well."""
    chosen, rejected = answer_ids(y_true), answer_ids(y_gen)
    if truncate:
        k = next((i for i, (c, r) in enumerate(zip(chosen, rejected)) if c != r),
                 min(len(chosen), len(rejected)))
        chosen, rejected = chosen[:k + 1], rejected[:k + 1]
    return chosen, rejected


def pair_logprobs(model, rows, truncate):
    """log p of y_true and of y' as pair_ids cuts them, and of the whole y_true: three (B,)
    tensors for rows [Rejected]. Truncated, one teacher-forced pass over prompt + y_true gives
    all three: the cut y_true is a prefix of y_true, and the cut y' is that prefix but for its
    last token, whose log-prob the same pass holds at the same position. Untruncated, y' has a
    tail of its own: a second pass."""
    prompts = [prompt_ids(r.prompt) for r in rows]
    cut = [pair_ids(r.y_true, r.y_gen, truncate) for r in rows]
    logp, _, full = answer_logprobs(model, prompts, [answer_ids(r.y_true) for r in rows])
    cum = logp.cumsum(1)                       # answer log-probs up to each position (0 before)
    dev, b = logp.device, torch.arange(len(rows), device=logp.device)
    # position len(p) - 1 + j predicts answer token j: the cut's last token is j = len(c) - 1
    at = torch.tensor([len(p) - 2 + len(c) for p, (c, _) in zip(prompts, cut)], device=dev)
    lp_true = cum[b, at]
    if truncate:
        last = torch.tensor([g[-1] for _, g in cut], device=dev)
        lp_gen = cum[b, at - 1] + full[b, at, last]
    else:
        lp_gen = sequence_logprob(model, prompts, [g for _, g in cut])
    return lp_true, lp_gen, cum[:, -1]


@torch.no_grad()
def reference_logprobs(opponent, data, truncate=True, batch=256):
    """log p_theta_t of y_true and y' under the frozen iteration-t lobe, once per iteration."""
    out = [torch.stack(pair_logprobs(opponent, data[i:i + batch], truncate)[:2], 1)
           for i in range(0, len(data), batch)]
    return torch.cat(out) if out else torch.zeros(0, 2)


def spin_step(left, data, ref, idx, cfg):
    """Alg 3 line 12 on the rows idx of data [Rejected], ref their log-probs under the frozen lobe.
    Returns (loss to minimise, the SPIN term alone, margins, mean log-probs); under torchrun the
    loss is this rank's part of the whole batch's (ranks.share)."""
    rows = [data[i] for i in idx]
    lp_true, lp_gen, lp_whole = pair_logprobs(left, rows, cfg.truncate)
    dev = lp_true.device
    loss_spin, margin = spin_loss(lp_true, ref[idx, 0].to(dev), lp_gen, ref[idx, 1].to(dev),
                                  cfg.spin_beta)
    # pure line 12 lets y_true's likelihood fall too (the margin grows either way); an NLL anchor on
    # the whole y_true (eq 1, as in RPO, Pang et al. 2024) keeps the chosen answer likely. 0: pure.
    nll = -lp_whole / torch.tensor([len(answer_ids(r.y_true)) for r in rows], device=dev)
    loss = share(loss_spin + cfg.nll_weight * nll.mean(), len(idx))
    return loss, loss_spin, margin, torch.stack([lp_true.mean(), lp_gen.mean()]).detach()


def critic_batch(judged, batch_size, rng):
    """Alg 3 line 13 pairs every IDL sample with its prompt's y_true: -log y_right_true
    - log(1 - y_right). So half a batch is drawn samples, the other half their y_true (label 1)."""
    drawn = rng.sample(judged, min(max(batch_size // 2, 1), len(judged)))
    return [r._replace(answer=r.y_true, ok=1.0) for r in drawn] + drawn


def right_step(right, batch, cfg):
    """Alg 3 line 13: BCE (eq 7) on a critic_batch, the samples labelled by the checker (a correct
    sample is a positive, not a rejected one), weighted over IDL loops by eq 9 when
    pavlov_lambda > 0 (y_true weighs 1). Every rank scores its share (ranks.shard)."""
    batch = shard(batch)
    w_loop = pavlovian_weights(cfg.idl_limit + 1, cfg.pavlov_lambda) * (cfg.idl_limit + 1)
    seqs = [prompt_ids(r.prompt) + answer_ids(r.answer) for r in batch]
    dev = right.wte.weight.device
    labels = torch.tensor([float(r.ok) for r in batch], device=dev)
    weights = torch.tensor([1.0 if r.ok else float(w_loop[r.loop]) for r in batch], device=dev)
    return share(critic_loss(right.score(seqs), labels, weights), weights.sum())


def evaluate(left, right, task, test, ood, cfg):
    """F and A on test and ood (measure.evaluate_pair); F may loop once more than self-play's
    idl_limit."""
    return evaluate_pair(left, right, task, test, ood, cfg.idl_limit + 1, cfg.threshold,
                         cfg.max_new_tokens)


# -----------------------------------------------------------------------------
def main(cfg: Config):
    device = get_device(cfg.device)
    writable_dir(cfg.out_dir)        # before minutes of warm start, not at the first save
    task = load_task(cfg.task)
    cfg, test, ood = eval_splits(cfg, task)
    seed_everything(cfg.seed)
    left, right, ckpt = warm_start(cfg, device)
    opt_left = make_optimizer(left, cfg.lr, cfg.weight_decay)
    opt_right = make_optimizer(right, cfg.lr, cfg.weight_decay)
    ckpt_path = os.path.join(cfg.out_dir, "ckpt.pt")
    start, rows, previous = 0, [], []
    if cfg.init_from == "resume":
        resume(ckpt, ckpt_path, opt_left=opt_left, opt_right=opt_right)
        start, rows = ckpt["iteration"], ckpt["rows"]
        previous = [Rejected(*r) for r in ckpt["previous"]]
    else:
        rows = [dict(iter=0, **evaluate(left, right, task, test, ood, cfg))]
    print(f"task {task.name}: left {left.num_params():,} + right {right.num_params():,} "
          f"parameters on {device}; temperatures {temperatures(cfg)}")
    log = Logger(cfg.out_dir, start * cfg.steps_per_iter, cfg.iterations * cfg.steps_per_iter,
                 "spin", cfg.wandb_project, dataclasses.asdict(cfg))
    t0 = time.time()
    for t in range(start, cfg.iterations):                                      # Alg 3 line 1
        # LOOP LOGIC: the opponent is the frozen lobe of iteration t, replaced only here
        left_t, right_t = frozen(left), frozen(right)
        rng = random.Random(f"{cfg.seed}/spin/{t}")
        pairs = [task.sample(rng, "train") for _ in range(cfg.n_prompts)]
        # Under torchrun each rank runs lines 2-10 on its share of the prompts, sampling from its
        # own seed (ranks.seed_ranks), and every rank then holds every y' in prompt order, so
        # lines 12-13 draw the same batches everywhere. The y' are other draws than one process
        # would make, from the same law; greedy (t_min = t_max = 0) the ranks change nothing.
        seed_ranks(f"{cfg.seed}/spin/{t}")
        with autocast(device):                                                   # Alg 3 lines 2-10
            rejected, judged, _ = self_play(left_t, right_t, task, shard(pairs), cfg)
        rejected, judged = gather(rejected), gather(judged)
        data = rejected + previous  # iteration t trains on its own and t-1's generations
        with autocast(device):      # log p_t of every pair, each rank computing its share
            ref = torch.cat(gather([reference_logprobs(left_t, shard(data), cfg.truncate).cpu()]))
        stats = []
        for step in range(cfg.steps_per_iter):
            # LOOP LOGIC: Alg 3 line 12, SPIN's logistic loss on log-ratios, y_true chosen,
            # y' rejected
            loss_left, loss_spin, margin, lp = (torch.zeros(()), torch.zeros(()), torch.zeros(1),
                                                torch.zeros(2))
            if data:  # every rank draws the same batch and keeps its share
                idx = shard([rng.randrange(len(data)) for _ in range(cfg.batch_size)])
                with autocast(device):
                    loss_left, loss_spin, margin, lp = spin_step(left, data, ref, idx, cfg)
                optimize(left, opt_left, loss_left, cfg.grad_clip)
            # LOOP LOGIC: Alg 3 line 13, the right lobe's BCE on y_true vs all IDL samples
            with autocast(device):
                loss_right = right_step(right, critic_batch(judged, cfg.batch_size, rng), cfg)
            optimize(right, opt_right, loss_right, cfg.grad_clip)
            stats.append(averaged([loss_spin.item(), margin.mean().item(), lp[0].item(),
                                   lp[1].item(), loss_right.item()]))  # the whole batch's
            log.tick(spin=stats[-1][0], right=stats[-1][4])
        # python floats: the checkpoint loads with weights_only
        s = np.array(stats).mean(0).tolist()
        row = dict(iter=t + 1, **evaluate(left, right, task, test, ood, cfg),
                   first_loss=stats[0][0], loss=s[0], margin=s[1], chosen=s[2], rejected=s[3],
                   right_loss=s[4], n_rejected=len(rejected), n_data=len(data),
                   minutes=(time.time() - t0) / 60)
        log.report((t + 1) * cfg.steps_per_iter, row, rows)
        previous = rejected
        save_lobes(ckpt_path, left, right, opt_left, opt_right, cfg, task=task.name,
                   iteration=t + 1, rows=rows, previous=[list(r) for r in previous])
    log.close()
    print(table(rows))
    return rows


def table(rows):
    """The per-iteration results as a markdown table (iteration 0 is the SFT warm start)."""
    cols = [("iter", "iter", "{}"), ("F_test", "F test", "{:.1%}"), ("F_ood", "F ood", "{:.1%}"),
            ("A_test", "A test", "{:.1%}"), ("A_ood", "A ood", "{:.1%}"),
            ("loops_test", "loops test", "{:.2f}"), ("loops_ood", "loops ood", "{:.2f}"),
            ("first_loss", "loss@1", "{:.3f}"), ("loss", "SPIN loss", "{:.3f}"),
            ("margin", "margin", "{:.3f}"), ("chosen", "logp chosen", "{:.2f}"),
            ("rejected", "logp rejected", "{:.2f}"), ("right_loss", "right BCE", "{:.3f}")]
    return markdown_table(rows, cols)


if __name__ == "__main__":
    run(main, Config, gpu_preset={"n_prompts": 4096, "batch_size": 256, "steps_per_iter": 300,
                                  "n_eval": 2000})
