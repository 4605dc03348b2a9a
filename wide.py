"""
The wide SLN (paper Figure 4, line 156; abstract item 2, line 16): systems E and G.

One network holds shared first blocks, a main gating network, a left and a right expert-lobe
(each a gate plus a mixture of experts) and the last blocks before the LM head. Each loop the
main gate routes the state to the left lobe, the right lobe or the output; the chosen lobe's top
expert updates the state, the input is re-injected, and the loop repeats until the row halts.
Two halting rules, the same in training and evaluation (stop_after):
- ponder: learned (PonderNet, losses.halting_loss): E halts on the main gate's "output"
  probability, G on the right lobe's score;
- settled: a row stops after the first loop that moves what the LM head reads at each of its
  prompt's tokens by less than 1 - threshold of its length; E = G. It reads the state of the
  computation, not a learned step count, so the loops can grow with the input past the training
  lengths; train_wide.py's settling loss makes the extra loops on a right answer harmless.
train_wide.py trains it; the fixed-depth GPT it is compared with (system A=) has as many blocks
(equal_depth_config).

    >>> from wide import WideConfig, WideSLN
    >>> model = WideSLN(WideConfig(), kind="G")
    >>> model.answer(["0110"]).loops       # untrained: junk answers, but per-row halting
"""
import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import UsageError, load_checkpoint, load_state, save_checkpoint
from data.tokenizer import EOS, PAD, decode_answer, vocab_size
from idl import Dialogue
from lobes import (Block, KVCache, Lobe, LobeConfig, attention_mask, prompt_ids, rope_table,
                   sample)
from losses import load_balancing_loss


# each halting rule's threshold unless one is given: PonderNet's median loop, a 1% move
THRESHOLD = {"ponder": 0.5, "settled": 0.99}


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
    halt: str = "ponder"        # ponder (learned stop probabilities) | settled (the prompt's
                                #   readout stops moving; E = G)
    threshold: float = 0.5      # a row halts once its stop probability passes this
    window: int = 0             # every block sees a token and the window - 1 before it
                                #   (0: all before)

    def blocks(self):
        """The transformer blocks the network holds: the fixed-depth GPT it is compared with has
        as many."""
        return self.n_first + self.n_last + 2 * self.n_expert

    def block_config(self):
        return LobeConfig(n_layer=self.blocks(), n_head=self.n_head, n_embd=self.n_embd,
                          vocab_size=self.vocab_size, dropout=self.dropout,
                          rope_base=self.rope_base)


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

    def delta(self, z, rows, probs, weight, run):
        """The experts' update of the state z (B, T, C) for the rows listed in `rows`; run(block,
        x, rows) runs one block on those rows (Pass.run, with its slot of the KV cache)."""
        out, top = torch.zeros_like(z), probs.argmax(-1)
        for e, expert in enumerate(self.experts):
            idx = rows[top[rows] == e]
            if len(idx):
                w = (weight[idx] * probs[idx, e])[:, None, None]
                out = out.index_add(0, idx, w * (run(expert, z[idx], idx) - z[idx]))
        return out


class Slot:
    """One block's keys and values in a KVCache, for a subset of its rows: what a block's
    attention stores and reads when it runs on those rows only (an expert runs on the rows
    routed to it)."""

    def __init__(self, cache, slot, rows):
        self.cache, self.slot, self.rows = cache, slot, rows

    def update(self, _layer, k, v):
        c, t = self.cache, k.size(2)
        c.k[self.slot, self.rows, :, c.len:c.len + t] = k
        c.v[self.slot, self.rows, :, c.len:c.len + t] = v
        return c.k[self.slot, self.rows, :, :c.len + t], c.v[self.slot, self.rows, :, :c.len + t]


@dataclass
class Pass:
    """How one forward pass runs its blocks: the RoPE table and attention mask of its tokens and,
    when generating, the KV cache with one slot per block a token passes through (the first
    blocks, the expert of each loop, the last blocks). Without a cache the table and the mask
    are the same for every row; with one they are per row (left-padded prompts)."""
    rot: torch.Tensor
    mask: object
    cache: object = None

    def run(self, block, x, rows, slot):
        if self.cache is None:
            return block(x, self.rot, self.mask, None)
        return block(x, self.rot[rows], self.mask[rows], Slot(self.cache, slot, rows))


