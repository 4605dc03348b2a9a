"""evaluate.py and report.py: the table builder on a fake result set, and the whole pipeline (train, measure,
write results/ and the results README's Table 1 section) on tiny models."""
import dataclasses
import json
import shutil
import zlib

import pytest
import torch

import evaluate
import report
from common import UsageError, save_lobes
from lobes import Lobe, LobeConfig


def fake_run(acc_a, acc_f, loops_f, n_test=223):
    split = lambda acc, loops, n: {"acc": acc, "loops": loops, "passes": 10 * loops, "tokens": 9 * loops, "n": n}
    return {"A=": {"params": 100, "train_minutes": 2.0, "test": split(acc_a, 1, n_test), "ood": split(acc_a / 2, 1, 500)},
            "F": {"params": 104, "train_minutes": 3.0, "test": split(acc_f, 1, n_test), "ood": split(acc_f / 2, loops_f, 500)}}


def test_summary_table_and_claims_on_a_fake_result_set():
    runs = {"addition": {"1": fake_run(0.5, 0.9, 3), "2": fake_run(0.7, 0.7, 4)}}
    s = report.summarise(runs)["addition"]
    assert s["A="]["test.acc"] == pytest.approx([0.6, 0.1414214])   # sd of (0.5, 0.7), n - 1 in the denominator
    assert s["F"]["ood.loops"] == pytest.approx([3.5, 0.7071068])
    table = report.task_table("addition", s)
    assert table.startswith("n = 223 test and 500 ood problems per seed\n")     # the real n of each split
    assert "| A= single GPT (equal size) | 100 | 2.0 | 60.0% ± 14.1% | 30.0% ± 7.1% | 1.00 | 1.00 | 10.0 | 9.0 |" in table
    assert "| F lateralized tall SLN | 104 | 3.0 | 80.0% ± 14.1% | 40.0% ± 7.1% | 1.00 | 3.50 ± 0.71 | 35.0 | 31.5 |" in table
    text = report.claims({"addition": s})
    # F - A= = +20 points on test, more than the 14.1-point spread; +10 on ood, more than 7.1: both held
    assert "F − A=: addition test +20.0%, held; addition ood +10.0%, held." in text
    # loops ood - test = 2.50 > the 0.71 spread: held by the same rule as accuracy
    assert "F's mean loops, test → ood: addition 1.00 → 3.50, +2.50, held." in text
    assert "D − A=" not in text                                     # no D in the runs: no claim about it


def test_compute_claims_obey_the_same_spread_rule_as_accuracy():
    # the wide SLN on parity: 5.07 ± 0.24 loops in distribution, 5.19 ± 0.32 ood: +0.12 < 0.32
    s = {"parity": {"E": {"test.loops": [5.07, 0.24], "ood.loops": [5.19, 0.32]}}}
    assert "E's mean loops, test → ood: parity 5.07 → 5.19, +0.12, within the spread." in report.claims(s)


def test_verdict_says_reversed_when_a_loses_by_more_than_the_spread():
    assert report.verdict([0.2, 0.05], [0.5, 0.1]) == "-30.0%, reversed"
    assert report.verdict([0.5, 0.0], [0.5, 0.0]) == "+0.0%, within the spread"
    assert report.verdict([0.6, 0.0], [0.5, 0.0], seeds=1) == "+10.0% (one seed: no spread to judge by)"


