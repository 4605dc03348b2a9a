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


def test_with_the_feedback_cut_a_rejected_row_reads_its_prompt_alone():
    left = RecordingLeft(noisy_lobe(1))
    d = lateralized(left, ScriptedRight(), ["no", "ok"], idl_limit=3, max_new_tokens=6,
                    feedback=False)
    assert [c for batch in left.contexts for c in batch] == \
        [prompt_ids("no"), prompt_ids("ok"), prompt_ids("no"), prompt_ids("no")]
    assert d.loops == [3, 1] and d.stop == ["limit", "accepted"]


def test_the_dialogue_keeps_exactly_the_contexts_the_left_lobe_read():
    left = RecordingLeft(noisy_lobe(1))
    d = lateralized(left, ScriptedRight(), ["ok1", "no2"], idl_limit=3, max_new_tokens=6)
    fed = [c for batch in left.contexts for c in batch]           # in the order they were fed
    kept = [d.contexts[0][0], d.contexts[1][0], d.contexts[1][1], d.contexts[1][2]]
    assert fed == kept and [len(c) for c in d.contexts] == d.loops == [1, 3]


def test_threshold_none_never_accepts_and_runs_every_loop():
    d = lateralized(noisy_lobe(2), ScriptedRight(), ["ok1", "no2"], idl_limit=3, threshold=None,
                    max_new_tokens=5)
    assert d.loops == [3, 3] and d.stop == ["limit", "limit"]     # 'ok1' scores 0.9, still no stop


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


# -----------------------------------------------------------------------------
# the differentiable dialogue on soft tokens (eqs 3-6): BPTT, truncated BPTT, checkpointing
from idl import feedback_context, one_hot_context, soft_lateralized, soft_score, soft_valence  # noqa: E402
from data.tokenizer import VALENCE  # noqa: E402


def soft_pair(seed=0):
    torch.manual_seed(seed)
    return Lobe(LobeConfig(n_layer=1, n_head=2, n_embd=32)), Lobe(LobeConfig(n_layer=1, n_head=2, n_embd=32))


PROMPTS = [prompt_ids("12+34"), prompt_ids("5+6")]        # different lengths: left padding


def grads(model):
    return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel()) for p in model.parameters()])


def test_truncated_bptt_gives_loops_before_the_window_zero_gradient():
    left, right = soft_pair()
    torch.manual_seed(1)
    full = soft_lateralized(left, right, PROMPTS, 4, idl_limit=3, tau=0.5)
    d_first = torch.autograd.grad(full.scores[-1].sum(), full.answers[0])[0]
    assert d_first.abs().sum() > 0                         # full BPTT: the last score reaches loop 1
    torch.manual_seed(1)
    cut = soft_lateralized(left, right, PROMPTS, 4, idl_limit=3, tau=0.5, window=1)
    assert not cut.answers[0].requires_grad and not cut.answers[1].requires_grad   # nothing flows back
    assert cut.answers[2].requires_grad
    assert all(torch.equal(a, b) for a, b in zip(full.answers, cut.answers))  # same forward, same samples
    cut.scores[-1].sum().backward()
    assert grads(left).abs().sum() > 0


def test_checkpointing_gives_the_gradients_of_full_bptt():
    left, right = soft_pair(2)
    out = []
    for remat in (False, True):
        left.zero_grad(), right.zero_grad()
        torch.manual_seed(3)
        d = soft_lateralized(left, right, PROMPTS, 4, idl_limit=2, tau=0.5, remat=remat)
        d.scores[-1].sum().backward()
        out.append(torch.cat([grads(left), grads(right)]))
    assert out[0].abs().sum() > 0 and torch.allclose(out[0], out[1], atol=1e-6)


def test_feedback_context_is_the_dialogue_sft_taught_and_hard_tokens_score_like_ids():
    left, right = soft_pair(4)
    ctx, valid = one_hot_context(PROMPTS, "cpu")
    attempt = [ord("7"), ord("9"), 257, 258]               # "79" <|eos|> then junk after it
    answer = torch.nn.functional.one_hot(torch.tensor([attempt, attempt]), 272).float()
    score = torch.tensor([-1.0986, 2.0])                   # p = 0.25 -> <|v2|>, p = 0.88 -> <|v8|>
    fctx, fvalid = feedback_context(ctx, valid, answer, score)
    for i, p in enumerate(["12+34", "5+6"]):
        read = fctx[i][fvalid[i]].argmax(-1).tolist()      # what the left lobe attends to
        assert read == prompt_ids(p, [("79", valence_token(torch.sigmoid(score[i]).item()))])
    s_soft = soft_score(right, ctx, valid, answer)         # scored at the first <|eos|>
    s_ids = right.score([p + attempt[:3] for p in PROMPTS])
    assert torch.allclose(s_soft, s_ids, atol=1e-5)


def test_soft_valence_is_one_hot_forward_with_a_gradient_into_the_score():
    score = torch.tensor([-1.0986, 0.3], requires_grad=True)
    v = soft_valence(score)
    assert v.argmax(-1).tolist() == [VALENCE[2], VALENCE[5]] and torch.equal(v.sum(-1), torch.ones(2))
    (v[:, VALENCE] * torch.arange(10.0)).sum().backward()  # a higher valence bin pulls the score up
    assert (score.grad > 0).all()


def test_speak_cuts_each_row_at_its_eos_and_keeps_a_pad_the_lobe_sampled():
    from data.tokenizer import EOS, PAD
    from idl import speak

    class Scripted:  # generate's contract: rows padded with <|pad|> after their <|eos|>
        def generate(self, contexts, max_new_tokens, temperature):
            return torch.tensor([[ord("4"), PAD, ord("2"), EOS, PAD], [ord("7"), EOS, PAD, PAD, PAD],
                                 [ord("1")] * 5]), None

    answers, rows, passes = speak(Scripted(), [[1], [2], [3]], 5, 1.0)
    assert rows == [[ord("4"), PAD, ord("2"), EOS], [ord("7"), EOS], [ord("1")] * 5]
    assert passes == [5, 3, 6] and answers == ["4", "7", "11111"]
