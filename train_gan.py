"""
GAN training of a lateralized SLN through soft tokens (paper §5.2, Alg 1 lines 282-294, eqs 3-6).

    for t = 1 .. T:                                                      Alg 1 line 1
        sample b pairs (x, y) from P_data                                line 2
        G (the left lobe) answers every x with soft tokens: each token a distribution p over
          the vocabulary, fed back as p @ W_E (eqs 3-5); with idl_limit > 1 the answer and D's
          valence go back into the context and G tries again (eq 6)     line 3
        D (the right lobe) ascends log D(x, y) + log(1 - D(x, G(x)))     line 4
        G descends log(1 - D(x, G(x)))  (or -log D, non-saturating)      line 5

How G's tokens reach D. By default straight-through Gumbel (--hard): the forward value of each of
G's tokens is EXACTLY a one-hot sample from G's distribution, so D reads a fake exactly as it reads
a real answer (one-hot @ W_E^D = the embedding row, through the same `embeds` input path), and only
the backward pass is soft. D therefore cannot win by telling soft vectors from one-hot ones; the
logged probe `gap` (D's probability of the same fakes fed through the soft path and as token ids)
is 0 to float precision. With --hard=false (plain eq 3, p = softmax(logits / tau)) real answers are
smoothed the same way: each real token gets G's own teacher-forced distribution at that position
with the true token swapped into first place (`smooth_like`), so real and fake soft tokens have the
same sharpness and D must judge the content; `gap` then measures how far the soft path is from
the tokens it stands for. D embeds G's distribution with D's OWN table W_E^D, not G's.

Deviations, all config fields: the G loss is the non-saturating -log D(G(x)) by default (the
paper's saturating one is --g_loss=saturating); an SFT anchor (eq 1 on y_true, --nll_weight, 0 =
the paper's pure line 5) as SPIN needed here; lines 4 and 5 take their gradients from the same
forward pass (simultaneous updates, see gan_step).

From a fresh clone this warm-starts both lobes from out/sft/ckpt.pt (training it first if missing,
~3 min on CPU), trains, evaluates against the SFT lobe greedy and sampled at a temperature sweep
(the fair baseline for a GAN on text), saves and prints a table:

    $ python train_gan.py                                   # CPU, minutes
    $ python train_gan.py --idl_limit=3 --window=1          # eq 6 loops, truncated BPTT over
                                                            #   the last one
    $ python train_gan.py --init_from=resume                # continue an interrupted run
"""
import dataclasses
import os
import random
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from common import (Checked, Logger, PosFloat, PosInt, UsageError, autocast, get_device, load_task,
                    make_optimizer, markdown_table, optimize, resume, run, save_lobes,
                    seed_everything, writable_dir)
from data.tokenizer import decode_answer
from idl import answer_end, one_hot_context, soft_lateralized, soft_score
from lobes import answer_ids, pad_right, prompt_ids, sequence_logprob, teacher_forced
from losses import (gan_discriminator_loss, gan_generator_loss_nonsaturating,
                    gan_generator_loss_saturating, sft_loss)
from measure import eval_splits, evaluate_system
from sln import System
from train_sft import warm_start


G_LOSSES = {"nonsaturating": gan_generator_loss_nonsaturating,
            "saturating": gan_generator_loss_saturating}


