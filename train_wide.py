"""
Supervised training of the wide SLN (paper Figure 4, systems E and G; §5.1 eq 1 with learned
halting), one network that loops its expert-lobes until it halts (wide.py).

    for each step:
        run the network for train_loops loops on a batch, reading the answer out after each loop
        loss = halting loss                                  (below)
               + loop_weight * mean over loops of eq 1
               + balance_weight * load balancing of every routing gate

The halting loss depends on --halt (wide.py holds both rules, the same in evaluation):
- ponder: E[eq 1 at the halting loop] + halt_beta * KL(halting || geometric(halt_prior)) under
  each rule's halting distribution (PonderNet, losses.halting_loss), E's (the main gate) and G's
  (the right lobe's score) alike;
- settled: a row stops once a loop moves the readout of every prompt token by less than
  1 - threshold (a computation at rest, wherever it runs). settle_weight weighs how far a loop
  moves an answer that was right before it and still is (settling_loss, at the last prompt
  token): extra loops learn to do no harm to a right answer, which makes looping until the rest
  safe at any length, and leaves the other tokens free to carry what is still on its way (0: deep
  supervision alone keeps extra loops harmless). ponder_weight weighs PonderNet's loss on the
  stop probabilities, which do not halt under this rule: an auxiliary task, whether the answer
  is right yet, read at the last prompt token, with which the loops learn parity more reliably
  (results/README.md, "Halting on the state of the computation").

With --loop_weight > 0 every loop is taught the answer (deep supervision) and PonderNet's loss sees
the cross-entropy as fixed, so it learns to stop at the first loop whose answer is right instead
of making early loops lazy. --grow_iters is a length curriculum inside the train split and
--window limits how far one block carries information, so the loops a problem needs grow with it.

A longer prompt needs more loops than training unrolls, and the settled rule runs as many as the
state keeps moving: loops past train_loops are ones no loss ever saw. --skip_loops is the
progressive loss of Bansal et al. 2022 (their mazes trained at 9x9 solved 201x201): each step
first runs a random number of loops without a gradient, then trains train_loops loops from the
state they left, so every loop up to skip_loops + train_loops learns to keep a right answer
right from any state the loop reaches, not from loop 1 alone.

    $ python train_wide.py --task=parity --window=3 --grow_iters=600 --loop_weight=1
    $ python train_wide.py --task=parity --n_embd=64 --window=3 --train_loops=10 --max_loops=20 \
          --max_iters=1500 --grow_iters=600 --halt=settled --settle_weight=0 --loop_weight=1 \
          --halt_prior=0.2 --halt_beta=0.1 --skip_loops=20 \
          --muon_lr=0.02                        # Table 1's E and G on parity (evaluate.WIDE)
    $ python play.py --task=parity --system=G --ckpt=out/wide/ckpt.pt --prompt=0110100101101
    $ python train_wide.py --init_from=resume        # continue an interrupted run
    $ torchrun --standalone --nproc_per_node=2 train_wide.py   # each process half of each batch
"""
import dataclasses
import os
import random
import time
from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from common import (Checked, Logger, PosFloat, PosInt, Prob, UsageError, autocast, get_device,
                    load_checkpoint, load_task, lr_at, make_optimizer, optimize, resume, run,
                    seed_everything, set_lr)
from ranks import averaged, shard
from lobes import Lobe, answer_ids, pad_right, prompt_ids, span_mask
from losses import halting_loss
from measure import LENGTH_BUCKETS, by_length, eval_splits, evaluate_system, pool
from wide import THRESHOLD, WideConfig, WideSLN, equal_depth_config, save_wide


