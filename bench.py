"""
Benchmarks: how fast a lobe trains and generates, printed as one markdown table.

    train      the LM training step (forward, cross-entropy, backward, AdamW) of a default-size
               lobe at batch 64, side by side with a plain GPT of the same width, depth and heads
               (PlainGPT below: nanoGPT's model, learned positions, no score head), the two
               steps alternating in one process: tokens per second each, and the lobe's speed
               as a multiple of the plain GPT's; and the lobe's step under train_sft's Muon
               (muon.py) against its AdamW step
    generate   greedy generation of 128 new tokens at batch 64, with the KV cache (Lobe.generate)
               and without it (a loop that re-runs the full forward over the whole sequence for
               every new token): tokens per second each, and the speedup the cache buys
    idl        the lateralized Inner Dialogue Loop (idl.py) at batch 256 against one prompt at a
               time: answers per second, and the speedup batching buys
    memory     the activations soft-token BPTT keeps for backward through the differentiable loop
               (idl.soft_lateralized) at idl_limit 1..4: full BPTT, truncated BPTT over the last
               loop, activation checkpointing; against the parameters' bytes (paper §5.1, line 264:
               "30x increase in memory footprint to model size" for Pythia-70M at batch 1)
    bound      what bounds the train and generate ratios, on CPU: the matrix products' share of
               the LM step (the plain GPT's are the same) and their rate; a cached decoding
               step against its matrix products alone and the uncached full forward

Every section runs a fresh random lobe on random byte tokens: speed does not depend on what the
weights know. A section is one function `bench_<name>(cfg, device) -> rows`; add one to SECTIONS
and it can be picked with --only. About a minute on a 2-core laptop CPU:

    $ python bench.py
    $ python bench.py --only=generate --new_tokens=256
    $ python bench.py --device=cuda --batch_size=256
    $ python bench.py --only=train --compile         # every model through torch.compile
"""
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import (Checked, PosInt, UsageError, autocast, get_device, make_optimizer, run,
                    seed_everything)
from data.tokenizer import EOS
from idl import lateralized, soft_lateralized
from lobes import KVCache, Lobe, LobeConfig


@dataclass
class Config(Checked):
    only: str = ""              # comma-separated sections to run: train, generate, idl, memory,
                                #   bound (empty = all)
    device: str = "auto"        # auto (cuda, then mps, then cpu) | cpu | cuda | mps
    seed: int = 0               # seeds the random lobes and the random tokens
    threads: int = 0            # torch CPU threads (0 = torch's default)
    n_layer: PosInt = 3         # lobe size: LobeConfig's defaults, the size train_sft.py trains
    n_head: PosInt = 4          # attention heads per block
    n_embd: PosInt = 128        # residual width
    batch_size: PosInt = 64     # sequences per training step and per generation batch
    seq_len: PosInt = 32        # training tokens per sequence (an addition example is 29)
    train_steps: PosInt = 20    # timed training steps, each model
    compile: bool = False       # train: both models through torch.compile (inductor) first; its
                                #   compile time is the warm-up row
    prompt_len: PosInt = 16     # prompt tokens before generation
    new_tokens: PosInt = 128    # tokens generated per sequence
    warmup: int = 2             # untimed training steps / short generations before timing
    idl_batch: PosInt = 256     # prompts in the batched Inner Dialogue Loop
    idl_limit: PosInt = 4       # loops every IDL row runs (memory: 1 .. idl_limit)
    mem_batch: PosInt = 1       # batch of the memory section (the paper's 30x is at batch 1)
    answer_tokens: PosInt = 10  # soft tokens per answer in the memory section (addition: 10)


