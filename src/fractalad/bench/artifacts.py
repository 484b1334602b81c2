"""Per-run artefacts beside the store: every test image's score, and the image, mask and anomaly map of a
few chosen test images (for the qualitative figure). Written atomically; the store records their hashes."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fractalad.files import atomic_path, write_text_atomic
from fractalad.provenance import file_sha256

SCORES_FILE = "scores.csv"
EXAMPLES_FILE = "examples.npz"


@dataclass(frozen=True)
class Artifact:
    """A file written for a run: its path relative to the artefact folder and its SHA-256."""

    path: str
    sha256: str


def pick_examples(labels: np.ndarray, count: int) -> list[int]:
    """Indices of up to `count` test images: mostly anomalous ones, at least one good one when present.

    The choice depends on the labels alone, so every run on a category shows the same images side by side.
    """
    anomalous = [int(i) for i in np.flatnonzero(labels == 1)]
    good = [int(i) for i in np.flatnonzero(labels == 0)]
    n_good = min(len(good), max(1, count // 3)) if good else 0
    chosen = anomalous[: count - n_good] + good[:n_good]
    return chosen[:count]


def default_artifacts(store: Path) -> Path:
    """<store stem>-artifacts beside the store: where a grid's artefacts live unless told otherwise."""
    return Path(store).with_name(f"{Path(store).stem}-artifacts")


def run_folder(artifacts_dir: Path, run_id: str) -> Path:
    """<artifacts>/<first two hex digits>/<run_id>: keeps folders small in a grid of thousands of runs."""
    return Path(artifacts_dir) / run_id[:2] / run_id


def write_scores(folder: Path, names: Sequence[str], labels: np.ndarray, scores: np.ndarray) -> Path:
    """scores.csv: file, label, score for every test image."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "label", "score"])
    for name, label, score in zip(names, labels.tolist(), scores.tolist(), strict=True):
        writer.writerow([name, label, repr(float(score))])
    path = folder / SCORES_FILE
    write_text_atomic(path, buffer.getvalue())
    return path


def write_examples(
    folder: Path, names: Sequence[str], images: np.ndarray, masks: np.ndarray, maps: np.ndarray
) -> Path:
    """examples.npz: images (N, H, W, 3) uint8, masks (N, H, W) uint8, maps (N, H, W) float32, names (N,)."""
    path = folder / EXAMPLES_FILE
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(
            handle,
            images=images.astype(np.uint8),
            masks=masks.astype(np.uint8),
            maps=maps.astype(np.float32),
            names=np.asarray(list(names), dtype=str),
        )
    return path


def read_examples(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an examples.npz (no pickled objects are allowed in it)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def describe_files(artifacts_dir: Path, paths: Sequence[Path]) -> tuple[Artifact, ...]:
    """Artefact records (relative path, SHA-256) of files written under artifacts_dir."""
    return tuple(Artifact(Path(p).relative_to(artifacts_dir).as_posix(), file_sha256(p)) for p in paths)
