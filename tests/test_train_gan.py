"""GAN through soft tokens (train_gan.py, Alg 1): soft = hard at small tau, straight-through is exactly
one-hot, D's judgement reaches G, one D step and one G step each lower their loss, smoke + resume."""
import dataclasses
import json
import random

import pytest
import torch

import train_gan
from common import UsageError, save_checkpoint
from data import get_task
from lobes import soft_tokens
from lobes import Lobe, LobeConfig
from losses import gan_generator_loss_nonsaturating, gan_generator_loss_saturating

TINY = LobeConfig(n_layer=1, n_head=2, n_embd=32)


def lobes(seed=0):
    torch.manual_seed(seed)
    return Lobe(TINY).train(), Lobe(TINY).train()


def batch(n=6, seed=0):
    rng = random.Random(seed)
    return [get_task("addition").sample(rng, "train") for _ in range(n)]


def test_small_tau_soft_embedding_equals_the_hard_one(tiny_lobe):
    torch.manual_seed(0)
    logits = 3 * torch.randn(5, 7, tiny_lobe.cfg.vocab_size)
    hard = tiny_lobe.wte(logits.argmax(-1))
    assert torch.allclose(soft_tokens(logits, 1e-3, hard=False) @ tiny_lobe.wte.weight, hard, atol=1e-6)
    assert not torch.allclose(soft_tokens(logits, 1.0, hard=False) @ tiny_lobe.wte.weight, hard, atol=1e-3)


def test_straight_through_forward_is_exactly_one_hot_and_backward_is_soft():
    torch.manual_seed(0)
    logits = torch.randn(64, 272, requires_grad=True)
    p = soft_tokens(logits, tau=0.5, hard=True)
    assert torch.equal(p, torch.nn.functional.one_hot(p.argmax(-1), 272).float())         # bit-exact
    (p * torch.randn(272)).sum().backward()
    assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("hard", [True, False])
