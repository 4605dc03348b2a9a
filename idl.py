"""
The Inner Dialogue Loop (IDL): two lobes talk until a stopping rule fires, then one answers.

Lateralized (paper Figure 5, Algorithm 2 lines 4-19, eq 6):

    for loop = 1 .. idl_limit:
        x_left  = left(x)                       # Alg 2 lines 6-13: the left lobe answers
        y_right = sigmoid(right(prompt + x_left))  # line 14: the right lobe scores the answer
        if y_right >= threshold: stop           # lines 15-16: accepted
        x = prompt + x_left + <|v y_right|>     # line 18 / eq 6: try again with the feedback

The context keeps the last attempt only, as eq 6 and Alg 3 line 7 write it (Alg 2 line 18
would grow it every loop); the feedback is the right lobe's probability quantised to a valence
token <|v0|>..<|v9|>, which is what train_sft.py teaches the left lobe to read.

Tall (Figure 3): both lobes generate; each one's input is the prompt plus the other's last
answer; they stop when their answers agree.

On a game's move (critic_moves; train_games.py's F and play.py's): the left lobe proposes moves,
the right lobe, a value of positions, scores the position each one leads to, and the first it
scores >= threshold is played, else the best-scored of idl_limit.

Differentiable (§5.1 eqs 3-4, §5.2 eqs 5-6; soft_lateralized, used by train_gan.py and bench.py):
the lateralized loop on soft tokens with no stopping rule, so D's score of the last answer
backpropagates through every loop (full BPTT), through the last m only (truncated BPTT), or with
each lobe pass recomputed in backward (activation checkpointing).

Both are batched: every row stops on its own, a stopped row is never run again, and the loop
ends when all rows have stopped. The Dialogue record keeps every attempt and score, the loops
each row used (adaptive compute), the stop reason and the final answer.

    $ python play.py --task=addition --prompt="48213+9924"     # watch one dialogue
"""
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from data.tokenizer import EOS, LEFT, RIGHT, SEP, VALENCE, decode_answer, valence_token, vocab_size
from lobes import answer_ids, distinct, prompt_ids, soft_tokens, spread


@dataclass
class Dialogue:
    prompts: list                                    # the B prompts (text)
    attempts: list = field(init=False)        # attempts[i]: row i's answers, one per loop
    contexts: list = field(init=False)        # contexts[i]: what the speaker read, one per loop
    scores: list = field(init=False)          # scores[i]: the right lobe's p of each attempt
    tokens: list = field(init=False)          # tokens[i]: generated token ids of each attempt
    loops: list = field(init=False)           # loops row i ran
    stop: list = field(init=False)            # "accepted" | "agreed" | "limit"
    final: list = field(init=False)           # the answer given to the outside world
    forward_passes: list = field(init=False)  # per row: lobe forward passes spent

    def __post_init__(self):
        B = len(self.prompts)
        self.attempts, self.contexts = [[] for _ in range(B)], [[] for _ in range(B)]
        self.scores, self.tokens = [[] for _ in range(B)], [[] for _ in range(B)]
        self.loops, self.stop, self.final = [0] * B, [""] * B, [""] * B
        self.forward_passes = [0] * B


def _temperature(temperature, loop):
    """A float for every loop, or a list with one temperature per loop (SPIN samples at several)."""
    return temperature[loop] if isinstance(temperature, (list, tuple)) else temperature


def speak(lobe, contexts, max_new_tokens, temperature):
    """One batched generation: token lists in; answers, token lists, forward passes per row out."""
    tokens, _ = lobe.generate(contexts, max_new_tokens, temperature)
    # cut each row after its <|eos|> (generate pads from there); a <|pad|> the lobe sampled itself
    # stays: it is part of what was said, and log-prob bookkeeping (PPO) must see it
    rows = [row[:row.index(EOS) + 1] if EOS in row else row for row in tokens.tolist()]
    # one forward pass per generated token (the prompt's prefill is one more)
    return [decode_answer(r) for r in rows], rows, [len(r) + 1 for r in rows]