@dataclass
class Config(Checked):
    task: str = "addition"        # addition | multiplication | parity | wordproblems | tictactoe
    out_dir: str = "out/wide"     # ckpt.pt and metrics.jsonl are written here
    init_from: str = "scratch"    # scratch | resume (continue out_dir/ckpt.pt from its step)
    device: str = "auto"          # auto (cuda, then mps, then cpu) | cpu | cuda | mps
    seed: int = 1337              # seeds the network's init, the data and the sampling
    n_expert: PosInt = 2          # experts per expert-lobe, each one transformer block
    n_head: PosInt = 4            # attention heads per block
    n_embd: PosInt = 128          # residual width
    max_iters: PosInt = 800       # optimisation steps
    batch_size: PosInt = 64       # problems per step
    lr: PosFloat = 2e-3           # peak AdamW learning rate
    muon_lr: float = 0.0          # peak Muon learning rate of the blocks' matrices (muon.py;
                                  #   0 = AdamW for every weight)
    weight_decay: float = 0.1     # AdamW weight decay on matrices
    decay_lr: bool = True         # cosine decay to lr/10 (off: constant after warmup)
    grad_clip: float = 1.0        # clip the gradient norm (0 = off)
    halt: str = "ponder"          # ponder (learned stop probabilities, E and G apart) | settled
                                  #   (stop once a loop leaves the prompt's readout still; E = G)
    threshold: float = 0.0        # a row halts once its stop probability passes this (0: 0.5
                                  #   under ponder, 0.99 under settled)
    max_loops: PosInt = 16        # most loops a row runs
    train_loops: int = 0          # loops unrolled in training (PonderNet's N; 0: max_loops; fewer
                                  #   lets evaluation run loops training never did)
    halt_prior: Prob = 0.1        # lambda_p of the geometric prior over the halting loop,
                                  #   in (0, 1)
    halt_beta: float = 0.01       # weight of KL(halting distribution || prior)
    settle_weight: float = 1.0    # settled: weight of settling_loss (a right answer kept still)
    ponder_weight: float = 1.0    # settled: weight of PonderNet's loss on the stop
                                  #   probabilities, which do not halt there (module docstring)
    balance_weight: float = 0.01  # weight of the load-balancing loss of every gate
    loop_weight: float = 0.0      # weight of eq 1 averaged over every loop; > 0 also stops
                                  #   PonderNet's gradient into the answers (it then trains only
                                  #   the stop probabilities); settled needs it
    window: int = 0               # attention sees a token and the window - 1 before it (0: all)
    skip_loops: int = 0           # settled: each step first runs 0..skip_loops loops (uniform)
                                  #   without a gradient, then trains train_loops from there
                                  #   (progressive loss, module docstring; 0: off)
    grow_iters: int = 0           # over the first grow_iters steps the longest training prompt
                                  #   grows from 2 characters to the longest the train split has
                                  #   (0: off)
    max_new_tokens: int = 0       # generation budget per answer (0: the task's longest ood
                                  #   answer + 4)
    eval_interval: PosInt = 200   # evaluate and checkpoint every this many steps
    n_eval: PosInt = 500          # test and ood problems per evaluation
    wandb_project: str = ""       # log to this wandb project (needs `pip install wandb`)

    def check(self):
        if not 0 < self.halt_prior < 1:
            raise UsageError(f"--halt_prior must be in (0, 1), got {self.halt_prior}")
        if self.init_from not in ("scratch", "resume"):
            raise UsageError(f"--init_from must be scratch or resume, got {self.init_from!r}")
        if not 0 <= self.train_loops <= self.max_loops:
            raise UsageError(f"--train_loops must be in 0..max_loops ({self.max_loops}), "
                             f"got {self.train_loops}")
        if not 0 <= self.threshold <= 1:
            raise UsageError(f"--threshold must be in [0, 1], got {self.threshold}")
        if self.halt == "settled" and not self.loop_weight > 0:
            raise UsageError("--halt=settled needs --loop_weight > 0: every loop must answer")
        if self.skip_loops and self.halt != "settled":
            raise UsageError("--skip_loops needs --halt=settled: PonderNet's halting distribution "
                             "starts at the first loop")


# -----------------------------------------------------------------------------
def loop_ce(logits, targets, mask):
    """Eq 1 after each loop: logits (N, B, T, V), targets and mask (B, T) -> mean CE per row
    (B, N)."""
    N, B, T, V = logits.shape
    ce = F.cross_entropy(logits.float().reshape(-1, V), targets.repeat(N, 1).reshape(-1),
                         reduction="none")
    return ((ce.view(N, B, T) * mask).sum(-1) / mask.sum(-1).clamp(min=1)).T


def settling_loss(settled, right):
    """How far a loop moves an answer that was right before it and is right after it: the mean
    of 1 - settled (the relative move |a_n - a_{n-1}| / |a_n| of the readout a at the last
    prompt token, wide.WideSLN.settled) over the loops n >= 2 of each row where right[n - 1] and
    right[n]. settled (B, N), right (B, N) bool -> a scalar (0 where no loop qualifies)."""
    kept = (right[:, 1:] & right[:, :-1]).float()
    return ((1 - settled[:, 1:]) * kept).sum() / kept.sum().clamp(min=1)


