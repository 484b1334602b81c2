"""Every subcommand documents itself, and bad input ends with one clear line and exit code 2."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fractalad.cli import build_parser, main


def _subcommand_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                paths.append((*prefix, name))
                paths.extend(_subcommand_paths(child, (*prefix, name)))
    return paths


SUBCOMMANDS = _subcommand_paths(build_parser())


def test_main_subcommands_exist() -> None:
    top = {path[0] for path in SUBCOMMANDS}
    assert {"fractals", "pretrain", "viz", "data", "detect", "demo"} <= top


@pytest.mark.parametrize("path", SUBCOMMANDS, ids=[" ".join(p) for p in SUBCOMMANDS])
def test_every_subcommand_has_help(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*path, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: fractalad " + " ".join(path))
    # A help page says more than its usage line: a description or at least one documented option.
    assert len(text.strip().splitlines()) > 3


def test_missing_file_is_one_line_error(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["viz", "filters", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "f.png")])
    assert code == 2
    err = capsys.readouterr().err
    assert "missing.safetensors" in err
    assert "Traceback" not in err


HEAVY = ("torch", "torchvision", "timm", "numba")
# Runs the CLI like `fractalad ARGS` and reports, at exit, which heavy libraries were imported.
IMPORT_PROBE = (
    "import atexit, sys\n"
    f"atexit.register(lambda: print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    "from fractalad.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
LIGHT_CALLS = [
    ["--help"],
    ["--version"],
    ["detect", "--help"],
    ["pretrain", "--help"],
    ["demo", "--help"],
    ["fractals", "export", "--help"],
    ["detect", "--dataset", "mvtec", "--out", "x", "--size", "0"],
    ["teleport"],
]


@pytest.mark.parametrize("argv", LIGHT_CALLS, ids=[" ".join(a) for a in LIGHT_CALLS])
def test_help_version_and_argument_errors_import_no_heavy_library(argv: list[str]) -> None:
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, *argv],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == (0 if "--help" in argv or "--version" in argv else 2), result.stderr
    assert "HEAVY []" in result.stdout, result.stdout[-500:]
