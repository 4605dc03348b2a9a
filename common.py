"""
Plumbing every script shares, written once: typed `--key=value` config, device and dtype, seeding,
atomic checkpoints with RNG state, metrics (tqdm + out_dir/metrics.jsonl, wandb when asked), the
one-line error for bad input (exit 2) and for a loss gone nan or inf (exit 1), and joining
torchrun's process group (the rank helpers are in ranks.py). Nothing here is an idea from the
paper.

A script declares a @dataclass Config(Checked) with a comment per field (its type may carry a
rule: PosInt, PosFloat, Prob, Decay) and ends with

    if __name__ == "__main__":
        run(main, Config, gpu_preset={"batch_size": 512})

Then `python script.py --help` lists the fields with their comments, `--lr=3e-4` sets one, a
typo names the closest field, and any UsageError becomes one line on stderr and exit code 2.
"""
import copy
import dataclasses
import difflib
import inspect
import json
import math
import os
import random
import re
import sys
import tempfile
from contextlib import contextmanager, nullcontext
from typing import Annotated, get_type_hints

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from muon import Muon
from ranks import average_gradients, barrier, rank


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2, never a stack trace."""


class Diverged(FloatingPointError):
    """A loss or gradient turned nan or inf (Logger.tick): printed as one line, exit code 1. run()
    treats any FloatingPointError so: lobes.py raises one when a lobe's logits are no numbers."""


# -----------------------------------------------------------------------------
# config: a field's type carries its constraint, so the rule stands next to the field it governs.
# Every number must be finite and >= 0; these types ask more of it.
PosInt = Annotated[int, "> 0"]            # a count or a budget: at least 1
PosFloat = Annotated[float, "> 0"]        # a rate or a temperature
Prob = Annotated[float, "in [0, 1]"]      # a probability or a share
Decay = Annotated[float, "inf allowed"]   # eq 9's lambda: >= 0, inf = all weight on the last


class Checked:
    """The base of every script's @dataclass Config: each construction (the command line,
    dataclasses.replace, a test, another script) is checked by check_config, so a Config that
    exists holds possible values."""

    def __post_init__(self):
        check_config(self)


def field_help(cls):
    """{field: its '# comment'} read from the dataclass source, for --help; a comment continued on
    the lines below the field (lines holding only a comment) is joined to it."""
    helps = {}
    for klass in reversed(cls.__mro__[:-1]):
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        name = None
        for line in lines:
            field_line = re.match(r"^\s+(\w+)\s*:[^#\n]*#\s*(.*)$", line)
            more = re.match(r"^\s+#\s*(.*)$", line)
            if field_line:
                name, helps[field_line[1]] = field_line[1], field_line[2].strip()
            elif more and name:
                helps[name] += " " + more[1].strip()
            else:
                name = None
    return helps


def _convert(name, typ, text):
    """Text from the command line to the field's type, or a UsageError naming both."""
    try:
        if typ is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return typ(text)
    except ValueError:
        raise UsageError(f"--{name} expects {typ.__name__}, got {text!r}") from None


