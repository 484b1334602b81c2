"""`fractalad data synth` and `fractalad data info` through their registered parsers."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from fractalad.commands import data as data_command
from fractalad.errors import InputError


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fractalad")
    data_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_synth_then_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "synthetic"
    argv = [
        "data",
        "synth",
        "--root",
        str(root),
        "--categories",
        "weave",
        "--size",
        "32",
        "--n-train",
        "2",
        "--n-test-good",
        "1",
        "--n-test-defect",
        "4",
        "--seed",
        "2",
    ]
    assert run(argv) == 0
    assert sorted(p.name for p in (root / "weave" / "test").iterdir()) == [
        "color",
        "cut",
        "good",
        "hole",
        "thread",
    ]
    assert run(["data", "info", "synthetic", str(root)]) == 0
    out = capsys.readouterr().out
    assert (
        "weave: train 2, test good 1, test defective 4 (color 1, cut 1, hole 1, thread 1), masks yes" in out
    )


def test_info_on_folder_without_masks(folder_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["data", "info", "folder", str(folder_root)]) == 0
    assert "my_parts: train 2, test good 1, test defective 1 (scratch 1), masks no" in capsys.readouterr().out


def test_info_errors(mvtec_root: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="available: bottle, grid"):
        run(["data", "info", "mvtec", str(mvtec_root), "zipper"])
    with pytest.raises(InputError, match="no categories under"):
        run(["data", "info", "mvtec", str(tmp_path)])
