"""Backbone weight files: safetensors with provenance metadata, or `torch.load(weights_only=True)` files."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from fractalad import __version__
from fractalad.errors import InputError
from fractalad.files import atomic_path

# Wrappers added by DistributedDataParallel and torch.compile; stripped once, when the file is written.
_WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")
TORCH_SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".bin", ".ckpt")


def strip_prefixes(key: str) -> str:
    """Remove leading DDP / torch.compile wrapper prefixes from a state-dict key."""
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                changed = True
    return key


def save_weights(
    path: str | Path, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
) -> None:
    """Write `state_dict` (wrapper prefixes stripped) and string `metadata` as safetensors, atomically."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        clean = strip_prefixes(key)
        if clean in tensors:
            raise InputError(
                f"state dict key {key!r} collides with {clean!r} after removing wrapper prefixes"
            )
        # clone() breaks storage sharing, which safetensors refuses.
        tensors[clean] = value.detach().to("cpu").contiguous().clone()
    meta = {str(k): str(v) for k, v in metadata.items()}
    meta.setdefault("fractalad_version", __version__)
    write_safetensors(path, tensors, meta)


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a safetensors file atomically: readers see the old file or the complete new one, never a part."""
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError(f"{path}: not a readable safetensors weight file ({error}); re-export it") from error
    return tensors, metadata


def _load_torch(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for foreign or pickled-object files
        raise InputError(
            f"{path}: not a plain weight file (it holds Python objects or is damaged); pass a .safetensors "
            "file or a state dict of tensors saved with torch.save"
        ) from error
    metadata: dict[str, str] = {}
    if isinstance(payload, Mapping):
        raw_meta = payload.get("metadata")
        if isinstance(raw_meta, Mapping):
            metadata = {str(k): str(v) for k, v in raw_meta.items()}
        for nested in ("state_dict", "model"):
            if isinstance(payload.get(nested), Mapping):
                payload = payload[nested]
                break
    if not isinstance(payload, Mapping) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise InputError(
            f"{path}: expected a state dict of tensors (optionally under 'state_dict' or 'model')"
        )
    return dict(payload), metadata


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a weight file; returns (state_dict, metadata) — metadata empty when the file carries none."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file {path} does not exist")
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    if path.suffix in TORCH_SUFFIXES:
        return _load_torch(path)
    raise InputError(
        f"{path}: unknown weight file type {path.suffix!r}; use .safetensors or one of {TORCH_SUFFIXES}"
    )


def file_digest(path: str | Path, length: int = 12) -> str:
    """Short SHA-256 of a file's bytes, used to name weights in results."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]
