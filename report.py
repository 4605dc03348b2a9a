"""
Table 1 as text: the runs of evaluate.py summarised over seeds, one markdown table per task, the
paper's claims judged by one rule, the plots, and results/ with the README section it rewrites.
As a script it judges two runs of the same systems against each other by the same rule (a
fine-tuned pair against its warm start, say):

    $ python report.py --before=results/verifiable/results.json \
          --after=results/verifiable_ac/results.json

The rule, for every claim alike (accuracy and compute): a - b is "held" when the difference of
the means exceeds the larger standard deviation over seeds, "reversed" when it falls short by as
much, else "within the spread"; with one seed there is no verdict (verdict below).
"""
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass

import torch

from common import Checked, UsageError, get_device, run, writable_dir
from measure import JUDGE_K
from sln import BASELINES, SAMPLE_TEMPERATURE, SYSTEMS

NAMES = {**SYSTEMS, **BASELINES, "A=": "single GPT (equal size)"}
BEGIN, END = "<!-- table1:begin (written by evaluate.py) -->", "<!-- table1:end -->"


def summarise(runs):
    """runs[task][seed][system] -> summary[task][system][key] = [mean, sd] over seeds, for every
    number a run holds ('test.acc', 'ood.loops', 'loss_as_x', 'params', ...)."""
    summary = {}
    for task, seeds in runs.items():
        for system in next(iter(seeds.values())):
            flat = [flatten(seeds[s][system]) for s in seeds]
            summary.setdefault(task, {})[system] = {
                k: [statistics.mean(f[k] for f in flat),
                    statistics.stdev(f[k] for f in flat) if len(flat) > 1 else 0.0]
                for k in flat[0]}
    return summary


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def fmt(ms, pct=True):
    """mean ± sd as a percentage or a plain number; just the mean when the spread is 0."""
    mean, sd = ms
    f = (lambda x: f"{x:.1%}") if pct else (lambda x: f"{x:.2f}")
    return f"{f(mean)} ± {f(sd)}" if sd else f(mean)


def task_table(task, systems):
    """One markdown table: a row per system, mean ± sd over seeds, under a line giving the real
    number of problems per split. *train min* is the training minutes of the model a system is
    built from (A-D and F share one pair)."""
    first = next(iter(systems.values()))
    ttt = "loss_as_x" in first
    head = ["system", "params", "train min", "test", "ood", "loops test", "loops ood",
            "passes ood", "tokens ood"]
    head += ["loses as X", "loses as O", "their positions in train"] if ttt else []
    lines = [f"n = {first['test.n'][0]:.0f} test and {first['ood.n'][0]:.0f} ood problems per "
             "seed" + ("; the games against the perfect player pass mostly through positions "
                       "of the train split (last column): they are not held out" if ttt else ""),
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in systems.items():
        label = f"{name} {NAMES[name]}"
        row = [label, f"{s['params'][0]:,.0f}", f"{s['train_minutes'][0]:.1f}",
               fmt(s["test.acc"]), fmt(s["ood.acc"]), fmt(s["test.loops"], False),
               fmt(s["ood.loops"], False), f"{s['ood.passes'][0]:.1f}", f"{s['ood.tokens'][0]:.1f}"]
        row += [fmt(s["loss_as_x"]), fmt(s["loss_as_o"]), fmt(s["in_train"])] if ttt else []
        lines.append("| " + " | ".join(row) + " |")
    buckets = [k[len("lengths."):-len(".acc")] for k in first
               if k.startswith("lengths.") and k.endswith(".acc")]
    if buckets:  # where difficulty is length: how far past its training lengths a system goes
        head = ["system"] + buckets + [f"loops {b}" for b in buckets]
        lines += ["", "By length (test and ood pooled; problems a seed, mean over seeds: "
                  + ", ".join(f"{b} {first[f'lengths.{b}.n'][0]:.0f}" for b in buckets) + "):",
                  "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join([name] + [fmt(s[f"lengths.{b}.acc"]) for b in buckets]
                                    + [fmt(s[f"lengths.{b}.loops"], False) for b in buckets])
                  + " |" for name, s in systems.items()]
    if "F" in systems and "test.judge" in systems["F"]:
        f = systems["F"]
        lines += ["", f"The right lobe judging the left lobe's own answers ({JUDGE_K} samples a "
                  f"problem at T = {SAMPLE_TEMPERATURE}): "
                  + "; ".join(f"{split} {fmt(f[f'{split}.judge'])} right (balanced "
                              f"{fmt(f[f'{split}.judge_balanced'])}; always the commoner verdict "
                              f"scores {fmt(f[f'{split}.judge_base'])})"
                              for split in ("test", "ood"))
                  + "."]
    return "\n".join(lines)