def test_report_judges_two_runs_of_the_same_systems_by_the_same_rule(tmp_path, cli):
    def results(runs, seeds):
        return {"meta": {"command": "python evaluate.py", "seeds": seeds}, "summary": report.summarise(runs)}
    before = results({"addition": {"1": fake_run(0.5, 0.6, 1), "2": fake_run(0.5, 0.8, 1)}}, "1,2")
    after = results({"addition": {"1": fake_run(0.5, 0.9, 1), "2": fake_run(0.5, 0.9, 1)},
                     "parity": {"1": fake_run(0.5, 0.9, 1)}}, "1,2")
    # F: 0.9 ± 0 after against 0.7 ± 0.141 before: +20 points, more than the spread; ood +10 > 7.1
    assert report.compare(before, after).splitlines() == [
        "- addition A=: test +0.0%, within the spread; ood +0.0%, within the spread",
        "- addition F: test +20.0%, held; ood +10.0%, held"]               # parity: not in before
    (tmp_path / "b.json").write_text(json.dumps(before))
    (tmp_path / "a.json").write_text(json.dumps(after))
    r = cli("report.py", f"--before={tmp_path}/b.json", f"--after={tmp_path}/a.json")
    assert r.returncode == 0 and "- addition F: test +20.0%, held" in r.stdout
    (tmp_path / "bad.json").write_text("{}")
    for bad in ("bad.json", "missing.json"):
        r = cli("report.py", f"--before={tmp_path}/{bad}", f"--after={tmp_path}/a.json")
        assert r.returncode == 2 and "is not a results.json of evaluate.py" in r.stderr


def tiny_recipe(monkeypatch):
    tiny = dict(n_head=2, n_embd=32)
    monkeypatch.setattr(evaluate, "QUICK", {"budget": dict(max_iters=2, batch_size=4), "pair": dict(tiny, n_layer=2),
                                            "wide": dict(tiny, n_expert=1, train_loops=2, max_loops=3)})


def test_the_equal_size_gpt_is_as_deep_as_a_lobe_and_as_large_as_the_pair():
    from lobes import Lobe, LobeConfig
    sft = evaluate.train_sft.Config()                          # 3 blocks per lobe, width 128, 4 heads
    width = evaluate.equal_width(sft)
    pair = 2 * Lobe(LobeConfig(n_layer=3, n_head=4, n_embd=128)).num_params()
    single = Lobe(LobeConfig(n_layer=3, n_head=4, n_embd=width)).num_params()
    assert width == 184 and abs(single / pair - 1) < 0.02       # 1,274,386 against 1,256,964


def test_every_model_of_a_task_trains_under_one_budget():
    # the pair, the single GPT and the wide SLN: the same steps, batch, optimizer and curriculum
    for quick in (False, True):
        cfg = evaluate.resolve(evaluate.Config(quick=quick))
        for task in evaluate.BUDGET:
            seen = set()
            for model in (m for m in evaluate.MODELS if m != "wide" or task in evaluate.WIDE):
                script = evaluate.train_wide if model == "wide" else evaluate.train_sft
                c = script.Config(**evaluate.budget(cfg, task))
                seen.add((c.max_iters, c.batch_size, c.grow_iters, c.muon_lr))
            assert len(seen) == 1, (task, seen)
    assert evaluate.budget(evaluate.resolve(evaluate.Config(quick=True)), "parity")["grow_iters"] == 240


