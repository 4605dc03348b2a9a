"""
Supervised warm start of both lobes (paper §5.1, eq 1; eq 7 and eq 9 for the right lobe).

    left lobe   eq 1: cross-entropy on answer tokens only. A share of its examples are short
                dialogues  prompt <sep> wrong attempt <vK> <sep> answer  (K = the right lobe's
                score of the attempt, quantised), so it learns to use the right lobe's feedback
                that the Inner Dialogue Loop will give it (eq 6).
    right lobe  eq 7: binary cross-entropy, positives = y_true and every prefix of it, negatives =
                corruptions of y_true (digit swap, off-by-one, carry error, dropped or inserted
                digit) and the left lobe's own wrong samples; prefixes weighted by eq 9.
    --arch=wide one wide SLN instead (Figure 4, systems E and G, sln.WideSLN): eq 1 read out after
                every loop and weighted by the learned halting distribution (PonderNet, KL to a
                geometric prior), plus a load-balancing loss on every gate (main_wide below).

Every other training script starts from the checkpoint this writes (out_dir/ckpt.pt), or calls
main() to make one. Runs in minutes on a laptop CPU:

    $ python train_sft.py --task=addition
    $ python train_sft.py --task=wordproblems --max_iters=3000
    $ python train_sft.py --init_from=resume        # continue an interrupted run
    $ python train_sft.py --arch=wide --task=parity --window=3   # the wide SLN (systems E and G)
"""
import dataclasses
import math
import os
import random
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from common import (Logger, UsageError, autocast, get_device, load_checkpoint, load_state, load_task, lr_at,
                    make_optimizer, optimize, run, save_checkpoint, save_lobes, seed_everything, set_lr, set_rng_state)
from data import decode_answer, valence_token
from lobes import Lobe, LobeConfig, answer_ids, pad_right, prompt_ids, span_mask
from losses import critic_loss, halting_loss, pavlovian_targets, sft_loss
from sln import LENGTH_BUCKETS, WideConfig, WideSLN, by_length, equal_depth_config, evaluate_system, pool


@dataclass
class Config:
    task: str = "addition"        # addition | multiplication | parity | wordproblems | tictactoe
    out_dir: str = "out/sft"      # ckpt.pt and metrics.jsonl are written here
    init_from: str = "scratch"    # scratch | resume (continue out_dir/ckpt.pt from its step)
    device: str = "auto"          # auto (cuda, then mps, then cpu) | cpu | cuda | mps
    seed: int = 1337              # seeds the lobes' init, the data and the sampling
    n_layer: int = 3              # blocks per lobe
    n_head: int = 4               # attention heads per block
    n_embd: int = 128             # residual width per lobe
    right_n_layer: int = 0        # blocks of the right lobe (0 = n_layer)
    max_iters: int = 800          # optimisation steps (each updates both lobes)
    batch_size: int = 64          # problems per step
    lr: float = 2e-3              # peak AdamW learning rate, both lobes
    weight_decay: float = 0.1     # AdamW weight decay on matrices
    decay_lr: bool = True         # cosine decay to lr/10 (off: constant after warmup)
    grad_clip: float = 1.0        # clip each lobe's gradient norm (0 = off)
    feedback_frac: float = 0.25   # share of left-lobe examples that are feedback dialogues
    sample_frac: float = 0.5      # share of right-lobe negatives sampled from the left lobe
    pavlov_lambda: float = 0.3    # eq 9 decay over answer prefixes (0 = uniform, inf = last only)
    right_lm_weight: float = 1.0  # weight of eq 1 (next-token CE on y_true) in the right lobe's loss
    max_new_tokens: int = 0       # generation budget per answer (0: the task's longest ood answer + 4)
    eval_interval: int = 200      # evaluate and checkpoint every this many steps
    n_eval: int = 500             # test and ood problems per evaluation
    wandb_project: str = ""       # log to this wandb project (needs `pip install wandb`)
    arch: str = "lobes"           # lobes: a left and a right lobe | wide: one wide SLN, systems E and G
    n_expert: int = 0             # wide: experts per expert-lobe (0: n_layer - 1, the blocks of the pair)
    train_loops: int = 16         # wide: loops unrolled and read out in training (PonderNet's N)
    max_loops: int = 32           # wide: most loops at evaluation
    halt_prior: float = 0.1       # wide: lambda_p of the geometric prior over the halting loop
    halt_beta: float = 0.01       # wide: weight of KL(halting distribution || prior)
    balance_weight: float = 0.01  # wide: weight of the load-balancing loss of every gate
    window: int = 0               # wide: attention sees a token and the window - 1 before it (0: all)
    grow_iters: int = 0           # wide: over the first grow_iters steps the longest training prompt grows
                                  #   from 2 characters to the longest the train split has (0: off)
    loop_weight: float = 0.0      # wide: weight of eq 1 averaged over every loop; > 0 also stops the halting
                                  #   loss's gradient into the answers (it then trains only the stop probabilities)