# the paper's claims, each a comparison of two systems' mean accuracy (lines 99-105)
CLAIMS = [("F", "A=", "a lateralized SLN beats a single GPT of the same size (line 105)"),
          ("D", "A=", "a tall SLN beats a single GPT of the same size (line 105)"),
          ("G", "A=", "a lateralized wide SLN beats a single GPT of the same size (line 105)"),
          ("E", "A=", "a wide SLN beats a single GPT of the same size (line 105)"),
          ("D", "C", "two jointly trained, different lobes beat one lobe debating itself "
                     "(line 103)"),
          ("F", "B", "a separate right lobe judges better than self-reflection (line 103)"),
          ("F", "A", "the right lobe's check before answering beats the left lobe alone "
                     "(line 27)"),
          ("F", "best@k", "the IDL's feedback, loop by loop, beats the right lobe choosing "
                          "among as many samples (an equal budget of forward passes)"),
          ("F", "retry@k", "the left lobe uses the right lobe's feedback (eq 6): F beats its own "
                           "loop with the feedback cut")]


def verdict(a, b, seeds=3, pct=True):
    """The one rule for every claim: 'held' when a's mean beats b's by more than the larger
    standard deviation over seeds, 'reversed' when it loses by that much, else 'within the
    spread' (with 3 seeds, nothing finer is honest; with one, no verdict). a, b: [mean, sd]."""
    diff, spread = a[0] - b[0], max(a[1], b[1])
    d = f"{diff:+.1%}" if pct else f"{diff:+.2f}"
    if seeds < 2:
        return f"{d} (one seed: no spread to judge by)"
    return f"{d}, " + ("held" if diff > spread else
                       "reversed" if diff < -spread else "within the spread")


def claims(summary, seeds=3):
    """The paper's claims in plain words, one line each, with the numbers that decide them."""
    lines = []
    for a, b, words in CLAIMS:
        parts = [f"{task} {split} {verdict(s[a][f'{split}.acc'], s[b][f'{split}.acc'], seeds)}"
                 for task, s in summary.items() if a in s and b in s for split in ("test", "ood")]
        if parts:
            lines.append(f"- *{words}*: {a} − {b}: " + "; ".join(parts) + ".")
    for k in "FEG":  # the systems whose loop count is theirs to choose; ood problems are harder
        parts = [f"{task} {s[k]['test.loops'][0]:.2f} → {s[k]['ood.loops'][0]:.2f}, "
                 + verdict(s[k]["ood.loops"], s[k]["test.loops"], seeds, pct=False)
                 for task, s in summary.items() if k in s]
        if parts:
            lines.append("- *an SLN adapts its compute to the difficulty of the problem "
                         f"(line 99)*: {k}'s mean loops, test → ood: " + "; ".join(parts) + ".")
    return "\n".join(lines)


