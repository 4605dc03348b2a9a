"""
Supervised warm start of both lobes (paper §5.1, eq 1; eq 7 and eq 9 for the right lobe).

    left lobe   eq 1: cross-entropy on answer tokens only. A share of its examples are short
                dialogues  prompt <sep> wrong attempt <vK> <sep> answer  (K = the right lobe's
                score of the attempt, quantised), so it learns to use the right lobe's feedback
                that the Inner Dialogue Loop will give it (eq 6). --feedback_from=samples shows
                only its own wrong samples, the attempts the loop will show it: corruptions of
                y_true lie a digit or two from the answer and can teach it to copy a rejected
                attempt (on Sudoku they do: results/README.md).
    right lobe  eq 7: binary cross-entropy, positives = y_true and every prefix of it, negatives =
                corruptions of y_true (digit swap, off-by-one, carry error, dropped or inserted
                digit) and the left lobe's own wrong samples; prefixes weighted by eq 9.

Both lobes step by Muon on their blocks' matrices and AdamW on the rest (muon.py): AdamW alone
leaves addition's last circuits to form (the first answer digit, read from <|sep|>, and the
carries) on a plateau of a few hundred steps whose length the seed decides (results/README.md,
"Supervised warm start"); --muon_lr=0 steps every weight by AdamW.

Every script that fine-tunes a pair of lobes starts from the checkpoint this writes
(out_dir/ckpt.pt) through warm_start(), which runs main() to make it when it is missing. Runs in
minutes on a laptop CPU:

    $ python train_sft.py --task=addition
    $ python train_sft.py --task=wordproblems --max_iters=3000
    $ python train_sft.py --init_from=resume        # continue an interrupted run
    $ torchrun --standalone --nproc_per_node=2 train_sft.py    # 2 processes, the same result
"""
import dataclasses
import os
import random
import time
from dataclasses import dataclass

import torch

from common import (Checked, Decay, Logger, PosFloat, PosInt, Prob, UsageError, autocast,
                    get_device, load_checkpoint, load_task, lr_at, make_optimizer, optimize, resume,
                    run, save_lobes, seed_everything, set_lr)
from ranks import averaged, gather, shard, share, total
from data import decode_answer, valence_token
from lobes import Lobe, LobeConfig, answer_ids, pad_right, prompt_ids, span_mask, teacher_forced
from losses import critic_loss, pavlovian_targets, sft_loss
from measure import eval_splits
from sln import load_lobes


@dataclass
class Config(Checked):
    task: str = "addition"        # addition | multiplication | parity | wordproblems | tictactoe
    out_dir: str = "out/sft"      # ckpt.pt and metrics.jsonl are written here
    init_from: str = "scratch"    # scratch | resume (continue out_dir/ckpt.pt from its step)
    device: str = "auto"          # auto (cuda, then mps, then cpu) | cpu | cuda | mps
    seed: int = 1337              # seeds the lobes' init, the data and the sampling
    n_layer: PosInt = 3           # blocks per lobe
    n_head: PosInt = 4            # attention heads per block
    n_embd: PosInt = 128          # residual width per lobe
    right_n_layer: int = 0        # blocks of the right lobe (0 = n_layer)
    max_iters: PosInt = 500       # optimisation steps (each updates both lobes)
    batch_size: PosInt = 64       # problems per step
    lr: PosFloat = 2e-3           # peak AdamW learning rate, both lobes
    muon_lr: float = 0.02         # peak Muon learning rate of the blocks' matrices (muon.py;
                                  #   0 = AdamW for every weight)
    weight_decay: float = 0.1     # AdamW weight decay on matrices
    decay_lr: bool = True         # cosine decay to lr/10 (off: constant after warmup)
    grad_clip: float = 1.0        # clip each lobe's gradient norm (0 = off)
    feedback_frac: Prob = 0.25    # share of left-lobe examples that are feedback dialogues
    feedback_from: str = "all"    # the wrong attempts those dialogues show: all (the left lobe's
                                  #   samples and corruptions) | samples (its own samples only)
    sample_frac: Prob = 0.5       # share of right-lobe negatives sampled from the left lobe
    pavlov_lambda: Decay = 0.3    # eq 9 decay over answer prefixes (0 = uniform, inf = last only)
    right_lm_weight: float = 1.0  # weight of eq 1 (next-token CE on y_true) in the right lobe's
                                  #   loss
    max_new_tokens: int = 0       # generation budget per answer (0: the task's longest ood
                                  #   answer + 4)
    grow_iters: int = 0           # over the first grow_iters steps the longest training prompt
                                  #   grows from 2 characters to the longest the train split has
                                  #   (0: off; train_wide.py's curriculum, for equal budgets)
    eval_interval: PosInt = 200   # evaluate and checkpoint every this many steps
    n_eval: PosInt = 500          # test and ood problems per evaluation
    wandb_project: str = ""       # log to this wandb project (needs `pip install wandb`)

    def check(self):
        if self.init_from not in ("scratch", "resume"):
            raise UsageError(f"--init_from must be scratch or resume, got {self.init_from!r}")
        if self.feedback_from not in ("all", "samples"):
            raise UsageError(f"--feedback_from must be all or samples, got {self.feedback_from!r}")


