"""
Tests for lobes.py: cached batched generation against an independent uncached reference, per-row
<|eos|>, sampling, soft tokens (eqs 3-4), the forward's loss and padding, and the log-prob and
score helpers. Every model is a seeded tiny lobe (tests/conftest.py).

    $ python -m pytest tests/test_lobes.py -q
"""

import math

import pytest
import torch
import torch.nn.functional as F

from data.tokenizer import BOS, EOS, PAD, SEP, VALENCE
from lobes import (answer_ids, answer_logprobs, answer_scores, distinct, pad_right, prompt_ids,
                   rope, rope_table, sequence_logprob, soft_tokens, spread, teacher_forced)
from losses import sft_loss

# prompts of different lengths, so a batch of them is left-padded (lengths 7, 3, 15, 11, 8)
PROMPTS = [prompt_ids(s) for s in ["12+34", "7", "hello, world!", "0000*9999", "x.o|.x."]]


def reference_greedy(model, prompt, max_new_tokens):
    """The slow, obviously right generator: one row, no padding, no cache, a full forward per
    token. Returns the greedy tokens up to and including <|eos|> and their log-probs."""
    ids, tokens, logps = list(prompt), [], []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits, _ = model(torch.tensor([ids]))
            logp = F.log_softmax(logits[0, -1].float(), dim=-1)
            t = int(logp.argmax())
            tokens.append(t)
            logps.append(float(logp[t]))
            ids.append(t)
            if t == EOS:
                break
    return tokens, logps


def padded(rows, fill, width):
    """Lists of different lengths -> a (B, width) tensor filled with `fill` after each row."""
    return torch.tensor([r + [fill] * (width - len(r)) for r in rows])


# -----------------------------------------------------------------------------
# generation

def test_cached_batched_greedy_generation_equals_uncached_reference(sharp_lobe):
    N = 12
    tokens, logps = sharp_lobe.generate(PROMPTS, N, temperature=0.0)
    refs = [reference_greedy(sharp_lobe, p, N) for p in PROMPTS]
    assert len(set(tuple(t) for t, _ in refs)) == len(PROMPTS)   # the model is not constant
    assert all(len(set(t)) > 2 for t, _ in refs[:3])              # nor stuck on one token
    assert all(len(t) == N for t, _ in refs)                      # no eos here: all N compared
    assert torch.equal(tokens, torch.tensor([t for t, _ in refs]))
    torch.testing.assert_close(logps, torch.tensor([lp for _, lp in refs]), rtol=0, atol=1e-5)


def eos_steered(model, token):
    """Make <|eos|> win wherever `token` would have: tied embeddings give logit(eos) =
    1.5 * logit(token), larger whenever token is the (positive) argmax."""
    with torch.no_grad():
        model.wte.weight[EOS] = 1.5 * model.wte.weight[token]
    return model


def test_each_row_stops_at_eos_independently_and_is_padded_after_it(sharp_lobe):
    N = 12
    first = reference_greedy(sharp_lobe, PROMPTS[0], N)[0]
    model = eos_steered(sharp_lobe, first[2])            # row 0 now stops at step 2
    refs = [reference_greedy(model, p, N) for p in PROMPTS]
    stops = [len(t) - 1 if t[-1] == EOS else None for t, _ in refs]
    assert len({s for s in stops if s is not None}) >= 2  # rows stop at different steps ...
    assert None in stops                                  # ... and one never stops
    tokens, logps = model.generate(PROMPTS, N)
    assert tokens.shape == (len(PROMPTS), N)
    assert torch.equal(tokens, padded([t for t, _ in refs], PAD, N))
    for row, s in enumerate(stops):
        if s is not None:
            assert tokens[row, s] == EOS
            assert (tokens[row, s + 1:] == PAD).all() and (logps[row, s + 1:] == 0).all()
            assert (logps[row, :s + 1] < 0).all()
    torch.testing.assert_close(logps, padded([lp for _, lp in refs], 0.0, N), rtol=0, atol=1e-5)