@dataclass
class Config(Checked):
    task: str = "addition"        # addition | multiplication | parity | wordproblems | tictactoe
    out_dir: str = "out/gan"      # ckpt.pt and metrics.jsonl are written here
    init_from: str = "sft"        # sft (sft_dir/ckpt.pt, trained first if missing) | resume |
                                  #   a ckpt path
    sft_dir: str = "out/sft"      # where the SFT warm start lives (shared with the other scripts)
    sft_iters: int = 0            # steps of the warm start if it must be trained
                                  #   (0: train_sft's default)
    device: str = "auto"          # auto (cuda, then mps, then cpu) | cpu | cuda | mps
    seed: int = 1337              # seeds the batches and the Gumbel noise
    max_iters: PosInt = 150       # T, GAN steps (Alg 1 line 1), each updates both lobes
    batch_size: PosInt = 32       # b, pairs per step (Alg 1 line 2)
    lr: PosFloat = 1e-5           # AdamW learning rate of G (the left lobe)
    lr_right: PosFloat = 1e-4     # AdamW learning rate of D (the right lobe)
    weight_decay: float = 0.0     # AdamW weight decay
    grad_clip: float = 1.0        # clip each lobe's gradient norm (0 = off)
    hard: bool = True             # straight-through Gumbel (one-hot forward); false: plain soft
                                  #   tokens (eq 3)
    tau_start: PosFloat = 1.0     # softmax temperature of the soft tokens at step 0 (eq 3)
    tau_end: PosFloat = 0.1       # ... annealed geometrically towards hard tokens by the last step
    g_loss: str = "nonsaturating"  # nonsaturating (-log D(G(x))) | saturating
                                   #   (the paper's log(1 - D(G(x))))
    nll_weight: float = 1.0       # + this * eq 1 on y_true for G
                                  #   (0 = the paper's pure Alg 1 line 5)
    idl_limit: PosInt = 1         # loops of eq 6 per step (1 = plain Algorithm 1)
    window: int = 0               # truncated BPTT over the last this many loops (0 = full BPTT)
    remat: bool = False           # activation checkpointing of each loop (torch.utils.checkpoint)
    temperatures: str = "0.3,0.7,1.0"  # the SFT lobe's sampling temperatures for the baseline rows
    eval_interval: PosInt = 50    # evaluate and checkpoint every this many steps
    n_eval: PosInt = 500          # test and ood problems per evaluation
    max_new_tokens: int = 0       # generation budget at evaluation (0: the task's longest ood
                                  #   answer + 4)
    wandb_project: str = ""       # log to this wandb project (needs `pip install wandb`)

    def check(self):
        if self.g_loss not in G_LOSSES:
            raise UsageError(f"--g_loss must be one of {', '.join(G_LOSSES)}, got {self.g_loss!r}")
        if self.window > self.idl_limit:
            raise UsageError(f"--window ({self.window}) cannot exceed "
                             f"--idl_limit ({self.idl_limit})")
        self.baseline_temperatures()

    def baseline_temperatures(self):
        try:
            return [float(t) for t in self.temperatures.split(",") if t.strip()]
        except ValueError:
            raise UsageError("--temperatures expects comma-separated numbers, "
                             f"got {self.temperatures!r}") from None




# -----------------------------------------------------------------------------
def tau_at(step, cfg):
    """The tau schedule: geometric from tau_start at step 0 to tau_end at the last step."""
    return cfg.tau_start * (cfg.tau_end / cfg.tau_start) ** (step / max(1, cfg.max_iters - 1))


def answer_logits(left, prompts, answers):
    """G on (x, y_true) with teacher forcing: eq 1's NLL per answer token (scalar) and G's logits
    at the positions that predict each answer token, (B, n, V), n the longest answer."""
    logits, targets, mask = teacher_forced(left, prompts, answers)  # (B, T - 1, V)
    n, dev = max(len(a) for a in answers), logits.device
    at = (torch.tensor([len(p) - 1 for p in prompts], device=dev)[:, None] +
          torch.arange(n, device=dev))
    at = at.clamp(max=logits.size(1) - 1)[..., None].expand(-1, -1, logits.size(-1))
    return sft_loss(logits, targets, mask), logits.gather(1, at)


def smooth_like(logits, targets, tau):
    """Real tokens for the plain soft path: softmax(z' / tau), z' = G's logits z with the true
    token's logit swapped with the largest one. The same set of probabilities G itself produces at
    that position, the true token first: D cannot tell real from fake by their sharpness.
    (B, n, V)."""
    z = logits.detach().float()
    top = z.argmax(-1, keepdim=True)
    z_top, z_true = z.gather(-1, top), z.gather(-1, targets[..., None])
    z_swapped = z.scatter(-1, top, z_true).scatter(-1, targets[..., None], z_top)
    return F.softmax(z_swapped / tau, dim=-1)


def real_answers(answers, logits, cfg, tau, device):
    """y_true as distributions (B, n, V): one-hot (hard) or smoothed like G's own (soft); <|pad|>
    after eos."""
    idx, _ = pad_right(answers, device)                                 # (B, n)
    onehot = F.one_hot(idx, logits.size(-1)).float()
    return onehot if cfg.hard else smooth_like(logits, idx, tau)


