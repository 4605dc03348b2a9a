"""
The paper's Table 1 (lines 533-541, left empty there: "[NEED TO GO PROVE!]", line 105), filled in
at small scale: systems A-G on addition, parity, word problems and tic-tac-toe, in distribution
(test) and out of it (ood), over several training seeds, with the compute each one spends.

    A   single GPT: the left lobe alone, one pass
    A=  single GPT as large as a pair of lobes: as deep as one lobe, as wide as makes its
        parameters the pair's within a few percent (the paper's protocol: compare at equal size)
    B   one lobe answers and scores its own answers (self-reflection; the pair's right lobe,
        which train_sft teaches both to speak and to judge)
    C   the left lobe in both seats of the tall dialogue, each seat sampling (multi-agent debate;
        greedy, it would answer what A answers: sln.SAMPLE_TEMPERATURE)
    D   left and right lobe, tall dialogue (tall SLN, Figure 3)
    E   wide SLN (Figure 4)                   G   lateralized wide SLN
    F   left answers, right scores, lateralized IDL (Figure 5, Algorithm 2)

and the baselines an IDL must beat at its budget of forward passes (sln.Sampled): the left lobe
samples idl_limit answers and keeps the one the right lobe scores highest (best@k), the most
frequent (vote@k), or any right one (pass@k, an oracle); or samples one at a time until the
right lobe accepts (retry@k, F with its feedback cut). Beside F, each task also measures the
right lobe judging the left lobe's own samples (measure.judge): F gains only where it can judge.

For every task and seed it trains what is missing: a pair of lobes (A-D, F) and a single GPT as
large as the pair (A=) with train_sft.main, and a wide SLN (E, G) with train_wide.main, all three
under the task's one BUDGET below; checkpoints under out_dir are reused if they follow the same
recipe, and an interrupted one resumes. Then it measures, on the same problems for every system,
exact match, IDL loops, forward passes and generated tokens per answer, for parity the same per
bucket of lengths (1-10 bits trained on, 11-15 and 16-20 beyond), and for tic-tac-toe the exact
loss rate against the perfect player from each seat (games/tictactoe.py, every reply
enumerated). report.py writes it up: results/results.json, results/table.md, plots when
matplotlib is installed, and the Table 1 section of results/README.md, with the paper's claims
judged by one rule (a claim is "held" only beyond the spread over seeds).

    $ python evaluate.py --quick      # one seed, small models, short training: a look in minutes
    $ python evaluate.py              # the full run (each task's BUDGET below)
    $ python evaluate.py --ckpt=out/spin/ckpt.pt --systems=A,B,F   # one pair checkpoint of yours
    $ python evaluate.py --ckpt=out/ac/seed{seed}/ckpt.pt --systems=A,F,best@k \
          --results_dir=results/ac          # a pair of yours per seed, summarised over the seeds
"""
import contextlib
import dataclasses
import os
import time
from dataclasses import dataclass

import torch

import train_sft
import train_wide
from common import (Checked, PosInt, Prob, UsageError, get_device, load_checkpoint, load_task, run,
                    seed_everything, writable_dir)
from data.tasks import task_positions
from games.tictactoe import (EMPTY, after, exact_outcome, is_over, mark_to_move, moves,
                             optimal_moves, read_move, to_prompt)
from lobes import Lobe, LobeConfig, answer_ids
from measure import LENGTH_BUCKETS, by_length, evaluate_system, judge, pool
from report import NAMES, claims, summarise, task_table, write_results
from sln import BASELINES, load_system


