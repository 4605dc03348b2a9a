"""
The lobe: one tiny GPT, the only architecture in this project. Every left lobe (generator, actor,
student) and every right lobe (discriminator, critic, teacher) is a `Lobe`.

    - pre-LN transformer blocks, causal attention through F.scaled_dot_product_attention,
      tied input/output embeddings, no dropout by default
    - two heads on the final hidden states:
        LM head     logits over the vocabulary            -> what a left lobe speaks
        score head  one logit per position; a sequence's  -> what a right lobe feels
                    score is the logit at its last real token, probability = sigmoid;
                    the logit adds the lobe's own log-likelihood of the answer (below)
    - soft tokens (paper eqs 3-4, lines 256-258): p = softmax(logits / tau) (soft_tokens), or its
      straight-through Gumbel sample, fed to a lobe as p @ W_E
    - batched generation with a KV cache, per-row <|eos|>, temperature and top-k, returning the
      tokens and their log-probs; and the teacher-forced log-probs of given answers (eq 1, SPIN,
      PPO), one forward pass for every script (teacher_forced)

Positions: rotary embeddings (RoPE, Su et al. 2021), applied to queries and keys from per-row
position ids. Attention then depends only on the distance between two tokens, so a head that
learned "look at the digit k places back" still works one digit past the training length;
learned absolute positions have no embedding at all for an unseen position and score 0% there.
Per-row position ids also make left-padded batches give exactly the unpadded result.

The score reads the lobe's surprise. A head on h_t alone cannot judge an answer it could write
itself: h_t is trained to compute token t+1, while judging token t needs what was computed at
t-1, i.e. log p(token t). So score_t = head(h_t) + judge_weight * log p(answer[:t] | prompt), the
summed log-prob of the tokens after the last <|sep|> (0 before any answer, e.g. a bare board);
judge_weight starts at 0 and is learned, so an untrained lobe judges with its head alone. With
tied embeddings
log p(token t) = h_{t-1} . x_t - logsumexp(logits_{t-1}) for the input embedding x_t, so a soft
token x = p @ W_E (eq 4) gets E_p[log p] from the same formula.

    >>> from lobes import Lobe, LobeConfig
    >>> left = Lobe(LobeConfig())
    >>> left.answer(["12+34"])   # untrained: junk, but batched, cached and stopped at <|eos|>
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from data.tokenizer import BOS, EOS, PAD, SEP, decode_answer, encode, vocab_size


@dataclass
class LobeConfig:
    n_layer: int = 3            # transformer blocks
    n_head: int = 4             # attention heads per block
    n_embd: int = 128           # width of the residual stream
    vocab_size: int = vocab_size  # 256 bytes + specials (data/tokenizer.py)
    dropout: float = 0.0        # off by default: PPO's ratio and SPIN's ln 2 start need it off
    rope_base: float = 10000.0  # RoPE frequency base


# -----------------------------------------------------------------------------
def rope_table(pos, head_dim, base):
    """RoPE's rotations e^(i pos theta_j), theta_j = base^(-2j/D), for positions pos (B or 1, T):
    a complex64 table (B or 1, 1, T, D/2). Computed once per forward pass and shared by every
    layer's queries and keys."""
    d = head_dim // 2
    theta = base ** (-torch.arange(d, device=pos.device, dtype=torch.float32) / d)
    ang = pos[:, None, :, None].float() * theta                # (B, 1, T, d)
    return torch.polar(torch.ones_like(ang), ang)


def rope(x, table):
    """Rotate each channel pair (2j, 2j + 1) of x (..., B, H, T, D), read as the complex number
    x_2j + i x_2j+1, by the angle of rope_table: one complex product (fp32 under autocast)."""
    z = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(z * table).flatten(-2).to(x.dtype)