# -----------------------------------------------------------------------------
def left_batch(task, pairs, attempts, valences, feedback_frac, rng):
    """Left-lobe examples: prompt -> y_true, or (feedback_frac of them) a dialogue
    prompt, wrong attempt, its valence -> y_true. Returns prompt token lists and answer token lists."""
    prompts, answers = [], []
    for (p, a), wrong, v in zip(pairs, attempts, valences):
        feedback = [(wrong, v)] if rng.random() < feedback_frac and not task.check(p, wrong) else []
        prompts.append(prompt_ids(p, feedback))
        answers.append(answer_ids(a))
    return prompts, answers


def lm_step(model, prompts, answers):
    """Eq 1 on a batch of (prompt, answer) token lists: the mean CE over answer tokens."""
    idx, _ = pad_right([p + a for p, a in zip(prompts, answers)], model.wte.weight.device)
    logits, _, _ = model(idx[:, :-1])
    mask = span_mask([len(p) - 1 for p in prompts], [len(a) for a in answers], idx.size(1) - 1, idx.device)
    return sft_loss(logits, idx[:, 1:], mask)


def critic_step(right, task, pairs, attempts, lam, lm_weight):
    """Eq 7 + eq 9 on y_true and the attempts: every prefix of each answer is scored and labelled.
    Plus lm_weight * eq 1 on the y_true rows of the same forward pass: §5.1 trains both lobes to
    predict the next token first, and a right lobe that can add judges sums much sooner.
    Returns the loss and the right lobe's probability that each whole attempt is right."""
    prompts = [prompt_ids(p) for p, _ in pairs] * 2
    answers = [answer_ids(a) for _, a in pairs] + [answer_ids(w) for w in attempts]
    correct = [1.0] * len(pairs) + [task.check(p, w) for (p, _), w in zip(pairs, attempts)]
    idx, _ = pad_right([p + a for p, a in zip(prompts, answers)], right.wte.weight.device)
    logits, scores, _ = right(idx)
    mask = span_mask([len(p) for p in prompts], [len(a) for a in answers], idx.size(1), idx.device)
    labels, weights = torch.zeros_like(mask), torch.zeros_like(mask)
    for i, (p, a) in enumerate(zip(prompts, answers)):
        lab, w = pavlovian_targets(a, answers[i % len(pairs)], correct[i], lam)
        labels[i, len(p):len(p) + len(a)], weights[i, len(p):len(p) + len(a)] = lab, w
    pos = (labels * weights).sum()                # §5.5 line 435: positives and negatives weigh equally
    weights = torch.where(labels > 0, weights * (weights.sum() - pos) / pos.clamp(min=1e-8), weights)
    loss = critic_loss(scores[mask > 0], labels[mask > 0], weights[mask > 0])
    n = len(pairs)  # eq 1 on the y_true rows: position t predicts token t + 1
    loss = loss + lm_weight * sft_loss(logits[:n, :-1], idx[:n, 1:], mask[:n, 1:])
    last = torch.tensor([len(p) + len(a) - 1 for p, a in zip(prompts, answers)], device=idx.device)
    p_attempt = torch.sigmoid(scores.gather(1, last[:, None]).squeeze(1))[n:]
    return loss, p_attempt.detach()


