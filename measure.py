"""
Measuring systems: exact match on a split, the compute spent per answer, the splits every script
evaluates on. The one evaluation harness of the training scripts, evaluate.py and play.py.

    >>> from measure import evaluate_system
    >>> evaluate_system(system, task, task.dataset("test", 100, seed=0))
    {'acc': ..., 'loops': ..., 'passes': ..., 'tokens': ...}

judge() measures the right lobe as a judge of the left lobe's own answers: what bounds an IDL.
"""
import dataclasses
from typing import NamedTuple

import torch

from ranks import shard, total
from data.tokenizer import decode_answer
from lobes import answer_ids, prompt_ids
from sln import SAMPLE_TEMPERATURE, System


def eval_splits(cfg, task):
    """The test and ood problems, and cfg with max_new_tokens filled in (0: longest ood answer
    + 4)."""
    test = task.dataset("test", cfg.n_eval, cfg.seed)
    ood = task.dataset("ood", cfg.n_eval, cfg.seed)
    if not cfg.max_new_tokens:
        cfg = dataclasses.replace(cfg, max_new_tokens=max(len(answer_ids(a)) for _, a in ood) + 4)
    return cfg, test, ood


@torch.no_grad()
def evaluate_pair(left, right, task, test, ood, idl_limit, threshold, max_new_tokens):
    """Exact match of F (the lateralized IDL, greedy) and A (the left lobe alone) on test and ood,
    with F's mean loops: {'F_test', 'A_test', 'loops_test', ... 'ood'}. Leaves both lobes in train
    mode."""
    left.eval(), right.eval()
    lateral = System("F", left, right, idl_limit=idl_limit, threshold=threshold)
    single = System("A", left)
    r = {}
    for name, pairs in (("test", test), ("ood", ood)):
        f = evaluate_system(lateral, task, pairs, max_new_tokens)
        a = evaluate_system(single, task, pairs, max_new_tokens)
        r.update({f"F_{name}": f["acc"], f"A_{name}": a["acc"], f"loops_{name}": f["loops"]})
    left.train(), right.train()
    return r


@torch.no_grad()
def evaluate_system(system, task, pairs, max_new_tokens=16, batch=512):
    """Exact match of a system on (prompt, answer) pairs, with its mean loops, forward passes and
    generated tokens per answer (every attempt counted). Under torchrun each rank answers its
    share of pairs (common.shard) and the counts are summed over the ranks."""
    n = max(1, len(pairs))
    pairs = shard(pairs)
    hits, loops, passes, tokens = [], [], [], []
    for i in range(0, len(pairs), batch):
        chunk = pairs[i:i + batch]
        d = system.answer([p for p, _ in chunk], max_new_tokens)
        hits += [task.check(p, f) for (p, _), f in zip(chunk, d.final)]
        loops += d.loops
        passes += d.forward_passes
        tokens += [sum(map(len, rows)) for rows in d.tokens]
    sums = total(torch.tensor([sum(hits), sum(loops), sum(passes), sum(tokens)],
                              dtype=torch.float64)).tolist()
    return dict(zip(("acc", "loops", "passes", "tokens"), (s / n for s in sums)))


JUDGE_K = 4  # samples per problem for judge()


@torch.no_grad()
def judge(left, right, task, pairs, k=JUDGE_K, temperature=SAMPLE_TEMPERATURE,
          max_new_tokens=16):
    """The right lobe judging the left lobe's own answers, the ones it meets in the IDL: k samples
    per prompt, each labelled by the checker, called right when the right lobe's p >= 0.5.
    Returns its accuracy, what always giving the commoner verdict scores (judge_base), and the
    balanced accuracy (the mean of its accuracy on right and on wrong samples): F can gain only
    where this judge is better than chance."""
    many = [p for p, _ in pairs for _ in range(k)]
    tokens, _ = left.generate([prompt_ids(p) for p in many], max_new_tokens, temperature)
    answers = [decode_answer(t) for t in tokens.tolist()]
    ok = torch.tensor([task.check(p, a) for p, a in zip(many, answers)]) > 0
    said = right.score([prompt_ids(p) + answer_ids(a) for p, a in zip(many, answers)]).cpu() >= 0
    hit = (said == ok).float()
    per_class = [hit[ok == c].mean().item() for c in (True, False) if (ok == c).any()]
    right = ok.float().mean().item()
    return dict(judge=hit.mean().item(), judge_base=max(right, 1 - right),
                judge_balanced=sum(per_class) / len(per_class))


class LengthRow(NamedTuple):
    length: int   # prompt length (parity: the number of bits)
    n: int        # problems of that length
    acc: float    # exact match
    loops: float  # mean loops


class BucketRow(NamedTuple):
    lo: int       # the bucket's shortest prompt length
    hi: int       # ... and its longest, inclusive
    n: int
    acc: float
    loops: float


@torch.no_grad()
def by_length(system, task, pairs, max_new_tokens=16):
    """evaluate_system per prompt length: [LengthRow], shortest first."""
    groups = {}
    for p, a in pairs:
        groups.setdefault(len(p), []).append((p, a))
    rows = []
    for length in sorted(groups):
        r = evaluate_system(system, task, groups[length], max_new_tokens)
        rows.append(LengthRow(length, len(groups[length]), r["acc"], r["loops"]))
    return rows


# the prompt lengths by_length's rows are pooled into: parity trains on 1-10 bits, ood is 11-20
LENGTH_BUCKETS = {"parity": ((1, 10), (11, 15), (16, 20))}


def pool(rows, buckets):
    """by_length's rows pooled into buckets ((lo, hi), ...), inclusive, weighted by problem count:
    [BucketRow], empty buckets left out."""
    out = []
    for lo, hi in buckets:
        inside = [r for r in rows if lo <= r.length <= hi]
        n = sum(r.n for r in inside)
        if n:
            acc, loops = (sum(r.n * getattr(r, k) for r in inside) / n for k in ("acc", "loops"))
            out.append(BucketRow(lo, hi, n, acc, loops))
    return out