def test_generation_returns_early_once_every_row_has_stopped(sharp_lobe):
    N = 12
    first = reference_greedy(sharp_lobe, PROMPTS[0], N)[0]
    model = eos_steered(sharp_lobe, first[2])
    refs = [reference_greedy(model, p, N)[0] for p in PROMPTS]
    stopping = [p for p, t in zip(PROMPTS, refs) if t[-1] == EOS]
    longest = max(len(t) for t in refs if t[-1] == EOS)
    assert len(stopping) >= 2 and longest < N
    tokens, logps = model.generate(stopping, N)
    assert tokens.shape == logps.shape == (len(stopping), longest)
    assert (tokens == EOS).sum(1).tolist() == [1] * len(stopping)


def uncached_logits_along(model, prompt, tokens):
    """Logits (N, V) at every generated position: one full forward on prompt + tokens."""
    with torch.no_grad():
        logits, _ = model(torch.tensor([prompt + tokens]))
    return logits[0, len(prompt) - 1:len(prompt) - 1 + len(tokens)].float()


def test_sampled_logprobs_are_log_softmax_at_temperature_of_the_uncached_forward(sharp_lobe):
    temps = torch.tensor([0.0, 0.7, 1.0, 1.5, 0.0])       # per row; 0 = greedy (temperature 1)
    torch.manual_seed(1)
    tokens, logps = sharp_lobe.generate(PROMPTS, 8, temperature=temps)
    for row, prompt in enumerate(PROMPTS):
        toks = tokens[row].tolist()
        n = toks.index(EOS) + 1 if EOS in toks else len(toks)
        logits = uncached_logits_along(sharp_lobe, prompt, toks[:n])
        t = temps[row].item() or 1.0
        want = F.log_softmax(logits / t, dim=-1).gather(1, torch.tensor(toks[:n])[:, None]).squeeze(1)
        torch.testing.assert_close(logps[row, :n], want, rtol=0, atol=1e-5)
        if temps[row] == 0:
            assert toks[:n] == logits.argmax(-1).tolist()


def top_k_ranks(model, prompt, tokens):
    """For each generated token, how many tokens the uncached forward ranked strictly above it."""
    logits = uncached_logits_along(model, prompt, tokens)
    chosen = logits.gather(1, torch.tensor(tokens)[:, None])
    return (logits > chosen).sum(1)


@pytest.mark.parametrize("top_k", [1, 3])
def test_top_k_sampling_only_picks_the_k_most_likely_tokens(sharp_lobe, top_k):
    prompts = [PROMPTS[0]] * 32
    torch.manual_seed(2)
    tokens, _ = sharp_lobe.generate(prompts, 6, temperature=3.0, top_k=top_k)
    ranks = torch.cat([top_k_ranks(sharp_lobe, prompts[0], row) for row in tokens.tolist()])
    assert ranks.max() < top_k
    assert len(set(tokens[:, 0].tolist())) == top_k      # a hot temperature reaches all k of them


def test_without_top_k_a_hot_temperature_picks_outside_the_top_3(sharp_lobe):
    # the control for the test above: it could fail
    prompts = [PROMPTS[0]] * 32
    torch.manual_seed(2)
    tokens, _ = sharp_lobe.generate(prompts, 6, temperature=3.0)
    ranks = torch.cat([top_k_ranks(sharp_lobe, prompts[0], row) for row in tokens.tolist()])
    assert ranks.max() >= 3


# -----------------------------------------------------------------------------
# soft tokens, eqs 3-4

def test_soft_tokens_with_tiny_tau_embed_as_the_hard_embedding_of_the_argmax(tiny_lobe):
    torch.manual_seed(0)
    logits = torch.randn(3, 5, tiny_lobe.cfg.vocab_size)
    soft = soft_tokens(logits, tau=1e-4, hard=False) @ tiny_lobe.wte.weight   # eq 3, then eq 4
    hard = tiny_lobe.wte(logits.argmax(-1))
    torch.testing.assert_close(soft, hard, rtol=0, atol=1e-6)
    # and tau = 1 is a real mixture, not the hard embedding
    mixed = soft_tokens(logits, tau=1.0, hard=False) @ tiny_lobe.wte.weight
    assert not torch.allclose(mixed, hard, atol=1e-3)