@dataclass
class Config(Checked):
    tasks: str = "addition,parity,wordproblems,tictactoe"  # comma-separated tasks
    systems: str = "A,A=,B,C,D,E,F,G,best@k,vote@k,pass@k,retry@k"  # comma-separated (docstring)
    seeds: str = "1337,1,2"           # training seeds; the table gives mean ± standard deviation
    quick: bool = False               # one seed, small models, short training (QUICK below);
                                      #   a look, not the table
    out_dir: str = ""                 # checkpoints: out_dir/<task>/seed<seed>/<pair|single|wide>/
                                      #   ('': out/table, --quick out/quick)
    results_dir: str = ""             # results.json, table.md and the plots
                                      #   ('': results, --quick results/quick)
    readme: str = ""                  # rewrite this file's Table 1 section
                                      #   ('': results/README.md, --quick none; none)
    ckpt: str = ""                    # evaluate this pair checkpoint only (its task, no training);
                                      #   {seed} in it: one per seed of --seeds
    ckpt_equal: str = ""              # with --ckpt: a single GPT as large as the pair, for A=
    idl_limit: PosInt = 4             # most IDL loops of B, C, D, F
    threshold: Prob = 0.5             # the right lobe's acceptance threshold (B, F)
    retry_temperature: float = 0.0    # B and F sample every attempt after their first, greedy
                                      #   one at this temperature (0: greedy every loop, Table
                                      #   1's); at retry@k's 0.7, F - retry@k is the feedback
                                      #   alone
    n_eval: PosInt = 500              # problems per split (--quick: at most 200)
    device: str = "auto"              # auto | cpu | cuda | mps


# One training budget per task for every model trained on it -- the pair (A-D, F), the single GPT
# (A=) and the wide SLN (E, G): the same steps, batch, optimizer, train data and length curriculum,
# so what differs is the architecture alone (the rest are train_sft's and train_wide's defaults).
# Every model steps by Muon on its blocks' matrices (muon.py; train_sft's default): in fewer steps
# than AdamW needed, every model learns addition in every seed (results/README.md, "Muon against
# AdamW"). MAX_ITERS steps unless a task says otherwise.
MAX_ITERS, MUON_LR = 500, 0.02
BUDGET = {"addition": {}, "tictactoe": {},
          "parity": {"max_iters": 1500, "grow_iters": 600},
          "wordproblems": {"max_iters": 600, "batch_size": 32},
          "subsetsum": {}, "countdown": {}, "toycode": {},   # checking is easier
          # Sudoku's feedback dialogues show every wrong grid the left lobe samples in a step and
          # no corrupted y_true: a cell from the answer, they teach it to copy a rejected grid
          "sudoku": {"feedback_from": "samples", "feedback_frac": 1.0}}
# The wide SLN's architecture and halting per task; E and G run on the tasks that have one. Its
# deep supervision (loop_weight), the loops trained past train_loops (skip_loops) and windowed
# attention are part of the architecture: a GPT has no loops to supervise.
WIDE = {"parity": {"n_embd": 64, "window": 3, "train_loops": 10, "max_loops": 20,
                   "halt_prior": 0.2, "halt_beta": 0.1, "loop_weight": 1.0,
                   "halt": "settled", "settle_weight": 0.0,    # loops that grow with the length
                   "skip_loops": 20},                         # ... all trained, up to 30
        "addition": {"train_loops": 6, "max_loops": 8, "halt_prior": 0.2, "halt_beta": 0.1,
                     "loop_weight": 1.0}}
WIDE["tictactoe"] = WIDE["wordproblems"] = WIDE["addition"]
# what --quick changes: 600 steps of batch 32 for every task (a curriculum in proportion) and
# smaller models
QUICK = {"budget": {"max_iters": 600, "batch_size": 32},
         "pair": {"n_layer": 2, "n_embd": 64}, "wide": {"n_embd": 64}}
# which checkpoint each system is built from
MODELS = {"pair": ["A", "B", "C", "D", "F", *BASELINES], "single": ["A="], "wide": ["E", "G"]}
SAME_MODEL = ("device", "init_from", "out_dir", "eval_interval", "n_eval",
              "wandb_project")  # not the recipe


# -----------------------------------------------------------------------------
def model_of(system):
    return next(m for m, kinds in MODELS.items() if system in kinds)


def systems_on(task, kinds):
    """The systems of kinds measured on task: E and G only where WIDE has a recipe for it."""
    return [k for k in kinds if model_of(k) != "wide" or task in WIDE]