def test_the_pipeline_trains_measures_writes_results_and_the_readme(tmp_path, monkeypatch, capsys):
    tiny_recipe(monkeypatch)
    monkeypatch.setattr(evaluate, "WIDE", {"addition": evaluate.WIDE["addition"]})  # E, G on addition only
    readme = tmp_path / "README.md"
    readme.write_text(f"# intro\n{report.BEGIN}\nold table\n{report.END}\n## after\n")
    cfg = evaluate.Config(tasks="addition,tictactoe", quick=True, seeds="0,1", n_eval=6,
                          idl_limit=2, out_dir=str(tmp_path / "ckpt"), results_dir=str(tmp_path / "results"),
                          readme=str(readme), device="cpu")
    runs = evaluate.main(cfg)
    assert set(runs) == {"addition", "tictactoe"} and set(runs["addition"]) == {"0", "1"}
    for name, r in runs["tictactoe"]["1"].items():
        assert 0 <= r["loss_as_x"] <= 1 and 0 <= r["loss_as_o"] <= 1 and 0 <= r["in_train"] <= 1
        assert r["train_minutes"] > 0 and r["test"]["n"] == 6
        assert 1 <= r["ood"]["loops"] <= {"A": 1}.get(name[0], 2)
    assert "E" not in runs["tictactoe"]["1"]                          # no wide recipe for it here: no E, G
    for r in (runs[t][s] for t in runs for s in runs[t]):
        # the baselines choose among the same seeded samples: the oracle is their ceiling
        assert r["pass@k"]["test"]["acc"] >= max(r["best@k"]["test"]["acc"], r["vote@k"]["test"]["acc"])
        assert r["best@k"]["test"]["loops"] == 2 and 0 <= r["F"]["ood"]["judge_balanced"] <= 1
    assert 1 <= runs["addition"]["1"]["G"]["ood"]["loops"] <= 3
    # A= is one GPT as deep as a lobe and as large as the pair: within a few percent of its parameters
    assert abs(runs["addition"]["0"]["A="]["params"] / runs["addition"]["0"]["F"]["params"] - 1) < 0.05
    saved = json.loads((tmp_path / "results" / "results.json").read_text())
    assert saved["meta"]["command"].startswith("python evaluate.py --tasks=addition,tictactoe")
    assert saved["summary"]["addition"]["F"]["params"][0] == runs["addition"]["0"]["F"]["params"]
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# intro\n") and text.endswith(f"{report.END}\n## after\n")
    assert (tmp_path / "results" / "table.md").read_text() in text and "loses as O" in text
    assert "The right lobe judging the left lobe's own answers (4 samples" in text and "| pass@k k samples, an oracle picks |" in text
    capsys.readouterr()
    again = evaluate.main(dataclasses.replace(cfg, systems="F"))  # every checkpoint is there: nothing is trained twice
    assert "trained addition" not in capsys.readouterr().out
    assert again["addition"]["0"]["F"]["test"] == runs["addition"]["0"]["F"]["test"]
    path = tmp_path / "ckpt" / "addition" / "seed0" / "pair" / "ckpt.pt"
    ckpt = torch.load(path, weights_only=True)
    del ckpt["config"]["batch_size"]                       # a checkpoint older than an option was
    torch.save(ckpt, path)                                 # trained at its default (64, not 4)
    with pytest.raises(UsageError, match=r"batch_size=64 \(now 4\)"):
        evaluate.main(cfg)
    monkeypatch.setitem(evaluate.QUICK["budget"], "batch_size", 3)  # a changed recipe never reuses an old checkpoint
    with pytest.raises(UsageError, match="another recipe"):
        evaluate.main(cfg)


def test_one_checkpoint_mode_and_bad_lists_are_usage_errors(tmp_path):
    torch.manual_seed(0)
    cfg = LobeConfig(n_layer=1, n_head=2, n_embd=32)
    save_lobes(str(tmp_path / "pair.pt"), Lobe(cfg), Lobe(cfg), task="addition")
    one = Lobe(LobeConfig(n_layer=2, n_head=2, n_embd=32))
    save_lobes(str(tmp_path / "one.pt"), one, one)
    r = evaluate.main(evaluate.Config(ckpt=str(tmp_path / "pair.pt"), ckpt_equal=str(tmp_path / "one.pt"),
                                      systems="A,A=,B,C,D,F", n_eval=6, idl_limit=2, device="cpu"))
    assert set(r) == {"1337"} and set(r["1337"]) == {"A", "A=", "B", "C", "D", "F"}
    assert not (tmp_path / "results").exists()
    # {seed} in the path: one pair per seed, each on its seed's problems, summarised over seeds
    shutil.copy(tmp_path / "pair.pt", tmp_path / "pair1337.pt")
    save_lobes(str(tmp_path / "pair7.pt"), Lobe(cfg), Lobe(cfg), task="addition")
    runs = evaluate.main(evaluate.Config(ckpt=str(tmp_path / "pair{seed}.pt"), seeds="1337,7", systems="A,F",
                                         n_eval=6, idl_limit=2, device="cpu",
                                         results_dir=str(tmp_path / "results")))
    assert set(runs) == {"1337", "7"} and runs["1337"]["F"] == r["1337"]["F"]
    saved = json.loads((tmp_path / "results" / "results.json").read_text())
    assert saved["meta"]["seeds"] == "1337,7" and "--ckpt=" in saved["meta"]["command"]
    # the summary is over both seeds: their mean
    assert saved["summary"]["addition"]["F"]["test.acc"][0] == pytest.approx(
        (runs["1337"]["F"]["test"]["acc"] + runs["7"]["F"]["test"]["acc"]) / 2)
    for bad in (dict(systems="A,Z"), dict(systems="A,E"), dict(systems="A=")):
        with pytest.raises(UsageError):
            evaluate.main(evaluate.Config(ckpt=str(tmp_path / "pair.pt"), device="cpu", **bad))
    for bad in (dict(tasks="addition,chess"), dict(seeds="1,two")):
        with pytest.raises(UsageError):
            evaluate.main(evaluate.Config(device="cpu", **bad))