def wide_step(model, prompts, answers, cfg, skip=0):
    """One batch of (prompt, answer) token lists -> the loss and the mean halting loop of E and
    G under the rule evaluation uses; skip loops run first untrained (progressive loss)."""
    idx, _ = pad_right([p + a for p, a in zip(prompts, answers)], model.wte.weight.device)
    at = torch.tensor([len(p) - 1 for p in prompts], device=idx.device)   # where routing is read
    n_loops = cfg.train_loops or cfg.max_loops
    logits, lam, balance, still, rest = model(idx[:, :-1], at, n_loops, skip)   # lam (2, B, N)
    starts, lengths = [len(p) - 1 for p in prompts], [len(a) for a in answers]
    mask = span_mask(starts, lengths, idx.size(1) - 1, idx.device)
    ce = loop_ce(logits, idx[:, 1:], mask)                                # (B, N)
    # LOOP LOGIC: E's stop probability is the main gate's, G's the right lobe's score; both learn
    # from the same loops. With loop_weight the halting loss sees the CE as fixed (docstring)
    halt_ce = ce.detach() if cfg.loop_weight else ce
    halting = (halting_loss(halt_ce, lam[0], cfg.halt_prior, cfg.halt_beta)[0]
               + halting_loss(halt_ce, lam[1], cfg.halt_prior, cfg.halt_beta)[0]) / 2
    if cfg.halt == "settled":  # E = G: the answer, not a gate, says when to stop
        hit = (logits.detach().argmax(-1) == idx[:, 1:]) | ~mask.bool()  # (N, B, T)
        halting = (cfg.ponder_weight * halting
                   + cfg.settle_weight * settling_loss(still, hit.all(-1).T))
    stops = model.rule_stops(lam.detach(), rest)
    stats = dict(loops_E=skip + model.halting_loops(stops[0]).float().mean().item(),
                 loops_G=skip + model.halting_loops(stops[1]).float().mean().item(),
                 halting=halting.item(), ce_last=ce[:, -1].detach().mean().item(),
                 balance=float(balance.detach()))
    loss = halting + cfg.loop_weight * ce.mean() + cfg.balance_weight * balance
    return loss, stats


@torch.no_grad()
def evaluate(model, task, test, ood, max_new_tokens):
    """Exact match and mean loops of E and G (one network, two halting rules) on test and
    ood."""
    model.eval()
    r = {}
    for kind in "EG":
        model.kind = kind
        for split, pairs in (("test", test), ("ood", ood)):
            e = evaluate_system(model, task, pairs, max_new_tokens)
            r[f"{kind}_{split}"], r[f"{kind}_loops_{split}"] = e["acc"], e["loops"]
    model.kind = "E"
    model.train()
    return r


@torch.no_grad()
def expert_use(model, prompts):
    """Each (lobe, expert)'s share of the loops the prompts run (think's trace): whether the
    load balancing keeps more than one expert in use."""
    idx, lengths = pad_right([prompt_ids(p) for p in prompts], model.wte.weight.device)
    _, _, trace, _ = model.eval().think(idx, lengths - 1)
    used = Counter((lobe, e) for lobes, experts, _ in trace
                   for lobe, e in zip(lobes.tolist(), experts.tolist()) if lobe >= 0)
    return {f"{('left', 'right')[lobe]} {e}": n / sum(used.values())
            for (lobe, e), n in sorted(used.items())}


def print_tables(model, task, results, test, ood, max_new_tokens):
    """The final results, the experts in use, and per prompt length where prompts differ in
    length (parity)."""
    r = results
    print("\n| task | step | E test | E ood | G test | G ood | E loops ood | G loops ood "
          "| minutes |\n"
          + "|---" * 9 + f"|\n| {task.name} | {r['step']} | {r['E_test']:.1%} | {r['E_ood']:.1%} "
          f"| {r['G_test']:.1%} | {r['G_ood']:.1%} | {r['E_loops_ood']:.2f} "
          f"| {r['G_loops_ood']:.2f} | {r['minutes']:.1f} |")
    for kind in "EG":
        model.kind = kind
        print(f"{kind}'s loops on test and ood by lobe and expert: " + ", ".join(
            f"{k} {v:.0%}" for k, v in expert_use(model, [p for p, _ in test + ood]).items()))
    model.kind = "E"
    if len({len(p) for p, _ in test + ood}) == 1:
        return
    rows = {}
    for kind in "EG":
        model.kind = kind
        rows[kind] = by_length(model.eval(), task, test + ood, max_new_tokens)
    model.kind = "E"
    print("\n| prompt length | problems | E acc | E loops | G acc | G loops |\n"
          "|---|---|---|---|---|---|")
    for e, g in zip(rows["E"], rows["G"]):
        print(f"| {e.length} | {e.n} | {e.acc:.1%} | {e.loops:.1f} | {g.acc:.1%} "
              f"| {g.loops:.1f} |")
    if task.name in LENGTH_BUCKETS:  # the same rows pooled (parity: the train lengths, then ood)
        pooled = [pool(rows[kind], LENGTH_BUCKETS[task.name]) for kind in "EG"]
        print("\n| lengths | problems | E acc | E loops | G acc | G loops |\n"
              "|---|---|---|---|---|---|")
        for e, g in zip(*pooled):
            print(f"| {e.lo}-{e.hi} | {e.n} | {e.acc:.1%} | {e.loops:.1f} | {g.acc:.1%} "
                  f"| {g.loops:.1f} |")


