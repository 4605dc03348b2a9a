"""The Inner Dialogue Loop (idl.py): per-row stopping, feedback tokens, limits, batching."""
import torch

from data.tokenizer import valence_token
from idl import lateralized, tall
from lobes import Lobe, LobeConfig, prompt_ids


def noisy_lobe(seed):
    """A random tiny lobe with large weights, so greedy answers vary with the context."""
    torch.manual_seed(seed)
    lobe = Lobe(LobeConfig(n_layer=1, n_head=2, n_embd=32))
    with torch.no_grad():
        for p in lobe.parameters():
            if p.dim() > 1:
                p.mul_(8.0)
    return lobe.eval()


class RecordingLeft:
    """Wraps a lobe and records every batch of contexts it is asked to continue."""

    def __init__(self, lobe):
        self.lobe, self.contexts = lobe, []

    def generate(self, contexts, max_new_tokens, temperature=0.0):
        self.contexts.append(contexts)
        return self.lobe.generate(contexts, max_new_tokens, temperature)


class ScriptedRight:
    """A right lobe whose score depends on the prompt only: 'ok...' prompts are accepted (p = 0.9),
    all others rejected with p = 0.25 (valence <|v2|>)."""

    def score(self, seqs):
        return torch.tensor([2.1972 if s[1:3] == [ord("o"), ord("k")] else -1.0986 for s in seqs])


def test_rows_stop_independently_and_accepted_rows_keep_their_answer():
    left = RecordingLeft(noisy_lobe(0))
    d = lateralized(left, ScriptedRight(), ["ok1", "no2", "ok3"], idl_limit=3, max_new_tokens=6)
    assert d.loops == [1, 3, 1]
    assert d.stop == ["accepted", "limit", "accepted"]
    assert len(d.attempts[0]) == 1 and d.final[0] == d.attempts[0][0]
    # a stopped row is never regenerated: loops 2 and 3 ran the one rejected row only
    assert [len(c) for c in left.contexts] == [3, 1, 1]


def test_rejected_row_reads_its_attempt_and_valence_token():
    left = RecordingLeft(noisy_lobe(1))
    d = lateralized(left, ScriptedRight(), ["no"], idl_limit=2, max_new_tokens=6)
    p = d.scores[0][0]
    assert abs(p - 0.25) < 1e-3
    # eq 6 / Alg 2 line 18: prompt + attempt + <|v2|> (0.25 quantised), then <|sep|>
    assert left.contexts[1][0] == prompt_ids("no", [(d.attempts[0][0], valence_token(p))])
    assert valence_token(p) == valence_token(0.2)


def test_idl_limit_is_honoured_and_final_is_best_scored():
    d = lateralized(noisy_lobe(2), ScriptedRight(), ["no", "nope"], idl_limit=4, max_new_tokens=5)
    assert d.loops == [4, 4] and all(len(a) == 4 for a in d.attempts)
    for attempts, scores, final in zip(d.attempts, d.scores, d.final):
        assert final == attempts[max(range(4), key=lambda j: scores[j])]


def test_batched_idl_equals_per_sample_loop_under_greedy():
    left, right = noisy_lobe(3), noisy_lobe(4)
    prompts = ["12+3", "7", "999+1", "abc", "0+0"]
    batched = lateralized(left, right, prompts, idl_limit=3, threshold=0.6, max_new_tokens=8)
    for i, p in enumerate(prompts):
        one = lateralized(left, right, [p], idl_limit=3, threshold=0.6, max_new_tokens=8)
        assert one.attempts[0] == batched.attempts[i]
        assert one.loops[0] == batched.loops[i]
        assert torch.allclose(torch.tensor(one.scores[0]), torch.tensor(batched.scores[i]), atol=1e-5)


def test_tall_dialogue_stops_on_agreement():
    same = noisy_lobe(5)
    d = tall(same, same, ["1+1", "22"], idl_limit=3, max_new_tokens=6)
    assert d.loops == [1, 1] and d.stop == ["agreed", "agreed"]  # identical lobes agree at once
    d = tall(noisy_lobe(5), noisy_lobe(6), ["1+1", "22"], idl_limit=3, max_new_tokens=6)
    assert all(1 <= n <= 3 for n in d.loops)
    assert all(s == "agreed" or n == 3 for s, n in zip(d.stop, d.loops))