def test_soft_tokens_pass_gradients_into_the_logits_and_parameters_at_tau_1(tiny_lobe):
    torch.manual_seed(0)
    logits = torch.randn(2, 5, tiny_lobe.cfg.vocab_size, requires_grad=True)
    p = soft_tokens(logits, tau=1.0, hard=False)
    _, scores = tiny_lobe(embeds=p @ tiny_lobe.wte.weight, score=True)
    scores.sum().backward()
    assert (logits.grad.abs().sum(-1) > 0).all()          # every soft token gets a gradient
    assert tiny_lobe.wte.weight.grad.abs().sum() > 0
    assert tiny_lobe.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_straight_through_gumbel_forward_is_exactly_a_row_of_W_E(tiny_lobe):
    torch.manual_seed(0)
    logits = torch.randn(3, 5, tiny_lobe.cfg.vocab_size, requires_grad=True)
    out = soft_tokens(logits, tau=1.0, hard=True) @ tiny_lobe.wte.weight
    W = tiny_lobe.wte.weight
    rows_equal = (out[:, :, None, :] == W[None, None]).all(-1)   # (B, T, V)
    assert (rows_equal.sum(-1) == 1).all()                # bit-exact one-hot forward
    out.sum().backward()                                  # ... with a soft backward
    assert (logits.grad.abs().sum(-1) > 0).all()


# -----------------------------------------------------------------------------
# forward

def test_forward_with_embeds_of_idx_equals_forward_with_idx(tiny_lobe):
    idx = torch.randint(0, 256, (3, 9), generator=torch.Generator().manual_seed(0))
    logits, scores = tiny_lobe(idx, score=True)
    logits_e, scores_e = tiny_lobe(embeds=tiny_lobe.wte(idx), score=True)
    assert torch.equal(logits, logits_e) and torch.equal(scores, scores_e)


def test_teacher_forced_loss_is_eq_1_over_the_answer_tokens_only(sharp_lobe):
    prompts, answers = [[BOS, 65, 66, SEP], [BOS, 67, SEP]], [[70, 71, EOS], [72, 73, 74, EOS]]
    logits, targets, mask = teacher_forced(sharp_lobe, prompts, answers)
    assert mask.tolist() == [[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]]
    assert targets[0, 3:6].tolist() == answers[0] and targets[1, 2:6].tolist() == answers[1]
    # by hand, one unpadded sequence at a time: the mean of -log p over the 3 + 4 answer tokens
    picked = []
    for p, a in zip(prompts, answers):
        logp = F.log_softmax(sharp_lobe(torch.tensor([p + a]))[0][0], -1)
        picked += [-logp[len(p) - 1 + j, tok] for j, tok in enumerate(a)]
    torch.testing.assert_close(sft_loss(logits, targets, mask), torch.stack(picked).mean())


def test_scores_are_computed_only_when_asked(sharp_lobe):
    idx = torch.randint(0, 256, (2, 6), generator=torch.Generator().manual_seed(0))
    logits, scores = sharp_lobe(idx)
    assert scores is None                                   # a left lobe's LM step pays nothing
    logits_s, scores_s = sharp_lobe(idx, score=True)
    assert torch.equal(logits, logits_s) and scores_s.shape == (2, 6)


