"""
Assignment 7, the KV cache (what makes the Inner Dialogue Loop's generation cheap):
lobes.py:KVCache.update, lobes.py:attention_mask.

Graded by small cases worked by hand, and end to end: a lobe's cached, batched, left-padded
greedy generation must give exactly the tokens of a plain loop that re-reads the whole sequence
at every step (no cache, no padding).

    $ python -m pytest assignments/tests/test_a7_kv_cache.py -q
"""
import torch

from data.tokenizer import EOS
from lobes import KVCache, Lobe, LobeConfig, attention_mask

CFG = LobeConfig(n_layer=2, n_head=2, n_embd=8)          # head size 4


def test_update_stores_this_steps_keys_and_returns_all_so_far():
    cache = KVCache(CFG, batch=2, max_len=6, device="cpu", dtype=torch.float32)
    k, v = torch.randn(2, 2, 3, 4), torch.randn(2, 2, 3, 4)            # (B, H, t, D), 3 tokens
    keys, values = cache.update(1, k, v)                               # layer 1
    assert keys.shape == (2, 2, 3, 4), f"shape {tuple(keys.shape)}, expected (2, 2, 3, 4)"
    assert torch.equal(keys, k) and torch.equal(values, v)
    assert cache.len == 0, "update must not move cache.len: Lobe.forward does, once per pass"
    assert torch.equal(cache.k[0], torch.zeros(2, 2, 6, 4)), "layer 0 must stay untouched"
    cache.len = 3                                                      # as Lobe.forward would
    k2, v2 = torch.randn(2, 2, 1, 4), torch.randn(2, 2, 1, 4)          # one decoding step
    keys, values = cache.update(1, k2, v2)
    assert keys.shape == (2, 2, 4, 4), f"shape {tuple(keys.shape)}, expected (2, 2, 4, 4)"
    assert torch.equal(keys, torch.cat([k, k2], 2)) and torch.equal(values, torch.cat([v, v2], 2))


def test_attention_mask_by_hand_causal_and_blind_to_padding():
    # one row, the first position a pad: each query sees the valid keys up to itself, and the
    # pad's query sees only itself (so its softmax row is never all -inf)
    m = attention_mask(torch.tensor([[False, True, True, True]]), start=0, T=4)
    assert m.shape == (1, 1, 4, 4), f"shape {tuple(m.shape)}, expected (1, 1, 4, 4)"
    want = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(m[0, 0], want)


def test_attention_mask_for_a_step_after_cached_tokens():
    valid = torch.tensor([[False, True, True, True, True, True], [True] * 6])
    # one decoding step at position 3 sees every valid key 0..3
    m = attention_mask(valid, start=3, T=1)
    assert m.shape == (2, 1, 1, 4), f"shape {tuple(m.shape)}, expected (2, 1, 1, 4)"
    assert torch.equal(m[:, 0, 0], valid[:, :4])
    # two new tokens at positions 2 and 3 over keys 0..3
    m = attention_mask(valid, start=2, T=2)
    assert m.shape == (2, 1, 2, 4), f"shape {tuple(m.shape)}, expected (2, 1, 2, 4)"
    assert torch.equal(m[0, 0].int(), torch.tensor([[0, 1, 1, 0], [0, 1, 1, 1]]))
    assert torch.equal(m[1, 0].int(), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]))


def sharp_lobe():
    """A tiny lobe with large weights, so its greedy tokens depend on the whole context."""
    torch.manual_seed(0)
    lobe = Lobe(LobeConfig(n_layer=2, n_head=2, n_embd=32)).eval()
    with torch.no_grad():
        for p in lobe.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
    return lobe


@torch.no_grad()
def uncached_greedy(lobe, prompt, n):
    """n greedy tokens, re-reading prompt + everything so far at each step: no cache, no mask."""
    seq = list(prompt)
    for _ in range(n):
        logits, _ = lobe(torch.tensor([seq]))
        seq.append(int(logits[0, -1].argmax()))
    return seq[len(prompt):]


def test_cached_batched_greedy_generation_equals_the_uncached_loop():
    lobe = sharp_lobe()
    prompts = [[1, 2, 3, 4, 5, 6, 7], [40, 41], [9, 8, 7, 6], [100]]   # left-padded to 7
    tokens, logps = lobe.generate(prompts, 8, temperature=0.0)
    want = [uncached_greedy(lobe, p, 8) for p in prompts]
    assert len({tuple(w) for w in want}) == len(prompts)              # the lobe is not constant
    want = [w[:w.index(EOS) + 1] if EOS in w else w for w in want]    # generate stops at eos
    got = [row[:len(w)] for row, w in zip(tokens.tolist(), want)]
    assert got == want
    assert torch.isfinite(logps).all()
