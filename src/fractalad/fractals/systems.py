"""Portable systems files: .npz with packed arrays and a JSON metadata string, never pickled."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fractalad import __version__
from fractalad.errors import InputError
from fractalad.files import atomic_path

FORMAT = "fractalad-systems"
FORMAT_VERSION = 1
_KEYS = {"maps", "counts", "metadata"}


def save_systems(path: str | Path, systems: Sequence[np.ndarray], metadata: Mapping[str, Any]) -> None:
    """Write systems (N_i, 2, 3) atomically: maps (sum N_i, 2, 3) float64, counts (S,), JSON metadata."""
    path = Path(path)
    if len(systems) == 0:
        raise InputError(f"refusing to write {path}: no systems given")
    arrays = [np.asarray(system, np.float64) for system in systems]
    for index, system in enumerate(arrays):
        if system.ndim != 3 or system.shape[1:] != (2, 3) or system.shape[0] < 1:
            raise InputError(f"system {index} has shape {system.shape}: expected (N, 2, 3) with N >= 1")
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "fractalad_version": __version__}
    header.update(dict(metadata))
    try:
        text = json.dumps(header, sort_keys=True)
    except TypeError as error:
        raise InputError(f"metadata for {path} is not JSON-serialisable: {error}") from error
    # A file handle, not a name: np.savez would append ".npz" to a temporary name.
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            maps=np.concatenate(arrays),
            counts=np.array([len(s) for s in arrays], np.int64),
            metadata=np.array(text),
        )


def load_systems(path: str | Path) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Read a systems file -> ([(N_i, 2, 3) float64], metadata); InputError for broken or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"systems file {path} does not exist")
    hint = "regenerate it with `fractalad fractals sample`"
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            if not _KEYS <= keys:
                raise InputError(f"{path} is not a fractalad systems file (arrays {sorted(keys)}); {hint}")
            maps, counts, text = data["maps"], data["counts"], data["metadata"]
    except InputError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as error:
        # numpy's own message for a non-zip file suggests allow_pickle=True, which is exactly what must not
        # happen with an untrusted file, so only the exception type is shown.
        raise InputError(
            f"{path} is truncated or not a .npz systems file ({type(error).__name__}); {hint}"
        ) from error
    metadata = _parse_metadata(path, text, hint)
    _check_arrays(path, maps, counts, hint)
    return list(np.split(maps.astype(np.float64), np.cumsum(counts)[:-1])), metadata


def _parse_metadata(path: Path, text: np.ndarray, hint: str) -> dict[str, Any]:
    if text.dtype.kind != "U" or text.ndim != 0:
        raise InputError(f"{path}: metadata is not a JSON string; {hint}")
    try:
        metadata = json.loads(str(text))
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: metadata is not valid JSON ({error}); {hint}") from error
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise InputError(
            f"{path} is not a fractalad systems file (format {metadata.get('format')!r}); {hint}"
        )
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(
            f"{path} has systems format version {version!r}, this fractalad reads {FORMAT_VERSION}; {hint}"
        )
    return metadata


def _check_arrays(path: Path, maps: np.ndarray, counts: np.ndarray, hint: str) -> None:
    if maps.ndim != 3 or maps.shape[1:] != (2, 3) or maps.dtype.kind != "f":
        raise InputError(
            f"{path}: maps have shape {maps.shape} dtype {maps.dtype}, expected (M, 2, 3) float; {hint}"
        )
    if counts.ndim != 1 or counts.dtype.kind not in "iu" or len(counts) == 0 or (counts < 1).any():
        raise InputError(f"{path}: map counts are malformed (need positive integers); {hint}")
    if int(counts.sum()) != len(maps):
        raise InputError(
            f"{path}: map counts add up to {int(counts.sum())} but the file holds {len(maps)} maps; {hint}"
        )
    if not np.isfinite(maps).all():
        raise InputError(f"{path}: maps contain NaN or infinite values; {hint}")


def pack_systems(systems: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad to one array: maps (S, Nmax, 2, 3) float64, counts (S,) int64 (padding has probability 0)."""
    counts = np.array([len(s) for s in systems], np.int64)
    packed = np.zeros((len(systems), int(counts.max()), 2, 3))
    for index, system in enumerate(systems):
        packed[index, : len(system)] = system
    return packed, counts


def systems_digest(systems: Sequence[np.ndarray]) -> str:
    """SHA-256 of the systems' float64 bytes and shapes (identifies a systems set in provenance metadata)."""
    digest = hashlib.sha256()
    for system in systems:
        array = np.ascontiguousarray(system, np.float64)
        digest.update(np.array(array.shape, np.int64).tobytes())
        digest.update(array.tobytes())
    return digest.hexdigest()