def gan_step(left, right, pairs, cfg, tau):
    """Alg 1 lines 3-5 on one batch, the forward pass only. Returns D's loss (line 4), G's loss
    (line 5, plus nll_weight * eq 1 on y_true) and the batch's statistics with the probe."""
    dev = left.wte.weight.device
    prompts, answers = [prompt_ids(p) for p, _ in pairs], [answer_ids(a) for _, a in pairs]
    # LOOP LOGIC: Alg 1 line 3, G answers as soft tokens; D scores each loop's answer (eqs 3-6)
    d = soft_lateralized(left, right, prompts, max(map(len, answers)), cfg.idl_limit, tau, cfg.hard,
                         cfg.window, cfg.remat)
    nll, logits = answer_logits(left, prompts, answers)
    ctx, valid = one_hot_context(prompts, dev)
    # real answers reach D through the same input path as fakes: distributions @ W_E^D
    s_real = soft_score(right, ctx, valid, real_answers(answers, logits, cfg, tau, dev))
    # LOOP LOGIC: Alg 1 line 4, D ascends log D(y) + log(1 - D(G(x))); G(x) is data to D (detached)
    s_fake_d = torch.cat([soft_score(right, ctx, valid, a.detach()) for a in d.answers])
    loss_right = gan_discriminator_loss(s_real.repeat(cfg.idl_limit), s_fake_d)
    # LOOP LOGIC: Alg 1 line 5, G descends log(1 - D(G(x))) (or -log D), through D and the soft
    # tokens
    s_fake = torch.cat(d.scores)
    loss_left = G_LOSSES[cfg.g_loss](s_fake) + cfg.nll_weight * nll
    stats = dict(loss_right=loss_right.item(), loss_left=loss_left.item(), nll=nll.item(),
                 d_real=torch.sigmoid(s_real).mean().item(),
                 d_fake=torch.sigmoid(s_fake).mean().item(),
                 d_acc=((s_real > 0).float().mean() + (s_fake_d < 0).float().mean()).item() / 2,
                 **probe(right, prompts, answers, d.answers[-1], d.scores[-1], s_real))
    return loss_right, loss_left, stats


@torch.no_grad()
def probe(right, prompts, answers, fake, s_fake, s_real):
    """Is D separating by representation? D's probability of the same sequences through the soft
    path (distributions @ W_E^D) and as plain token ids (Lobe.score): the mean absolute gap, for
    G's last fakes (their argmax tokens, cut after the first <|eos|>) and for y_true."""
    ids, end = fake.argmax(-1).tolist(), answer_end(fake).tolist()
    s_ids = right.score([p + row[:e + 1] for p, row, e in zip(prompts, ids, end)])
    s_true = right.score([p + a for p, a in zip(prompts, answers)])
    gap = lambda a, b: (torch.sigmoid(a.float()) - torch.sigmoid(b.float())).abs().mean().item()
    return dict(gap_fake=gap(s_fake, s_ids), gap_real=gap(s_real, s_true))


@torch.no_grad()
def evaluate(left, right, task, test, ood, cfg, temperature=0.0, judge=True):
    """G's exact match (greedy, or sampled at temperature) and NLL per answer token on test and ood
    (coverage of y_true, under the temperature-scaled distribution); with judge, D on test: its mean
    probability of y_true and of G's samples at T = 1 (training's fakes) and of the wrong ones among
    them, its accuracy between y_true and the samples, and the share of samples that are correct."""
    left.eval(), right.eval()
    r = {}
    for name, pairs in (("test", test), ("ood", ood)):
        r[name] = evaluate_system(System("A", left, temperature=temperature), task, pairs,
                                  cfg.max_new_tokens)["acc"]
        prompts, answers = [prompt_ids(p) for p, _ in pairs], [answer_ids(a) for _, a in pairs]
        lp = sequence_logprob(left, prompts, answers, temperature or 1.0)
        lengths = torch.tensor([len(a) for a in answers], device=lp.device)
        r[f"nll_{name}"] = (-lp / lengths).mean().item()
    if judge:
        prompts = [prompt_ids(p) for p, _ in test]
        tokens = left.generate(prompts, cfg.max_new_tokens, 1.0)[0]
        fakes = [decode_answer(t) for t in tokens.tolist()]
        s_real = right.score([x + answer_ids(a) for x, (_, a) in zip(prompts, test)])
        s_fake = right.score([x + answer_ids(f) for x, f in zip(prompts, fakes)])
        ok = torch.tensor([bool(task.check(p, f)) for (p, _), f in zip(test, fakes)])
        r.update(d_real=torch.sigmoid(s_real).mean().item(),
                 d_fake=torch.sigmoid(s_fake).mean().item(),
                 d_wrong=torch.sigmoid(s_fake[~ok.to(s_fake.device)]).mean().nan_to_num().item(),
                 d_acc=((s_real > 0).float().mean() + (s_fake < 0).float().mean()).item() / 2,
                 fake_ok=ok.float().mean().item())
    left.train(), right.train()
    return r