def parse_config(cls, argv, gpu_preset=None):
    """Build cls from ['--key=value', ...]. gpu_preset: values used on cuda/mps unless given."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if any(a in ("-h", "--help") for a in argv):
        helps = field_help(cls)
        print(f"{(inspect.getdoc(sys.modules[cls.__module__]) or '').splitlines()[0]}\n\noptions:")
        for name, f in fields.items():
            print(f"  {'--' + name + '=' + str(f.default):<32} {helps.get(name, '')}")
        sys.exit(0)
    given = {}
    for arg in argv:
        m = re.fullmatch(r"--([\w-]+)(?:=(.*))?", arg, re.S)
        if not m:
            raise UsageError(f"expected --key=value, got {arg!r}")
        name = m[1].replace("-", "_")
        if name not in fields:
            close = [f for f in fields if name.startswith(f + "_") or f.startswith(name)]
            close = close or difflib.get_close_matches(name, fields, n=1)
            hint = f"; did you mean --{close[0]}?" if close else ""
            raise UsageError(f"unknown option --{name}{hint}")
        typ = type(fields[name].default)
        text = "true" if m[2] is None and typ is bool else (m[2] or "")
        given[name] = _convert(name, typ, text)
    cfg = cls(**given)                                   # checked as it is built (Checked)
    if gpu_preset and "device" in fields and get_device(cfg.device).type != "cpu":
        cfg = dataclasses.replace(cfg, **{k: v for k, v in gpu_preset.items() if k not in given})
    return cfg


def check_config(cfg):
    """Reject impossible values with a one-line error, by the rule each field's type carries."""
    hints = get_type_hints(type(cfg), include_extras=True)
    for f in dataclasses.fields(cfg):
        v, rule = getattr(cfg, f.name), getattr(hints[f.name], "__metadata__", ("",))[0]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if rule == "> 0" and v <= 0:
            raise UsageError(f"--{f.name} must be > 0, got {v}")
        if v < 0:
            raise UsageError(f"--{f.name} must be >= 0, got {v}")
        if rule == "in [0, 1]" and v > 1:
            raise UsageError(f"--{f.name} must be in [0, 1], got {v}")
        if math.isnan(v) or (math.isinf(v) and rule != "inf allowed"):
            raise UsageError(f"--{f.name} must be finite, got {v}")
    if hasattr(cfg, "n_embd") and hasattr(cfg, "n_head") and cfg.n_embd % (2 * cfg.n_head):
        raise UsageError(f"--n_embd ({cfg.n_embd}) must be a multiple of "
                         f"2 * n_head ({2 * cfg.n_head})")
    if hasattr(cfg, "check"):                   # what a script's own fields ask of each other
        cfg.check()


def run(main, cls, gpu_preset=None, argv=None):
    """The entry point of every script: parse, print the config, run (under torchrun: inside the
    process group, see distributed), and turn UsageError into exit 2, Diverged into exit 1."""
    try:
        cfg = parse_config(cls, sys.argv[1:] if argv is None else argv, gpu_preset)
        with distributed(cfg):                         # under torchrun: join the process group
            print("config:", json.dumps(dataclasses.asdict(cfg)))
            return main(cfg)
    except (UsageError, FloatingPointError) as e:
        if int(os.environ.get("LOCAL_RANK", 0)) == 0:  # under torchrun: once per machine
            print(f"error: {e}", file=sys.stderr)
        sys.exit(1 if isinstance(e, FloatingPointError) else 2)


def load_task(name):
    """data.get_task, with an unknown name as a UsageError (one line, exit 2)."""
    from data import get_task
    try:
        return get_task(name)
    except ValueError as e:
        raise UsageError(str(e)) from None


# -----------------------------------------------------------------------------
# device, dtype, seed
def get_device(name):
    """'auto' -> cuda, then mps, then cpu. Asking for one that is not there is a UsageError."""
    if name == "auto":
        name = ("cuda" if torch.cuda.is_available() else
                "mps" if torch.backends.mps.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device={name} but CUDA is not available here (try --device=cpu)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device=mps but MPS is not available here (try --device=cpu)")
    if name.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise UsageError(f"unknown device {name!r}: use auto, cpu, cuda or mps")
    return torch.device(name)


def autocast(device):
    """bf16 autocast on CUDA where the GPU supports it; full fp32 everywhere else."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state():
    state = {"python": random.getstate(), "numpy": np.random.get_state()[1].tolist(),
             "numpy_pos": int(np.random.get_state()[2]), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"],
                         0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -----------------------------------------------------------------------------
# optimisation
def make_optimizer(model, lr, weight_decay, muon_lr=0.0):
    """AdamW; matrices decay, biases/norms/embeddings do not (GPT-2 practice). Fused (one kernel
    over every parameter) on CPU and CUDA, where PyTorch's default loops over small per-parameter
    ops that cost a tiny lobe more than its arithmetic. muon_lr > 0: the matrices of every
    block's attention and MLP step by Muon at muon_lr instead (muon.py), the rest (embeddings,
    heads, gates, norms, biases) by AdamW at lr, in one optimizer."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "wte" not in n]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2 or "wte" in n]
    if muon_lr:
        hidden = [p for n, p in model.named_parameters()
                  if p.dim() == 2 and re.search(r"(^|\.)(attn|mlp)\.", n)]
        on_muon = set(map(id, hidden))
        heads = [p for p in decay if id(p) not in on_muon]                # e.g. the score head
        return Muon([{"params": hidden, "muon": True, "lr": muon_lr, "lr_scale": muon_lr / lr,
                      "weight_decay": weight_decay},
                     {"params": heads, "weight_decay": weight_decay}, {"params": rest}], lr=lr)
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters()) or None
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.99),
                             fused=fused)