def test_left_padded_forward_gives_the_unpadded_logits_at_real_positions(sharp_lobe):
    T = max(len(p) for p in PROMPTS)
    idx = torch.full((len(PROMPTS), T), PAD)
    key_valid = torch.zeros(len(PROMPTS), T, dtype=torch.bool)
    for i, p in enumerate(PROMPTS):
        idx[i, T - len(p):], key_valid[i, T - len(p):] = torch.tensor(p), True
    pos = (key_valid.long().cumsum(1) - 1).clamp(min=0)
    logits, scores = sharp_lobe(idx, pos=pos, key_valid=key_valid, score=True)
    for i, p in enumerate(PROMPTS):
        want_logits, want_scores = sharp_lobe(torch.tensor([p]), score=True)
        torch.testing.assert_close(logits[i, T - len(p):], want_logits[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(scores[i, T - len(p):], want_scores[0], rtol=0, atol=1e-5)
    # the control: without key_valid and pos the pads leak into the short rows
    leaky, _ = sharp_lobe(idx)
    assert not torch.allclose(leaky[1, -1], logits[1, -1], atol=1e-3)


def test_rope_rotates_each_channel_pair_by_position_times_its_frequency():
    # head dim 4: pairs (0, 1) and (2, 3) turn at theta = 1 and 10000^(-1/2) = 0.01 per position;
    # at position 3, (1, 0) -> (cos 3, sin 3) and (0, 1) -> (-sin 0.03, cos 0.03)
    x = torch.tensor([1.0, 0.0, 0.0, 1.0]).view(1, 1, 1, 4)         # (B, H, T, D)
    got = rope(x, rope_table(torch.tensor([[3]]), 4, 10000.0)).flatten()
    want = torch.tensor([math.cos(3), math.sin(3), -math.sin(0.03), math.cos(0.03)])
    torch.testing.assert_close(got, want)


def test_shifting_every_position_id_changes_nothing_because_rope_is_relative(sharp_lobe):
    idx = torch.tensor([PROMPTS[2]])
    pos = torch.arange(idx.size(1))[None]
    logits, _ = sharp_lobe(idx, pos=pos)
    shifted, _ = sharp_lobe(idx, pos=pos + 5)
    torch.testing.assert_close(shifted, logits, rtol=0, atol=1e-4)


# -----------------------------------------------------------------------------
# log-probs and scores of given answers

ANSWERS = [answer_ids(a) for a in ["46", "1234567", "", "99", "5"]]


def test_answer_logprobs_and_sequence_logprob_equal_a_manual_sum(sharp_lobe):
    logp, mask, _ = answer_logprobs(sharp_lobe, PROMPTS, ANSWERS)
    assert mask.sum(1).tolist() == [len(a) for a in ANSWERS]
    total = sequence_logprob(sharp_lobe, PROMPTS, ANSWERS)
    for i, (p, a) in enumerate(zip(PROMPTS, ANSWERS)):
        logits, _ = sharp_lobe(torch.tensor([p + a]))
        lp = F.log_softmax(logits[0], dim=-1)
        want = sum(lp[len(p) - 1 + j, a[j]] for j in range(len(a)))   # log p(a_j | p, a_<j)
        torch.testing.assert_close(total[i], want, rtol=0, atol=1e-4)
        torch.testing.assert_close(logp[i].sum(), want, rtol=0, atol=1e-4)


def test_answer_logprobs_at_temperature_divide_the_logits(sharp_lobe):
    p, a = PROMPTS[0], ANSWERS[0]
    got = sequence_logprob(sharp_lobe, [p], [a], temperature=2.0)
    logits, _ = sharp_lobe(torch.tensor([p + a]))
    lp = F.log_softmax(logits[0] / 2.0, dim=-1)
    torch.testing.assert_close(got[0], sum(lp[len(p) - 1 + j, a[j]] for j in range(len(a))), rtol=0, atol=1e-5)


def test_score_is_the_score_at_each_sequences_last_real_token(sharp_lobe):
    seqs = [p + a for p, a in zip(PROMPTS, ANSWERS)]
    got = sharp_lobe.score(seqs)
    want = torch.stack([sharp_lobe(torch.tensor([s]), score=True)[1][0, -1] for s in seqs])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    # the control: a right-padded batch's last column is a pad's score for all but the longest
    idx, _ = pad_right(seqs, "cpu")
    assert not torch.allclose(sharp_lobe(idx, score=True)[1][:, -1], want, atol=1e-3)


def test_distinct_rows_spread_back_give_the_copies_values_and_gradient(sharp_lobe):
    # a game's batch revisits positions: each distinct one runs once, its copies share the row
    seqs = [p + a for p, a in zip(PROMPTS, ANSWERS)]
    batch = [seqs[0], seqs[1], seqs[0], seqs[0]]
    keep, at = distinct(tuple(s) for s in batch)
    assert (keep, at) == ([0, 1], [0, 1, 0, 0])
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    got = spread(sharp_lobe.score([batch[i] for i in keep]), at)
    (got * w).sum().backward()
    g = sharp_lobe.score_head.weight.grad.clone()
    sharp_lobe.zero_grad()
    want = torch.stack([sharp_lobe.score([s])[0] for s in batch])  # one copy at a time
    (want * w).sum().backward()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    torch.testing.assert_close(g, sharp_lobe.score_head.weight.grad, rtol=0, atol=1e-5)
    assert spread(want, list(range(4))) is want                 # nothing repeated: as it is


def test_answer_scores_score_every_answer_prefix(sharp_lobe):
    scores, mask = answer_scores(sharp_lobe, PROMPTS, ANSWERS)
    for i, (p, a) in enumerate(zip(PROMPTS, ANSWERS)):
        want = sharp_lobe.score([p + a[:j + 1] for j in range(len(a))])
        torch.testing.assert_close(scores[i][mask[i] > 0], want, rtol=0, atol=1e-5)


# -----------------------------------------------------------------------------
# the score reads the lobe's surprise: head(h_t) + judge_weight * log p(answer so far)

def test_score_adds_judge_weight_times_the_log_likelihood_since_the_last_sep(sharp_lobe):
    # one prompt carries an earlier attempt and its valence: the sum restarts at each <|sep|>
    seqs = [p + a for p, a in zip(PROMPTS, ANSWERS)] + [prompt_ids("12+34", [("47", VALENCE[3])]) + answer_ids("46")]
    idx, _ = pad_right(seqs, "cpu")
    with torch.no_grad():
        sharp_lobe.judge_weight.fill_(0.0)
        _, head = sharp_lobe(idx, score=True)
        sharp_lobe.judge_weight.fill_(2.0)
        _, both = sharp_lobe(idx, score=True)
    for i, s in enumerate(seqs):                                       # the slow reference
        lp = F.log_softmax(sharp_lobe(torch.tensor([s]))[0][0].detach(), -1)   # row t predicts token t + 1
        want, total, seen = [], 0.0, False                             # 0 until the first <|sep|>
        for t, tok in enumerate(s):
            if tok == SEP:
                total, seen = 0.0, True
            elif seen:
                total += float(lp[t - 1, tok])
            want.append(total)
        torch.testing.assert_close((both - head)[i, :len(s)], 2 * torch.tensor(want), rtol=0, atol=1e-4)
    assert (both - head).abs().max() > 1                               # the control: the term is there


def test_a_soft_answer_is_judged_by_its_expected_log_likelihood_and_passes_gradients(sharp_lobe):
    prompt = prompt_ids("12+34")
    soft = torch.softmax(torch.randn(1, 3, sharp_lobe.cfg.vocab_size, generator=torch.Generator().manual_seed(0)), -1)
    soft.requires_grad_(True)
    p = torch.cat([F.one_hot(torch.tensor([prompt]), sharp_lobe.cfg.vocab_size).float(), soft], 1)
    with torch.no_grad():
        sharp_lobe.judge_weight.fill_(0.0)
        head = sharp_lobe(embeds=p @ sharp_lobe.wte.weight, score=True)[1][0, -1]
        sharp_lobe.judge_weight.fill_(1.0)
    logits, scores = sharp_lobe(embeds=p @ sharp_lobe.wte.weight, score=True)
    lq = F.log_softmax(logits[0], -1)                               # row t predicts token t + 1
    want = sum((soft[0, j] * lq[len(prompt) - 1 + j]).sum() for j in range(3))   # sum_t E_p[log q]
    torch.testing.assert_close(scores[0, -1] - head, want, rtol=0, atol=1e-4)
    scores[0, -1].backward()
    assert soft.grad.abs().sum() > 0