# -----------------------------------------------------------------------------
def left_batch(task, pairs, attempts, valences, feedback_frac, rng, shown=None):
    """Left-lobe examples: prompt -> y_true, or (feedback_frac of them) a dialogue
    prompt, wrong attempt, its valence -> y_true, the attempt one of the first `shown` (all when
    None). Returns prompt token lists and answer token lists."""
    prompts, answers = [], []
    for i, ((p, a), wrong, v) in enumerate(zip(pairs, attempts, valences)):
        feedback = [(wrong, v)] if (rng.random() < feedback_frac and not task.check(p, wrong)
                                    and (shown is None or i < shown)) else []
        prompts.append(prompt_ids(p, feedback))
        answers.append(answer_ids(a))
    return prompts, answers


def lm_step(model, prompts, answers):
    """Eq 1 on a batch of (prompt, answer) token lists: the mean CE over answer tokens (under
    torchrun: this rank's part of the mean over every rank's answer tokens, ranks.share)."""
    logits, targets, mask = teacher_forced(model, prompts, answers)
    return share(sft_loss(logits, targets, mask), mask.sum())


def critic_step(right, task, pairs, attempts, lam, lm_weight):
    """Eq 7 + eq 9 on y_true and the attempts: every prefix of each answer is scored and labelled.
    Plus lm_weight * eq 1 on the y_true rows of the same forward pass: §5.1 trains both lobes to
    predict the next token first, and a right lobe that can add judges sums much sooner.
    Returns the loss and the right lobe's probability that each whole attempt is right. Under
    torchrun the sums that balance and normalise the loss are the whole batch's (ranks.total)."""
    prompts = [prompt_ids(p) for p, _ in pairs] * 2
    answers = [answer_ids(a) for _, a in pairs] + [answer_ids(w) for w in attempts]
    correct = [1.0] * len(pairs) + [task.check(p, w) for (p, _), w in zip(pairs, attempts)]
    idx, _ = pad_right([p + a for p, a in zip(prompts, answers)], right.wte.weight.device)
    logits, scores = right(idx, score=True)
    mask = span_mask([len(p) for p in prompts], [len(a) for a in answers], idx.size(1), idx.device)
    labels, weights = torch.zeros_like(mask), torch.zeros_like(mask)
    for i, (p, a) in enumerate(zip(prompts, answers)):
        lab, w = pavlovian_targets(a, answers[i % len(pairs)], correct[i], lam)
        labels[i, len(p):len(p) + len(a)], weights[i, len(p):len(p) + len(a)] = lab, w
    pos = total((labels * weights).sum())  # §5.5 line 435: positives and negatives weigh equally
    weights = torch.where(labels > 0, weights * (total(weights.sum()) - pos) / pos.clamp(min=1e-8),
                          weights)
    loss = share(critic_loss(scores[mask > 0], labels[mask > 0], weights[mask > 0]), weights.sum())
    n = len(pairs)  # eq 1 on the y_true rows: position t predicts token t + 1
    lm = sft_loss(logits[:n, :-1], idx[:n, 1:], mask[:n, 1:])
    loss = loss + lm_weight * share(lm, mask[:n, 1:].sum())
    last = torch.tensor([len(p) + len(a) - 1 for p, a in zip(prompts, answers)], device=idx.device)
    p_attempt = torch.sigmoid(scores.gather(1, last[:, None]).squeeze(1))[n:]
    return loss, p_attempt.detach()