# -----------------------------------------------------------------------------
def plot(summary, out_dir):
    """accuracy_vs_compute.png (ood exact match against forward passes per answer) and loops.png
    (mean loops on test and ood: does compute grow with difficulty?). Needs matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plots: matplotlib is not installed (pip install matplotlib)")
        return
    fig, axes = plt.subplots(2, len(summary), figsize=(4 * len(summary), 7), squeeze=False)
    for (top, bottom), (task, systems) in zip(axes.T, summary.items()):
        for name, s in systems.items():
            top.errorbar(s["ood.passes"][0], s["ood.acc"][0], yerr=s["ood.acc"][1], fmt="o",
                         capsize=3)
            top.annotate(name, (s["ood.passes"][0], s["ood.acc"][0]), textcoords="offset points",
                         xytext=(4, 4))
        top.set(title=task, xlabel="forward passes per ood answer", ylabel="ood exact match",
                ylim=(0, 1))
        names = list(systems)
        for j, split in enumerate(("test", "ood")):
            bottom.bar([i + 0.4 * j for i in range(len(names))],
                       [systems[n][f"{split}.loops"][0] for n in names], width=0.4, label=split)
        bottom.set(xticks=[i + 0.2 for i in range(len(names))], xticklabels=names,
                   ylabel="mean IDL loops")
        bottom.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "table1.png"), dpi=120)
    print(f"wrote {os.path.join(out_dir, 'table1.png')}")


def write_results(cfg, command, runs, minutes, trained):
    """results.json (every run and the summary), table.md (the tables and the claims), the plot,
    and the Table 1 section of cfg.readme, rewritten between its markers. minutes: the run's
    measuring; trained: the training clocks of the checkpoints it measured."""
    summary = summarise(runs)
    cpu = f"{os.cpu_count()}-core {platform.machine()} CPU"
    hardware = cpu + (f", {torch.cuda.get_device_name()}"
                      if get_device(cfg.device).type == "cuda" else ", no GPU")
    meta = dict(command=command, hardware=hardware, torch=torch.__version__,
                minutes=round(minutes, 1), train_minutes=round(trained, 1), seeds=cfg.seeds,
                date=time.strftime("%Y-%m-%d"))
    writable_dir(cfg.results_dir, "results_dir")
    with open(os.path.join(cfg.results_dir, "results.json"), "w") as f:
        json.dump(dict(meta=meta, summary=summary, runs=runs), f, indent=1)
    md = (f"`{meta['command']}`: {meta['minutes']} minutes of measuring on a {hardware}, "
          f"torch {meta['torch']}, plus {meta['train_minutes']} minutes of training for its "
          f"{sum(len(s) for s in runs.values())} task-seed cells (the checkpoints' own training "
          "clocks; a run reuses the checkpoints it finds), seeds "
          f"{cfg.seeds} (mean ± standard deviation over seeds), at most {cfg.n_eval} "
          "problems per split (a task's n is under its name).\n\n"
          + "\n\n".join(f"**{task}**\n\n{task_table(task, systems)}"
                        for task, systems in summary.items())
          + "\n\nThe paper's claims at this scale (a − b in exact match, mean over seeds):\n\n"
          + claims(summary, len(cfg.seeds.split(","))) + "\n")
    with open(os.path.join(cfg.results_dir, "table.md"), "w") as f:
        f.write(md)
    print("\n" + md)
    plot(summary, cfg.results_dir)
    if cfg.readme != "none":
        write_readme(cfg.readme, md)


def write_readme(path, md):
    """Replace what lies between the README's Table 1 markers with md (atomically)."""
    text = open(path).read()
    if BEGIN not in text or END not in text:
        raise UsageError(f"{path} has no Table 1 markers ({BEGIN} ... {END}); "
                         "add them where the table goes")
    head, rest = text.split(BEGIN, 1)
    with open(path + ".tmp", "w") as f:
        f.write(head + BEGIN + "\n" + md + END + rest.split(END, 1)[1])
    os.replace(path + ".tmp", path)
    print(f"rewrote the Table 1 section of {path}")


# -----------------------------------------------------------------------------
@dataclass
class Config(Checked):
    before: str = ""   # a results.json written by evaluate.py
    after: str = ""    # a results.json of the same systems after a change


def compare(before, after):
    """after − before in exact match for every system and task both results hold, one line each,
    judged by verdict over the fewer seeds of the two."""
    seeds = min(len(r["meta"]["seeds"].split(",")) for r in (before, after))
    lines = []
    for task, systems in after["summary"].items():
        for k, s in systems.items():
            b = before["summary"].get(task, {}).get(k)
            if b:
                lines.append(f"- {task} {k}: " + "; ".join(
                    f"{split} {verdict(s[f'{split}.acc'], b[f'{split}.acc'], seeds)}"
                    for split in ("test", "ood")))
    return "\n".join(lines)


def load_results(path):
    """A results.json of evaluate.py, or a UsageError saying why not."""
    try:
        with open(path) as f:
            r = json.load(f)
        if isinstance(r["summary"], dict) and r["meta"]["seeds"] and r["meta"]["command"]:
            return r
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{path!r} is not a results.json of evaluate.py ({e})") from None
    raise UsageError(f"{path!r} is not a results.json of evaluate.py")


def main(cfg: Config):
    before, after = load_results(cfg.before), load_results(cfg.after)
    print(f"after: `{after['meta']['command']}`\nbefore: `{before['meta']['command']}`\n"
          + compare(before, after))


if __name__ == "__main__":
    run(main, Config)