# -----------------------------------------------------------------------------
def main(cfg: Config):
    device = get_device(cfg.device)
    writable_dir(cfg.out_dir)        # before minutes of warm start, not at the first save
    task = load_task(cfg.task)
    cfg, test, ood = eval_splits(cfg, task)
    seed_everything(cfg.seed)
    left, right, ckpt = warm_start(cfg, device)
    opt_left = make_optimizer(left, cfg.lr, cfg.weight_decay)
    opt_right = make_optimizer(right, cfg.lr_right, cfg.weight_decay)
    ckpt_path = os.path.join(cfg.out_dir, "ckpt.pt")
    if cfg.init_from == "resume":
        resume(ckpt, ckpt_path, opt_left=opt_left, opt_right=opt_right)
        start, rows = ckpt["step"], ckpt["rows"]
    else:  # the baselines: the SFT lobe greedy, then sampled at each temperature
        start = 0
        rows = [dict(model="SFT greedy", steps=0, **evaluate(left, right, task, test, ood, cfg))]
        rows += [dict(model=f"SFT T={t}", steps=0,
                      **evaluate(left, right, task, test, ood, cfg, t, judge=False))
                 for t in cfg.baseline_temperatures()]
    print(f"task {task.name}: G {left.num_params():,} + D {right.num_params():,} parameters on "
          f"{device}; {'straight-through' if cfg.hard else 'soft'} tokens, {cfg.g_loss} G loss, "
          f"idl_limit {cfg.idl_limit}")
    log = Logger(cfg.out_dir, start, cfg.max_iters, "gan", cfg.wandb_project,
                 dataclasses.asdict(cfg))
    t0 = time.time()
    for step in range(start, cfg.max_iters):                                   # Alg 1 line 1
        # exact resume from (seed, step)
        rng = random.Random(f"{cfg.seed}/gan/{step}")
        pairs = [task.sample(rng, "train") for _ in range(cfg.batch_size)]     # Alg 1 line 2
        with autocast(device):
            loss_right, loss_left, stats = gan_step(left, right, pairs, cfg, tau_at(step, cfg))
        # Alg 1 lines 5 and 4 from the same forward: G's gradient flows back through D's weights,
        # so D may step only after G's backward (an in-place step first would break that graph)
        optimize(left, opt_left, loss_left, cfg.grad_clip)
        optimize(right, opt_right, loss_right, cfg.grad_clip)
        log.tick(d=stats["loss_right"], g=stats["loss_left"])
        if (step + 1) % 10 == 0:
            log.log(step + 1, tau=tau_at(step, cfg), **stats)
        if (step + 1) % cfg.eval_interval == 0 or step + 1 == cfg.max_iters:
            row = dict(model=f"GAN step {step + 1}", steps=step + 1,
                       **evaluate(left, right, task, test, ood, cfg),
                       gap_fake=stats["gap_fake"], gap_real=stats["gap_real"],
                       minutes=(time.time() - t0) / 60)
            log.report(step + 1, row, rows)
            save_lobes(ckpt_path, left, right, opt_left, opt_right, cfg, task=task.name,
                       step=step + 1, rows=rows)
    log.close()
    print(table(rows))
    return rows


def table(rows):
    """The baselines and every evaluation as a markdown table (D columns on test)."""
    cols = [("model", "model", "{}"), ("test", "test", "{:.1%}"), ("ood", "ood", "{:.1%}"),
            ("nll_test", "NLL test", "{:.3f}"), ("nll_ood", "NLL ood", "{:.3f}"),
            ("d_real", "D(real)", "{:.3f}"), ("d_fake", "D(fake)", "{:.3f}"),
            ("d_wrong", "D(wrong fake)", "{:.3f}"), ("d_acc", "D acc", "{:.1%}"),
            ("fake_ok", "fakes correct", "{:.1%}"),
            ("gap_fake", "probe gap fake", "{:.1e}"), ("gap_real", "probe gap real", "{:.1e}")]
    return markdown_table(rows, cols)


if __name__ == "__main__":
    run(main, Config, gpu_preset={"batch_size": 128, "max_iters": 500, "n_eval": 2000})