@torch.no_grad()
def lateralized(left, right, prompts, idl_limit=4, threshold=0.5, temperature=0.0,
                max_new_tokens=16, feedback=True):
    """Algorithm 2 lines 4-19, batched: the left lobe answers until the right lobe is satisfied.

    Each loop the rows still active speak once (temperature: a float, or a list with one per
    loop), the right lobe scores prompt + answer, and a row whose probability reaches threshold
    stops with that answer ("accepted"); the others read prompt + their last attempt + its
    valence token (eq 6: the last attempt only) and try again. A row still active after
    idl_limit loops answers its best-scored attempt ("limit"). forward_passes counts, per row,
    every generated token plus one prefill per attempt and one scoring pass.
    threshold=None never accepts: every row runs all idl_limit loops (SPIN's self-play).
    feedback=False cuts eq 6's channel: a rejected row tries again from the prompt alone, so the
    right lobe only chooses when to stop (sln.Sampled's retry@k, the ablation of the feedback)."""
    d = Dialogue(list(prompts))
    heard = [[] for _ in prompts]
    active = list(range(len(prompts)))
    for loop in range(idl_limit):
        if not active:
            break
        # LOOP LOGIC: Alg 2 lines 6-13, the left lobe answers x (prompt [+ attempt + valence])
        contexts = [prompt_ids(prompts[i], heard[i]) for i in active]
        temp = _temperature(temperature, loop)
        answers, rows, passes = speak(left, contexts, max_new_tokens, temp)
        # LOOP LOGIC: Alg 2 line 14, the right lobe scores prompt + answer in one pass
        judged = [prompt_ids(prompts[i]) + answer_ids(a) for i, a in zip(active, answers)]
        p = torch.sigmoid(right.score(judged)).tolist()
        still = []
        for i, c, a, r, n, pi in zip(active, contexts, answers, rows, passes, p):
            d.attempts[i].append(a), d.contexts[i].append(c)
            d.scores[i].append(pi), d.tokens[i].append(r)
            d.loops[i], d.forward_passes[i] = loop + 1, d.forward_passes[i] + n + 1
            if threshold is not None and pi >= threshold:   # Alg 2 lines 15-16: accepted, stop
                d.stop[i], d.final[i] = "accepted", a
            else:                                           # Alg 2 line 18 / eq 6: feed it back
                heard[i] = [(a, valence_token(pi))] if feedback else []
                still.append(i)
        active = still
    for i in active:                                  # idl_limit reached: answer the best-scored
        best = max(range(len(d.scores[i])), key=lambda j: d.scores[i][j])
        d.stop[i], d.final[i] = "limit", d.attempts[i][best]
    return d


@torch.no_grad()
def tall(left, right, prompts, idl_limit=4, temperature=0.0, max_new_tokens=16):
    """Figure 3: both lobes answer; each then reads the other's last answer; stop on agreement.

    Role tokens mark who said what: the left lobe reads  prompt <sep> right's answer <|right|> <sep>
    and the right lobe reads  prompt <sep> left's answer <|left|> <sep>. Scores stay empty.
    """
    d = Dialogue(list(prompts))
    last_left, last_right = [None] * len(prompts), [None] * len(prompts)
    active = list(range(len(prompts)))
    for loop in range(idl_limit):
        if not active:
            break
        t = _temperature(temperature, loop)
        ctx_l = [prompt_ids(prompts[i], [(last_right[i], RIGHT)] if loop else []) for i in active]
        ctx_r = [prompt_ids(prompts[i], [(last_left[i], LEFT)] if loop else []) for i in active]
        a_l, rows_l, n_l = speak(left, ctx_l, max_new_tokens, t)     # LOOP LOGIC: both lobes speak
        a_r, _, n_r = speak(right, ctx_r, max_new_tokens, t)
        still = []
        for i, c, al, ar, r, nl, nr in zip(active, ctx_l, a_l, a_r, rows_l, n_l, n_r):
            d.attempts[i].append(al), d.contexts[i].append(c), d.tokens[i].append(r)
            last_left[i], last_right[i] = al, ar
            d.loops[i], d.forward_passes[i] = loop + 1, d.forward_passes[i] + nl + nr
            if al == ar:                              # LOOP LOGIC: the lobes agree, this row stops
                d.stop[i], d.final[i] = "agreed", al
            else:
                still.append(i)
        active = still
    for i in active:
        d.stop[i], d.final[i] = "limit", last_left[i]
    return d