# -----------------------------------------------------------------------------
def main(cfg: Config):
    device, task = get_device(cfg.device), load_task(cfg.task)
    seed_everything(cfg.seed)
    wcfg = WideConfig(n_expert=cfg.n_expert, n_head=cfg.n_head, n_embd=cfg.n_embd,
                      max_loops=cfg.max_loops, window=cfg.window, halt=cfg.halt,
                      threshold=cfg.threshold or THRESHOLD.get(cfg.halt, 0.5))
    model = WideSLN(wcfg).to(device)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.muon_lr)
    ckpt_path = os.path.join(cfg.out_dir, "ckpt.pt")
    start, results = 0, {}
    if cfg.init_from == "resume":
        ckpt = load_checkpoint(ckpt_path, device)
        resume(ckpt, ckpt_path, wide=model, opt=opt)
        start, results = ckpt["step"], ckpt["results"]
    cfg, test, ood = eval_splits(cfg, task)
    gpt = equal_depth_config(wcfg)
    print(f"task {task.name}: wide SLN {model.num_params():,} parameters ({wcfg.blocks()} "
          f"blocks), on {device}; the fixed-depth GPT of as many blocks "
          f"(--n_layer={gpt.n_layer}) has {Lobe(gpt).num_params():,}")
    log = Logger(cfg.out_dir, start, cfg.max_iters, "wide", cfg.wandb_project,
                 dataclasses.asdict(cfg))
    t0 = time.time() - 60 * results.get("minutes", 0.0)
    for step in range(start, cfg.max_iters + 1):
        if (step % cfg.eval_interval == 0 or step == cfg.max_iters) and (step > start or not start):
            results = dict(step=step, **evaluate(model, task, test, ood, cfg.max_new_tokens),
                           minutes=(time.time() - t0) / 60)
            log.log(**results)
            log.print(f"step {step}: E test {results['E_test']:.1%} ood {results['E_ood']:.1%} "
                      f"(loops {results['E_loops_ood']:.1f}) | G test {results['G_test']:.1%} "
                      f"ood {results['G_ood']:.1%} (loops {results['G_loops_ood']:.1f})")
            if step > start:
                save_wide(ckpt_path, model, opt=opt.state_dict(), config=dataclasses.asdict(cfg),
                          task=task.name, step=step, results=results)
        if step == cfg.max_iters:
            break
        rng = random.Random(f"{cfg.seed}/{step}")  # a fresh train batch, reproducible on resume
        grown = step / cfg.grow_iters if cfg.grow_iters else 1.0
        # under torchrun every rank draws the whole batch and keeps its share; the losses are
        # means over equal shares of rows, exact once averaged, but for the load balancing,
        # which each rank computes over its own rows (as Switch Transformers do per device)
        pairs = shard(task.batch(rng, cfg.batch_size, grown))
        skip = rng.randint(0, cfg.skip_loops) if cfg.skip_loops else 0   # the same on every rank
        lr = lr_at(step, cfg.max_iters, cfg.lr, decay=cfg.decay_lr)
        with autocast(device):
            loss, stats = wide_step(model, [prompt_ids(p) for p, _ in pairs],
                                    [answer_ids(a) for _, a in pairs], cfg, skip)
        set_lr(opt, lr)
        optimize(model, opt, loss, cfg.grad_clip)
        loss_wide, *means = averaged([loss.item(), *stats.values()])   # the whole batch's
        stats = dict(zip(stats, means))
        log.tick(loss=loss_wide, loops=stats["loops_E"])
        if step % 25 == 0:
            log.log(step, loss_wide=loss_wide, lr=lr, **stats)
    log.close()
    print_tables(model, task, results, test, ood, cfg.max_new_tokens)
    print(f"saved {ckpt_path}")
    return results


if __name__ == "__main__":
    run(main, Config, gpu_preset={"batch_size": 256, "n_expert": 3, "n_embd": 256, "n_head": 8,
                                  "max_iters": 3000, "n_eval": 2000})