# -----------------------------------------------------------------------------
def timed(fn, device):
    """Seconds one call of fn takes (waiting for the GPU, if any), and fn's result."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def random_lobe(cfg, device):
    seed_everything(cfg.seed)
    return Lobe(LobeConfig(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd)).to(device)


def random_tokens(cfg, shape, device):
    """Byte tokens (no specials), from the seed."""
    g = torch.Generator().manual_seed(cfg.seed)
    return torch.randint(0, 256, shape, generator=g).to(device)


# -----------------------------------------------------------------------------
class PlainGPT(nn.Module):
    """The yardstick of the train section: nanoGPT's GPT at a lobe's size. Learned absolute
    positions, pre-LN blocks, causal SDPA, tied LM head, no score head, no RoPE. Its init is the
    lobe's (PyTorch's default init makes huge logits, whose softmax gradients are denormal floats
    that slow a CPU's matmuls several times over: a timing artefact, not a design)."""

    def __init__(self, cfg, block_size):
        super().__init__()
        C, self.n_head = cfg.n_embd, cfg.n_head
        self.wte, self.wpe = nn.Embedding(cfg.vocab_size, C), nn.Embedding(block_size, C)
        self.blocks = nn.ModuleList(nn.ModuleDict(dict(
            ln1=nn.LayerNorm(C), qkv=nn.Linear(C, 3 * C, bias=False),
            proj=nn.Linear(C, C, bias=False), ln2=nn.LayerNorm(C),
            mlp=nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(), nn.Linear(4 * C, C))))
            for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(C)
        self.apply(Lobe._init)                     # nanoGPT's init, as the lobe's: N(0, 0.02)

    def forward(self, idx):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))     # (B, T, C)
        for b in self.blocks:
            q, k, v = b.qkv(b.ln1(x)).view(B, T, 3, self.n_head, -1).permute(2, 0, 3, 1, 4)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)      # (B, H, T, D)
            x = x + b.proj(y.transpose(1, 2).reshape(B, T, -1))
            x = x + b.mlp(b.ln2(x))
        return self.ln_f(x) @ self.wte.weight.T, None                        # (B, T, V)


def lm_step(forward, opt, idx, device):
    """One LM training step on tokens idx (B, T + 1): forward, next-token cross-entropy,
    backward, the optimizer's step. A lobe computes no score here: none is asked for."""
    with autocast(device):
        logits, _ = forward(idx[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), idx[:, 1:].flatten())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def bench_train(cfg, device):
    """The LM training step of a lobe and of a plain GPT of its size, alternating step by step so
    all see the same machine: tokens per second each, and the ratio; and the lobe's step under
    train_sft's optimizer (Muon on the blocks' matrices, muon.py), what its Newton-Schulz costs."""
    lobe, muon = random_lobe(cfg, device).train(), random_lobe(cfg, device).train()
    plain = PlainGPT(lobe.cfg, cfg.seq_len).to(device).train()
    idx = random_tokens(cfg, (cfg.batch_size, cfg.seq_len + 1), device)
    models = {"lobe": (lobe, make_optimizer(lobe, 3e-4, 0.1)),
              "plain": (plain, make_optimizer(plain, 3e-4, 0.1)),
              "muon": (muon, make_optimizer(muon, 3e-4, 0.1, muon_lr=0.02))}
    forward = {k: torch.compile(m) if cfg.compile else m for k, (m, _) in models.items()}

    def step(name):
        lm_step(forward[name], models[name][1], idx, device)

    t_warm, _ = timed(lambda: [[step(name) for name in models] for _ in range(cfg.warmup)], device)
    seconds = dict.fromkeys(models, 0.0)
    for _ in range(cfg.train_steps):
        for name in seconds:
            seconds[name] += timed(lambda: step(name), device)[0]
    tokens = cfg.batch_size * cfg.seq_len * cfg.train_steps
    what = f"batch {cfg.batch_size} x {cfg.seq_len} tokens" + (", compiled" if cfg.compile else "")
    rate = {k: (f"{tokens / s:,.0f}", f"{s / cfg.train_steps * 1000:.0f} ms/step")
            for k, s in seconds.items()}
    warm = [("train", f"torch.compile: {cfg.warmup} warm-up steps each, compiling included", "",
             f"{t_warm:.1f} s")] if cfg.compile else []
    return warm + [("train", f"lobe: forward + CE + backward + AdamW, {what}", *rate["lobe"]),
            ("train", f"plain GPT of the same size, the same step, {what}", *rate["plain"]),
            ("train", "the lobe's speed / the plain GPT's",
             f"{seconds['plain'] / seconds['lobe']:.2f}x", ""),
            ("train", "lobe, the same step with Muon on its blocks' matrices", *rate["muon"]),
            ("train", "the lobe's speed with Muon / with AdamW",
             f"{seconds['lobe'] / seconds['muon']:.2f}x", "")]


