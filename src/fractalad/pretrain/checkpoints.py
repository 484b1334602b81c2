"""Training checkpoints: atomic save, safe load (weights_only), exact restore of model/optimiser/LR/RNG."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import torch

from fractalad.errors import InputError
from fractalad.files import atomic_path

CHECKPOINT_FORMAT = "fractalad-pretrain-checkpoint/1"
LAST = "last.pt"
BEST = "best.pt"


@dataclasses.dataclass(frozen=True)
class TrainState:
    """Progress counters: the next step to run is step `step_in_epoch` of epoch `epoch` (0-based)."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_accuracy: float = -1.0
    # Loss sum, hits and samples (all ranks) of this epoch's logged steps and of the steps since the last log
    # row, so a resumed epoch's accuracy covers the steps before the restart too.
    epoch_sums: tuple[float, float, float] = (0.0, 0.0, 0.0)
    window_sums: tuple[float, float, float] = (0.0, 0.0, 0.0)


def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: dict[str, Any],
    state: TrainState,
) -> None:
    """Write a full training checkpoint atomically."""
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": config["arch"],
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_states(),
        "state": dataclasses.asdict(state),
        "config": config,
    }
    # Our own handle: closed at once when a write fails (torch's would stay open until garbage collection).
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)


def load_checkpoint(path: str | Path, arch: str | None = None) -> dict[str, Any]:
    """Read a checkpoint with torch.load(weights_only=True); InputError if foreign or of another `arch`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise  # the CLI names the file and the missing permission
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:
        # torch's own text advises unsafe loading (weights_only=False); a foreign file is refused instead.
        raise InputError(
            f"checkpoint {path} is not a plain fractalad pre-training checkpoint (it holds Python objects or "
            "is damaged); pass a last.pt/best.pt written by `fractalad pretrain`"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise InputError(
            f"checkpoint {path} is not a fractalad pre-training checkpoint; pass a last.pt/best.pt written by "
            "`fractalad pretrain`"
        )
    if arch is not None and payload["arch"] != arch:
        raise InputError(
            f"checkpoint {path} holds a {payload['arch']} but the config asks for {arch}; "
            f"set arch={payload['arch']} or start a new run in another output folder"
        )
    return payload


def restore(
    payload: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> TrainState:
    """Load model/optimiser/scheduler/RNG state from a checkpoint payload; returns where to continue."""
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as error:
        raise InputError(f"checkpoint weights do not fit the {payload['arch']} model: {error}") from error
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["rng"]["torch"])
    if "cuda" in payload["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["rng"]["cuda"])
    saved = payload["state"]
    sums = {key: tuple(saved[key]) for key in ("epoch_sums", "window_sums") if key in saved}
    return TrainState(**{**saved, **sums})
