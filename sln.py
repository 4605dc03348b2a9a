"""
The networks: the paper's systems A-F (§1.5, lines 117-118) built from lobes, with one way to
load them from any checkpoint this project writes and to count their parameters.

    A  single GPT, one pass                        left lobe alone
    B  single GPT with self-reflection             one lobe answers AND scores its own answers
    C  homogeneous two-agent system                two copies of the same weights, tall dialogue
    D  tall SLN                                    left and right lobe talk (Figure 3)
    F  lateralized tall SLN                        left answers, right scores (Figure 5, Alg 2)

(E and G, the wide SLNs of Figure 4, are a later addition.) Every system answers a batch of
prompts with an idl.Dialogue: answers plus per-row compute (loops, forward passes, tokens).
Comparisons hold parameters equal: `equal_params_config` gives the one-lobe GPT (A) as deep as
a pair of lobes.

    >>> from sln import load_system
    >>> f = load_system("out/sft/ckpt.pt", "F", idl_limit=4)
    >>> f.answer(["31284000+42990000"]).final
"""
import copy
import dataclasses

import torch
import torch.nn as nn

from common import load_checkpoint, save_checkpoint
from idl import Dialogue, lateralized, speak, tall
from lobes import Lobe, LobeConfig, prompt_ids

SYSTEMS = {"A": "single GPT", "B": "self-reflection", "C": "homogeneous pair", "D": "tall SLN",
           "F": "lateralized tall SLN"}


class System(nn.Module):
    """One of the paper's systems around one or two lobes. `answer` runs it on prompts."""

    def __init__(self, kind, left, right=None, idl_limit=4, threshold=0.5, temperature=0.0):
        super().__init__()
        if kind not in SYSTEMS:
            raise ValueError(f"unknown system {kind!r}: choose from {', '.join(SYSTEMS)}")
        if kind in "DF" and right is None:
            raise ValueError(f"system {kind} needs a right lobe")
        self.kind, self.idl_limit, self.threshold, self.temperature = kind, idl_limit, threshold, temperature
        self.left = left
        # B shares one module for both roles; C holds a second, identical copy
        self.right = {"A": None, "B": left, "C": copy.deepcopy(left)}.get(kind, right)

    def num_params(self):
        """Distinct parameters: B counts its one lobe once, C and D/F count both lobes."""
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())

    @torch.no_grad()
    def answer(self, prompts, max_new_tokens=16):
        if self.kind == "A":  # one pass, a one-loop "dialogue" so every system reports the same way
            d = Dialogue(list(prompts))
            answers, rows, passes = speak(self.left, [prompt_ids(p) for p in prompts], max_new_tokens,
                                          self.temperature)
            for i, (a, row, n) in enumerate(zip(answers, rows, passes)):
                d.attempts[i], d.tokens[i], d.final[i] = [a], [row], a
                d.loops[i], d.stop[i], d.forward_passes[i] = 1, "single", n
            return d
        if self.kind in "CD":
            return tall(self.left, self.right, prompts, self.idl_limit, self.temperature, max_new_tokens)
        return lateralized(self.left, self.right, prompts, self.idl_limit, self.threshold, self.temperature,
                           max_new_tokens)


def equal_params_config(left_cfg: LobeConfig, right_cfg: LobeConfig) -> LobeConfig:
    """System A's lobe with (about) the parameters of a left + right pair: the blocks of both.
    It has one embedding table fewer, so it is slightly smaller; num_params reports both."""
    return dataclasses.replace(left_cfg, n_layer=left_cfg.n_layer + right_cfg.n_layer)


def load_lobes(path, device="cpu"):
    """The left and right lobes of a checkpoint (train_sft, train_spin, ...), in eval mode."""
    ckpt = load_checkpoint(path, device)
    lobes = []
    for side in ("left", "right"):
        lobe = Lobe(LobeConfig(**ckpt[f"{side}_config"])).to(device)
        lobe.load_state_dict(ckpt[side])
        lobes.append(lobe.eval())
    return lobes[0], lobes[1], ckpt


def load_system(path, kind, device="cpu", **kw):
    """A system of the given kind from a checkpoint: B uses the right lobe (the one trained both
    to answer and to score), A, C, D, F the left lobe as the speaker."""
    left, right, _ = load_lobes(path, device)
    return System(kind, right if kind == "B" else left, right, **kw)


def save_system(path, system: System, **extra):
    """Save a system's lobes in the checkpoint layout that load_lobes reads."""
    save_checkpoint(path, left=system.left.state_dict(), right=(system.right or system.left).state_dict(),
                    left_config=dataclasses.asdict(system.left.cfg),
                    right_config=dataclasses.asdict((system.right or system.left).cfg), **extra)


@torch.no_grad()
def evaluate_system(system, task, pairs, max_new_tokens=16, batch=512):
    """Exact match of a system on (prompt, answer) pairs, with its mean loops and forward passes."""
    hits, loops, passes = [], [], []
    for i in range(0, len(pairs), batch):
        chunk = pairs[i:i + batch]
        d = system.answer([p for p, _ in chunk], max_new_tokens)
        hits += [task.check(p, f) for (p, _), f in zip(chunk, d.final)]
        loops += d.loops
        passes += d.forward_passes
    n = max(1, len(pairs))
    return {"acc": sum(hits) / n, "loops": sum(loops) / n, "passes": sum(passes) / n}
