"""Data-parallel search with plain ``torch.distributed`` (gloo on CPU, nccl on GPU).

Every rank holds the same supernet and alpha (same seed), sees its own shard of each split, and after each
backward pass averages the gradients of the weights *and* of alpha with one all-reduce each. All-reduce hands
every rank the same sums, so every rank takes the identical optimiser step and alpha stays bit-identical across
ranks without a broadcast. (DDP's bucketed overlap is not used: the alpha and weight steps are separate backward
passes, and the explicit all-reduce keeps that visible.)
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def average_gradients_(grads: list[torch.Tensor]) -> None:
    """Replace each gradient by its mean over ranks, in place (no-op on one process)."""
    if not is_distributed() or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def sum_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over ranks (identity on one process); ``device`` must suit the backend."""
    if not is_distributed():
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def identical_across_ranks(tensors: list[torch.Tensor]) -> bool:
    """Whether every rank holds bit-identical ``tensors`` (True on one process). One all-gather of their values: a
    check cheap enough to run every epoch on alpha, which the search keeps identical without broadcasting it."""
    if not is_distributed():
        return True
    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    return all(torch.equal(gathered[0], other) for other in gathered[1:])