@torch.no_grad()
def generate_uncached(model, idx, new_tokens):
    """Greedy decoding the slow way: the full forward over prompt + everything generated so far,
    once per new token, keeping only the last position's logits. No <|eos|> stop: the random
    lobe is checked to never emit it, so both ways do the same work."""
    for _ in range(new_tokens):
        logits, _ = model(idx)
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


def bench_generate(cfg, device):
    """Generation throughput with and without the KV cache, and the speedup."""
    model = random_lobe(cfg, device).eval()
    prompts = random_tokens(cfg, (cfg.batch_size, cfg.prompt_len), device)
    n = cfg.batch_size * cfg.new_tokens

    def cached(new_tokens):
        with autocast(device):
            return model.generate(prompts.tolist(), new_tokens, temperature=0.0)[0]

    def uncached(new_tokens):
        with autocast(device):
            return generate_uncached(model, prompts, new_tokens)[:, cfg.prompt_len:]

    for _ in range(cfg.warmup):                      # short untimed runs warm up both ways
        cached(8), uncached(8)
    t_before, fast = timed(lambda: cached(cfg.new_tokens), device)
    if fast.size(1) < cfg.new_tokens or (fast == EOS).any():
        raise UsageError(f"the random lobe emitted <|eos|> (seed {cfg.seed}), so not every row ran "
                         f"{cfg.new_tokens} tokens; try another --seed")
    t_uncached, slow = timed(lambda: uncached(cfg.new_tokens), device)
    # the cached way timed before and after the uncached one, whose seconds the host's speed
    # drifts across: the mean of the two sees the same machine
    t_cached = (t_before + timed(lambda: cached(cfg.new_tokens), device)[0]) / 2
    same = (fast == slow).float().mean().item()
    where = f"batch {cfg.batch_size}, prompt {cfg.prompt_len}, {cfg.new_tokens} new tokens"
    return [("generate", f"KV cache (Lobe.generate), {where}", f"{n / t_cached:,.0f}",
             f"{t_cached:.2f} s"),
            ("generate", f"no cache (full forward per token), {where}", f"{n / t_uncached:,.0f}",
             f"{t_uncached:.2f} s"),
            ("generate", "speedup of the KV cache", f"{t_uncached / t_cached:.1f}x",
             f"same greedy tokens: {same:.1%}")]


def bench_idl(cfg, device):
    """The lateralized Inner Dialogue Loop at batch idl_batch vs one prompt at a time: answers/s.
    threshold None never accepts, so every row runs all idl_limit loops both ways; the
    one-at-a-time rate is timed on 32 prompts (it does not depend on how many)."""
    left, right = random_lobe(cfg, device).eval(), random_lobe(cfg, device).eval()
    prompts = ["".join(chr(48 + (i * 7 + j * 3) % 10) for j in range(8)) + "+1"
               for i in range(cfg.idl_batch)]
    def run_idl(ps):
        return lateralized(left, right, ps, idl_limit=cfg.idl_limit, threshold=None,
                           max_new_tokens=10)

    run_idl(prompts[:4])                                                  # warm-up
    t_batched, _ = timed(lambda: run_idl(prompts), device)
    t_single, _ = timed(lambda: [run_idl([p]) for p in prompts[:32]], device)
    fast, slow = cfg.idl_batch / t_batched, 32 / t_single
    what = f"idl_limit {cfg.idl_limit}, 10 tokens per attempt"
    return [("idl", f"batched IDL, batch {cfg.idl_batch}, {what}", f"{fast:,.1f} answers/s",
             f"{t_batched:.2f} s"),
            ("idl", f"one prompt at a time, {what}", f"{slow:,.1f} answers/s",
             f"{t_single:.2f} s for 32"),
            ("idl", "speedup of batching", f"{fast / slow:.1f}x", "")]


