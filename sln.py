"""
The networks: the paper's systems A-G (§1.5, lines 117-118) built from lobes, with one way to
load them from any checkpoint this project writes and to count their parameters.

    A  single GPT, one pass                        left lobe alone
    B  single GPT with self-reflection             one lobe answers AND scores its own answers
    C  homogeneous two-agent system                two copies of the same weights, tall dialogue
    D  tall SLN                                    left and right lobe talk (Figure 3)
    F  lateralized tall SLN                        left answers, right scores (Figure 5, Alg 2)

    E  wide SLN                                    gate routes to expert-lobes until it halts (Figure 4)
    G  lateralized wide SLN                        the same, halted by the right lobe's score

Every system answers a batch of prompts with an idl.Dialogue: answers plus per-row compute
(loops, forward passes, tokens). Comparisons hold parameters equal: `equal_params_config` gives
the one-lobe GPT (A) as deep as a pair of lobes, `equal_depth_config` the one as large as a
wide SLN (E and G are one WideSLN, trained by `python train_sft.py --arch=wide`).

    >>> from sln import load_system
    >>> f = load_system("out/sft/ckpt.pt", "F", idl_limit=4)
    >>> f.answer(["31284000+42990000"]).final
"""
import copy
import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import UsageError, load_checkpoint, load_state, save_checkpoint
from data.tokenizer import EOS, decode_answer, vocab_size
from idl import Dialogue, lateralized, speak, tall
from lobes import Block, Lobe, LobeConfig, pad_right, prompt_ids
from losses import load_balancing_loss

SYSTEMS = {"A": "single GPT", "B": "self-reflection", "C": "homogeneous pair", "D": "tall SLN",
           "F": "lateralized tall SLN", "E": "wide SLN", "G": "lateralized wide SLN"}


class System(nn.Module):
    """One of the paper's systems around one or two lobes. `answer` runs it on prompts."""

    def __init__(self, kind, left, right=None, idl_limit=4, threshold=0.5, temperature=0.0):
        super().__init__()
        if kind not in SYSTEMS or kind in ("E", "G"):  # E and G are a WideSLN, not lobes
            raise ValueError(f"unknown system {kind!r} of lobes: choose from A, B, C, D, F")
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


# -----------------------------------------------------------------------------
# The wide SLN (Figure 4, line 156; abstract item 2, line 16), systems E and G
@dataclass
class WideConfig:
    n_first: int = 1            # shared first blocks (Figure 4: "the first 3 Transformer Blocks")
    n_last: int = 1             # last blocks before the LM head ("the last 3 Transformer Blocks")
    n_expert: int = 2           # experts per expert-lobe, each one transformer block
    n_head: int = 4             # attention heads per block
    n_embd: int = 128           # width of the residual stream
    vocab_size: int = vocab_size  # as LobeConfig
    dropout: float = 0.0        # as LobeConfig
    rope_base: float = 10000.0  # as LobeConfig
    max_loops: int = 32         # evaluation: a row that never halts stops after this many loops
    window: int = 0             # every block sees a token and the window - 1 before it (0: all before)

    def blocks(self):
        """The transformer blocks the network holds: the fixed-depth GPT it is compared with has as many."""
        return self.n_first + self.n_last + 2 * self.n_expert

    def block_config(self):
        return LobeConfig(n_layer=self.blocks(), n_head=self.n_head, n_embd=self.n_embd,
                          vocab_size=self.vocab_size, dropout=self.dropout, rope_base=self.rope_base)