@torch.no_grad()
def evaluate(left, right, task, pairs, max_new_tokens, batch=500):
    """Left exact match on pairs, right accuracy on y_true vs a corruption, first mistakes.
    Under torchrun each rank judges its share of pairs and the counts are summed; the mistakes
    shown are rank 0's, the first of its share."""
    left.eval(), right.eval()
    n = len(pairs)
    rng = random.Random(0)
    wrong = shard([task.corrupt(p, a, rng) for p, a in pairs])
    pairs = shard(pairs)
    guesses = []
    for i in range(0, len(pairs), batch):
        guesses += left.answer([p for p, _ in pairs[i:i + batch]], max_new_tokens)
    hits = [task.check(p, g) for (p, _), g in zip(pairs, guesses)]
    s_true = right.score([prompt_ids(p) + answer_ids(a) for p, a in pairs])
    s_wrong = right.score([prompt_ids(p) + answer_ids(w) for (p, _), w in zip(pairs, wrong)])
    right_acc = (total((s_true > 0).float().sum()) / n
                 + total((s_wrong < 0).float().sum()) / n).item() / 2
    mistakes = [(p, g, a) for (p, a), g, h in zip(pairs, guesses, hits) if not h][:3]
    left.train(), right.train()
    return total(sum(hits)) / n, right_acc, mistakes


def warm_start_path(cfg):
    """The checkpoint warm_start reads for a fine-tuning script's --init_from."""
    return {"resume": os.path.join(cfg.out_dir, "ckpt.pt"),
            "sft": os.path.join(cfg.sft_dir, "ckpt.pt")}.get(cfg.init_from, cfg.init_from)


def warm_start(cfg, device):
    """Both lobes for a script that fine-tunes a pair, by its --init_from: resume continues its own
    out_dir/ckpt.pt; sft takes sft_dir/ckpt.pt (§5.1), trained here first with this script's
    defaults (sft_iters steps if > 0, measured on the caller's n_eval problems, which leaves the
    weights as they are: evaluation is greedy) when it is missing; anything else is a
    checkpoint path.
    Returns left and right in train mode, and the checkpoint."""
    path = warm_start_path(cfg)
    if cfg.init_from == "sft" and not os.path.exists(path):
        print(f"no warm start at {path}: training one with train_sft.py (§5.1, eq 1)")
        sft = Config(task=cfg.task, out_dir=cfg.sft_dir, device=cfg.device, seed=cfg.seed,
                     n_eval=cfg.n_eval)
        main(dataclasses.replace(sft, max_iters=cfg.sft_iters) if cfg.sft_iters else sft)
    left, right, ckpt = load_lobes(path, device, cfg.task)
    return left.train(), right.train(), ckpt


def build_lobes(cfg, device):
    lcfg = LobeConfig(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd)
    rcfg = dataclasses.replace(lcfg, n_layer=cfg.right_n_layer or cfg.n_layer)
    return Lobe(lcfg).to(device), Lobe(rcfg).to(device), lcfg, rcfg