class WideSLN(nn.Module):
    """Shared first blocks, then the loop: the main gating network reads the state at the row's
    last prompt token and routes the row to the left or the right expert-lobe or to the output;
    the chosen lobe's expert updates the whole row; the input is re-injected; repeat. Then the
    last blocks and the tied LM head. One network, two systems: under the ponder rule E's
    probability of stopping after a loop is the main gate's "output", G's is the right lobe's
    score (sigmoid), both fitted by PonderNet's loss on the same loops; under the settled rule
    both read how far the loop moved the prompt's readout (settled). A row halts once its
    stop_after probability passes `threshold` (think).

    Routing and halting are per row and read at the last prompt token, which causal attention
    keeps independent of the answer: every answer token of a row gets the same loops and experts,
    so generation thinks once over the prompt and then runs each new token through those loops
    with a KV cache (generate), batched."""

    def __init__(self, cfg: WideConfig, kind="E", threshold=None, temperature=0.0, max_loops=None):
        super().__init__()
        if kind not in ("E", "G"):
            raise ValueError(f"a wide SLN is system E or G, not {kind!r}")
        if cfg.halt not in THRESHOLD:
            raise UsageError(f"--halt must be ponder or settled, got {cfg.halt!r}")
        self.cfg, self.kind, self.temperature = cfg, kind, temperature
        self.threshold = cfg.threshold if threshold is None else threshold
        self.max_loops = max_loops or cfg.max_loops
        bcfg = cfg.block_config()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)         # W_E, tied LM head
        self.first = nn.ModuleList(Block(bcfg, i) for i in range(cfg.n_first))
        self.ln_loop = nn.LayerNorm(cfg.n_embd)                     # keeps the looped state's scale
        self.main_gate = nn.Linear(cfg.n_embd, 3)                   # left, right, output
        self.left = ExpertLobe(bcfg, cfg.n_expert)
        self.right = ExpertLobe(bcfg, cfg.n_expert, score=True)
        self.last = nn.ModuleList(Block(bcfg, i) for i in range(cfg.n_last))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.apply(Lobe._init)                                      # a lobe's init
        for n, p in self.named_parameters():
            if n.endswith("proj.weight") or n.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.blocks()))
        # start with stop probabilities near 0.1: early PonderNet mass reaches late loops
        with torch.no_grad():
            self.main_gate.bias[2] = -2.0
            self.right.gate.bias[-1] = -2.0

    def num_params(self):
        return sum(p.numel() for p in self.parameters())

    # ---- one loop ------------------------------------------------------------
    def gates(self, h, x0, at):
        """Re-inject the input and read every gate at the last prompt token: z (B, T, C), the main
        gate's routing probabilities (left, right) (B, 2), each lobe's expert probabilities (B, E)
        and the learned stop probabilities of E and G (B,) each. The routing is the softmax of
        the main gate's first two logits, so the load-balancing loss on it never touches E's
        stop logit, the third (E's "output" probability is the 3-way softmax's last entry)."""
        z = self.ln_loop(h) + x0                                    # LOOP LOGIC: input re-injected
        here = z[torch.arange(z.size(0), device=z.device), at]      # (B, C)
        logits = self.main_gate(here).float()
        main, stop_e = F.softmax(logits[:, :2], -1), F.softmax(logits, -1)[:, 2]
        lg, rg = self.left.gate(here).float(), self.right.gate(here).float()
        experts = F.softmax(lg, -1), F.softmax(rg[:, :-1], -1)
        return z, main, experts, (stop_e, torch.sigmoid(rg[:, -1]))

    def mask(self, T, device):
        """None (causal attention) or, with cfg.window = w, a (T, T) mask letting a token see the
        w - 1 before it: each block then carries information at most w - 1 tokens along, so the
        loops a problem needs grow with its length (parity: about length / (w - 1))."""
        if not self.cfg.window:
            return None
        at = torch.arange(T, device=device)
        return (at[None, :] <= at[:, None]) & (at[None, :] > at[:, None] - self.cfg.window)

    def cached_mask(self, valid, start, T):
        """The mask of T new tokens after start cached ones, (B, 1, T, S): lobes.attention_mask
        over the valid keys, and the window as in mask()."""
        m = attention_mask(valid, start, T)
        if self.cfg.window:
            q_at = torch.arange(start, start + T, device=valid.device)[:, None]
            m = m & (torch.arange(start + T, device=valid.device) > q_at - self.cfg.window)
        return m

    def slots(self):
        """Blocks a token passes through, one KV-cache slot each: first, one per loop, last."""
        return self.cfg.n_first + self.max_loops + self.cfg.n_last

    def update(self, z, main, experts, p, loop=0):
        """LOOP LOGIC: each row goes to the lobe its main gate prefers; that lobe's top expert
        acts."""
        to_right = main[:, 1] > main[:, 0]
        weight = torch.where(to_right, main[:, 1], main[:, 0])
        rows = torch.arange(z.size(0), device=z.device)

        def run(block, x, idx):
            return p.run(block, x, idx, self.cfg.n_first + loop)
        return (z + self.left.delta(z, rows[~to_right], experts[0], weight, run)
                + self.right.delta(z, rows[to_right], experts[1], weight, run))

    def plain_pass(self, idx):
        """A Pass without a cache: positions 0 .. T - 1 in every row (right-padded), so one
        (1, 1, T, D/2) RoPE table serves any set of rows."""
        pos = torch.arange(idx.size(1), device=idx.device)[None]
        rot = rope_table(pos, self.cfg.n_embd // self.cfg.n_head, self.cfg.rope_base)
        return Pass(rot, self.mask(idx.size(1), idx.device))

    def encode(self, idx, p):
        x, rows = self.wte(idx), torch.arange(idx.size(0), device=idx.device)
        for i, block in enumerate(self.first):
            x = p.run(block, x, rows, i)
        return x

    def readout(self, h, p):
        """The last blocks and ln_f: what the tied LM head reads (B, T, C)."""
        rows = torch.arange(h.size(0), device=h.device)
        for i, block in enumerate(self.last):
            h = p.run(block, h, rows, self.cfg.n_first + self.max_loops + i)
        return self.ln_f(h)

    # ---- halting: one rule for training and evaluation ------------------------
    @staticmethod
    def settled(out, before, prompt):
        """The settled rule's stop probability after a loop: 1 - max_t |a_t - b_t| / |a_t| over
        the prompt's tokens t (prompt (B, T) True there), where a (B, T, C) is what the LM head
        reads after this loop and b after the loop before (None after loop 1: 0, a first answer is
        never settled). Every prompt token, not only the last: while a far token's information
        is still on its way to the answer, the tokens it passes through still move."""
        if before is None:
            return torch.zeros(out.size(0), device=out.device)
        move = (out - before).float().norm(dim=-1) / out.float().norm(dim=-1).clamp(min=1e-6)
        return 1 - torch.where(prompt, move, 0.0).amax(1)

    def stop_after(self, lam, survive):
        """P(the row has halted by this loop) from this loop's lam (B,) and the probability that
        it had not halted before (B,). PonderNet: 1 - prod_{j<=n} (1 - lam_j), the mass of the
        learned halting distribution on loops 1..n (at threshold 0.5 the row stops at its median
        loop). Settled: lam itself. Returns (stop, survive)."""
        if self.cfg.halt == "settled":
            return lam, survive
        survive = survive * (1 - lam)
        return 1 - survive, survive

    def halting_loops(self, lam):
        """The loop each row halts at (B,), from lam (B, N) of every loop: the first whose stop
        probability passes threshold, else N. think() stops at the same loop."""
        survive, stops = torch.ones_like(lam[:, 0]), []
        for n in range(lam.size(1)):
            stop, survive = self.stop_after(lam[:, n], survive)
            stops.append(stop > self.threshold)
        stops = torch.stack(stops, 1)
        return torch.where(stops.any(1), stops.float().argmax(1) + 1, lam.size(1)).long()

    # ---- training: every loop read out (PonderNet) -----------------------------
    def forward(self, idx, at, n_loops, skip=0):
        """Right-padded idx (B, T), at (B,) the last prompt token -> logits after each loop
        (N, B, T, V), the learned stop probabilities of E and G after each loop (2, B, N), the
        load-balancing loss of every gate averaged over loops, how settled the answer is after
        each loop (B, N): settled() at the last prompt token alone, with its gradient (train_wide's
        settling loss), and the settled rule's stop probability after each loop (B, N): settled()
        at every prompt token (rule_stops picks what the halting rule reads).
        skip: loops run first without a gradient and not read out (train_wide's progressive
        loss), so the N loops returned are loops skip + 1 .. skip + N."""
        p = self.plain_pass(idx)
        x0 = self.encode(idx, p)
        h, logits, lams, still, rest, balance = x0, [], [], [], [], 0.0
        prompt = torch.arange(idx.size(1), device=idx.device) <= at[:, None]   # right-padded
        answer = torch.arange(idx.size(1), device=idx.device) == at[:, None]
        with torch.no_grad():
            for _ in range(skip):
                h = self.update(*self.gates(h, x0, at)[:3], p)
            before = self.readout(h, p) if skip else None
        z, main, experts, _ = self.gates(h, x0, at)
        for _ in range(n_loops):
            h = self.update(z, main, experts, p)
            balance = balance + sum(load_balancing_loss(q) for q in (main, *experts)) / 3
            z, main, experts, lam = self.gates(h, x0, at)           # read the new state: stop now?
            out = self.readout(h, p)
            logits.append(out @ self.wte.weight.T)                  # (B, T, V)
            rest.append(self.settled(out, before, prompt).detach())
            still.append(self.settled(out, before, answer))
            lams.append(torch.stack(lam))
            before = out
        return (torch.stack(logits), torch.stack(lams, -1), balance / n_loops,
                torch.stack(still, -1), torch.stack(rest, -1))

    def rule_stops(self, lam, rest):
        """What the halting rule reads after each loop (2, B, N) for E and G, from forward's
        learned lam (2, B, N) and settled rest (B, N): ponder lam, settled rest for both."""
        return lam if self.cfg.halt == "ponder" else rest.expand_as(lam)

    # ---- evaluation: each row stops on its own --------------------------------
    @torch.no_grad()
    def think(self, idx, at, p=None):
        """Loop until each row's stop probability passes threshold, or max_loops. The stop
        probability after each loop is stop_after's, the rule training used (halting_loops); a
        halted row's state is frozen.
        Returns logits (B, T, V), loops (B,), a trace (per loop, each row's lobe (0 left, 1
        right, -1 halted), expert and stop probability) and the routes (per loop, the gates
        that routed it), which let a cached step replay the same loops for a new token."""
        p = p or self.plain_pass(idx)
        x0 = self.encode(idx, p)
        B, T = idx.shape
        prompt = torch.arange(T, device=idx.device) <= at[:, None]   # the prompt's tokens,
        if p.cache is not None:                                       # left-padded ones without
            prompt = prompt & p.cache.valid[:, :T]                    # their pads
        h, out, before = x0, None, None
        loops = torch.zeros(B, dtype=torch.long, device=idx.device)
        survive, stop = torch.ones(B, device=idx.device), torch.zeros(B, device=idx.device)
        halted = torch.zeros(B, dtype=torch.bool, device=idx.device)
        z, main, experts, _ = self.gates(h, x0, at)
        trace, routes = [], []
        for n in range(self.max_loops):
            lobe = (main[:, 1] > main[:, 0]).long()
            expert = torch.where(lobe == 1, experts[1].argmax(-1), experts[0].argmax(-1))
            routes.append((main, experts))
            h = torch.where(halted[:, None, None], h, self.update(z, main, experts, p, n))
            loops += (~halted).long()
            z, main, experts, lam = self.gates(h, x0, at)
            lam = lam[0] if self.kind == "E" else lam[1]
            if self.cfg.halt == "settled":                          # every prompt token
                out = self.readout(h, p)
                lam, before = self.settled(out, before, prompt), out
            stop_n, survive_n = self.stop_after(lam, survive)
            stop = torch.where(halted, stop, stop_n)                # P(halted by this loop)
            survive = torch.where(halted, survive, survive_n)
            trace.append((torch.where(halted, -1, lobe), expert, stop))
            halted |= stop > self.threshold                         # LOOP LOGIC: the row halts
            if halted.all():
                break
        out = self.readout(h, p) if out is None else out            # settled: read at the end
        return out @ self.wte.weight.T, loops, trace, routes

    @torch.no_grad()
    def step(self, idx, loops, routes, p):
        """New tokens idx (B, T) through the loops each row's prompt chose (routes and loops from
        think): the gates are read at the last prompt token, so every answer token of a row runs
        the same loops and experts, and each loop's keys and values sit in that loop's slot."""
        x0 = self.encode(idx, p)
        h = x0
        for n, (main, experts) in enumerate(routes):
            z = self.ln_loop(h) + x0                                # LOOP LOGIC: input re-injected
            h = torch.where((loops <= n)[:, None, None], h, self.update(z, main, experts, p, n))
        return self.readout(h, p) @ self.wte.weight.T

    @torch.no_grad()
    def generate(self, prompts, max_new_tokens):
        """Continue each prompt (token lists, left-padded here) to <|eos|> with a KV cache: the
        prompt thinks once (think), then each new token replays its row's loops (step).
        Returns the new tokens per row, loops (B,) and the trace of the prompt's loops."""
        dev, B = self.wte.weight.device, len(prompts)
        Tp = max(len(q) for q in prompts)
        idx = torch.full((B, Tp), PAD, dtype=torch.long, device=dev)
        valid = torch.zeros(B, Tp, dtype=torch.bool, device=dev)
        for i, q in enumerate(prompts):
            idx[i, Tp - len(q):], valid[i, Tp - len(q):] = torch.tensor(q, device=dev), True
        pos = (valid.long().cumsum(1) - 1).clamp(min=0)
        head_dim = self.cfg.n_embd // self.cfg.n_head
        bcfg = dataclasses.replace(self.cfg.block_config(), n_layer=self.slots())
        cache = KVCache(bcfg, B, Tp + max_new_tokens, dev, self.wte.weight.dtype, valid)
        p = Pass(rope_table(pos, head_dim, self.cfg.rope_base), self.cached_mask(valid, 0, Tp),
                 cache)
        at = torch.full((B,), Tp - 1, device=dev)
        logits, loops, trace, routes = self.think(idx, at, p)
        new, done = [[] for _ in prompts], [False] * B
        for t in range(max_new_tokens):
            cache.len = Tp + t
            last = logits[:, -1].float()                            # (B, V)
            nxt = last.argmax(-1)
            if self.temperature > 0:
                nxt = sample(last / self.temperature)
            for i, token in enumerate(nxt.tolist()):
                if not done[i]:
                    new[i].append(token)
                    done[i] = token == EOS
            if all(done):
                break
            pos = pos[:, -1:] + 1
            p = Pass(rope_table(pos, head_dim, self.cfg.rope_base),
                     self.cached_mask(cache.valid, cache.len, 1), cache)
            logits = self.step(nxt[:, None], loops, routes, p)
        return new, loops, trace

    def answer(self, prompts, max_new_tokens=16):
        """Plain-text prompts -> an idl.Dialogue with one attempt per row. loops = the row's
        halting loops; forward_passes = per generated token, one per loop plus one for the
        first and last blocks; scores = stop probabilities."""
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
        return [("right" if lobe[0] else "left", int(e[0]), float(s[0]))
                for lobe, e, s in trace[:int(loops[0])]]


def equal_depth_config(wide_cfg: WideConfig) -> LobeConfig:
    """The fixed-depth GPT (system A=) a wide SLN is compared with: as many blocks, so equal
    parameters up to the gates (a few hundred): num_params of each says how far apart."""
    return wide_cfg.block_config()


def load_wide(path, kind, device="cpu", threshold=None, temperature=0.0, max_loops=None,
              idl_limit=None):
    """System E or G from a train_wide.py checkpoint. idl_limit counts the dialogue turns of B-F
    and is not used here: the wide SLN's own limit is max_loops and its threshold the halting
    rule's (defaults: the ones saved with it)."""
    ckpt = load_checkpoint(path, device)
    if "wide" not in ckpt:
        raise UsageError(f"{path} holds no wide SLN: train one with python train_wide.py")
    wide_cfg = WideConfig(**ckpt["wide_config"])
    model = WideSLN(wide_cfg, kind, threshold, temperature, max_loops).to(device)
    load_state(model, ckpt["wide"], path)
    return model.eval()


def save_wide(path, model, **extra):
    """A wide SLN in its own checkpoint kind: the network under "wide", its WideConfig beside
    it."""
    save_checkpoint(path, wide=model.state_dict(), wide_config=dataclasses.asdict(model.cfg),
                    **extra)
