"""
The training scripts under torch.distributed, on CPU with 2 gloo ranks (ranks.py and
common.distributed): one SFT step and one SPIN iteration equal the one-process run to 1e-6 in every
parameter, and the optimizer's moments (which carry the gradient's scale) with them; both ranks
hold identical weights; rank 0 alone writes, one checkpoint per save; a 2-rank resume continues
where it stopped; a rank killed mid-run under torchrun leaves the last checkpoint whole, and a
run resumes from it; a batch that does not divide among the ranks is a one-line error. SPIN runs
greedy (t_min = t_max = 0) here: sampled answers depend on each rank's random numbers
(train_spin.py).

    $ python -m pytest tests/test_distributed.py -q
"""
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp

import common
import ranks
import train_sft
import train_spin
from common import load_checkpoint, save_lobes
from lobes import Lobe, LobeConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SFT = dict(device="cpu", n_layer=1, right_n_layer=1, n_embd=32, n_head=2, batch_size=8, n_eval=8,
           eval_interval=1, grad_clip=0.0)     # no clipping: the moments show the raw gradient
SPIN = dict(device="cpu", iterations=1, n_prompts=8, idl_limit=1, steps_per_iter=1, batch_size=4,
            n_eval=8, max_new_tokens=6, t_min=0.0, t_max=0.0, grad_clip=0.0, lr=1e-3)


def argv(**kw):
    return [f"--{k}={v}" for k, v in kw.items()]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank, jobs, out):
    """One of 2 ranks with the environment torchrun gives it, running each job (tag, script,
    port, argv) through common.run. Every checkpoint save also leaves this rank's state in
    out/{tag}-rank{rank}.pt, and every file published (os.replace) is noted in out/replaced."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1")
    torch.set_num_threads(1)
    save, replace, tag = common.save_checkpoint, os.replace, None

    def saving(path, **state):
        torch.save(state, os.path.join(out, f"{tag}-rank{rank}.pt"))
        save(path, **state)

    def replacing(src, dst):
        with open(os.path.join(out, "replaced"), "a") as f:
            f.write(f"{rank} {dst}\n")
        replace(src, dst)

    common.save_checkpoint, os.replace = saving, replacing
    for tag, script, port, args in jobs:
        os.environ["MASTER_PORT"] = str(port)
        module = importlib.import_module(script)
        common.run(module.main, module.Config, argv=args)


def spawn(jobs, out, timeout=120):
    ctx = mp.spawn(rank_main, args=(jobs, str(out)), nprocs=2, join=False)
    deadline = time.time() + timeout
    while not ctx.join(timeout=1):
        if time.time() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"2 ranks still running after {timeout} s")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same runs on 2 ranks and in this one process: an SFT step (0 -> 1), its 2-rank resume
    (1 -> 2) against one uninterrupted 0 -> 2, and one SPIN iteration of one step."""
    tmp = tmp_path_factory.mktemp("dist")
    torch.manual_seed(0)
    tiny = LobeConfig(n_layer=1, n_head=2, n_embd=32)
    save_lobes(str(tmp / "warm" / "ckpt.pt"), Lobe(tiny), Lobe(tiny), task="addition")
    spin = dict(SPIN, sft_dir=tmp / "warm")
    spawn([("sft", "train_sft", free_port(), argv(**SFT, max_iters=1, out_dir=tmp / "sft")),
           ("resume", "train_sft", free_port(),
            argv(**SFT, max_iters=2, out_dir=tmp / "sft", init_from="resume")),
           ("spin", "train_spin", free_port(), argv(**spin, out_dir=tmp / "spin"))], tmp)
    for steps in (1, 2):
        train_sft.main(train_sft.Config(**SFT, max_iters=steps, out_dir=str(tmp / f"one{steps}")))
    train_spin.main(train_spin.Config(**dict(spin, sft_dir=str(spin["sft_dir"])),
                                      out_dir=str(tmp / "one_spin")))
    return tmp


def state(path):
    return torch.load(path, weights_only=True)


def assert_same_step(two, one):
    """Every parameter to 1e-5 and the optimizer's state close (Adam's moments, Muon's momentum):
    the step and its gradient. (Adam moves a parameter by about lr = 2e-3 whatever its
    gradient's size, so where a gradient is near Adam's eps, summing the batch in two halves
    moves it by a slightly different fraction of lr: 1e-5 is 1/200 of a step, and a wrong
    gradient misses by a whole one.)"""
    for lobe in ("left", "right"):
        for k, v in one[lobe].items():
            torch.testing.assert_close(two[lobe][k], v, rtol=0, atol=1e-5, msg=f"{lobe}.{k}")
    for opt in ("opt_left", "opt_right"):
        for i, moments in one[opt]["state"].items():
            for k in moments.keys() - {"step"}:
                torch.testing.assert_close(two[opt]["state"][i][k], moments[k], rtol=1e-4,
                                           atol=1e-9, msg=f"{opt} {i} {k}")