@torch.no_grad()
def evaluate(left, right, task, pairs, max_new_tokens, batch=500):
    """Left exact match on pairs, right accuracy on y_true vs a corruption, first mistakes."""
    left.eval(), right.eval()
    guesses = []
    for i in range(0, len(pairs), batch):
        guesses += left.answer([p for p, _ in pairs[i:i + batch]], max_new_tokens)
    hits = [task.check(p, g) for (p, _), g in zip(pairs, guesses)]
    rng = random.Random(0)
    wrong = [task.corrupt(p, a, rng) for p, a in pairs]
    s_true = right.score([prompt_ids(p) + answer_ids(a) for p, a in pairs])
    s_wrong = right.score([prompt_ids(p) + answer_ids(w) for (p, _), w in zip(pairs, wrong)])
    right_acc = ((s_true > 0).float().mean() + (s_wrong < 0).float().mean()).item() / 2
    mistakes = [(p, g, a) for (p, a), g, h in zip(pairs, guesses, hits) if not h][:3]
    left.train(), right.train()
    return sum(hits) / len(hits), right_acc, mistakes


def warm_start(path, task, device, seed, max_iters=0, **overrides):
    """The SFT checkpoint every other script starts from (§5.1): path, trained here first with
    this script's defaults (max_iters steps if given) when it is missing."""
    if not os.path.exists(path):
        print(f"no warm start at {path}: training one with train_sft.py (§5.1, eq 1)")
        cfg = Config(task=task, out_dir=os.path.dirname(path), device=device, seed=seed, **overrides)
        main(dataclasses.replace(cfg, max_iters=max_iters) if max_iters else cfg)
    return path


def restore(cfg, ckpt_path, device, **state):
    """--init_from: scratch -> (0, {}); resume -> load every module/optimizer in state from the
    checkpoint under its name (left, right, opt_left, ...) and the RNG; returns (step, results)."""
    if cfg.init_from == "scratch":
        return 0, {}
    if cfg.init_from != "resume":
        raise UsageError(f"--init_from must be scratch or resume, got {cfg.init_from!r}")
    ckpt = load_checkpoint(ckpt_path, device)
    for name, obj in state.items():
        load_state(obj, ckpt[name], ckpt_path)
    set_rng_state(ckpt["rng"])
    return ckpt["step"], ckpt.get("results", {})


def eval_splits(cfg, task):
    """The test and ood problems, and cfg with max_new_tokens filled in (0: longest ood answer + 4)."""
    test, ood = task.dataset("test", cfg.n_eval, cfg.seed), task.dataset("ood", cfg.n_eval, cfg.seed)
    if not cfg.max_new_tokens:
        cfg = dataclasses.replace(cfg, max_new_tokens=max(len(answer_ids(a)) for _, a in ood) + 4)
    return cfg, test, ood


def build_lobes(cfg, device):
    lcfg = LobeConfig(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd)
    rcfg = dataclasses.replace(lcfg, n_layer=cfg.right_n_layer or cfg.n_layer)
    return Lobe(lcfg).to(device), Lobe(rcfg).to(device), lcfg, rcfg


# -----------------------------------------------------------------------------
# The wide SLN (Figure 4, systems E and G): eq 1 read out after every loop, weighted by the
# learned halting distribution (PonderNet), plus the load-balancing loss of every gate.
def loop_ce(logits, targets, mask):
    """Eq 1 after each loop: logits (N, B, T, V), targets and mask (B, T) -> mean CE per row (B, N)."""
    N, B, T, V = logits.shape
    ce = F.cross_entropy(logits.float().reshape(-1, V), targets.repeat(N, 1).reshape(-1), reduction="none")
    return ((ce.view(N, B, T) * mask).sum(-1) / mask.sum(-1).clamp(min=1)).T