class ExpertLobe(nn.Module):
    """Figure 4's lobe: "a gating network to what compute to conduct, and then the next layer (the
    expert) performs that compute". Top-1 per row (Switch): row b runs expert e = argmax of the
    gate and adds weight_b * P(e) * (expert(z) - z). With score=True the gate has one more output,
    the right lobe's score of the state (system G halts on it)."""

    def __init__(self, bcfg, n_expert, score=False):
        super().__init__()
        self.n_expert = n_expert
        self.gate = nn.Linear(bcfg.n_embd, n_expert + int(score))
        self.experts = nn.ModuleList(Block(bcfg, 0) for _ in range(n_expert))

    def delta(self, z, pos, mask, rows, probs, weight):
        """The experts' update of the state z (B, T, C) for the rows listed in `rows`."""
        out, top = torch.zeros_like(z), probs.argmax(-1)
        for e, expert in enumerate(self.experts):
            idx = rows[top[rows] == e]
            if len(idx):
                w = (weight[idx] * probs[idx, e])[:, None, None]
                out = out.index_add(0, idx, w * (expert(z[idx], pos[idx], mask, None) - z[idx]))
        return out


class WideSLN(nn.Module):
    """Shared first blocks, then the loop: the main gating network reads the state at the row's
    last prompt token and routes the row to the left or the right expert-lobe or to the output;
    the chosen lobe's expert updates the whole row; the input is re-injected; repeat. Then the
    last blocks and the tied LM head. One network, two systems: E's probability of stopping after
    a loop is the main gate's "output", G's is the right lobe's score (sigmoid); a row halts once
    the probability that it has stopped passes `threshold` (see think). Training (train_sft
    --arch=wide) fits both with PonderNet's loss (losses.halting_loss) on the same loops.

    Routing and halting are per row and read at the last prompt token, which causal attention
    keeps independent of the answer: every answer token of a row gets the same loops and experts,
    so generation recomputes the whole sequence per token (no KV cache), batched."""

    def __init__(self, cfg: WideConfig, kind="E", threshold=0.5, temperature=0.0, max_loops=None):
        super().__init__()
        if kind not in ("E", "G"):
            raise ValueError(f"a wide SLN is system E or G, not {kind!r}")
        self.cfg, self.kind, self.threshold, self.temperature = cfg, kind, threshold, temperature
        self.max_loops = max_loops or cfg.max_loops
        bcfg = cfg.block_config()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)            # W_E, tied LM head
        self.first = nn.ModuleList(Block(bcfg, i) for i in range(cfg.n_first))
        self.ln_loop = nn.LayerNorm(cfg.n_embd)                         # keeps the looped state's scale
        self.main_gate = nn.Linear(cfg.n_embd, 3)                       # left, right, output
        self.left = ExpertLobe(bcfg, cfg.n_expert)
        self.right = ExpertLobe(bcfg, cfg.n_expert, score=True)
        self.last = nn.ModuleList(Block(bcfg, i) for i in range(cfg.n_last))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.apply(Lobe._init)                                          # a lobe's init
        for n, p in self.named_parameters():
            if n.endswith("proj.weight") or n.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.blocks()))
        with torch.no_grad():  # start with stop probabilities near 0.1: early PonderNet mass reaches late loops
            self.main_gate.bias[2] = -2.0
            self.right.gate.bias[-1] = -2.0

    def num_params(self):
        return sum(p.numel() for p in self.parameters())

    # ---- one loop ------------------------------------------------------------
    def gates(self, h, x0, at):
        """Re-inject the input and read every gate at the last prompt token: z (B, T, C), the main
        gate's (left, right, output) probabilities (B, 3), each lobe's expert probabilities (B, E)
        and the stop probabilities of E and G (B,) each."""
        z = self.ln_loop(h) + x0                                        # LOOP LOGIC: input re-injected
        here = z[torch.arange(z.size(0), device=z.device), at]         # (B, C)
        main = F.softmax(self.main_gate(here).float(), -1)
        lg, rg = self.left.gate(here).float(), self.right.gate(here).float()
        experts = F.softmax(lg, -1), F.softmax(rg[:, :-1], -1)
        return z, main, experts, (main[:, 2], torch.sigmoid(rg[:, -1]))

    def mask(self, T, device):
        """None (causal attention) or, with cfg.window = w, a (T, T) mask letting a token see the w - 1
        before it: each block then carries information at most w - 1 tokens along, so the loops a
        problem needs grow with its length (parity: about length / (w - 1))."""
        if not self.cfg.window:
            return None
        at = torch.arange(T, device=device)
        return (at[None, :] <= at[:, None]) & (at[None, :] > at[:, None] - self.cfg.window)

    def update(self, z, pos, main, experts):
        """LOOP LOGIC: each row goes to the lobe its main gate prefers; that lobe's top expert acts."""
        mask = self.mask(z.size(1), z.device)
        to_right = main[:, 1] > main[:, 0]
        weight = torch.where(to_right, main[:, 1], main[:, 0]) / (main[:, 0] + main[:, 1])
        rows = torch.arange(z.size(0), device=z.device)
        return (z + self.left.delta(z, pos, mask, rows[~to_right], experts[0], weight)
                + self.right.delta(z, pos, mask, rows[to_right], experts[1], weight))

    def encode(self, idx):
        x, pos = self.wte(idx), torch.arange(idx.size(1), device=idx.device).expand_as(idx)
        for block in self.first:
            x = block(x, pos, self.mask(idx.size(1), idx.device), None)
        return x, pos

    def decode(self, h, pos):
        for block in self.last:
            h = block(h, pos, self.mask(h.size(1), h.device), None)
        return self.ln_f(h) @ self.wte.weight.T                         # (B, T, V)

    # ---- training: every loop read out (PonderNet) -----------------------------
    def forward(self, idx, at, n_loops):
        """Right-padded idx (B, T), at (B,) the last prompt token -> logits after each loop
        (N, B, T, V), stop probabilities after each loop (2, B, N) for E and G, and the
        load-balancing loss of every gate averaged over loops."""
        x0, pos = self.encode(idx)
        h, logits, lams, balance = x0, [], [], 0.0
        z, main, experts, _ = self.gates(h, x0, at)
        for _ in range(n_loops):
            h = self.update(z, pos, main, experts)
            balance = balance + sum(load_balancing_loss(p) for p in (main[:, :2], *experts)) / 3
            z, main, experts, lam = self.gates(h, x0, at)              # read the new state: stop now?
            logits.append(self.decode(h, pos))
            lams.append(torch.stack(lam))
        return torch.stack(logits), torch.stack(lams, -1), balance / n_loops

    # ---- evaluation: each row stops on its own --------------------------------
    @torch.no_grad()
    def think(self, idx, at):
        """Loop until each row's stop probability passes threshold, or max_loops. The stop
        probability after loop n is the halting distribution's mass on loops 1..n,
        1 - prod_{j<=n} (1 - lam_j), with lam from the main gate (E) or the right lobe (G): the
        row stops at the median of its learned halting loop. A halted row's state is frozen.
        Returns logits (B, T, V), loops (B,) and a trace: per loop, each row's lobe (0 left,
        1 right, -1 halted), expert and stop probability."""
        x0, pos = self.encode(idx)
        B = idx.size(0)
        h, loops, survive = x0, torch.zeros(B, dtype=torch.long, device=idx.device), torch.ones(B, device=idx.device)
        halted = torch.zeros(B, dtype=torch.bool, device=idx.device)
        z, main, experts, _ = self.gates(h, x0, at)
        trace = []
        for _ in range(self.max_loops):
            lobe = (main[:, 1] > main[:, 0]).long()
            expert = torch.where(lobe == 1, experts[1].argmax(-1), experts[0].argmax(-1))
            h = torch.where(halted[:, None, None], h, self.update(z, pos, main, experts))
            loops += (~halted).long()
            z, main, experts, lam = self.gates(h, x0, at)
            survive = torch.where(halted, survive, survive * (1 - (lam[0] if self.kind == "E" else lam[1])))
            stop = 1 - survive                                          # P(halted by this loop)
            trace.append((torch.where(halted, -1, lobe), expert, stop))
            halted |= stop > self.threshold                             # LOOP LOGIC: the row halts
            if halted.all():
                break
        return self.decode(h, pos), loops, trace

    @torch.no_grad()
    def generate(self, prompts, max_new_tokens):
        """Continue each prompt (token lists) to <|eos|>: every token recomputes the whole batch.
        Returns the new tokens per row, loops (B,) and the trace of the first token's loops."""
        seqs, at = [list(p) for p in prompts], torch.tensor([len(p) - 1 for p in prompts])
        new, done = [[] for _ in prompts], [False] * len(prompts)
        for t in range(max_new_tokens):
            idx, lengths = pad_right(seqs, self.wte.weight.device)
            logits, loops_t, trace_t = self.think(idx, at.to(idx.device))
            last = logits[torch.arange(len(seqs)), lengths - 1].float()  # (B, V)
            nxt = last.argmax(-1)
            if self.temperature > 0:
                nxt = torch.multinomial(F.softmax(last / self.temperature, -1), 1).squeeze(1)
            if t == 0:
                loops, trace = loops_t, trace_t
            for i, token in enumerate(nxt.tolist()):
                if not done[i]:
                    seqs[i].append(token), new[i].append(token)
                    done[i] = token == EOS
            if all(done):
                break
        return new, loops, trace

    def answer(self, prompts, max_new_tokens=16):
        """Plain-text prompts -> an idl.Dialogue with one attempt per row. loops = the row's
        halting loops; forward_passes = per generated token, one per loop plus one for the
        first and last blocks (no cache: each token is a full pass); scores = stop probabilities."""
        d = Dialogue(list(prompts))
        rows, loops, trace = self.generate([prompt_ids(p) for p in prompts], max_new_tokens)
        for i, row in enumerate(rows):
            n = int(loops[i])
            d.attempts[i], d.tokens[i] = [decode_answer(row)], [row]
            d.final[i], d.loops[i] = d.attempts[i][0], n
            d.scores[i] = [float(s[i]) for _, _, s in trace[:n]]
            d.stop[i] = "halted" if d.scores[i][-1] > self.threshold else "limit"
            d.forward_passes[i] = len(row) * (n + 1)
        return d

    def route(self, prompt):
        """One prompt's loops as (lobe 'left'/'right', expert, stop probability) for play.py."""
        _, loops, trace = self.generate([prompt_ids(prompt)], 1)
        return [("right" if lobe[0] else "left", int(e[0]), float(s[0])) for lobe, e, s in trace[:int(loops[0])]]