def test_retry_temperature_samples_f_after_a_greedy_first_attempt(tmp_path):
    torch.manual_seed(0)
    cfg = LobeConfig(n_layer=1, n_head=2, n_embd=32)
    save_lobes(str(tmp_path / "pair.pt"), Lobe(cfg), Lobe(cfg), task="addition")
    path, task = str(tmp_path / "pair.pt"), evaluate.load_task("addition")
    build = lambda kind, **kw: evaluate.build(kind, path, evaluate.Config(idl_limit=3, **kw), torch.device("cpu"), task)
    assert build("F").temperature == 0.0 and build("B").temperature == 0.0    # Table 1: greedy
    assert build("F", retry_temperature=0.7).temperature == [0.0, 0.7, 0.7]
    assert build("C", retry_temperature=0.7).temperature == 0.7               # C's own sampling
    prompts = [task.dataset("test", 1, 0)[0][0]] * 8
    torch.manual_seed(1)
    d = build("F", retry_temperature=5.0, threshold=1.0).answer(prompts, 6)   # never accepts
    # loop 1 greedy, then sampled
    assert len({a[0] for a in d.attempts}) == 1 and len({a[1] for a in d.attempts}) > 1
    with pytest.raises(UsageError):
        evaluate.Config(retry_temperature=-0.5)


class Scripted:
    """A stand-in system that answers every board with move(board) (for exact loss rates)."""

    def __init__(self, move):
        self.move = move

    def answer(self, prompts, max_new_tokens):
        from types import SimpleNamespace
        return SimpleNamespace(final=[self.move(p) for p in prompts])


def test_parity_is_measured_per_bucket_of_lengths_and_tabled():
    # a scripted system: right on strings of at most 12 bits, wrong past them, one loop a bit
    from types import SimpleNamespace
    odd = lambda p: str(p.count("1") % 2)
    answer = lambda ps, _: SimpleNamespace(final=[odd(p) if len(p) <= 12 else "x" for p in ps],
                                           loops=[len(p) for p in ps], forward_passes=[1] * len(ps),
                                           tokens=[[[0]] for _ in ps])
    system, task = SimpleNamespace(kind="A", answer=answer), evaluate.load_task("parity")
    splits = {s: task.dataset(s, 60, 0) for s in ("test", "ood")}
    r = evaluate.measure(system, task, splits, 4)
    ood = [p for p, _ in splits["ood"]]
    mid = [p for p in ood if len(p) <= 15]
    test_loops = sum(len(p) for p, _ in splits["test"]) / 60
    assert r["lengths"]["1-10"] == {"acc": 1.0, "loops": test_loops, "n": 60}
    assert r["lengths"]["11-15"]["acc"] == sum(len(p) <= 12 for p in mid) / len(mid)
    assert r["lengths"]["16-20"]["acc"] == 0.0 and r["lengths"]["16-20"]["n"] == len(ood) - len(mid)
    s = report.summarise({"parity": {"1": {"A": {"params": 1, "train_minutes": 1.0, **r}}}})["parity"]
    table = report.task_table("parity", s)
    assert "By length (test and ood pooled; problems a seed, mean over seeds: 1-10 60, 11-15 " in table
    assert "| system | 1-10 | 11-15 | 16-20 | loops 1-10 | loops 11-15 | loops 16-20 |" in table
    assert "| A | 100.0% | " in table and " | 0.0% | " in table


