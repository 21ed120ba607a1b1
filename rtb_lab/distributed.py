"""Data-parallel helpers over torch.distributed (launched by ``torchrun``).

Without a process group (the normal, single-process case) every helper is a no-op that
returns its input: rank 0, world size 1, no communication. docs/distributed.md explains
what `RTBTrainer` averages across ranks and why.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["average_gradients", "broadcast_object", "broadcast_parameters", "gather_on_main",
           "global_group_mean", "init_from_env", "is_distributed", "is_main", "launched",
           "rank", "rank_seed", "reduce_scalars", "world_size"]

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_OPS = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN,
        "max": dist.ReduceOp.MAX}


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0, the rank that evaluates, logs and writes checkpoints."""
    return rank() == 0


def launched() -> bool:
    """True when started by torchrun (or srun with its variables) with WORLD_SIZE > 1."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(backend: str | None = None, timeout_s: float = 1800.0) -> None:
    """Join the process group described by torchrun's environment variables.

    Each rank computes on ``cuda:LOCAL_RANK`` when CUDA is available. Does nothing if a
    process group is already initialised.

    Args:
        backend: "gloo", "nccl", ... ; None lets torch pair gloo (CPU tensors) with
            nccl (CUDA tensors).
        timeout_s: how long a collective waits for the other ranks before failing.

    Raises:
        RuntimeError: a variable torchrun sets (RANK, WORLD_SIZE, MASTER_ADDR,
            MASTER_PORT) is missing, or torch was built without torch.distributed.
    """
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed")
    if dist.is_initialized():
        return
    missing = [name for name in TORCHRUN_ENV if name not in os.environ]
    if missing:
        raise RuntimeError(f"cannot join a process group: {', '.join(missing)} not set; launch "
                           "with `torchrun --nproc_per_node N -m rtb_lab.cli ...` (it sets "
                           f"{', '.join(TORCHRUN_ENV)})")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, init_method="env://", timeout=timedelta(seconds=timeout_s))


def rank_seed(seed: int) -> int:
    """A seed for this rank's random stream: `seed` itself on rank 0 (so rank 0 draws what a
    single process would), a reproducible, well-mixed distinct seed on the others."""
    if rank() == 0:
        return seed
    return int(np.random.SeedSequence([seed % 2**63, rank()]).generate_state(1, np.uint64)[0])


def _device() -> torch.device:
    """Where small tensors must live to be communicated (NCCL-only groups: the GPU)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def reduce_scalars(values: list[float], op: Literal["sum", "mean", "min", "max"] = "mean"
                   ) -> list[float]:
    """The sum, mean, min or max of each value over all ranks (the values themselves when
    not distributed)."""
    if not is_distributed():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.all_reduce(tensor, _OPS[op])
    if op == "mean":
        tensor /= world_size()
    return tensor.tolist()


def broadcast_parameters(params: Iterable[Tensor]) -> None:
    """Overwrite every rank's `params` with rank 0's, in place."""
    if not is_distributed():
        return
    with torch.no_grad():
        for param in params:
            dist.broadcast(param.data, src=0)


def average_gradients(params: Iterable[Tensor]) -> None:
    """Replace each ``param.grad`` by its mean over ranks (one all-reduce).

    Parameters without a gradient are skipped; every rank runs the same loss, so the set
    with gradients is the same on every rank.
    """
    if not is_distributed():
        return
    with_grad = [param for param in params if param.grad is not None]
    if not with_grad:
        return
    flat = torch.cat([param.grad.reshape(-1) for param in with_grad])
    dist.all_reduce(flat)
    flat /= world_size()
    for param, grad in zip(with_grad, flat.split([p.numel() for p in with_grad]), strict=True):
        param.grad.copy_(grad.view_as(param.grad))


def global_group_mean(terms: Tensor, cond: Tensor | None = None) -> Tensor:
    """The mean of `terms` over the global batch, per condition group.

    Args:
        terms: [B] per-trajectory values of this rank (detached).
        cond: [B, C] conditions (trajectories with equal rows form a group, across ranks
            too), or None for one group. B must be the same on every rank.

    Returns:
        [B]: for each trajectory, the mean over every rank's trajectories of its group.
    """
    if cond is None:
        total = torch.stack([terms.sum(), terms.new_tensor(float(terms.numel()))])
        if is_distributed():
            dist.all_reduce(total)
        return (total[0] / total[1]).expand_as(terms)
    everyone = cond
    if is_distributed():
        gathered = [torch.empty_like(cond) for _ in range(world_size())]
        dist.all_gather(gathered, cond.contiguous())
        everyone = torch.cat(gathered)  # [R * B, C]: the same group ids on every rank
    groups = torch.unique(everyone, dim=0, return_inverse=True)[1]
    mine = groups[rank() * len(terms):(rank() + 1) * len(terms)]
    stats = terms.new_zeros(2, int(groups.max()) + 1)  # [2, G] sums and counts
    stats[0].index_add_(0, mine, terms)
    stats[1].index_add_(0, mine, torch.ones_like(terms))
    if is_distributed():
        dist.all_reduce(stats)
    return (stats[0] / stats[1])[mine]


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (picklable objects)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_on_main(obj: Any) -> list[Any] | None:
    """Every rank's `obj`, in rank order, on rank 0; None on the other ranks. Without a
    process group: ``[obj]``."""
    if not is_distributed():
        return [obj]
    found = [None] * world_size() if is_main() else None
    dist.gather_object(obj, found, dst=0)
    return found
