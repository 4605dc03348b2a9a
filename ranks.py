"""
Ranks under torch.distributed: `torchrun --nproc_per_node=N script.py` starts N copies of a
script (ranks) with RANK, LOCAL_RANK and WORLD_SIZE in their environment. Each rank takes its
share of every batch (shard), the gradients are averaged over the ranks (average_gradients, called
by common.optimize), and rank 0 alone logs and checkpoints. Without torchrun every function here
gives back its input or does nothing, so a plain `python script.py` runs exactly as it would
without this file. common.distributed joins and leaves the process group.

    $ torchrun --standalone --nproc_per_node=2 train_spin.py
"""
import zlib

import torch
import torch.distributed as dist


def rank():
    """This process's rank, 0 .. world_size() - 1; 0 without torchrun."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size():
    """The number of ranks; 1 without torchrun."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def barrier():
    """Wait until every rank is here."""
    if world_size() > 1:
        dist.barrier()


def shard(items):
    """This rank's share of a batch (a list or a tensor): a contiguous slice, in rank order, so
    that gather(shard(x)) is x."""
    r, n = rank(), world_size()
    return items if n == 1 else items[r * len(items) // n:(r + 1) * len(items) // n]


def gather(items):
    """Every rank's list, joined in rank order: the inverse of shard."""
    if world_size() == 1:
        return items
    parts = [None] * world_size()
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in part]


def _comm_device():
    """Where a collective runs: the rank's GPU under nccl, else the CPU (gloo)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def total(x):
    """x (a tensor or a number) summed over the ranks, with no gradient; x itself in one
    process."""
    if world_size() == 1:
        return x
    t = torch.as_tensor(x, dtype=None if torch.is_tensor(x) else torch.float64)
    s = t.detach().to(_comm_device(), copy=True)
    dist.all_reduce(s)
    return s.to(t.device) if torch.is_tensor(x) else s.item()


def averaged(x):
    """x's mean over the ranks: a tensor, or a list of numbers (a statistic of each rank's share
    becomes the whole batch's); x itself in one process."""
    n = world_size()
    if n == 1:
        return x
    if torch.is_tensor(x):
        return total(x) / n
    return [v / n for v in total(torch.tensor(x, dtype=torch.float64)).tolist()]


def share(mean, n):
    """A loss that is a mean over this rank's n items (answer tokens, weights), scaled to this
    rank's part of the mean over every rank's items: mean * n * world_size / N, N = total(n).
    average_gradients then gives exactly the gradient of the mean over the whole batch; a mean
    per rank would not, where the ranks hold different numbers of items. One process: mean."""
    if world_size() == 1:
        return mean
    return mean * (n * world_size() / total(n))


def average_gradients(model):
    """Under torchrun: every gradient of model becomes its mean over the ranks, in one
    all-reduce, as DistributedDataParallel would leave it. By hand rather than DDP because a
    lobe's loss also reaches it through score() and other methods than forward(), which DDP does
    not watch, and a step may backpropagate several losses (PPO's epochs, self-play). A gradient
    that exists on any rank exists on all after it, as it would for the whole batch in one
    process. One process: nothing."""
    n = world_size()
    if n == 1:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    had = torch.tensor([float(p.grad is not None) for p in params], device=grads[0].device)
    flat = total(torch.cat([g.reshape(-1) for g in grads] + [had]))
    sizes = [p.numel() for p in params]
    for p, g, h in zip(params, flat[:-len(params)].split(sizes), flat[-len(params):].tolist()):
        if h > 0:
            p.grad = (g / n).view_as(p).to(p.device)


def seed_ranks(key):
    """Under torchrun: seed torch's generator from key and the rank, before the ranks sample
    their own shares of a rollout. The ranks then draw different samples, and a resumed run
    draws exactly the ones the uninterrupted run did: each rank's generator follows from where
    the run is, not from a state that only rank 0 saved. One process: nothing; its one stream
    flows on as it always has."""
    if world_size() > 1:
        torch.manual_seed(zlib.crc32(f"{key}/rank {rank()}".encode()))
