"""
Benchmarks: how fast a lobe trains and generates, printed as one markdown table.

    train      forward + backward + AdamW step of a default-size lobe (LobeConfig()) at batch 64:
               training tokens per second
    generate   greedy generation of 128 new tokens at batch 64, with the KV cache (Lobe.generate)
               and without it (a loop that re-runs the full forward over the whole sequence for
               every new token): tokens per second each, and the speedup the cache buys
    idl        the lateralized Inner Dialogue Loop (idl.py) at batch 256 against one prompt at a
               time: answers per second, and the speedup batching buys
    memory     the activations soft-token BPTT keeps for backward through the differentiable loop
               (idl.soft_lateralized) at idl_limit 1..4: full BPTT, truncated BPTT over the last
               loop, activation checkpointing; against the parameters' bytes (paper §5.1, line 264:
               "30x increase in memory footprint to model size" for Pythia-70M at batch 1)

Every section runs a fresh random lobe on random byte tokens: speed does not depend on what the
weights know. A section is one function `bench_<name>(cfg, device) -> rows`; add one to SECTIONS
and it can be picked with --only. About a minute on a 2-core laptop CPU:

    $ python bench.py
    $ python bench.py --only=generate --new_tokens=256
    $ python bench.py --device=cuda --batch_size=256
"""
import time
from dataclasses import dataclass

import torch

from common import UsageError, autocast, get_device, make_optimizer, run, seed_everything
from data.tokenizer import EOS
from idl import lateralized, soft_lateralized
from lobes import Lobe, LobeConfig


@dataclass
class Config:
    only: str = ""            # comma-separated sections to run: train, generate, idl, memory (empty = all)
    device: str = "auto"      # auto (cuda, then mps, then cpu) | cpu | cuda | mps
    seed: int = 0             # seeds the random lobes and the random tokens
    threads: int = 0          # torch CPU threads (0 = torch's default)
    n_layer: int = 3          # lobe size: LobeConfig's defaults, the size train_sft.py trains on CPU
    n_head: int = 4           # attention heads per block
    n_embd: int = 128         # residual width
    batch_size: int = 64      # sequences per training step and per generation batch
    seq_len: int = 32         # training tokens per sequence (an addition example is 29)
    train_steps: int = 10     # timed training steps
    prompt_len: int = 16      # prompt tokens before generation
    new_tokens: int = 128     # tokens generated per sequence
    warmup: int = 2           # untimed training steps / short generations before timing
    idl_batch: int = 256      # prompts in the batched Inner Dialogue Loop
    idl_limit: int = 4        # loops every IDL row runs (memory: 1 .. idl_limit)
    mem_batch: int = 1        # batch of the memory section (the paper's 30x is at batch 1)
    answer_tokens: int = 10   # soft tokens per answer in the memory section (an addition answer is 10)