# -----------------------------------------------------------------------------
def main(cfg: Config):
    device = get_device(cfg.device)
    task = load_task(cfg.task)
    seed_everything(cfg.seed)
    left, right, lcfg, rcfg = build_lobes(cfg, device)
    opt_left = make_optimizer(left, cfg.lr, cfg.weight_decay, cfg.muon_lr)
    opt_right = make_optimizer(right, cfg.lr, cfg.weight_decay, cfg.muon_lr)
    ckpt_path = os.path.join(cfg.out_dir, "ckpt.pt")
    start, results = 0, {}
    if cfg.init_from == "resume":
        ckpt = load_checkpoint(ckpt_path, device)
        resume(ckpt, ckpt_path, left=left, right=right, opt_left=opt_left, opt_right=opt_right)
        start, results = ckpt["step"], ckpt["results"]
    cfg, test, ood = eval_splits(cfg, task)
    print(f"task {task.name}: left lobe {left.num_params():,} parameters, "
          f"right lobe {right.num_params():,}, on {device}")
    log = Logger(cfg.out_dir, start, cfg.max_iters, "sft", cfg.wandb_project,
                 dataclasses.asdict(cfg))
    t0 = time.time() - 60 * results.get("minutes", 0.0)

    def checkpoint(step):
        save_lobes(ckpt_path, left, right, opt_left, opt_right, cfg, task=task.name, step=step,
                   results=results)

    for step in range(start, cfg.max_iters + 1):
        if (step % cfg.eval_interval == 0 or step == cfg.max_iters) and (step > start or not start):
            test_acc, right_acc, mistakes = evaluate(left, right, task, test, cfg.max_new_tokens)
            ood_acc, _, _ = evaluate(left, right, task, ood, cfg.max_new_tokens)
            results = dict(step=step, left_test=test_acc, left_ood=ood_acc, right_test=right_acc,
                           minutes=(time.time() - t0) / 60)
            log.log(**results)
            log.print(f"step {step}: left test {test_acc:.1%} ood {ood_acc:.1%} "
                      f"| right test {right_acc:.1%}"
                      + "".join(f"\n    {p!r} -> {g!r} (want {a!r})" for p, g, a in mistakes))
            if step > start:
                checkpoint(step)
        if step == cfg.max_iters:
            break
        # data: a fresh batch from the train split, reproducible from (seed, step) for exact resume.
        # Under torchrun every rank draws the whole batch -- the problems, the left lobe's sampled
        # attempts, the corruptions, the feedback dialogues -- with the same random numbers as one
        # process, and keeps its share for eq 7 and eq 1 (ranks.shard): so a step does not depend
        # on the number of ranks, and every rank's generator stays in the state rank 0 saves.
        # Sampling is the small part of a step; the two lobes' passes are what is split.
        rng = random.Random(f"{cfg.seed}/{step}")
        pairs = task.batch(rng, cfg.batch_size, step / cfg.grow_iters if cfg.grow_iters else 1.0)
        n_sampled = int(cfg.sample_frac * len(pairs))
        with torch.no_grad(), autocast(device):     # the left lobe's own attempts (T = 1)
            left.eval()
            tokens, _ = left.generate([prompt_ids(p) for p, _ in pairs[:n_sampled]],
                                      cfg.max_new_tokens, 1.0)
            left.train()
        attempts = [decode_answer(t) for t in tokens.tolist()] + \
                   [task.corrupt(p, a, rng) for p, a in pairs[n_sampled:]]
        lr = lr_at(step, cfg.max_iters, cfg.lr, decay=cfg.decay_lr)
        with autocast(device):
            # right lobe: eq 7 on y_true vs attempts, prefixes weighted by eq 9
            loss_right, p_attempt = critic_step(right, task, shard(pairs), shard(attempts),
                                                 cfg.pavlov_lambda, cfg.right_lm_weight)
            # left lobe: eq 1, some examples with a wrong attempt + the right lobe's valence
            valences = [valence_token(p) for p in gather(p_attempt.tolist())]
            shown = n_sampled if cfg.feedback_from == "samples" else None
            prompts, answers = left_batch(task, pairs, attempts, valences, cfg.feedback_frac, rng,
                                          shown)
            loss_left = lm_step(left, shard(prompts), shard(answers))
        for model, opt, loss in ((left, opt_left, loss_left), (right, opt_right, loss_right)):
            set_lr(opt, lr)
            optimize(model, opt, loss, cfg.grad_clip)
        losses = averaged([loss_left.item(), loss_right.item()])   # the whole batch's
        log.tick(left=losses[0], right=losses[1])
        if step % 25 == 0:
            log.log(step, loss_left=losses[0], loss_right=losses[1], lr=lr)
    log.close()
    print(f"\n| task | step | left test | left ood | right test | minutes |\n"
          "|---|---|---|---|---|---|\n"
          f"| {task.name} | {results['step']} | {results['left_test']:.1%} "
          f"| {results['left_ood']:.1%} | {results['right_test']:.1%} | {results['minutes']:.1f} |")
    print(f"saved {ckpt_path}")
    return results


if __name__ == "__main__":
    run(main, Config, gpu_preset={"batch_size": 256, "n_layer": 4, "n_embd": 256, "n_head": 8,
                                  "max_iters": 3000, "n_eval": 2000})