def wide_step(model, prompts, answers, cfg):
    """One batch of (prompt, answer) token lists -> the loss and the mean halting loop of E and G."""
    idx, _ = pad_right([p + a for p, a in zip(prompts, answers)], model.wte.weight.device)
    at = torch.tensor([len(p) - 1 for p in prompts], device=idx.device)   # where routing is read
    logits, lam, balance = model(idx[:, :-1], at, cfg.train_loops)        # (N, B, T, V), (2, B, N)
    mask = span_mask([len(p) - 1 for p in prompts], [len(a) for a in answers], idx.size(1) - 1, idx.device)
    ce = loop_ce(logits, idx[:, 1:], mask)                                # (B, N)
    # LOOP LOGIC: E halts on the main gate, G on the right lobe's score; both learn from the same loops.
    # With loop_weight, every loop is taught the answer (deep supervision) and the halting loss sees the
    # CE as fixed: it learns to stop at the first loop whose answer is right, not to make early loops lazy
    halt_ce = ce.detach() if cfg.loop_weight else ce
    loss_e, p_e = halting_loss(halt_ce, lam[0], cfg.halt_prior, cfg.halt_beta)
    loss_g, p_g = halting_loss(halt_ce, lam[1], cfg.halt_prior, cfg.halt_beta)
    n = torch.arange(1, cfg.train_loops + 1, device=idx.device)
    stats = dict(ponder_E=(p_e * n).sum(1).mean().item(), ponder_G=(p_g * n).sum(1).mean().item(),
                 ce_last=ce[:, -1].detach().mean().item(), balance=float(balance.detach()))
    return (loss_e + loss_g) / 2 + cfg.loop_weight * ce.mean() + cfg.balance_weight * balance, stats


def wide_batch(task, rng, size, lengths, grown):
    """size train problems whose prompts are at most 2 + grown * (longest - 2) characters, and never
    fewer than the shortest (lengths = (shortest, longest), grown in [0, 1]): a curriculum inside the
    train split, short prompts first (parity: few bits, few loops); grown >= 1 takes every prompt."""
    lo, hi = lengths
    cap = max(lo, 2 + grown * (hi - 2)) if grown < 1 else math.inf
    pairs = []
    while len(pairs) < size:
        p, a = task.sample(rng, "train")
        if len(p) <= cap:
            pairs.append((p, a))
    return pairs


def build_wide(cfg, device):
    wcfg = WideConfig(n_expert=cfg.n_expert or max(1, cfg.n_layer - 1), n_head=cfg.n_head, n_embd=cfg.n_embd,
                      max_loops=cfg.max_loops, window=cfg.window)
    return WideSLN(wcfg).to(device), wcfg


@torch.no_grad()
def evaluate_wide(model, task, test, ood, max_new_tokens):
    """Exact match and mean loops of E and G (one network, two halting rules) on test and ood."""
    model.eval()
    r = {}
    for kind in "EG":
        model.kind = kind
        for split, pairs in (("test", test), ("ood", ood)):
            e = evaluate_system(model, task, pairs, max_new_tokens)
            r[f"{kind}_{split}"], r[f"{kind}_loops_{split}"] = e["acc"], e["loops"]
    model.kind = "E"
    model.train()
    r["left_test"], r["left_ood"] = r["E_test"], r["E_ood"]  # the names every train_sft run returns
    return r


def print_wide_tables(model, task, results, test, ood, max_new_tokens):
    print("\n| task | step | E test | E ood | G test | G ood | E loops ood | G loops ood | minutes |\n"
          + "|---" * 9 + f"|\n| {task.name} | {results['step']} | {results['E_test']:.1%} | {results['E_ood']:.1%} "
          f"| {results['G_test']:.1%} | {results['G_ood']:.1%} | {results['E_loops_ood']:.2f} "
          f"| {results['G_loops_ood']:.2f} | {results['minutes']:.1f} |")
    if len({len(p) for p, _ in test + ood}) > 1:  # prompts of several lengths (parity): per length
        rows = {}
        for kind in "EG":
            model.kind = kind
            rows[kind] = by_length(model.eval(), task, test + ood, max_new_tokens)
        print("\n| prompt length | problems | E acc | E loops | G acc | G loops |\n|---|---|---|---|---|---|")
        for (n, count, acc_e, loops_e), (_, _, acc_g, loops_g) in zip(rows["E"], rows["G"]):
            print(f"| {n} | {count} | {acc_e:.1%} | {loops_e:.1f} | {acc_g:.1%} | {loops_g:.1f} |")
        model.kind = "E"
        if task.name in LENGTH_BUCKETS:  # the same rows pooled (parity: the train lengths, then ood)
            pooled = [pool(rows[kind], LENGTH_BUCKETS[task.name]) for kind in "EG"]
            print("\n| lengths | problems | E acc | E loops | G acc | G loops |\n|---|---|---|---|---|---|")
            for (lo, hi, count, acc_e, loops_e), (*_, acc_g, loops_g) in zip(*pooled):
                print(f"| {lo}-{hi} | {count} | {acc_e:.1%} | {loops_e:.1f} | {acc_g:.1%} | {loops_g:.1f} |")