@pytest.mark.parametrize("g_loss", [gan_generator_loss_nonsaturating, gan_generator_loss_saturating])
def test_ds_judgement_gives_g_parameters_a_gradient_at_the_training_tau(hard, g_loss):
    left, right = lobes()
    cfg = train_gan.Config(hard=hard)
    pairs = batch()
    from idl import soft_lateralized
    from lobes import answer_ids, prompt_ids
    d = soft_lateralized(left, right, [prompt_ids(p) for p, _ in pairs], len(answer_ids(pairs[0][1])),
                         tau=cfg.tau_start, hard=hard)
    g_loss(d.scores[0]).backward()
    grads = [p.grad for p in left.blocks.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def losses_on(left, right, pairs, cfg, seed=0):
    torch.manual_seed(seed)                  # the same Gumbel noise each time
    loss_right, loss_left, _ = train_gan.gan_step(left, right, pairs, cfg, cfg.tau_start)
    return loss_right, loss_left


def test_one_d_step_lowers_ds_loss_with_g_frozen():
    left, right = lobes(1)
    cfg, pairs = train_gan.Config(nll_weight=0.0), batch()
    before_left = [p.clone() for p in left.parameters()]
    loss_right, _ = losses_on(left, right, pairs, cfg)
    # a small step: D's judge_weight multiplies untrained log-likelihoods of about -30
    opt = torch.optim.SGD(right.parameters(), lr=1e-3)
    train_gan.optimize(right, opt, loss_right)
    after, _ = losses_on(left, right, pairs, cfg)
    assert after.item() < loss_right.item() - 1e-4
    assert all(torch.equal(a, b) for a, b in zip(before_left, left.parameters()))


def test_one_g_step_lowers_gs_loss_with_d_frozen():
    # the plain soft path: its forward is smooth in G's weights. (Straight-through's forward is a
    # one-hot sample that only changes when a step flips a token, so one small step leaves it.)
    left, right = lobes(2)
    cfg, pairs = train_gan.Config(nll_weight=0.0, hard=False), batch()
    before_right = [p.clone() for p in right.parameters()]
    _, loss_left = losses_on(left, right, pairs, cfg)
    opt = torch.optim.SGD(left.parameters(), lr=0.1)
    train_gan.optimize(left, opt, loss_left)
    _, after = losses_on(left, right, pairs, cfg)
    assert after.item() < loss_left.item() - 1e-5
    assert all(torch.equal(a, b) for a, b in zip(before_right, right.parameters()))


def test_straight_through_probe_gap_is_zero_and_soft_real_tokens_keep_gs_sharpness():
    left, right = lobes(3)
    _, _, stats = train_gan.gan_step(left, right, batch(), train_gan.Config(), 1.0)
    assert stats["gap_fake"] < 1e-6 and stats["gap_real"] < 1e-6   # D sees the very same token embeddings
    logits, targets = torch.randn(2, 3, 272), torch.tensor([[0, 5, 9], [1, 1, 2]])
    p = train_gan.smooth_like(logits, targets, 0.5)
    assert torch.equal(p.argmax(-1), targets)
    assert torch.allclose(p.sort(-1).values, torch.softmax(logits / 0.5, -1).sort(-1).values, atol=1e-6)


def test_tau_schedule_and_bad_options():
    cfg = train_gan.Config(max_iters=11, tau_start=1.0, tau_end=0.01)
    assert train_gan.tau_at(0, cfg) == 1.0 and abs(train_gan.tau_at(10, cfg) - 0.01) < 1e-9
    assert abs(train_gan.tau_at(5, cfg) - 0.1) < 1e-9                     # geometric
    with pytest.raises(UsageError):
        train_gan.Config(g_loss="wasserstein")
    with pytest.raises(UsageError):
        train_gan.Config(idl_limit=2, window=3)
    with pytest.raises(UsageError):
        train_gan.Config(temperatures="0.3,hot")


def test_smoke_run_with_loops_and_truncation_then_resume(tmp_path):
    left, right = lobes(4)
    save_checkpoint(str(tmp_path / "sft" / "ckpt.pt"), left=left.state_dict(), right=right.state_dict(),
                    left_config=dataclasses.asdict(TINY), right_config=dataclasses.asdict(TINY), task="addition")
    cfg = train_gan.Config(out_dir=str(tmp_path / "gan"), sft_dir=str(tmp_path / "sft"), device="cpu", max_iters=4,
                           batch_size=3, eval_interval=2, n_eval=6, max_new_tokens=12, temperatures="1.0",
                           idl_limit=2, window=1)
    rows = train_gan.main(cfg)
    assert [r["model"] for r in rows] == ["SFT greedy", "SFT T=1.0", "GAN step 2", "GAN step 4"]
    assert all(0 <= r["d_real"] <= 1 and r["nll_test"] > 0 for r in rows if "d_real" in r)
    steps = [json.loads(line)["step"] for line in open(tmp_path / "gan" / "metrics.jsonl")]
    assert steps[-1] == 4
    more = train_gan.main(dataclasses.replace(cfg, init_from="resume", max_iters=6))
    assert [r["model"] for r in more][-3:] == ["GAN step 2", "GAN step 4", "GAN step 6"]


def test_answer_logits_nll_and_logits_match_sequence_logprob():
    from lobes import answer_ids, prompt_ids, sequence_logprob
    left, _ = lobes(5)
    pairs = batch(4)
    prompts, answers = [prompt_ids(p) for p, _ in pairs], [answer_ids(a) for _, a in pairs]
    nll, logits = train_gan.answer_logits(left, prompts, answers)
    lp = sequence_logprob(left, prompts, answers)                     # addition answers: all 10 tokens
    assert torch.allclose(nll, -lp.sum() / sum(map(len, answers)), atol=1e-5)
    targets = torch.tensor(answers)
    mine = torch.log_softmax(logits, -1).gather(2, targets[..., None]).squeeze(2).sum(1)
    assert torch.allclose(mine, lp, atol=1e-4)