class KVCache:
    """Keys and values of every layer for the tokens seen so far: (L, B, H, T_max, D) each, and
    which positions hold real tokens: valid (B, T_max), False for a prompt's left padding."""

    def __init__(self, cfg, batch, max_len, device, dtype, prompt_valid=None):
        shape = (cfg.n_layer, batch, cfg.n_head, max_len, cfg.n_embd // cfg.n_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.valid = torch.ones(batch, max_len, dtype=torch.bool, device=device)
        if prompt_valid is not None:
            self.valid[:, :prompt_valid.size(1)] = prompt_valid
        self.len = 0  # tokens already stored; advanced once per forward by Lobe.forward

    def update(self, layer, k, v):
        """Store this step's k, v (B, H, t, D) for one layer; return all keys/values so far."""
        t = k.size(2)
        self.k[layer, :, :, self.len:self.len + t] = k
        self.v[layer, :, :, self.len:self.len + t] = v
        return self.k[layer, :, :, :self.len + t], self.v[layer, :, :, :self.len + t]


def attention_mask(valid, start, T):
    """(B, 1, T, S) boolean mask for queries at positions start .. start + T - 1 over the keys
    0 .. S - 1 = start + T - 1: causal, and only keys that are valid (B, >= S). A query always
    sees itself, so a pad's row is never all -inf (no NaN). One new token (T = 1, a decoding
    step) has every stored key in its past: the mask is the valid keys alone."""
    S = start + T
    if T == 1:
        return valid[:, None, None, :S]
    q_at = torch.arange(start, S, device=valid.device)[:, None]
    k_at = torch.arange(S, device=valid.device)[None, :]
    return (((k_at <= q_at) & valid[:, None, :S]) | (k_at == q_at))[:, None]


class Attention(nn.Module):

    def __init__(self, cfg, layer):
        super().__init__()
        self.n_head, self.layer, self.cfg = cfg.n_head, layer, cfg
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x, rot, mask, cache):
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        (q, k), v = rope(qkv[:2], rot), qkv[2]     # queries and keys in one rotation: (B, H, T, D)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)                                    # (B, H, S, D)
        drop = self.cfg.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                           dropout_p=drop)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):

    def __init__(self, cfg, layer):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.attn = Attention(cfg, layer)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(),
                                 nn.Linear(4 * cfg.n_embd, cfg.n_embd),
                                 nn.Dropout(cfg.dropout) if cfg.dropout else nn.Identity())

    def forward(self, x, rot, mask, cache):
        """rot: rope_table of the positions; mask: None (causal) or (B, 1, T, S)."""
        x = x + self.attn(self.ln1(x), rot, mask, cache)  # pre-LN: normalise, transform, add
        return x + self.mlp(self.ln2(x))


# -----------------------------------------------------------------------------
def sample(logits):
    """One token per row from softmax(logits). Logits that are nan or inf mean the weights have
    diverged: a FloatingPointError, which a script's run() prints as one line (exit 1)."""
    try:
        return torch.multinomial(F.softmax(logits, dim=-1), 1).squeeze(1)
    except RuntimeError as e:  # "probability tensor contains either inf, nan or element < 0"
        raise FloatingPointError(f"a lobe's logits are nan or inf: it diverged ({e})") from None