def lr_at(step, max_iters, lr, warmup=50, decay=True):
    """Linear warmup, then cosine decay to lr/10 at max_iters (or constant if decay=False)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    if not decay:
        return lr
    progress = min(1.0, (step - warmup) / max(1, max_iters - warmup))
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def optimize(model, optimizer, loss, grad_clip=0.0):
    """One update: zero the gradients, backpropagate loss, average the gradients over the ranks
    (under torchrun), clip the norm (if > 0), step. A nan or inf gradient would make every weight
    nan, so it skips the step instead: the weights stay the last good ones, and the next
    Logger.tick stops the run, naming the step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    average_gradients(model)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip or math.inf)
    if torch.isfinite(norm):  # the averaged gradient's norm: every rank decides alike
        optimizer.step()
    else:
        Logger.skipped += 1


def set_lr(optimizer, lr):
    """The schedule's lr for every group, times the group's lr_scale (Muon's matrices: muon.py)."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)


# -----------------------------------------------------------------------------
# checkpoints
def save_checkpoint(path, **state):
    """torch.save to path + '.tmp', then os.replace: a crash mid-write never leaves a torn file.
    Under torchrun rank 0 alone writes, and every rank waits until it has: a rank may read the
    file next (a warm start trained on the spot)."""
    if rank() == 0:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        state["rng"] = rng_state()
        torch.save(state, path + ".tmp")
        os.replace(path + ".tmp", path)
    barrier()


def save_lobes(path, left, right, opt_left=None, opt_right=None, cfg=None, **extra):
    """A pair of lobes as every script saves it: weights and both lobes' configs, the optimizers
    and the run's config when given, plus extra (task, step, rows, ...); sln.load_lobes reads it."""
    run = {} if cfg is None else dict(config=dataclasses.asdict(cfg))
    optimizers = (("opt_left", opt_left), ("opt_right", opt_right))
    run.update({k: o.state_dict() for k, o in optimizers if o})
    save_checkpoint(path, left=left.state_dict(), right=right.state_dict(), **run,
                    left_config=dataclasses.asdict(left.cfg),
                    right_config=dataclasses.asdict(right.cfg), **extra)


def resume(ckpt, path, **state):
    """Continue a run from its checkpoint ckpt (read from path): every module and optimizer in
    state is loaded from the entry of its name (left, opt_left, ...), then the RNG."""
    for name, obj in state.items():
        load_state(obj, ckpt[name], path)
    set_rng_state(ckpt["rng"])


def frozen(model):
    """A copy that no optimizer holds and no gradient reaches: SPIN's opponent (Alg 3), eq 2's
    reference policy."""
    return copy.deepcopy(model).eval().requires_grad_(False)


