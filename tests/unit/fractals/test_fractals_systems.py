"""Systems files: round trip, provenance metadata, and clear errors for broken or foreign files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fractalad import __version__
from fractalad.errors import InputError
from fractalad.fractals import sampling
from fractalad.fractals.systems import load_systems, pack_systems, save_systems, systems_digest


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    systems = sampling.sample_systems(7, 0, 2, 5)
    path = tmp_path / "systems.npz"
    save_systems(path, systems, {"sampler": "sigma", "seed": 0})
    return path, systems


def test_round_trip_and_metadata(saved: tuple[Path, list[np.ndarray]]) -> None:
    path, systems = saved
    loaded, metadata = load_systems(path)
    assert len(loaded) == 7
    for a, b in zip(loaded, systems):
        np.testing.assert_array_equal(a, b)
    assert metadata["sampler"] == "sigma" and metadata["seed"] == 0
    assert metadata["fractalad_version"] == __version__ and metadata["format_version"] == 1
    assert systems_digest(loaded) == systems_digest(systems)
    assert not list(path.parent.glob("*.tmp"))


def test_truncated_and_garbage_files(saved: tuple[Path, list[np.ndarray]], tmp_path: Path) -> None:
    path, _ = saved
    truncated = tmp_path / "cut.npz"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="cut.npz is truncated or not a .npz systems file"):
        load_systems(truncated)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(InputError, match="garbage.npz"):
        load_systems(garbage)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_systems(tmp_path / "missing.npz")


def test_foreign_and_invalid_contents(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.zeros(3))
    with pytest.raises(InputError, match="not a fractalad systems file"):
        load_systems(foreign)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, maps=np.array([object()]), counts=np.array([1]), metadata=np.array("{}"))
    with pytest.raises(InputError, match="pickled.npz"):
        load_systems(pickled)
    header = json.dumps({"format": "fractalad-systems", "format_version": 1})
    nan = tmp_path / "nan.npz"
    np.savez(nan, maps=np.full((2, 2, 3), np.nan), counts=np.array([2]), metadata=np.array(header))
    with pytest.raises(InputError, match="NaN or infinite"):
        load_systems(nan)
    shape = tmp_path / "shape.npz"
    np.savez(shape, maps=np.zeros((2, 3, 3)), counts=np.array([2]), metadata=np.array(header))
    with pytest.raises(InputError, match=r"expected \(M, 2, 3\)"):
        load_systems(shape)
    counts = tmp_path / "counts.npz"
    np.savez(counts, maps=np.zeros((2, 2, 3)), counts=np.array([3]), metadata=np.array(header))
    with pytest.raises(InputError, match="add up to 3 but the file holds 2"):
        load_systems(counts)
    future = tmp_path / "future.npz"
    header2 = json.dumps({"format": "fractalad-systems", "format_version": 99})
    np.savez(future, maps=np.zeros((2, 2, 3)), counts=np.array([2]), metadata=np.array(header2))
    with pytest.raises(InputError, match="format version 99"):
        load_systems(future)


def test_save_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="expected \\(N, 2, 3\\)"):
        save_systems(tmp_path / "x.npz", [np.zeros((2, 3))], {})
    with pytest.raises(InputError, match="not JSON-serialisable"):
        save_systems(tmp_path / "x.npz", [np.zeros((2, 2, 3))], {"bad": object()})


def test_pack_systems_pads_with_zeros() -> None:
    maps, counts = pack_systems([np.ones((2, 2, 3)), np.ones((4, 2, 3))])
    assert maps.shape == (2, 4, 2, 3) and list(counts) == [2, 4]
    assert maps[0, 2:].sum() == 0