# -----------------------------------------------------------------------------
# The lateralized IDL on a game's move (train_games.py, play.py): the left lobe proposes a move,
# the right lobe, a value V of positions for the side to move (the board seen from its side),
# scores the position the move leads to by one TD step. `game` is a module of games/ with a
# learner's interface: learner_prompt(board), result(board, text), PLAYERS, MOVE_TOKENS, and
# move_reward where a move earns a reward before the outcome (gridworld).
def board_ids(game, board):
    """<|bos|> what the lobe sees of the board <|sep|>: tic-tac-toe from the mover's side (its
    own marks are x, so both seats share what they learn) up to symmetry, gridworld around the
    agent."""
    return prompt_ids(game.learner_prompt(board))


def board_scores(game, right, boards):
    """The critic's score logit of each board (B,), each distinct prompt computed once: a batch
    of games revisits positions (tic-tac-toe: ~1,160 positions a move away, ~440 classes up to
    symmetry), and copies share a score and sum their gradients (lobes.distinct, spread)."""
    seqs = [board_ids(game, b) for b in boards]
    keep, at = distinct(tuple(s) for s in seqs)
    return spread(right.score([seqs[i] for i in keep]), at)


@torch.no_grad()
def move_values(game, right, boards, texts, gamma=1.0):
    """Q(s, a) of the move `text` on each board by one step of TD with the critic's own V (the
    NOTE after eq 8): the mover's result in [-1, 1] if the move ends the game (game.result), -1
    if it is illegal (a forfeit), else r - gamma V(next), the opponent then to move (one player:
    r + gamma V(next)), r the game's move_reward (0 without one), clipped to [-1, 1]."""
    q, ask, move_reward = torch.zeros(len(boards)), [], getattr(game, "move_reward", None)
    for i, (b, text) in enumerate(zip(boards, texts)):
        nxt, final = game.result(b, text)
        if final is not None:
            q[i] = 2 * final - 1
        elif nxt is not None:
            ask.append((i, nxt))
            q[i] = move_reward(b, text) if move_reward else 0.0
    if ask:
        v = 2 * torch.sigmoid(board_scores(game, right, [b for _, b in ask])).cpu() - 1
        q[[i for i, _ in ask]] += (-gamma if game.PLAYERS == 2 else gamma) * v
    return q.clamp(-1.0, 1.0)


def move_scores(game, right, boards, texts, gamma=1.0):
    """The critic's expected score (win 1, draw 1/2, loss 0) of each move, (Q + 1) / 2 of
    move_values (undiscounted unless gamma < 1): the final result if the move ends the game, 0 if
    it is illegal, else sigma(V logit of the position after it) for the side then to move (1 -
    that in a two-player game, where it is the opponent)."""
    return (move_values(game, right, boards, texts, gamma) + 1) / 2


