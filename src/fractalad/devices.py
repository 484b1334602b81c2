"""The one check of a requested compute device, shared by every command that takes --device / device=."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fractalad.errors import InputError

if TYPE_CHECKING:
    import torch


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> this rank's CUDA device when available, else CPU; InputError for a device that is absent."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(
                f"device {name!r} requested but CUDA is not available on this machine; use cpu or auto"
            )
        device = torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(
                f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA device(s); "
                "use cuda:0 or auto"
            )
        return device
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from error
