"""
The networks: the paper's systems A-G (§1.5, lines 117-118) built from lobes, with one way to
load them from any checkpoint this project writes and to count their parameters.

    A  single GPT, one pass              left lobe alone
    B  single GPT with self-reflection   one lobe answers AND scores its own answers
    C  homogeneous two-agent system      one lobe in both seats of the tall dialogue, each
                                         seat sampling (multi-agent debate)
    D  tall SLN                          left and right lobe talk (Figure 3)
    F  lateralized tall SLN              left answers, right scores (Figure 5, Alg 2)

    E  wide SLN                          gate routes to expert-lobes until it halts (Figure 4)
    G  lateralized wide SLN              the same, halted by the right lobe's score

Every system answers a batch of prompts with an idl.Dialogue: answers plus per-row compute
(loops, forward passes, tokens). A-D and F are built here from a pair of lobes; E and G are one
wide.WideSLN (trained by `python train_wide.py`). measure.py measures them all the same way.

    >>> from sln import load_system
    >>> f = load_system("out/sft/ckpt.pt", "F", idl_limit=4)
    >>> f.answer(["31284000+42990000"]).final
"""
import torch
import torch.nn as nn

from common import UsageError, load_checkpoint, load_state
from idl import Dialogue, lateralized, speak, tall
from lobes import Lobe, LobeConfig, prompt_ids
from wide import load_wide

SYSTEMS = {"A": "single GPT", "B": "self-reflection", "C": "homogeneous pair", "D": "tall SLN",
           "F": "lateralized tall SLN", "E": "wide SLN", "G": "lateralized wide SLN"}
# C's seats sample at this temperature, as agents do in multi-agent debate (Du et al. 2023): one
# set of weights decoding greedily in both seats reads the same first context, so the two agree at
# loop 1 and C would answer exactly what A answers. D - C then compares two different, jointly
# trained lobes against one lobe debating itself, at the same loop limit.
DEBATE_TEMPERATURE = 0.7


class System(nn.Module):
    """One of the paper's systems around one or two lobes. `answer` runs it on prompts."""

    def __init__(self, kind, left, right=None, idl_limit=4, threshold=0.5, temperature=0.0):
        super().__init__()
        if kind not in SYSTEMS or kind in ("E", "G"):  # E and G are a WideSLN, not lobes
            raise ValueError(f"unknown system {kind!r} of lobes: choose from A, B, C, D, F")
        if kind in "DF" and right is None:
            raise ValueError(f"system {kind} needs a right lobe")
        self.kind, self.idl_limit = kind, idl_limit
        self.threshold, self.left = threshold, left
        # C never decodes greedily: greedy, it is A (see DEBATE_TEMPERATURE)
        self.temperature = temperature or (DEBATE_TEMPERATURE if kind == "C" else 0.0)
        # B and C put one module in both roles: B answers and judges, C debates itself
        self.right = {"A": None, "B": left, "C": left}.get(kind, right)

    def num_params(self):
        """Distinct parameters: B and C count their one lobe once, D and F both lobes."""
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())

    @torch.no_grad()
    def answer(self, prompts, max_new_tokens=16):
        if self.kind == "A":  # one pass, a one-loop "dialogue" so every system reports the same way
            d = Dialogue(list(prompts))
            answers, rows, passes = speak(self.left, [prompt_ids(p) for p in prompts],
                                          max_new_tokens, self.temperature)
            for i, (a, row, n) in enumerate(zip(answers, rows, passes)):
                d.attempts[i], d.tokens[i], d.final[i] = [a], [row], a
                d.loops[i], d.stop[i], d.forward_passes[i] = 1, "single", n
            return d
        if self.kind in "CD":
            return tall(self.left, self.right, prompts, self.idl_limit, self.temperature,
                        max_new_tokens)
        return lateralized(self.left, self.right, prompts, self.idl_limit, self.threshold,
                           self.temperature, max_new_tokens)


def load_lobes(path, device="cpu", task=None):
    """The left and right lobes of a checkpoint (train_sft, train_spin, ...), in eval mode; with
    task, a checkpoint trained on another task is a usage error."""
    ckpt = load_checkpoint(path, device)
    if "wide" in ckpt:
        raise UsageError(f"{path} holds a wide SLN, not lobes: load it as system E or G")
    if task and ckpt.get("task", task) != task:
        raise UsageError(f"{path} was trained on {ckpt['task']}, not --task={task}")
    lobes = []
    for side in ("left", "right"):
        lobe = Lobe(LobeConfig(**ckpt[f"{side}_config"])).to(device)
        load_state(lobe, ckpt[side], path)
        lobes.append(lobe.eval())
    return lobes[0], lobes[1], ckpt


def load_system(path, kind, device="cpu", **kw):
    """A system of the given kind from a checkpoint: B uses the right lobe (the one trained both
    to answer and to score), A, C, D, F the left lobe as the speaker; E and G a wide SLN."""
    if kind in ("E", "G"):
        return load_wide(path, kind, device, **kw)
    left, right, _ = load_lobes(path, device)
    return System(kind, right if kind == "B" else left, right, **kw)
