"""Export a fixed fractal dataset to disk (ImageFolder layout: one folder per class, PNG files), resumably."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from fractalad import __version__
from fractalad.errors import InputError
from fractalad.files import atomic_path, write_text_atomic
from fractalad.fractals.dataset import FractalDataset
from fractalad.fractals.render import RenderConfig
from fractalad.fractals.sampling import process_context
from fractalad.fractals.systems import systems_digest

MANIFEST = "manifest.json"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_worker_dataset: FractalDataset | None = None


def sample_path(root: Path, label: int, index_in_class: int) -> Path:
    """Where sample `index_in_class` of class `label` lives: root/class_00012/000345.png."""
    return root / f"class_{label:05d}" / f"{index_in_class:06d}.png"


def is_complete_png(path: Path) -> bool:
    """True when path exists and ends with a PNG IEND chunk (a crash mid-write leaves no such file)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(-len(_PNG_END), os.SEEK_END)
            return handle.read() == _PNG_END
    except OSError:
        return False


def write_png(path: Path, image: np.ndarray) -> None:
    """Write image (H, W, 3) uint8 atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def _init_worker(systems: list[np.ndarray], args: tuple) -> None:
    global _worker_dataset
    _worker_dataset = FractalDataset(systems, *args)


def _write_indices(root: Path, indices: Sequence[int], dataset: FractalDataset) -> int:
    """Render and write the given sample indices; returns how many were written."""
    for idx in indices:
        label, within = divmod(idx, dataset.samples_per_class)
        write_png(sample_path(root, label, within), dataset.render_item(idx))
    return len(indices)


def _write_in_worker(root: Path, indices: Sequence[int]) -> int:
    """Pool task: the worker's dataset was built once by _init_worker."""
    if _worker_dataset is None:
        raise RuntimeError("export worker used before its initializer ran")
    return _write_indices(root, indices, _worker_dataset)


def _manifest(dataset: FractalDataset, systems: Sequence[np.ndarray], seed: int) -> dict[str, Any]:
    return {
        "format": "fractalad-imagefolder",
        "fractalad_version": __version__,
        "num_classes": dataset.num_classes,
        "samples_per_class": dataset.samples_per_class,
        "num_systems": len(systems),
        "systems_sha256": systems_digest(systems),
        "seed": seed,
        "render": dataclasses.asdict(dataset.config),
    }


def _check_existing(root: Path, manifest: dict[str, Any]) -> None:
    """Refuse to resume into a folder exported with different settings."""
    path = root / MANIFEST
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError) as error:
        raise InputError(f"{path} is unreadable ({error}); delete it or export to a new folder") from error
    keys = [
        key
        for key in manifest
        if key != "fractalad_version" and old.get(key) != json.loads(json.dumps(manifest[key]))
    ]
    if keys:
        raise InputError(
            f"{root} holds an export with different settings ({', '.join(keys)}); use a new output folder"
        )


def export_imagefolder(
    systems: Sequence[np.ndarray],
    out_dir: str | Path,
    num_classes: int,
    samples_per_class: int,
    config: RenderConfig,
    seed: int,
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Write every sample of FractalDataset(..., epoch 0) as root/class_<C>/<index>.png plus manifest.json.

    Files already complete are skipped, so an interrupted export resumes; returns the output folder.
    """
    root = Path(out_dir)
    args = (num_classes, samples_per_class, config, seed)
    dataset = FractalDataset(systems, *args)
    manifest = _manifest(dataset, systems, seed)
    _check_existing(root, manifest)
    for label in range(num_classes):
        sample_path(root, label, 0).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(root / MANIFEST, json.dumps({**manifest, "complete": False}, indent=2))
    todo = [
        idx
        for idx in range(len(dataset))
        if not is_complete_png(sample_path(root, *divmod(idx, samples_per_class)))
    ]
    bar = tqdm(
        total=len(dataset), initial=len(dataset) - len(todo), desc="export", unit="img", disable=not progress
    )
    if workers <= 1:
        for start in range(0, len(todo), 64):
            bar.update(_write_indices(root, todo[start : start + 64], dataset))
    else:
        chunk = max(1, min(256, len(todo) // (workers * 8) + 1))
        context = process_context()
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(list(systems), args)
        ) as pool:
            futures = [
                pool.submit(_write_in_worker, root, todo[i : i + chunk]) for i in range(0, len(todo), chunk)
            ]
            for future in as_completed(futures):
                bar.update(future.result())
    bar.close()
    write_text_atomic(root / MANIFEST, json.dumps({**manifest, "complete": True}, indent=2))
    return root