def equal_depth_config(wide_cfg: WideConfig) -> LobeConfig:
    """The fixed-depth GPT (system A=) a wide SLN is compared with: as many blocks, so equal
    parameters up to the gates (a few hundred): num_params of each says how far apart."""
    return wide_cfg.block_config()


def equal_params_config(left_cfg: LobeConfig, right_cfg: LobeConfig) -> LobeConfig:
    """System A's lobe with (about) the parameters of a left + right pair: the blocks of both.
    It has one embedding table fewer, so it is slightly smaller; num_params reports both."""
    return dataclasses.replace(left_cfg, n_layer=left_cfg.n_layer + right_cfg.n_layer)


def load_lobes(path, device="cpu", task=None):
    """The left and right lobes of a checkpoint (train_sft, train_spin, ...), in eval mode; with
    task, a checkpoint trained on another task is a usage error."""
    ckpt = load_checkpoint(path, device)
    if "wide_config" in ckpt:
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


def load_wide(path, kind, device="cpu", threshold=0.5, temperature=0.0, max_loops=None, idl_limit=None):
    """System E or G from a train_sft --arch=wide checkpoint (the network is stored under "left",
    its WideConfig under "wide_config"). idl_limit counts the dialogue turns of B-F and is not
    used here: the wide SLN's own limit is max_loops (default: the one saved with it)."""
    ckpt = load_checkpoint(path, device)
    if "wide_config" not in ckpt:
        raise UsageError(f"{path} holds no wide SLN: train one with python train_sft.py --arch=wide")
    model = WideSLN(WideConfig(**ckpt["wide_config"]), kind, threshold, temperature, max_loops).to(device)
    load_state(model, ckpt["left"], path)
    return model.eval()