# -----------------------------------------------------------------------------
@pytest.mark.parametrize("tag, one", [("sft", "one1/ckpt.pt"), ("resume", "one2/ckpt.pt"),
                                      ("spin", "one_spin/ckpt.pt")])
def test_two_ranks_step_as_one_process_with_the_same_global_batch(runs, tag, one):
    assert_same_step(state(runs / f"{tag}-rank0.pt"), state(runs / one))


@pytest.mark.parametrize("tag", ["sft", "resume", "spin"])
def test_both_ranks_hold_identical_weights_after_a_step(runs, tag):
    a, b = state(runs / f"{tag}-rank0.pt"), state(runs / f"{tag}-rank1.pt")
    for lobe in ("left", "right"):
        assert all(torch.equal(a[lobe][k], b[lobe][k]) for k in a[lobe])


def test_rank_0_alone_writes_one_checkpoint_per_save(runs):
    replaced = (runs / "replaced").read_text().split("\n")[:-1]
    assert replaced == [f"0 {runs / 'sft' / 'ckpt.pt'}"] * 2 + [f"0 {runs / 'spin' / 'ckpt.pt'}"]
    assert sorted(os.listdir(runs / "sft")) == ["ckpt.pt", "metrics.jsonl"]


def test_a_two_rank_resume_continues_where_it_stopped(runs):
    lines = [json.loads(line) for line in open(runs / "sft" / "metrics.jsonl")]
    assert [m["step"] for m in lines if "left_test" in m] == [0, 1, 2]   # logged once, by rank 0
    assert load_checkpoint(str(runs / "sft" / "ckpt.pt"))["step"] == 2


def test_spin_logs_the_whole_batch_statistics(runs):
    two, one = (state(runs / d / "ckpt.pt")["rows"][1] for d in ("spin", "one_spin"))
    assert two["n_rejected"] == one["n_rejected"] and two["n_data"] == one["n_data"]
    for k in ("first_loss", "loss", "margin", "chosen", "rejected", "right_loss"):
        assert two[k] == pytest.approx(one[k], abs=1e-5), k


# -----------------------------------------------------------------------------
def test_a_batch_that_does_not_divide_among_the_ranks_is_a_one_line_error(monkeypatch, capsys):
    errors = []
    for rank in ("0", "1"):                     # as torchrun starts each rank of one machine
        for key, value in (("WORLD_SIZE", "2"), ("RANK", rank), ("LOCAL_RANK", rank)):
            monkeypatch.setenv(key, value)
        with pytest.raises(SystemExit) as e:
            common.run(train_sft.main, train_sft.Config, argv=["--batch_size=7", "--device=cpu"])
        assert e.value.code == 2
        errors.append(capsys.readouterr().err)
    assert errors == ["error: --batch_size=7 does not divide among 2 ranks (each takes an equal "
                      "share): use a multiple of 2\n", ""]          # once per machine


def test_without_torchrun_the_helpers_give_back_their_input():
    x, batch = torch.arange(6.0), [1, 2, 3]
    assert ranks.world_size() == 1 and ranks.rank() == 0
    assert ranks.shard(batch) is batch and ranks.gather(batch) is batch
    assert ranks.total(x) is x and ranks.averaged(x) is x and ranks.share(x, 3) is x


def rank_pid(parent, rank):
    """The pid of torchrun's worker of this RANK (a child of parent, by its environment)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if ppid == parent and f"RANK={rank}".encode() in env:
            return int(pid)
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the rank through /proc")
def test_a_rank_killed_mid_run_leaves_the_checkpoint_whole_and_it_resumes(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node=2", "train_sft.py", *argv(**dict(SFT, eval_interval=2),
                                                             out_dir=tmp_path)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.Popen(torchrun + ["--max_iters=100000"], cwd=ROOT, env=env,
                           start_new_session=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    ckpt, deadline = tmp_path / "ckpt.pt", time.time() + 120
    while not ckpt.exists():                                 # the first checkpoint: step 2
        if run.poll() is not None or time.time() > deadline:
            os.killpg(run.pid, signal.SIGKILL)
            pytest.fail(run.communicate()[1][-2000:])
        time.sleep(0.05)
    rank_1 = rank_pid(run.pid, 1)
    assert rank_1, "no rank 1 among torchrun's workers"
    os.kill(rank_1, signal.SIGKILL)
    run.communicate(timeout=120)
    assert run.returncode != 0
    step = load_checkpoint(str(ckpt))["step"]             # whole: it loads
    assert step > 0 and step % 2 == 0
    n_before = len(open(tmp_path / "metrics.jsonl").readlines())
    # the whole checkpoint resumes (on one process here: a 2-rank resume is tested above)
    train_sft.main(train_sft.Config(**dict(SFT, eval_interval=2), out_dir=str(tmp_path),
                                    max_iters=step + 2, init_from="resume"))
    assert load_checkpoint(str(ckpt))["step"] == step + 2
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")][n_before:]
    assert all(m["step"] >= step for m in lines)            # the resumed run began at `step`
    assert [m["step"] for m in lines if "left_test" in m] == [step + 2]