class Lobe(nn.Module):

    def __init__(self, cfg: LobeConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)   # W_E: also the LM head (tied)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.score_head = nn.Linear(cfg.n_embd, 1)            # the right lobe's "feeling"
        self.judge_weight = nn.Parameter(torch.zeros(()))     # ... plus this times its surprise
        self.apply(self._init)
        for n, p in self.named_parameters():                  # GPT-2: scale residual projections
            if n.endswith("proj.weight") or n.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def num_params(self):
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx=None, embeds=None, pos=None, key_valid=None, cache=None, score=False):
        """Token ids idx (B, T) or input embeddings embeds (B, T, C) -> logits (B, T, V), scores.

        Right-padded batches need no mask (causal attention never looks right). Left-padded ones
        pass key_valid (B, T): False for pads (with a cache: KVCache's prompt_valid); pos (B, T)
        gives each token's position in its row.
        scores (B, T) are computed only when asked (score=True: a right lobe judging), else None:
        a left lobe's LM step and generation never pay for them. They read the whole sequence
        (answer_logprob), so a cached forward cannot give them.
        """
        x = x0 = self.wte(idx) if embeds is None else embeds            # (B, T, C)
        T = x.size(1)
        start = cache.len if cache is not None else 0
        if pos is None:  # (1, T): every row shares one RoPE table, broadcast rather than copied
            pos = torch.arange(start, start + T, device=x.device)[None]
        valid = cache.valid if cache is not None else key_valid
        mask = None if valid is None else attention_mask(valid, start, T)  # None: plain causal
        rot = rope_table(pos, self.cfg.n_embd // self.cfg.n_head, self.cfg.rope_base)
        for block in self.blocks:
            x = block(x, rot, mask, cache)
        if cache is not None:
            cache.len += T
        h = self.ln_f(x)
        logits = h @ self.wte.weight.T                                  # (B, T, V) tied LM head
        if not score:
            return logits, None
        if cache is not None:
            raise ValueError("scores read the whole sequence: ask for them without a KV cache")
        surprise = self.answer_logprob(x0, h, logits)                   # (B, T)
        return logits, self.score_head(h).squeeze(-1) + self.judge_weight * surprise

    def answer_logprob(self, x0, h, logits):
        """log p(tokens after the last <|sep|>, up to t | everything before them) at each t: (B, T).
        x0 (B, T, C) are the input embeddings, h and logits the final states and LM logits."""
        # log p(x_t | x_<t) = logit_{t-1}(x_t) - logsumexp(logits_{t-1}), fp32 even under autocast
        lp = (h[:, :-1] * x0[:, 1:]).float().sum(-1) - logits[:, :-1].float().logsumexp(-1)
        total = F.pad(lp, (1, 0)).cumsum(1)                                  # (B, T), from t = 0
        sep = (x0 == self.wte.weight[SEP].to(x0.dtype)).all(-1)              # hard <|sep|> tokens
        at = torch.arange(sep.size(1), device=sep.device)
        last_sep = torch.where(sep, at, 0).cummax(1).values                  # (B, T)
        return torch.where(sep.cumsum(1) > 0, total - total.gather(1, last_sep), 0.0)

    # ---- scores --------------------------------------------------------------
    def score(self, seqs):
        """The score logit of each sequence (a list of token lists) at its last token: (B,)."""
        idx, lengths = pad_right(seqs, self.wte.weight.device)
        _, scores = self(idx, score=True)
        return scores.gather(1, (lengths - 1)[:, None]).squeeze(1)

    # ---- generation ----------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompts, max_new_tokens, temperature=0.0, top_k=None):
        """Continue each prompt (a list of token lists) until <|eos|> or max_new_tokens.

        temperature: a float or a (B,) tensor; 0 means greedy for that row. Returns tokens (B, N)
        padded with <|pad|> after each row's <|eos|>, and their log-probs (B, N) under the
        temperature-scaled distribution without top-k (greedy rows: temperature 1), 0 after eos.
        """
        dev = self.wte.weight.device
        B, Tp = len(prompts), max(len(p) for p in prompts)
        idx = torch.tensor([[PAD] * (Tp - len(p)) + list(p) for p in prompts], device=dev)
        lengths = torch.tensor([len(p) for p in prompts], device=dev)
        key_valid = torch.arange(Tp, device=dev)[None, :] >= Tp - lengths[:, None]  # left-padded
        pos = (key_valid.long().cumsum(1) - 1).clamp(min=0)
        temp = torch.as_tensor(temperature, dtype=torch.float32, device=dev).expand(B)
        greedy = temp == 0
        samples = not greedy.all()    # draw random numbers only if a row samples (exact resume)
        scale = torch.where(greedy, 1.0, temp)[:, None]                   # greedy rows: T = 1
        cache = KVCache(self.cfg, B, Tp + max_new_tokens, dev, self.wte.weight.dtype, key_valid)
        logits, _ = self(idx, pos=pos, cache=cache)
        tokens = torch.full((B, max_new_tokens), PAD, dtype=torch.long, device=dev)
        logps = torch.zeros(B, max_new_tokens, device=dev)
        done = torch.zeros(B, dtype=torch.bool, device=dev)
        for t in range(max_new_tokens):
            logit = logits[:, -1].float() / scale                              # (B, V)
            logp = F.log_softmax(logit, dim=-1)
            if top_k is not None:
                kth = logit.topk(top_k, dim=-1).values[:, -1:]
                logit = logit.masked_fill(logit < kth, -math.inf)
            nxt = logp.argmax(-1)
            if samples:
                drawn = sample(logit)
                nxt = torch.where(greedy, nxt, drawn)
            nxt = torch.where(done, PAD, nxt)
            tokens[:, t] = nxt
            logps[:, t] = torch.where(done, 0.0, logp.gather(1, nxt[:, None]).squeeze(1))
            done |= nxt == EOS
            if done.all():
                return tokens[:, :t + 1], logps[:, :t + 1]
            pos = pos[:, -1:] + 1
            logits, _ = self(nxt[:, None], pos=pos, cache=cache)
        return tokens, logps

    @torch.no_grad()
    def answer(self, prompts, max_new_tokens=32, temperature=0.0):
        """Plain-text prompts in, plain-text answers out (a convenience for eval and play)."""
        tokens, _ = self.generate([prompt_ids(p) for p in prompts], max_new_tokens, temperature)
        return [decode_answer(row) for row in tokens.tolist()]


# -----------------------------------------------------------------------------
# Soft tokens (eqs 3-4, lines 256-258): a token as a distribution p over the vocabulary, which a
# lobe reads as p @ W_E (its own embedding table) through forward(embeds=...)
def soft_tokens(logits, tau, hard=True):
    """Eq 3: p = softmax(logits / tau) (hard=False), or straight-through Gumbel (hard=True): the
    forward value is EXACTLY the one-hot of argmax(logits + Gumbel noise), a sample from
    softmax(logits), and the backward pass is that of softmax((logits + noise) / tau).
    onehot + (soft - soft.detach()) is exact since x - x == 0 in floating point; F.gumbel_softmax's
    onehot - soft.detach() + soft is not (it can be 1 - 1 ulp). logits (..., V) -> p (..., V)."""
    if not hard:
        return F.softmax(logits.float() / tau, dim=-1)
    noise = -torch.empty_like(logits, dtype=torch.float32).exponential_().log()   # Gumbel(0, 1)
    soft = F.softmax((logits.float() + noise) / tau, dim=-1)
    onehot = F.one_hot(soft.argmax(-1), soft.size(-1)).to(soft.dtype)
    return onehot + (soft - soft.detach())


# -----------------------------------------------------------------------------
# Sequence layout and batching: <|bos|> prompt <|sep|> [attempt <|vK|> <|sep|>]* answer <|eos|>
def prompt_ids(prompt, feedback=()):
    """A prompt's tokens, followed by any (attempt, valence token) pairs of earlier IDL loops."""
    ids = [BOS] + encode(prompt) + [SEP]
    for attempt, valence in feedback:
        ids += encode(attempt) + [valence, SEP]
    return ids


def answer_ids(answer):
    return encode(answer) + [EOS]


def pad_right(seqs, device):
    """A list of token lists -> idx (B, T) padded with <|pad|> on the right, lengths (B,)."""
    T = max(len(s) for s in seqs)
    idx = torch.tensor([s + [PAD] * (T - len(s)) for s in seqs], dtype=torch.long, device=device)
    return idx, torch.tensor([len(s) for s in seqs], device=device)


def distinct(keys):
    """Where each distinct key (hashable) first occurs, and for every key which of those it is:
    where a batch repeats itself (a game's positions), one forward pass per copy is waste."""
    keys, first = list(keys), {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    which = {k: j for j, k in enumerate(first)}
    return list(first.values()), [which[k] for k in keys]


def spread(x, at):
    """Rows of x, one per distinct sequence, back to one per sequence (distinct's `at`). Indexing
    sums the copies' gradients, so a loss on the result learns as it would from the copies."""
    return x if len(at) == x.size(0) else x[torch.tensor(at, dtype=torch.long, device=x.device)]


def span_mask(starts, lengths, T, device):
    """(B, T) float mask, 1 on positions starts[i] .. starts[i] + lengths[i] - 1 of each row."""
    at = torch.arange(T, device=device)[None, :]
    s = torch.tensor(starts, device=device)[:, None]
    n = torch.tensor(lengths, device=device)[:, None]
    return ((at >= s) & (at < s + n)).float()


def teacher_forced(model, prompts, answers):
    """One teacher-forced pass over prompt + answer token lists, the forward pass of eq 1, PPO's
    ratio (eq 8) and SPIN's log-likelihoods: logits (B, T, V), where position t predicts token
    t + 1, the tokens it predicts (B, T), and mask (B, T), 1 exactly on answer tokens."""
    dev = model.wte.weight.device
    idx, _ = pad_right([p + a for p, a in zip(prompts, answers)], dev)
    logits, _ = model(idx[:, :-1])
    mask = span_mask([len(p) - 1 for p in prompts], [len(a) for a in answers], idx.size(1) - 1, dev)
    return logits, idx[:, 1:], mask


def answer_logprobs(model, prompts, answers, temperature=1.0):
    """Per-token log-probs of given answers after given prompts (token lists), under
    softmax(logits / temperature): logp (B, T), 0 off the answer tokens, the mask (B, T) and the
    full log-distribution (B, T, V) (eq 2's KL reads it). sum(-1) of logp is log p_theta(y | x)."""
    logits, targets, mask = teacher_forced(model, prompts, answers)
    full = F.log_softmax(logits.float() / temperature, dim=-1)
    return full.gather(2, targets[..., None]).squeeze(2) * mask, mask, full


def sequence_logprob(model, prompts, answers, temperature=1.0):
    """log p_theta(answer | prompt) summed over answer tokens: (B,)."""
    return answer_logprobs(model, prompts, answers, temperature)[0].sum(1)


def answer_scores(model, prompts, answers):
    """The score logit after each answer token, i.e. of every answer prefix: (B, T), mask (B, T).

    A right lobe judges prompt + answer[:j+1] at the position of answer token j; the last one
    (after <|eos|>) is the whole answer's score. One forward pass scores every prefix (§5.5).
    """
    dev = model.wte.weight.device
    idx, _ = pad_right([p + a for p, a in zip(prompts, answers)], dev)
    _, scores = model(idx, score=True)
    mask = span_mask([len(p) for p in prompts], [len(a) for a in answers], scores.size(1), dev)
    return scores * mask, mask
