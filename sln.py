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

And the baselines an IDL must beat at an equal budget (Sampled): the left lobe samples k answers
and one is kept, by the right lobe's score (best@k), by vote (vote@k), or by the checker (pass@k,
an oracle: the ceiling of any way to choose among the samples); or it samples one at a time until
the right lobe accepts (retry@k: F with its feedback cut).

Every system answers a batch of prompts with an idl.Dialogue: answers plus per-row compute
(loops, forward passes, tokens). A-D and F are built here from a pair of lobes; E and G are one
wide.WideSLN (trained by `python train_wide.py`). measure.py measures them all the same way.

    >>> from sln import load_system
    >>> f = load_system("out/sft/ckpt.pt", "F", idl_limit=4)
    >>> f.answer(["31284000+42990000"]).final
"""
from collections import Counter

import torch
import torch.nn as nn

from common import UsageError, load_checkpoint, load_state
from idl import Dialogue, lateralized, speak, tall
from lobes import Lobe, LobeConfig, answer_ids, prompt_ids
from wide import load_wide

SYSTEMS = {"A": "single GPT", "B": "self-reflection", "C": "homogeneous pair", "D": "tall SLN",
           "F": "lateralized tall SLN", "E": "wide SLN", "G": "lateralized wide SLN"}
# The temperature of the systems that sample: the baselines' k answers (Sampled), and C's two seats,
# as agents sample in multi-agent debate (Du et al. 2023). One set of weights decoding greedily in
# both seats reads the same first context, so the two agree at loop 1 and C would answer exactly
# what A answers. D - C then compares two different, jointly trained lobes against one lobe
# debating itself, at the same loop limit.
SAMPLE_TEMPERATURE = 0.7
BASELINES = {"best@k": "k samples, the right lobe picks", "vote@k": "k samples, majority vote",
             "pass@k": "k samples, an oracle picks",
             "retry@k": "F without the feedback: new samples until the right lobe accepts"}


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
        # C never decodes greedily: greedy, it is A (see SAMPLE_TEMPERATURE)
        self.temperature = temperature or (SAMPLE_TEMPERATURE if kind == "C" else 0.0)
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


class Sampled(nn.Module):
    """k answers sampled from the left lobe at `temperature` in one batched pass, and one kept:
    best@k  the one the right lobe scores highest: a verifier without feedback (Cobbe et al. 2021)
    vote@k  the most frequent, the first sampled on a tie (self-consistency, Wang et al. 2023)
    pass@k  the first one task.check accepts: an oracle, the ceiling of any choice among samples
    retry@k F's loop with eq 6's channel cut (idl.lateralized, feedback=False): a greedy answer,
            then fresh samples from the prompt alone until the right lobe accepts one (rejection
            sampling), so it stops early as F does
    Next to F with idl_limit = k, the budget of forward passes is at most equal (F stops earlier
    when the right lobe accepts), so F - best@k is what the IDL's feedback and its stopping add to
    the right lobe's choosing, pass@k - best@k what a better judge could still gain, and, with F
    retrying at the same temperature (evaluate.py --retry_temperature=0.7), F - retry@k is what
    the feedback alone adds."""

    def __init__(self, kind, left, right=None, k=4, temperature=SAMPLE_TEMPERATURE, task=None,
                 threshold=0.5):
        super().__init__()
        if kind not in BASELINES:
            raise ValueError(f"unknown baseline {kind!r}: choose from {', '.join(BASELINES)}")
        judged = kind in ("best@k", "retry@k")
        if (judged and right is None) or (kind == "pass@k" and task is None):
            raise ValueError(f"{kind} needs {'a right lobe' if judged else 'the task'}")
        self.kind, self.left, self.right, self.k = kind, left, right if judged else None, k
        self.temperature, self.task, self.threshold = temperature, task, threshold

    def num_params(self):
        """The lobes the choice uses: best@k and retry@k count both, vote@k and pass@k the left."""
        return sum(p.numel() for m in (self.left, self.right) if m is not None
                   for p in m.parameters())

    @torch.no_grad()
    def answer(self, prompts, max_new_tokens=16):
        if self.kind == "retry@k":
            return lateralized(self.left, self.right, prompts, self.k, self.threshold,
                               [0.0] + [self.temperature] * (self.k - 1), max_new_tokens,
                               feedback=False)
        d, k = Dialogue(list(prompts)), self.k
        many = [p for p in prompts for _ in range(k)]
        answers, rows, passes = speak(self.left, [prompt_ids(p) for p in many], max_new_tokens,
                                      self.temperature)
        if self.kind == "best@k":  # one scoring pass per sample
            scores = torch.sigmoid(self.right.score([prompt_ids(p) + answer_ids(a)
                                                     for p, a in zip(many, answers)])).tolist()
        for i, p in enumerate(prompts):
            mine = slice(i * k, (i + 1) * k)
            tried = answers[mine]
            if self.kind == "best@k":
                d.scores[i] = scores[mine]
                pick = tried[max(range(k), key=d.scores[i].__getitem__)]
            elif self.kind == "vote@k":
                pick = Counter(tried).most_common(1)[0][0]
            else:
                pick = next((a for a in tried if self.task.check(p, a)), tried[0])
            d.attempts[i], d.tokens[i], d.final[i], d.stop[i] = tried, rows[mine], pick, self.kind
            d.loops[i] = k
            d.forward_passes[i] = sum(passes[mine]) + (k if self.kind == "best@k" else 0)
        return d


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
    to answer and to score), A, C, D, F the left lobe as the speaker; E and G a wide SLN; a
    baseline (Sampled) the left lobe's samples. threshold is the right lobe's acceptance
    threshold; a wide SLN halts by the rule and threshold it was trained with (train_wide.py)."""
    if kind in ("E", "G"):
        kw.pop("threshold", None)
        return load_wide(path, kind, device, **kw)
    left, right, _ = load_lobes(path, device)
    if kind in BASELINES:
        return Sampled(kind, left, right, **kw)
    return System(kind, right if kind == "B" else left, right, **kw)