def save_system(path, system, **extra):
    """Save a system in the checkpoint layout that load_lobes (or, for a WideSLN, load_wide) reads."""
    if isinstance(system, WideSLN):
        return save_checkpoint(path, left=system.state_dict(), wide_config=dataclasses.asdict(system.cfg), **extra)
    save_checkpoint(path, left=system.left.state_dict(), right=(system.right or system.left).state_dict(),
                    left_config=dataclasses.asdict(system.left.cfg),
                    right_config=dataclasses.asdict((system.right or system.left).cfg), **extra)


@torch.no_grad()
def evaluate_pair(left, right, task, test, ood, idl_limit, threshold, max_new_tokens):
    """Exact match of F (the lateralized IDL, greedy) and A (the left lobe alone) on test and ood,
    with F's mean loops: {'F_test', 'A_test', 'loops_test', ... 'ood'}. Leaves both lobes in train mode."""
    left.eval(), right.eval()
    F, A = System("F", left, right, idl_limit=idl_limit, threshold=threshold), System("A", left)
    r = {}
    for name, pairs in (("test", test), ("ood", ood)):
        f, a = evaluate_system(F, task, pairs, max_new_tokens), evaluate_system(A, task, pairs, max_new_tokens)
        r.update({f"F_{name}": f["acc"], f"A_{name}": a["acc"], f"loops_{name}": f["loops"]})
    left.train(), right.train()
    return r