# -----------------------------------------------------------------------------
def main(cfg: Config):
    if cfg.arch == "wide":
        return main_wide(cfg)
    if cfg.arch != "lobes":
        raise UsageError(f"--arch must be lobes or wide, got {cfg.arch!r}")
    device = get_device(cfg.device)
    task = load_task(cfg.task)
    seed_everything(cfg.seed)
    left, right, lcfg, rcfg = build_lobes(cfg, device)
    opt_left = make_optimizer(left, cfg.lr, cfg.weight_decay)
    opt_right = make_optimizer(right, cfg.lr, cfg.weight_decay)
    ckpt_path = os.path.join(cfg.out_dir, "ckpt.pt")
    start, results = restore(cfg, ckpt_path, device, left=left, right=right, opt_left=opt_left, opt_right=opt_right)
    cfg, test, ood = eval_splits(cfg, task)
    print(f"task {task.name}: left lobe {left.num_params():,} parameters, right lobe {right.num_params():,}, on {device}")
    log = Logger(cfg.out_dir, start, cfg.max_iters, "sft", cfg.wandb_project, dataclasses.asdict(cfg))
    t0 = time.time() - 60 * results.get("minutes", 0.0)

    def checkpoint(step):
        save_lobes(ckpt_path, left, right, opt_left, opt_right, cfg, task=task.name, step=step, results=results)

    for step in range(start, cfg.max_iters + 1):
        if (step % cfg.eval_interval == 0 or step == cfg.max_iters) and (step > start or not start):
            test_acc, right_acc, mistakes = evaluate(left, right, task, test, cfg.max_new_tokens)
            ood_acc, _, _ = evaluate(left, right, task, ood, cfg.max_new_tokens)
            results = dict(step=step, left_test=test_acc, left_ood=ood_acc, right_test=right_acc,
                           minutes=(time.time() - t0) / 60)
            log.log(**results)
            log.print(f"step {step}: left test {test_acc:.1%} ood {ood_acc:.1%} | right test {right_acc:.1%}"
                      + "".join(f"\n    {p!r} -> {g!r} (want {a!r})" for p, g, a in mistakes))
            if step > start:
                checkpoint(step)
        if step == cfg.max_iters:
            break
        # data: a fresh batch from the train split, reproducible from (seed, step) for exact resume
        rng = random.Random(f"{cfg.seed}/{step}")
        pairs = [task.sample(rng, "train") for _ in range(cfg.batch_size)]
        n_sampled = int(cfg.sample_frac * len(pairs))
        with torch.no_grad(), autocast(device):     # the left lobe's own attempts (T = 1)
            left.eval()
            tokens, _ = left.generate([prompt_ids(p) for p, _ in pairs[:n_sampled]], cfg.max_new_tokens, 1.0)
            left.train()
        attempts = [decode_answer(t) for t in tokens.tolist()] + \
                   [task.corrupt(p, a, rng) for p, a in pairs[n_sampled:]]
        lr = lr_at(step, cfg.max_iters, cfg.lr, decay=cfg.decay_lr)
        with autocast(device):
            # right lobe: eq 7 on y_true vs attempts, prefixes weighted by eq 9
            loss_right, p_attempt = critic_step(right, task, pairs, attempts, cfg.pavlov_lambda,
                                                 cfg.right_lm_weight)
            # left lobe: eq 1, some examples with a wrong attempt + the right lobe's valence
            valences = [valence_token(p) for p in p_attempt.tolist()]
            prompts, answers = left_batch(task, pairs, attempts, valences, cfg.feedback_frac, rng)
            loss_left = lm_step(left, prompts, answers)
        for model, opt, loss in ((left, opt_left, loss_left), (right, opt_right, loss_right)):
            set_lr(opt, lr)
            optimize(model, opt, loss, cfg.grad_clip)
        log.tick(left=loss_left.item(), right=loss_right.item())
        if step % 25 == 0:
            log.log(step, loss_left=loss_left.item(), loss_right=loss_right.item(), lr=lr)
    log.close()
    print(f"\n| task | step | left test | left ood | right test | minutes |\n|---|---|---|---|---|---|\n"
          f"| {task.name} | {results['step']} | {results['left_test']:.1%} | {results['left_ood']:.1%} "
          f"| {results['right_test']:.1%} | {results['minutes']:.1f} |")
    print(f"saved {ckpt_path}")
    return results


