"""
Evaluate the paper's systems (§1.5, lines 117-118; Table 1) on a task's test and ood splits:
exact match, mean IDL loops, forward passes per answer and parameters, as a markdown table.

    A   the left lobe alone, one pass                 (--ckpt)
    A=  a single GPT with the parameters of the pair  (--ckpt_equal, e.g. train_sft --n_layer=6)
    B   one lobe answers and scores itself            (--ckpt's right lobe, trained to do both)
    C   two copies of the left lobe, tall dialogue
    D   left and right lobe, tall dialogue (Figure 3)
    F   left answers, right scores, lateralized IDL (Figure 5, Algorithm 2)

    $ python train_sft.py && python train_sft.py --n_layer=6 --right_n_layer=1 --out_dir=out/sft_A6
    $ python evaluate.py --ckpt=out/sft/ckpt.pt --ckpt_equal=out/sft_A6/ckpt.pt
"""
from dataclasses import dataclass

import torch

from common import UsageError, get_device, load_task, run
from lobes import answer_ids, prompt_ids
from sln import SYSTEMS, System, evaluate_system, load_lobes


@dataclass
class Config:
    task: str = "addition"          # the task both checkpoints were trained on
    ckpt: str = "out/sft/ckpt.pt"   # a pair of lobes (train_sft.py, train_spin.py, ...)
    ckpt_equal: str = ""            # a single GPT as large as the pair, for A= (empty: skip A=)
    systems: str = "A,B,C,D,F"      # which of A B C D F to run (A= comes with --ckpt_equal)
    idl_limit: int = 4              # most IDL loops of B, C, D, F
    threshold: float = 0.5          # the right lobe's acceptance threshold (B, F)
    n_eval: int = 500               # problems per split
    seed: int = 1337                # which test and ood problems
    device: str = "auto"            # auto | cpu | cuda | mps


@torch.no_grad()
def probe_right(right, task, pairs):
    """How often the right lobe rejects y_true with its digit i changed (+5 mod 10), per i: a
    right lobe that verifies rejects them all; one that learned a shortcut shows where it looks."""
    n = min(len(a) for _, a in pairs)
    rates = []
    for i in range(n):
        wrong = [(p, a[:i] + str((int(a[i]) + 5) % 10) + a[i + 1:]) for p, a in pairs if a[i].isdigit()]
        s = right.score([prompt_ids(p) + answer_ids(w) for p, w in wrong])
        rates.append((s < 0).float().mean().item())
    s_true = right.score([prompt_ids(p) + answer_ids(a) for p, a in pairs])
    return rates, (s_true > 0).float().mean().item()


def main(cfg: Config):
    task, device = load_task(cfg.task), get_device(cfg.device)
    left, right, _ = load_lobes(cfg.ckpt, device)
    kinds = [k.strip() for k in cfg.systems.split(",") if k.strip()]
    if any(k not in SYSTEMS for k in kinds):
        raise UsageError(f"--systems takes a comma-separated list of {', '.join(SYSTEMS)}, got {cfg.systems!r}")
    systems = {k: System(k, right if k == "B" else left, right, idl_limit=cfg.idl_limit, threshold=cfg.threshold)
               for k in kinds}
    if cfg.ckpt_equal:
        systems["A="] = System("A", load_lobes(cfg.ckpt_equal, device)[0])
    splits = {s: task.dataset(s, cfg.n_eval, cfg.seed) for s in ("test", "ood")}
    max_new = max(len(answer_ids(a)) for _, a in splits["ood"]) + 4
    print("| system | params | test | ood | loops test | loops ood | passes test | passes ood |\n"
          "|---|---|---|---|---|---|---|---|")
    results = {}
    for name, system in systems.items():
        r = {s: evaluate_system(system, task, pairs, max_new) for s, pairs in splits.items()}
        results[name] = r
        print(f"| {name} {SYSTEMS[name[0]] + (' (equal params)' if name == 'A=' else '')} | "
              f"{system.num_params():,} | {r['test']['acc']:.1%} | {r['ood']['acc']:.1%} | "
              f"{r['test']['loops']:.2f} | {r['ood']['loops']:.2f} | {r['test']['passes']:.1f} | "
              f"{r['ood']['passes']:.1f} |", flush=True)
    rates, accept = probe_right(right, task, splits["test"])
    print(f"\nright lobe on test: accepts {accept:.1%} of true answers; rejects answers with answer character i "
          "changed:\n| i | " + " | ".join(map(str, range(len(rates)))) + " |\n|---|" + "---|" * len(rates) +
          "\n| rejected | " + " | ".join(f"{r:.0%}" for r in rates) + " |")
    return results


if __name__ == "__main__":
    run(main, Config)