@torch.no_grad()
def evaluate_system(system, task, pairs, max_new_tokens=16, batch=512):
    """Exact match of a system on (prompt, answer) pairs, with its mean loops, forward passes and
    generated tokens per answer (every attempt counted)."""
    hits, loops, passes, tokens = [], [], [], []
    for i in range(0, len(pairs), batch):
        chunk = pairs[i:i + batch]
        d = system.answer([p for p, _ in chunk], max_new_tokens)
        hits += [task.check(p, f) for (p, _), f in zip(chunk, d.final)]
        loops += d.loops
        passes += d.forward_passes
        tokens += [sum(map(len, rows)) for rows in d.tokens]
    n = max(1, len(pairs))
    return {"acc": sum(hits) / n, "loops": sum(loops) / n, "passes": sum(passes) / n, "tokens": sum(tokens) / n}


@torch.no_grad()
def by_length(system, task, pairs, max_new_tokens=16):
    """evaluate_system per prompt length (parity: the number of bits): [(length, n, acc, loops)]."""
    groups = {}
    for p, a in pairs:
        groups.setdefault(len(p), []).append((p, a))
    rows = []
    for n in sorted(groups):
        r = evaluate_system(system, task, groups[n], max_new_tokens)
        rows.append((n, len(groups[n]), r["acc"], r["loops"]))
    return rows


# the prompt lengths by_length's rows are pooled into: parity trains on 1-10 bits, ood is 11-20
LENGTH_BUCKETS = {"parity": ((1, 10), (11, 15), (16, 20))}


def pool(rows, buckets):
    """by_length's rows [(length, n, acc, loops)] pooled into buckets ((lo, hi), ...), inclusive,
    weighted by problem count: [(lo, hi, n, acc, loops)], empty buckets left out."""
    out = []
    for lo, hi in buckets:
        inside = [r for r in rows if lo <= r[0] <= hi]
        n = sum(r[1] for r in inside)
        if n:
            out.append((lo, hi, n, sum(r[1] * r[2] for r in inside) / n, sum(r[1] * r[3] for r in inside) / n))
    return out
