"""Actor-critic on tasks (train_actor_critic.py, Alg 2, eq 7, eq 8, §5.4, §5.5): PPO scores every
IDL attempt in the context the left lobe read, the critic's plain eq 7, bad options, and smoke
runs with resume. The PPO update itself: tests/test_ppo.py."""
import pytest
import torch

import train_actor_critic as ac
from common import UsageError, load_task, save_lobes
from data.tokenizer import valence_token
from lobes import Lobe, LobeConfig, answer_ids, prompt_ids
from losses import critic_loss

TINY_TASKS = dict(task="addition", device="cpu", max_iters=2, batch_size=2, group=2, idl_limit=2,
                  n_eval=4, eval_interval=1, max_new_tokens=4, self_play_max=1, kl_coef=0.1,
                  satisfied=1.0)


@pytest.mark.parametrize("extra", [
    dict(reward="checker", pavlov_lambda=0.0),
    dict(reward="critic", pavlov_lambda=0.3, reward_transform="logitD")])
def test_smoke_tasks_run_and_resume(tmp_path, extra):
    torch.manual_seed(0)
    tiny = LobeConfig(n_layer=1, n_head=2, n_embd=32)
    save_lobes(str(tmp_path / "sft" / "ckpt.pt"), Lobe(tiny), Lobe(tiny), task="addition")
    cfg = dict(TINY_TASKS, sft_dir=str(tmp_path / "sft"), **extra)
    rows = ac.main(ac.Config(out_dir=str(tmp_path), **cfg))
    assert [r["iter"] for r in rows] == [0, 1, 2] and rows[1]["ratio"] == 1.0
    assert rows[1]["self_play"] == 1         # satisfied=1.0 is never reached: the cap stops it
    more = ac.main(ac.Config(out_dir=str(tmp_path), init_from="resume", **{**cfg, "max_iters": 3}))
    assert [r["iter"] for r in more] == [0, 1, 2, 3]


def test_ppo_scores_each_attempt_in_the_context_the_left_lobe_read(sharp_lobe, tiny_lobe):
    # two loops on every row (threshold None never accepts): the second read eq 6's feedback
    d = ac.lateralized(sharp_lobe, tiny_lobe, ["12+3", "4+5"], idl_limit=2, threshold=None,
                       temperature=1.0, max_new_tokens=4)
    cfg = ac.Config(group=1)
    r, ro = ac.rollout_of(sharp_lobe, load_task("addition"), d, cfg)
    assert ro.contexts == [c for row in d.contexts for c in row]           # what PPO scores
    assert ro.actions == [t for row in d.tokens for t in row]
    assert [a.context for a in ac.attempts_of(d)] == ro.contexts and len(r) == 4
    for i, p in enumerate(d.prompts):                  # ... is what lateralized fed the left lobe
        feedback = [(d.attempts[i][0], valence_token(d.scores[i][0]))]
        assert d.contexts[i] == [prompt_ids(p), prompt_ids(p, feedback)]


def test_task_critic_loss_plain_is_eq7_on_whole_answers(tiny_lobe):
    # one prompt, one attempt, lambda 0: (BCE(y_true, 1) + BCE(attempt, 0)) / 2 on whole sequences
    cfg = ac.Config(reward="critic", pavlov_lambda=0.0)
    d = ac.lateralized(tiny_lobe, tiny_lobe, ["12+3"], idl_limit=1, max_new_tokens=3)
    loss = ac.critic_step(tiny_lobe, None, [("12+3", "15")], d, cfg)
    x = prompt_ids("12+3")
    s = tiny_lobe.score([x + answer_ids("15"), x + answer_ids(d.attempts[0][0])])
    want = (critic_loss(s[:1], torch.ones(1)) + critic_loss(s[1:], torch.zeros(1))) / 2
    torch.testing.assert_close(loss, want)


@pytest.mark.parametrize("self_play_reward", ["critic", "checker"])
def test_self_play_updates_with_the_critics_score_by_default(sharp_lobe, tiny_lobe, monkeypatch,
                                                             self_play_reward):
    # §5.4 step 2(d): grad log pi(x_left | x) * y_right, the critic's score, whatever --reward is
    seen, spoken, speak = [], [], ac.speak
    monkeypatch.setattr(ac, "advantages", lambda r, rows, group: seen.append(r) or r)
    monkeypatch.setattr(ac, "speak", lambda *a: spoken.append(speak(*a)) or spoken[-1])
    monkeypatch.setattr(ac, "actor_update", lambda *a, **k: None)
    cfg = ac.Config(reward="checker", self_play_max=1, satisfied=1.0, group=1, max_new_tokens=4,
                    **({} if self_play_reward == "critic" else dict(self_play_reward="checker")))
    prompts = ["12+3", "4+5"]
    assert ac.self_play(sharp_lobe, tiny_lobe, None, None, load_task("addition"), prompts, cfg) == 1
    answers = spoken[0][0]
    p = torch.sigmoid(tiny_lobe.score([prompt_ids(q) + answer_ids(a)
                                       for q, a in zip(prompts, answers)]))
    want = p if self_play_reward == "critic" else torch.zeros(2)  # a random lobe never adds right
    torch.testing.assert_close(seen[0].float(), want.float())


def test_bad_options_are_one_line_usage_errors():
    for bad in (dict(reward="thumbs"), dict(reward_transform="exp"), dict(self_play_reward="x")):
        with pytest.raises(UsageError):
            ac.Config(**bad)                  # checked as it is built