@torch.no_grad()
def critic_moves(game, left, right, boards, idl_limit, threshold=0.5, seed=0):
    """The lateralized IDL on a move (Alg 2 lines 4-19): the left lobe proposes (greedy first,
    then samples at temperature 1), the right lobe scores the move by the position it leads to
    (move_scores), and the first move it scores >= threshold is played; after idl_limit attempts,
    the best-scored one. Sampling is seeded, so a board always gets the same move. Returns the
    move texts and the attempts each board took."""
    texts, best = [None] * len(boards), [-1.0] * len(boards)
    attempts, active = [0] * len(boards), list(range(len(boards)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for loop in range(idl_limit):
            if not active:
                break
            said = left.answer([game.learner_prompt(boards[i]) for i in active],
                               game.MOVE_TOKENS, 0.0 if loop == 0 else 1.0)
            scores = move_scores(game, right, [boards[i] for i in active], said).tolist()
            still = []
            for i, t, p in zip(active, said, scores):
                attempts[i] += 1
                if p > best[i]:
                    texts[i], best[i] = t, p
                if p < threshold:
                    still.append(i)
            active = still
    return texts, attempts


# -----------------------------------------------------------------------------
# The differentiable dialogue (§5.1 eqs 3-4 [252-258], §5.2 eqs 5-6 [276, 297-303]): the
# lateralized loop on soft tokens, so D's judgement of G's answer backpropagates into G. Every
# token is a distribution over the vocabulary, (B, T, V): the prompt one-hot, G's answer soft or
# straight-through one-hot, the valence token straight-through (lobes.soft_tokens, eq 3). Each
# lobe embeds a distribution p with its OWN table, p @ W_E (eq 4), so G's input and D's input are
# the same sample seen through different embeddings.
def one_hot_context(seqs, device):
    """Token lists -> left-padded one-hot distributions (B, T, V) and key_valid (B, T)."""
    T = max(len(s) for s in seqs)
    ctx = torch.zeros(len(seqs), T, vocab_size, device=device)
    valid = torch.zeros(len(seqs), T, dtype=torch.bool, device=device)
    for i, s in enumerate(seqs):
        ctx[i, torch.arange(T - len(s), T), torch.tensor(s, dtype=torch.long)] = 1.0
        valid[i, T - len(s):] = True
    return ctx, valid


def lobe_forward(lobe, emb, valid, remat=False):
    """(logits, scores) of a lobe on input embeddings with key_valid; pads take no position.
    remat: activation checkpointing, only the inputs are kept and the pass is re-run in backward."""
    def fwd(emb, valid):
        pos = (valid.long().cumsum(1) - 1).clamp(min=0)
        return lobe(embeds=emb, pos=pos, key_valid=valid, score=True)
    if remat and torch.is_grad_enabled():
        return checkpoint(fwd, emb, valid, use_reentrant=False)
    return fwd(emb, valid)


def soft_answer(left, ctx, valid, n_tokens, tau, hard=True, remat=False):
    """Eq 5, G(x) = V * LLM(x): n_tokens soft tokens after the context (B, T, V), each one fed
    back as p @ W_E (eqs 3-4). No KV cache (it writes in place, which autograd cannot
    differentiate): step t re-runs the context plus t tokens, the m1 forward passes of §5.2
    [303]."""
    emb = ctx @ left.wte.weight                                                      # (B, T, C)
    on = torch.ones(valid.size(0), 1, dtype=torch.bool, device=valid.device)
    probs = []
    for _ in range(n_tokens):
        logits, _ = lobe_forward(left, emb, valid, remat)
        p = soft_tokens(logits[:, -1], tau, hard)                                     # (B, V)
        probs.append(p)
        emb, valid = torch.cat([emb, (p @ left.wte.weight)[:, None]], 1), torch.cat([valid, on], 1)
    return torch.stack(probs, 1)                                                     # (B, n, V)


def first_eos(answer):
    """Index of each row's first <|eos|> (by argmax) in an answer (B, n, V), else n: (B,)."""
    n = answer.size(1)
    at = torch.arange(n, device=answer.device)
    return torch.where(answer.argmax(-1) == EOS, at, n).min(1).values


def answer_end(answer):
    """The position D reads an answer's score at: its first <|eos|>, else its last token: (B,)."""
    return first_eos(answer).clamp(max=answer.size(1) - 1)


def soft_score(right, ctx, valid, answer, remat=False):
    """D's score logit of context + answer, both distributions embedded with D's own W_E, read at
    the answer's <|eos|> as Lobe.score reads a sequence's last token: (B,)."""
    x = torch.cat([ctx, answer], 1) @ right.wte.weight                      # (B, T + n, C)
    v = torch.cat([valid, torch.ones(answer.shape[:2], dtype=torch.bool, device=valid.device)], 1)
    _, scores = lobe_forward(right, x, v, remat)
    return scores.gather(1, (ctx.size(1) + answer_end(answer))[:, None]).squeeze(1)


def soft_valence(score):
    """D's probability as a valence token (B, V), straight-through: forward exactly the one-hot of
    valence_token(sigmoid(score)), the token the left lobe learned to read in SFT; backward the
    gradient of a tent mix of the two nearest bins, w_k = max(0, 1 - |10 p - (k + 0.5)|), so G's
    loss reaches D's score (and through it G's earlier attempt) without an unseen soft input."""
    p = torch.sigmoid(score.float())[:, None]                                           # (B, 1)
    centres = torch.arange(10, device=score.device) + 0.5
    tent = (1 - (10 * p - centres).abs()).clamp(min=0)                                  # (B, 10)
    hard = F.one_hot((10 * p).long().clamp(0, 9).squeeze(1), 10).float()
    bins = hard + (tent - tent.detach())
    out = torch.zeros(score.size(0), vocab_size, device=score.device)
    return out.index_add(1, torch.tensor(VALENCE, device=score.device), bins)


def feedback_context(prompt, valid, answer, score):
    """Eq 6: x <- concat(x_prompt, G(x), D(G(x))) as prompt + attempt + valence + <|sep|>, the
    layout of lobes.prompt_ids: the attempt's <|eos|> and anything after it are masked out
    (key_valid False, no position), so the left lobe reads exactly the dialogue SFT taught it."""
    B, n = answer.shape[:2]
    keep = torch.arange(n, device=answer.device)[None, :] < first_eos(answer)[:, None]      # (B, n)
    sep = F.one_hot(torch.full((B, 1), SEP, device=answer.device), vocab_size).float()
    ctx = torch.cat([prompt, answer, soft_valence(score)[:, None], sep], 1)
    on = torch.ones(B, 2, dtype=torch.bool, device=valid.device)
    return ctx, torch.cat([valid, keep, on], 1)


@dataclass
class SoftDialogue:
    answers: list  # answers[k]: G's answer of loop k, (B, n, V) distributions (one-hot if hard)
    scores: list   # scores[k]: D's score logit of prompt + answers[k], (B,)


def soft_lateralized(left, right, prompts, n_tokens, idl_limit=1, tau=1.0, hard=True, window=0,
                     remat=False):
    """The lateralized loop on soft tokens (eq 6), every loop differentiable:

        for k = 1 .. idl_limit:
            y_k = G(x) (eq 5);  s_k = D(x_prompt, y_k);  x <- concat(x_prompt, y_k, v(s_k))

    prompts: token lists. No stopping rule: every row runs idl_limit loops (training needs all).
    window = 0: full BPTT, a loss on any loop reaches every earlier loop through the context.
    window = m: truncated BPTT over the last m loops: the loops before run without a graph
      (torch.no_grad), so the window's first context is a constant and they get zero gradient.
    remat = True: activation checkpointing of every lobe forward pass (each of G's m1 token steps
      and D's pass): only their inputs are kept, each pass is re-run in backward, so at most one
      pass's activations are alive at a time. Gradients equal full BPTT's.
    """
    dev = left.wte.weight.device
    prompt, valid = one_hot_context(prompts, dev)
    ctx, v = prompt, valid
    d = SoftDialogue([], [])
    for k in range(idl_limit):
        grad = torch.is_grad_enabled() and (not window or k >= idl_limit - window)
        with torch.set_grad_enabled(grad):
            answer = soft_answer(left, ctx, v, n_tokens, tau, hard, remat)
            score = soft_score(right, prompt, valid, answer, remat)
            d.answers.append(answer), d.scores.append(score)
            if k + 1 < idl_limit:     # LOOP LOGIC: eq 6, the answer and D's valence go back in
                ctx, v = feedback_context(prompt, valid, answer, score)
    return d
