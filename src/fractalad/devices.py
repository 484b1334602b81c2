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


PRECISIONS = ("auto", "fp32", "bf16")  # what a caller may ask for; "auto" resolves to one of the other two


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bf16 matrices in hardware: a CUDA GPU with bf16, or a CPU with AMX tiles.

    Only there does bf16 autocast make training faster; elsewhere bf16 is emulated and slower than float32.
    """
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.cpu._is_amx_tile_supported())
    return False


def resolve_precision(name: str, device: torch.device) -> str:
    """'auto' -> 'bf16' where `device` computes bf16 natively, else 'fp32'; InputError for an unknown name."""
    if name not in PRECISIONS:
        raise InputError(f"unknown precision {name!r}; use {', '.join(PRECISIONS)}")
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return name