# -----------------------------------------------------------------------------
def timed(fn, device):
    """Seconds one call of fn takes (waiting for the GPU, if any); returns (seconds, fn's result)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def cpu_busy(seconds=0.5):
    """The share of all cores busy over the next `seconds` (from /proc/stat), or None off Linux."""
    def ticks():
        with open("/proc/stat") as f:
            t = [int(x) for x in f.readline().split()[1:]]
        return sum(t), t[3] + t[4]                    # total, idle + iowait
    try:
        (t0, i0), _, (t1, i1) = ticks(), time.sleep(seconds), ticks()
    except (OSError, ValueError, IndexError):
        return None
    return 1 - (i1 - i0) / max(1, t1 - t0)


def random_lobe(cfg, device):
    seed_everything(cfg.seed)
    return Lobe(LobeConfig(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd)).to(device)


def random_tokens(cfg, shape, device):
    """Byte tokens (no specials), from the seed."""
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(cfg.seed)).to(device)


# -----------------------------------------------------------------------------
def bench_train(cfg, device):
    """Training throughput: tokens per second through forward, backward and an AdamW step."""
    model = random_lobe(cfg, device).train()
    opt = make_optimizer(model, 3e-4, 0.1)
    idx = random_tokens(cfg, (cfg.batch_size, cfg.seq_len + 1), device)

    def step():
        with autocast(device):
            _, _, loss = model(idx[:, :-1], targets=idx[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def steps(n):
        for _ in range(n):
            step()

    steps(cfg.warmup)
    seconds, _ = timed(lambda: steps(cfg.train_steps), device)
    tokens = cfg.batch_size * cfg.seq_len * cfg.train_steps
    return [("train", f"forward + backward + AdamW, batch {cfg.batch_size} x {cfg.seq_len} tokens",
             f"{tokens / seconds:,.0f}", f"{seconds / cfg.train_steps * 1000:.0f} ms/step")]


@torch.no_grad()
def generate_uncached(model, idx, new_tokens):
    """Greedy decoding the slow way: the full forward over prompt + everything generated so far,
    once per new token, keeping only the last position's logits. No <|eos|> stop: the random
    lobe is checked to never emit it, so both ways do the same work."""
    for _ in range(new_tokens):
        logits, _, _ = model(idx)
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
    t_cached, fast = timed(lambda: cached(cfg.new_tokens), device)
    if fast.size(1) < cfg.new_tokens or (fast == EOS).any():
        raise UsageError(f"the random lobe emitted <|eos|> (seed {cfg.seed}), so not every row ran "
                         f"{cfg.new_tokens} tokens; try another --seed")
    t_uncached, slow = timed(lambda: uncached(cfg.new_tokens), device)
    same = (fast == slow).float().mean().item()
    where = f"batch {cfg.batch_size}, prompt {cfg.prompt_len}, {cfg.new_tokens} new tokens"
    return [("generate", f"KV cache (Lobe.generate), {where}", f"{n / t_cached:,.0f}", f"{t_cached:.2f} s"),
            ("generate", f"no cache (full forward per token), {where}", f"{n / t_uncached:,.0f}",
             f"{t_uncached:.2f} s"),
            ("generate", "speedup of the KV cache", f"{t_uncached / t_cached:.1f}x",
             f"same greedy tokens: {same:.1%}")]


def bench_idl(cfg, device):
    """The lateralized Inner Dialogue Loop at batch idl_batch vs one prompt at a time: answers/s.
    threshold 2 is never reached, so every row runs all idl_limit loops both ways; the
    one-at-a-time rate is timed on 32 prompts (it does not depend on how many)."""
    left, right = random_lobe(cfg, device).eval(), random_lobe(cfg, device).eval()
    prompts = ["".join(chr(48 + (i * 7 + j * 3) % 10) for j in range(8)) + "+1" for i in range(cfg.idl_batch)]
    run_idl = lambda ps: lateralized(left, right, ps, idl_limit=cfg.idl_limit, threshold=2.0, max_new_tokens=10)
    run_idl(prompts[:4])                                                  # warm-up
    t_batched, _ = timed(lambda: run_idl(prompts), device)
    t_single, _ = timed(lambda: [run_idl([p]) for p in prompts[:32]], device)
    fast, slow = cfg.idl_batch / t_batched, 32 / t_single
    what = f"idl_limit {cfg.idl_limit}, 10 tokens per attempt"
    return [("idl", f"batched IDL, batch {cfg.idl_batch}, {what}", f"{fast:,.1f} answers/s", f"{t_batched:.2f} s"),
            ("idl", f"one prompt at a time, {what}", f"{slow:,.1f} answers/s", f"{t_single:.2f} s for 32"),
            ("idl", "speedup of batching", f"{fast / slow:.1f}x", "")]


def saved_bytes(params, fn):
    """fn() under saved_tensors_hooks: returns fn's result and the bytes of the distinct storages autograd
    keeps for backward, parameters excluded. Exact and the same on every device (CPU torch has no
    max_memory_allocated); non-reentrant checkpointing saves its inputs here too, not its insides."""
    kept = {}

    def pack(t):
        kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    skip = {p.untyped_storage().data_ptr() for p in params}
    return out, sum(b for ptr, b in kept.items() if ptr not in skip)


def bench_memory(cfg, device):
    """Soft-token BPTT from D's score of the last loop's answer back through every loop (§5.1, §5.2
    line 303): activation bytes kept for backward, and on CUDA the peak allocated during forward +
    backward (recomputation included), against the bytes of both lobes' parameters."""
    left, right = random_lobe(cfg, device).train(), random_lobe(cfg, device).train()
    params = list(left.parameters()) + list(right.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    prompts = random_tokens(cfg, (cfg.mem_batch, cfg.prompt_len), device).tolist()
    rows = [("memory", f"parameters of both lobes ({sum(p.numel() for p in params):,})",
             f"{param_bytes / 2**20:.2f} MiB", f"batch {cfg.mem_batch}, {cfg.answer_tokens} tokens per answer")]
    modes = (("full BPTT", {}), ("truncated BPTT, last loop", dict(window=1)), ("checkpointing", dict(remat=True)))
    for k in range(1, cfg.idl_limit + 1):
        for name, how in modes:
            torch.manual_seed(cfg.seed)                              # the same Gumbel noise every time
            if device.type == "cuda":
                torch.cuda.synchronize(), torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            with autocast(device):
                loss, kept = saved_bytes(params, lambda: soft_lateralized(
                    left, right, prompts, cfg.answer_tokens, k, tau=1.0, hard=True, **how).scores[-1].sum())
            loss.backward()
            left.zero_grad(set_to_none=True), right.zero_grad(set_to_none=True)
            peak = "" if device.type != "cuda" else \
                f", CUDA peak {(torch.cuda.max_memory_allocated() - base) / 2**20:.2f} MiB"
            rows.append(("memory", f"idl_limit {k}, {name}", f"{kept / 2**20:.2f} MiB",
                         f"{kept / param_bytes:.2f}x the parameters{peak}"))
    # checkpointing's kept bytes leave out the one pass it re-runs at a time in backward: count it
    longest = torch.randn(cfg.mem_batch, cfg.prompt_len + 2 * cfg.answer_tokens + 1, cfg.n_embd, device=device)
    _, one = saved_bytes(params, lambda: left(embeds=longest)[0].sum())
    rows.append(("memory", "one lobe pass at the longest context (checkpointing re-runs one at a time)",
                 f"{one / 2**20:.2f} MiB", f"{one / param_bytes:.2f}x the parameters"))
    return rows


SECTIONS = {"train": bench_train, "generate": bench_generate, "idl": bench_idl, "memory": bench_memory}


# -----------------------------------------------------------------------------
def main(cfg: Config):
    names = [s.strip() for s in cfg.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = [s for s in names if s not in SECTIONS]
    if unknown:
        raise UsageError(f"unknown section {unknown[0]!r} in --only: choose from {', '.join(SECTIONS)}")
    device = get_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    size = f"{cfg.n_layer} layers, {cfg.n_head} heads, width {cfg.n_embd}"
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, lobe: {size}")
    busy = cpu_busy()
    if device.type == "cpu" and busy is not None and busy > 0.2:
        print(f"warning: the CPU is {busy:.0%} busy before we start: other processes compete for it and each op "
              f"then waits for its threads, so timings are unreliable (--threads=1 suffers least)")
    rows = []
    for name in names:
        rows += SECTIONS[name](cfg, device)
    print("\n| section | measurement | rate or size | time or ratio |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return rows


if __name__ == "__main__":
    run(main, Config)