def budget(cfg, task):
    """The task's training budget, or --quick's steps and batch (a curriculum in proportion)."""
    b = {"max_iters": MAX_ITERS, "muon_lr": MUON_LR, **BUDGET[task]}
    if cfg.quick:
        q = QUICK["budget"]
        b = {**b, **q, "grow_iters": b.get("grow_iters", 0) * q["max_iters"] // b["max_iters"]}
    return b


def train(cfg, task, seed, model):
    """The checkpoint of one model for (task, seed): trained by train_sft (train_wide for the wide
    SLN) if missing or unfinished. Its log goes to <its out_dir>/train.log; one line is printed
    here."""
    script = train_wide if model == "wide" else train_sft
    arch = WIDE[task] if model == "wide" else {}
    arch = {**arch, **QUICK["wide" if model == "wide" else "pair"]} if cfg.quick else arch
    b = budget(cfg, task)  # evaluated (and checkpointed, to resume from) halfway and at the end
    sft = script.Config(task=task, seed=seed, device=cfg.device, out_dir=os.path.join(
        cfg.out_dir, task, f"seed{seed}", model), eval_interval=max(1, b["max_iters"] // 2),
        n_eval=min(cfg.n_eval, 200), **b, **arch)
    if model == "single":  # one GPT as large as the pair; its (unused) right lobe is one block
        sft = dataclasses.replace(sft, n_embd=equal_width(sft), right_n_layer=1)
    path = os.path.join(sft.out_dir, "ckpt.pt")
    if os.path.exists(path):  # reuse it, or resume it, only if it follows the same recipe
        ckpt = load_checkpoint(path)  # an option newer than the checkpoint: trained at its default
        was = {f.name: f.default for f in dataclasses.fields(sft)} | ckpt["config"]
        stale = [f"{k}={was[k]} (now {v})" for k, v in dataclasses.asdict(sft).items()
                 if k not in SAME_MODEL and was[k] != v and (k, v) != ("max_new_tokens", 0)]
        if stale:
            raise UsageError(f"{path} was trained with another recipe ({', '.join(stale)}): "
                             "delete it or choose another --out_dir")
        if ckpt["step"] >= sft.max_iters:
            return path
        sft = dataclasses.replace(sft, init_from="resume")
    writable_dir(sft.out_dir)
    t0 = time.time()
    with open(os.path.join(sft.out_dir, "train.log"), "a") as f, contextlib.redirect_stdout(f):
        r = script.main(sft)
    test, ood = (r["E_test"], r["E_ood"]) if model == "wide" else (r["left_test"], r["left_ood"])
    print(f"trained {task} seed {seed} {model}: test {test:.1%}, ood {ood:.1%} "
          f"({time.time() - t0:.0f} s)", flush=True)
    return path


def equal_width(sft):
    """The width of a single GPT as deep as one lobe whose parameters come closest to the pair's
    (in steps of 2 * n_head: whole heads, RoPE's pairs). Equal size by width, not by depth: a GPT
    as deep as both lobes together trains far slower within the same budget (results/README.md),
    and the baseline to beat is the strongest one of its size."""
    def params(width, n_layer=sft.n_layer):
        return Lobe(LobeConfig(n_layer=n_layer, n_head=sft.n_head, n_embd=width)).num_params()
    pair = params(sft.n_embd) + params(sft.n_embd, sft.right_n_layer or sft.n_layer)
    return min(range(sft.n_embd, 2 * sft.n_embd + 1, 2 * sft.n_head),
               key=lambda w: abs(params(w) - pair))


def train_minutes(path):
    """The minutes a checkpoint's training clock counted (0 when it kept none), its warm start's
    included where it names one (a fine-tuned pair's ref_path)."""
    ckpt = load_checkpoint(path)
    own = ckpt.get("results", {}).get("minutes") or (ckpt.get("rows") or [{}])[-1].get("minutes", 0)
    warm = ckpt.get("ref_path")
    return own + (train_minutes(warm) if warm and os.path.exists(warm) else 0.0)


def build(kind, path, cfg, device, task):
    """System `kind` from the checkpoint at path (A= is system A on the single-GPT checkpoint; a
    baseline samples as many answers as the IDL may loop)."""
    loops = dict(k=cfg.idl_limit, task=task) if kind in BASELINES else dict(idl_limit=cfg.idl_limit)
    kw = {} if kind in ("A", "A=") else dict(threshold=cfg.threshold, **loops)
    if kind in ("B", "F") and cfg.retry_temperature:     # one temperature per loop
        kw["temperature"] = [0.0] + [cfg.retry_temperature] * (cfg.idl_limit - 1)
    return load_system(path, "A" if kind == "A=" else kind, device, **kw)


@torch.no_grad()
def tictactoe_losses(system, task=None):
    """The exact probability that the system loses to the perfect player, as X and as O:
    games.tictactoe.exact_outcome plays out every optimal reply and reads the system's (greedy)
    move in each position it reaches. Those positions are found ply by ply first, so the system
    answers each ply's positions in one batch. An unreadable or illegal move loses (exact_outcome's
    rule). With the task, also the share of those positions that lie in its train split: these
    games are not a held-out measure."""
    chosen = {}                                    # board -> the system's move (-1: unreadable)
    for seat in (0, 1):
        ply = [EMPTY]
        while ply:
            ask = [b for b in ply if mark_to_move(b) == "xo"[seat] and not is_over(b)
                   and b not in chosen]
            for b, text in zip(ask, system.answer([to_prompt(b) for b in ask], 4).final
                               if ask else []):
                m = read_move(text)
                chosen[b] = -1 if m is None else m
            ply = sorted({after(b, m) for b in ply if not is_over(b)
                          for m in ([chosen[b]] if mark_to_move(b) == "xo"[seat]
                                    else optimal_moves(b)) if m in moves(b)})
    r = {f"loss_as_{side}": float(exact_outcome(chosen.__getitem__, seat)["loss"])
         for seat, side in enumerate("xo")}
    if task:
        train = set(task_positions(False))  # then split by hash between train and test
        r["in_train"] = sum(b in train and task.split_of(to_prompt(b)) == "train"
                            for b in chosen) / max(1, len(chosen))
    return r


def measure(system, task, splits, max_new):
    """{'test': metrics, 'ood': metrics} (measure.evaluate_system) with each split's n, for F the
    right lobe as a judge (measure.judge), plus loss rates for tic-tac-toe, and where a task's
    difficulty is its length (parity) the same measures per bucket of lengths, test and ood
    pooled: {'lengths': {'11-15': {'acc', 'loops', 'n'}, ...}}."""
    r = {s: {**evaluate_system(system, task, pairs, max_new), "n": len(pairs)}
         for s, pairs in splits.items()}
    if task.name in LENGTH_BUCKETS:
        rows = by_length(system, task, splits["test"] + splits["ood"], max_new)
        r["lengths"] = {f"{b.lo}-{b.hi}": {"acc": b.acc, "loops": b.loops, "n": b.n}
                        for b in pool(rows, LENGTH_BUCKETS[task.name])}
    if system.kind == "F":  # and the judge that bounds what F can gain
        for s, pairs in splits.items():
            r[s].update(judge(system.left, system.right, task, pairs, max_new_tokens=max_new))
    if task.name == "tictactoe":
        r.update(tictactoe_losses(system, task))
    return r


# -----------------------------------------------------------------------------
def one_checkpoint(cfg, kinds, device, seeds, command):
    """--ckpt: the systems built from one pair checkpoint (and --ckpt_equal), on its task, measured
    on the first seed's problems. With {seed} in the paths, one checkpoint per seed (a pair of each
    seed fine-tuned by another script, say), each on its seed's problems, summarised over the
    seeds with the claims. Prints; writes results.json and table.md only to a --results_dir given,
    and never the README. Returns {seed: {system: metrics}}."""
    if any(model_of(k) == "wide" for k in kinds) or ("A=" in kinds and not cfg.ckpt_equal):
        raise UsageError(f"with --ckpt, choose systems among A B C D F {' '.join(BASELINES)} "
                         "(and A= together with --ckpt_equal)")
    if cfg.results_dir:
        writable_dir(cfg.results_dir, "results_dir")  # now, not after the measuring
    seeds = seeds if "{seed}" in cfg.ckpt else seeds[:1]
    paths = {(k, s): (cfg.ckpt_equal if k == "A=" else cfg.ckpt).replace("{seed}", str(s))
             for k in kinds for s in seeds}
    task = load_task(load_checkpoint(paths[kinds[0], seeds[0]])["task"])
    t0, runs = time.time(), {}
    for seed in seeds:
        splits = {s: task.dataset(s, cfg.n_eval, seed) for s in ("test", "ood")}
        max_new = max(len(answer_ids(a)) for _, a in splits["ood"]) + 4
        runs[str(seed)] = r = {}
        for k in kinds:
            system = build(k, paths[k, seed], cfg, device, task)
            seed_everything(seed)
            r[k] = {"params": system.num_params(), "train_minutes": train_minutes(paths[k, seed]),
                    **measure(system, task, splits, max_new)}
    if cfg.results_dir:
        trained = sum(train_minutes(p) for p in set(paths.values()))
        write_results(dataclasses.replace(cfg, readme="none", seeds=",".join(map(str, seeds))),
                      command, {task.name: runs}, (time.time() - t0) / 60, trained)
    else:
        summary = summarise({task.name: runs})
        print(task_table(task.name, summary[task.name]) + "\n\n" + claims(summary, len(seeds)))
    return runs


def resolve(cfg):
    """Fill what was left empty with the mode's defaults: the full run writes out/table, results/
    and results/README.md; --quick writes out/quick and results/quick, uses the first seed only
    unless --seeds is given, at most 200 problems per split, and leaves the README alone."""
    q = cfg.quick
    return dataclasses.replace(
        cfg, out_dir=cfg.out_dir or ("out/quick" if q else "out/table"),
        results_dir=cfg.results_dir or ("results/quick" if q else "results"),
        readme=cfg.readme or ("none" if q else "results/README.md"),
        n_eval=min(cfg.n_eval, 200) if q else cfg.n_eval,
        seeds=cfg.seeds.split(",")[0] if q and cfg.seeds == Config.seeds else cfg.seeds)


def main(cfg: Config):
    given = [f"--{k}={v}" for k, v in dataclasses.asdict(cfg).items() if v != getattr(Config, k)]
    command = " ".join(["python evaluate.py"] + given)
    device = get_device(cfg.device)
    kinds = [k.strip() for k in cfg.systems.split(",") if k.strip()]
    if not kinds or any(k not in NAMES for k in kinds):
        raise UsageError(f"--systems takes a comma-separated list of {' '.join(NAMES)}, "
                         f"got {cfg.systems!r}")
    try:
        seeds = [int(s) for s in cfg.seeds.split(",")]
    except ValueError:
        raise UsageError(f"--seeds takes comma-separated integers, got {cfg.seeds!r}") from None
    if cfg.ckpt:                                      # before resolve: it writes only if asked
        return one_checkpoint(cfg, kinds, device, seeds, command)
    cfg = resolve(cfg)
    writable_dir(cfg.out_dir)                         # now, not after hours of training
    writable_dir(cfg.results_dir, "results_dir")
    tasks = [t.strip() for t in cfg.tasks.split(",") if t.strip()]
    if not tasks or any(t not in BUDGET for t in tasks):
        raise UsageError(f"--tasks takes a comma-separated list of {', '.join(BUDGET)}, "
                         f"got {cfg.tasks!r}")
    measuring, runs = 0.0, {}        # seconds spent measuring, training aside
    for name in tasks:
        task = load_task(name)
        here = systems_on(name, kinds)
        for seed in seeds:
            paths = {m: train(cfg, name, seed, m) for m in MODELS
                     if any(model_of(k) == m for k in here)}
            splits = {s: task.dataset(s, cfg.n_eval, seed) for s in ("test", "ood")}
            max_new = max(len(answer_ids(a)) for _, a in splits["ood"]) + 4
            runs.setdefault(name, {})[str(seed)] = r = {}
            t0 = time.time()
            for k in here:
                system = build(k, paths[model_of(k)], cfg, device, task)
                seed_everything(seed)  # C samples: the same draws on every run
                r[k] = {"params": system.num_params(),
                        "train_minutes": train_minutes(paths[model_of(k)]),
                        **measure(system, task, splits, max_new)}
            measuring += time.time() - t0
            print(f"{name} seed {seed}: "
                  + ", ".join(f"{k} {v['test']['acc']:.0%}/{v['ood']['acc']:.0%}"
                              for k, v in r.items()) + " (test/ood)", flush=True)
    used = {os.path.join(cfg.out_dir, t, f"seed{s}", model_of(k), "ckpt.pt")
            for t in tasks for s in seeds for k in systems_on(t, kinds)}
    trained = sum(train_minutes(p) for p in used)
    write_results(cfg, command, runs, measuring / 60, trained)
    return runs


if __name__ == "__main__":
    run(main, Config)