def main_wide(cfg: Config):
    """SFT of a wide SLN, checkpointed and resumable like main(); writes out_dir/ckpt.pt with the
    network under "left" (sln.load_system(path, "E" or "G") reads it)."""
    device, task = get_device(cfg.device), load_task(cfg.task)
    if not 0 < cfg.halt_prior < 1:
        raise UsageError(f"--halt_prior must be in (0, 1), got {cfg.halt_prior}")
    seed_everything(cfg.seed)
    model, wcfg = build_wide(cfg, device)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    ckpt_path = os.path.join(cfg.out_dir, "ckpt.pt")
    start, results = restore(cfg, ckpt_path, device, left=model, opt_left=opt)
    cfg, test, ood = eval_splits(cfg, task)
    gpt = equal_depth_config(wcfg)
    seen = [len(task.sample(random.Random(i), "train")[0]) for i in range(200)]   # prompt lengths in train
    lengths = (min(seen), max(seen))
    print(f"task {task.name}: wide SLN {model.num_params():,} parameters ({wcfg.blocks()} blocks), on {device}; "
          f"the fixed-depth GPT of as many blocks (--n_layer={gpt.n_layer}) has {Lobe(gpt).num_params():,}")
    log = Logger(cfg.out_dir, start, cfg.max_iters, "sft-wide", cfg.wandb_project, dataclasses.asdict(cfg))
    t0 = time.time() - 60 * results.get("minutes", 0.0)
    for step in range(start, cfg.max_iters + 1):
        if (step % cfg.eval_interval == 0 or step == cfg.max_iters) and (step > start or not start):
            results = dict(step=step, **evaluate_wide(model, task, test, ood, cfg.max_new_tokens),
                           minutes=(time.time() - t0) / 60)
            log.log(**results)
            log.print(f"step {step}: E test {results['E_test']:.1%} ood {results['E_ood']:.1%} "
                      f"(loops {results['E_loops_ood']:.1f}) | G test {results['G_test']:.1%} "
                      f"ood {results['G_ood']:.1%} (loops {results['G_loops_ood']:.1f})")
            if step > start:
                save_checkpoint(ckpt_path, left=model.state_dict(), opt_left=opt.state_dict(),
                                wide_config=dataclasses.asdict(wcfg), config=dataclasses.asdict(cfg),
                                task=task.name, step=step, results=results)
        if step == cfg.max_iters:
            break
        rng = random.Random(f"{cfg.seed}/{step}")       # a fresh train batch, reproducible on resume
        pairs = wide_batch(task, rng, cfg.batch_size, lengths, step / cfg.grow_iters if cfg.grow_iters else 1.0)
        lr = lr_at(step, cfg.max_iters, cfg.lr, decay=cfg.decay_lr)
        with autocast(device):
            loss, stats = wide_step(model, [prompt_ids(p) for p, _ in pairs], [answer_ids(a) for _, a in pairs], cfg)
        set_lr(opt, lr)
        optimize(model, opt, loss, cfg.grad_clip)
        log.tick(loss=loss.item(), ponder=stats["ponder_E"])
        if step % 25 == 0:
            log.log(step, loss_wide=loss.item(), lr=lr, **stats)
    log.close()
    print_wide_tables(model, task, results, test, ood, cfg.max_new_tokens)
    print(f"saved {ckpt_path}")
    return results


if __name__ == "__main__":
    run(main, Config, gpu_preset={"batch_size": 256, "n_layer": 4, "n_embd": 256, "n_head": 8,
                                  "max_iters": 3000, "n_eval": 2000})