def test_tictactoe_loss_rates_are_exact():
    from games.tictactoe import exact_outcome, from_prompt, moves, optimal_moves, read_move, to_prompt
    from data import get_task
    from data.tasks import task_positions
    task = get_task("tictactoe")
    perfect = evaluate.tictactoe_losses(Scripted(lambda p: str(optimal_moves(from_prompt(p))[0] + 1)), task)
    assert (perfect["loss_as_x"], perfect["loss_as_o"]) == (0.0, 0.0)
    # the games are not held out: most of the positions they reach with >= 4 marks are train positions
    train = [b for b in task_positions(False) if task.split_of(to_prompt(b)) == "train"]
    assert 0.3 < perfect["in_train"] < 1 and len(train) > 0.85 * len(task_positions(False))
    lost = evaluate.tictactoe_losses(Scripted(lambda p: "no idea"))      # unreadable: forfeit
    assert (lost["loss_as_x"], lost["loss_as_o"]) == (1.0, 1.0) and "in_train" not in lost
    # the first free cell, always: X fills 1, 2, 3 ... and the perfect O wins; as O it loses too
    first = evaluate.tictactoe_losses(Scripted(lambda p: str(moves(from_prompt(p))[0] + 1)))
    assert first["loss_as_x"] == 1.0 and first["loss_as_o"] == 1.0
    # a player that mixes optimal, legal, illegal and unreadable moves: the ply-by-ply batches give
    # what exact_outcome finds asking one board at a time, with one batch per ply
    def mixed(p):
        b, h = from_prompt(p), zlib.crc32((p + "2").encode())
        return ("junk" if h % 7 == 0 else str(9 - h % 9) if h % 4 == 0 else
                str(moves(b)[h % len(moves(b))] + 1) if h % 3 == 0 else str(optimal_moves(b)[0] + 1))
    batches = []
    player = Scripted(mixed)
    player.answer = lambda prompts, n: batches.append(len(prompts)) or Scripted.answer(player, prompts, n)
    got = evaluate.tictactoe_losses(player)

    def one_board(b):
        m = read_move(mixed(to_prompt(b)))
        return -1 if m is None else m
    want = [float(exact_outcome(one_board, seat)["loss"]) for seat in (0, 1)]
    assert [got["loss_as_x"], got["loss_as_o"]] == want and 0 < want[0] < 1 and 0 < want[1] < 1
    assert len(batches) <= 9 and sum(batches) > 2 * len(batches)


def test_quick_writes_its_own_folders_one_seed_and_leaves_the_readme_alone():
    full, quick = evaluate.resolve(evaluate.Config()), evaluate.resolve(evaluate.Config(quick=True))
    assert (full.out_dir, full.results_dir, full.readme, full.seeds) == ("out/table", "results", "results/README.md", "1337,1,2")
    assert (quick.out_dir, quick.results_dir, quick.readme, quick.seeds, quick.n_eval) == \
        ("out/quick", "results/quick", "none", "1337", 200)
    mine = evaluate.resolve(evaluate.Config(quick=True, seeds="1,2", readme="R.md", out_dir="o"))
    assert (mine.seeds, mine.readme, mine.out_dir) == ("1,2", "R.md", "o")
