"""torchrun / DDP helpers: process-group setup from the environment, rank-0 gating, parameter digests."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from datetime import timedelta

import torch
import torch.distributed as dist

from fractalad.devices import resolve_device


@dataclasses.dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job; world_size 1 means a plain single process."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, saves and exports."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str) -> DistContext:
    """Join the torchrun process group when WORLD_SIZE > 1 (nccl on CUDA, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if target.type == "cuda":
            torch.cuda.set_device(target)
        backend = "nccl" if target.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return DistContext(rank=rank, local_rank=local_rank, world_size=world_size, device=target)


def barrier(context: DistContext) -> None:
    """Wait for all ranks (no-op in a single process)."""
    if context.distributed:
        if context.device.type == "cuda":
            dist.barrier(device_ids=[context.device.index or 0])
        else:
            dist.barrier()


def cleanup(context: DistContext) -> None:
    """Leave the process group if this module joined one."""
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, context: DistContext) -> torch.Tensor:
    """Sum a small tensor over ranks (identity in a single process)."""
    if context.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def parameter_digest(model: torch.nn.Module) -> str:
    """SHA-256 over all parameters' bytes, in name order: equal digests mean identical weights."""
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def gather_strings(text: str, context: DistContext) -> list[str]:
    """Every rank's `text`, in rank order."""
    if not context.distributed:
        return [text]
    result: list[str | None] = [None] * context.world_size
    dist.all_gather_object(result, text)
    return [str(r) for r in result]


def broadcast_buffers(model: torch.nn.Module, context: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to all ranks (CPU DDP runs without SyncBatchNorm)."""
    if context.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
