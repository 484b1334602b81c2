"""ImageFolder export (resumable, atomic, manifest), preview grids and the `fractalad fractals` commands."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fractalad.commands import fractals as command
from fractalad.errors import InputError
from fractalad.fractals import sampling
from fractalad.fractals.dataset import FractalDataset
from fractalad.fractals.export import export_imagefolder, is_complete_png, sample_path
from fractalad.fractals.preview import render_grid
from fractalad.fractals.render import RENDER_PRESETS
from fractalad.fractals.systems import load_systems, save_systems

CONFIG = RENDER_PRESETS["paper"].replace(size=32, n_points=2_000)


def test_export_layout_and_resume(tmp_path: Path) -> None:
    systems = sampling.sample_systems(2, 0)
    root = export_imagefolder(systems, tmp_path / "out", 2, 3, CONFIG, seed=1, progress=False)
    files = sorted(root.rglob("*.png"))
    assert [f.relative_to(root).as_posix() for f in files][:3] == [
        "class_00000/000000.png",
        "class_00000/000001.png",
        "class_00000/000002.png",
    ]
    assert len(files) == 6 and all(is_complete_png(f) for f in files)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["complete"] and manifest["num_classes"] == 2 and manifest["render"]["size"] == 32
    expected = FractalDataset(systems, 2, 3, CONFIG, seed=1).render_item(4)
    np.testing.assert_array_equal(np.asarray(Image.open(sample_path(root, 1, 1))), expected)

    before = {f: f.read_bytes() for f in files}
    kept = sample_path(root, 0, 0)
    os.utime(kept, (1, 1))
    sample_path(root, 1, 2).unlink()
    broken = sample_path(root, 0, 1)
    broken.write_bytes(before[broken][:40])  # a file cut short, as if written by a non-atomic writer
    assert not is_complete_png(broken)
    export_imagefolder(systems, root, 2, 3, CONFIG, seed=1, workers=2, progress=False)
    assert kept.stat().st_mtime == 1  # complete files are skipped
    assert {f: f.read_bytes() for f in sorted(root.rglob("*.png"))} == before
    assert not list(root.rglob("*.tmp"))
    with pytest.raises(InputError, match="different settings"):
        export_imagefolder(systems, root, 2, 3, CONFIG, seed=2, progress=False)


def test_preview_grid() -> None:
    grid = render_grid(sampling.sample_systems(5, 0), CONFIG, seed=0, columns=3)
    assert grid.shape == (2 * 34 + 2, 3 * 34 + 2, 3) and grid.dtype == np.uint8
    assert (grid[:2] == 255).all() and grid[2:34, 2:34].max() > 0


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fractalad")
    command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_sample_preview_export(tmp_path: Path) -> None:
    systems_file = tmp_path / "s.npz"
    assert (
        _run(
            [
                "fractals",
                "sample",
                "--count",
                "4",
                "--preset",
                "code",
                "--seed",
                "3",
                "--out",
                str(systems_file),
            ]
        )
        == 0
    )
    systems, metadata = load_systems(systems_file)
    assert len(systems) == 4 and all(2 <= len(s) <= 4 for s in systems) and metadata["n_max"] == 4
    png = tmp_path / "grid.png"
    assert (
        _run(
            [
                "fractals",
                "preview",
                "--systems",
                str(systems_file),
                "--size",
                "24",
                "--n-points",
                "500",
                "--out",
                str(png),
            ]
        )
        == 0
    )
    assert Image.open(png).size == (4 * 26 + 2, 26 + 2)
    out = tmp_path / "folder"
    assert (
        _run(
            [
                "fractals",
                "export",
                "--systems",
                str(systems_file),
                "--out",
                str(out),
                "--classes",
                "2",
                "--samples-per-class",
                "2",
                "--size",
                "16",
                "--n-points",
                "500",
            ]
        )
        == 0
    )
    assert len(list(out.rglob("*.png"))) == 4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sample", "--count", "3", "--n-range", "6", "2"], "n_min=6, n_max=2"),
        (["sample", "--count", "3", "--preset", "huge"], "unknown map-count preset 'huge'"),
        (["preview", "--render", "fancy"], "unknown render preset 'fancy'"),
        (["export", "--systems", "SYSTEMS", "--classes", "3"], "cannot be split evenly into 3 classes"),
    ],
)
def test_cli_invalid_parameters(argv: list[str], message: str, tmp_path: Path) -> None:
    save_systems(tmp_path / "s.npz", sampling.sample_systems(4, 0), {})
    argv = [a.replace("SYSTEMS", str(tmp_path / "s.npz")) for a in argv]
    with pytest.raises(InputError, match=message):
        _run(["fractals", *argv, "--out", str(tmp_path / "x")])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sample", "--count", "-3"], "argument --count: must be at least 1, got -3"),
        (["preview", "--size", "-5"], "argument --size: must be between 8 and 8192, got -5"),
        (["export", "--systems", "s.npz", "--samples-per-class", "-1"], "--samples-per-class: must be at least 1"),
    ],
)
def test_parser_refuses_out_of_range_numbers(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _run(["fractals", *argv, "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("sample", "preview", "export"):
        with pytest.raises(SystemExit) as exit_info:
            _run(["fractals", name, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert "--out" in text and "--seed" in text


def test_cli_fractaldb_sample(tmp_path: Path) -> None:
    out = tmp_path / "fdb.npz"
    argv = ["fractals", "sample", "--sampler", "fractaldb", "--count", "2", "--workers", "1", "--expand-weights"]
    assert _run([*argv, "--out", str(out)]) == 0
    systems, metadata = load_systems(out)
    assert len(systems) == 50 and all(2 <= len(s) <= 7 for s in systems)
    assert metadata["sampler"] == "fractaldb" and metadata["parameters"]["min_fill"] == 0.2
    np.testing.assert_allclose(systems[1][:, 0, 0], systems[0][:, 0, 0] * 0.2)  # row 1 scales parameter a