def saved_bytes(params, fn):
    """fn() under saved_tensors_hooks: returns fn's result and the bytes of the distinct storages
    autograd keeps for backward, parameters excluded. Exact and the same on every device (CPU torch
    has no max_memory_allocated); non-reentrant checkpointing saves its inputs here too, not its
    insides."""
    kept = {}

    def pack(t):
        kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    skip = {p.untyped_storage().data_ptr() for p in params}
    return out, sum(b for ptr, b in kept.items() if ptr not in skip)


def bench_memory(cfg, device):
    """Soft-token BPTT from D's score of the last loop's answer back through every loop (§5.1,
    §5.2 line 303): activation bytes kept for backward, and on CUDA the peak allocated during
    forward + backward (recomputation included), against the bytes of both lobes' parameters."""
    left, right = random_lobe(cfg, device).train(), random_lobe(cfg, device).train()
    params = list(left.parameters()) + list(right.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    prompts = random_tokens(cfg, (cfg.mem_batch, cfg.prompt_len), device).tolist()
    rows = [("memory", f"parameters of both lobes ({sum(p.numel() for p in params):,})",
             f"{param_bytes / 2**20:.2f} MiB",
             f"batch {cfg.mem_batch}, {cfg.answer_tokens} tokens per answer")]
    modes = (("full BPTT", {}), ("truncated BPTT, last loop", dict(window=1)),
             ("checkpointing", dict(remat=True)))
    for k in range(1, cfg.idl_limit + 1):
        for name, how in modes:
            torch.manual_seed(cfg.seed)                  # the same Gumbel noise every time
            if device.type == "cuda":
                torch.cuda.synchronize(), torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            with autocast(device):
                loss, kept = saved_bytes(params, lambda: soft_lateralized(
                    left, right, prompts, cfg.answer_tokens, k, tau=1.0, hard=True,
                    **how).scores[-1].sum())
            loss.backward()
            left.zero_grad(set_to_none=True), right.zero_grad(set_to_none=True)
            peak = "" if device.type != "cuda" else \
                f", CUDA peak {(torch.cuda.max_memory_allocated() - base) / 2**20:.2f} MiB"
            rows.append(("memory", f"idl_limit {k}, {name}", f"{kept / 2**20:.2f} MiB",
                         f"{kept / param_bytes:.2f}x the parameters{peak}"))
    # checkpointing's kept bytes leave out the one pass it re-runs at a time in backward: count it
    T = cfg.prompt_len + 2 * cfg.answer_tokens + 1
    longest = torch.randn(cfg.mem_batch, T, cfg.n_embd, device=device)
    _, one = saved_bytes(params, lambda: left(embeds=longest, score=True)[0].sum())
    rows.append(("memory", "one lobe pass at the longest context (checkpointing re-runs one)",
                 f"{one / 2**20:.2f} MiB", f"{one / param_bytes:.2f}x the parameters"))
    return rows


def per_call(fn, n, device):
    """Milliseconds one call of fn takes, the mean of n calls after one untimed call."""
    fn()
    return timed(lambda: [fn() for _ in range(n)], device)[0] / n * 1e3


def bench_bound(cfg, device):
    """What bounds the two ratios above (CPU time, read by the profiler). Train: the share of the
    lobe's LM step spent in matrix products, which the plain GPT runs with the same shapes, and
    their rate against one large product's. Generate: a decoding step with the KV cache at three
    cache lengths, its matrix products alone, and the uncached way's full forward at the mean
    length it runs over: the cache's ceiling if a step were its products alone."""
    if device.type != "cpu":
        return [("bound", "CPU only: the profile reads CPU time", "", "")]
    lobe = random_lobe(cfg, device).train()
    opt = make_optimizer(lobe, 3e-4, 0.1)
    idx = random_tokens(cfg, (cfg.batch_size, cfg.seq_len + 1), device)

    lm_step(lobe, opt, idx, device)
    with torch.profiler.profile() as prof:
        for _ in range(cfg.train_steps):
            lm_step(lobe, opt, idx, device)
    self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    mm_us = self_us.get("aten::mm", 0) + self_us.get("aten::addmm", 0)
    weights = [p for n, p in lobe.named_parameters() if p.dim() == 2 and "score" not in n]
    # forward and backward: three products with each weight matrix (wte's is the LM head's)
    flops = 6 * cfg.batch_size * cfg.seq_len * sum(w.numel() for w in weights) * cfg.train_steps
    a, b = torch.randn(2048, 512), torch.randn(512, 512)
    peak = 2 * 2048 * 512 * 512 / per_call(lambda: a @ b, 50, device) / 1e6
    rows = [("bound", "matrix products' share of the lobe's LM step (the plain GPT's: the same)",
             f"{mm_us / sum(self_us.values()):.1%}", f"{flops / mm_us / 1e3:.0f} GFLOP/s"),
            ("bound", "one 2048x512 @ 512x512 product: the CPU's fp32 rate", f"{peak:.0f} GFLOP/s",
             "")]
    lobe.eval()
    B, n = cfg.batch_size, cfg.prompt_len + cfg.new_tokens
    nxt = random_tokens(cfg, (B, 1), device)
    with torch.no_grad():
        for S in (cfg.prompt_len, cfg.prompt_len + cfg.new_tokens // 2, n - 1):
            cache = KVCache(lobe.cfg, B, n, device, torch.float32)

            def decode():
                cache.len = S
                lobe(nxt, pos=torch.full((B, 1), S, device=device), cache=cache)
            rows.append(("bound", f"decoding step with the KV cache after {S} tokens", "",
                         f"{per_call(decode, 100, device):.2f} ms"))
        xs = [torch.randn(B, w.size(1)) for w in weights]
        products = sum(per_call(lambda x=x, w=w: F.linear(x, w), 100, device)
                       for x, w in zip(xs, weights))
        mean = random_tokens(cfg, (B, cfg.prompt_len + cfg.new_tokens // 2), device)
        full = per_call(lambda: lobe(mean), 5, device)
    return rows + [("bound", "the decoding step's matrix products alone", "", f"{products:.2f} ms"),
                   ("bound", f"full forward over {mean.size(1)} tokens (the uncached way's mean "
                    "step)", "", f"{full:.1f} ms"),
                   ("bound", "the KV cache's ceiling, were a step its products alone",
                    f"{full / products:.0f}x", "")]


SECTIONS = {"train": bench_train, "generate": bench_generate, "idl": bench_idl,
            "memory": bench_memory, "bound": bench_bound}


# -----------------------------------------------------------------------------
def main(cfg: Config):
    names = [s.strip() for s in cfg.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = [s for s in names if s not in SECTIONS]
    if unknown:
        raise UsageError(f"unknown section {unknown[0]!r} in --only: choose from "
                         f"{', '.join(SECTIONS)}")
    device = get_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    size = f"{cfg.n_layer} layers, {cfg.n_head} heads, width {cfg.n_embd}"
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"lobe: {size}")
    rows = []
    for name in names:
        rows += SECTIONS[name](cfg, device)
    print("\n| section | measurement | rate or size | time or ratio |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return rows


if __name__ == "__main__":
    run(main, Config)