def load_checkpoint(path, device="cpu"):
    """Load with weights_only=True; a missing or unreadable file is a UsageError, not a trace."""
    if not os.path.exists(path):
        raise UsageError(f"no checkpoint at {path} (train one first, e.g. python train_sft.py)")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise UsageError(f"checkpoint {path} is corrupt or not a checkpoint "
                         f"({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ("left" not in ckpt and "wide" not in ckpt):
        raise UsageError(f"checkpoint {path} holds no lobes: not written by this project")
    return ckpt


def load_state(module, state, path):
    """module.load_state_dict(state), where a checkpoint that does not fit the code (written by an
    older version, or for another model) is a UsageError naming it, not a trace."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[-1].strip()[:120]
        raise UsageError(f"checkpoint {path} does not fit this code ({first}): "
                         "retrain it") from None


# -----------------------------------------------------------------------------
# metrics
def markdown_table(rows, cols):
    """rows (dicts) as a markdown table; cols = [(key, header, format)], '-' where a row lacks a
    key."""
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = (f.format(r[k]) if k in r else "-" for k, _, f in cols)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def writable_dir(path, flag="out_dir"):
    """Make the folder --flag=path and write a file in it now, so that a path that cannot be
    written is one line and exit 2 at the start, not a traceback at the first checkpoint."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise UsageError(f"cannot write to --{flag}={path}: {e.strerror or e}") from None


class Logger:
    """A tqdm bar with the key losses as postfix, every metric appended to out_dir/metrics.jsonl,
    and wandb when a project name is given (imported only then). tick() stops the run (Diverged)
    when a loss is nan or inf, before the script can save the step. Under torchrun only rank 0
    shows, writes and prints: the other ranks' Logger only counts and checks the steps."""
    skipped = 0  # updates that optimize() skipped for a nan or inf gradient since the last tick

    def __init__(self, out_dir, start, total, desc, wandb_project="", config=None):
        self.main = rank() == 0
        if self.main:
            writable_dir(out_dir)
        self.out_dir, self.step, Logger.skipped = out_dir, start, 0
        self.path = os.path.join(out_dir, "metrics.jsonl")
        self.bar = tqdm(total=total, initial=start, desc=desc, dynamic_ncols=True, leave=False,
                        disable=None if self.main else True)  # off without a TTY, or rank > 0
        self.wandb = None
        if wandb_project and self.main:
            try:
                import wandb
            except ImportError:
                raise UsageError("--wandb_project is set but wandb is not installed "
                                 "(pip install wandb)") from None
            self.wandb = wandb.init(project=wandb_project, config=config)

    def log(self, step, **metrics):
        if not self.main:
            return
        metrics = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in metrics.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.wandb:
            self.wandb.log(metrics, step=step)

    def tick(self, **postfix):
        """One optimisation step done, with its losses: a nan or inf one (or an update optimize
        skipped) is Diverged, naming the step as the bar counts it, this update included."""
        self.step += 1
        bad = [f"{k}={v}" for k, v in postfix.items() if not math.isfinite(v)]
        if bad or Logger.skipped:
            self.close()                     # the bar off the terminal: the error is the one line
            ckpt = os.path.join(self.out_dir, "ckpt.pt")
            kept = (f"the last good checkpoint, {ckpt}, is kept" if os.path.exists(ckpt) else
                    "no checkpoint was saved")
            raise Diverged(f"{bad[0] if bad else 'a gradient was nan or inf'} at step "
                           f"{self.step}: the run diverged and stopped; {kept}")
        self.bar.update(1)
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in postfix.items()}, refresh=False)

    def print(self, text):
        if self.main:
            self.bar.write(text)

    def report(self, step, row, rows, digits=3):
        """One evaluation: appended to rows (the run's table), logged and printed as a line."""
        rows.append(row)
        self.log(step, **row)
        self.print_row(row, digits)

    def print_row(self, row, digits=3):
        """One evaluation's dict as a line: 'iter 3 | test 0.990 | ...'."""
        self.print(" | ".join(f"{k} {v:.{digits}f}" if isinstance(v, float) else f"{k} {v}"
                              for k, v in row.items()))

    def close(self):
        self.bar.close()
        if self.wandb:
            self.wandb.finish()


# -----------------------------------------------------------------------------
# torch.distributed: joining and leaving the process group (the rank helpers live in ranks.py)
@contextmanager
def distributed(cfg):
    """Under torchrun (WORLD_SIZE is set): check that cfg.batch_size divides among the ranks,
    join the process group (nccl on CUDA, one GPU per rank; gloo on CPU), send the stdout of
    every rank but 0 to /dev/null (errors still reach stderr), and leave the group at the end.
    Without torchrun: nothing."""
    if "WORLD_SIZE" not in os.environ:
        yield
        return
    n = int(os.environ["WORLD_SIZE"])
    if getattr(cfg, "batch_size", n) % n:
        raise UsageError(f"--batch_size={cfg.batch_size} does not divide among {n} ranks "
                         f"(each takes an equal share): use a multiple of {n}")
    cuda = get_device(getattr(cfg, "device", "cpu")).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo")
    stdout = sys.stdout
    if rank():
        sys.stdout = open(os.devnull, "w")
    try:
        yield
    finally:
        if sys.stdout is not stdout:
            sys.stdout.close()
            sys.stdout = stdout
        dist.destroy_process_group()
