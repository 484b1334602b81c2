import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fractalad.files import atomic_path, write_text_atomic

SRC = Path(__file__).resolve().parents[2] / "src"


def test_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out" / "result.json"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half-writ")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]


def test_successful_write_replaces_and_creates_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "x.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith(".tmp")
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert not list(target.parent.glob("*.tmp"))


UMASK_SCRIPT = """
import os, sys
os.umask(int(sys.argv[2], 8))  # before fractalad.files reads it
import numpy as np
from safetensors.numpy import save_file
from fractalad.files import atomic_path, write_text_atomic
write_text_atomic(sys.argv[1] + "/a.txt", "x")
with atomic_path(sys.argv[1] + "/w.safetensors") as tmp:
    save_file({"w": np.zeros(3)}, str(tmp))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    # safetensors creates owner-only files by itself; every result must still be readable as umask allows.
    command = [sys.executable, "-c", UMASK_SCRIPT, str(tmp_path), f"{umask:o}"]
    subprocess.run(command, env=_env(), check=True, timeout=300)  # the timeout is a hang guard only
    for name in ("a.txt", "w.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_a_killed_writer_leaves_nothing_behind_after_the_next_write(tmp_path: Path) -> None:
    code = (
        "import sys, time; from fractalad.files import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_text('half'); print('writing', flush=True); time.sleep(600)\n"
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "result.png")],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=60)
    leftover = [p.name for p in tmp_path.iterdir()]
    assert len(leftover) == 1 and leftover[0].startswith(".result.png.") and leftover[0].endswith(".tmp")
    # A staging folder of a killed run, and a temporary file of a process that is still alive.
    (tmp_path / f".wood.{writer.pid}-0123abcd.tmp").mkdir()
    alive = tmp_path / f".other.png.{os.getppid()}-89abcdef.tmp"
    alive.write_text("still being written")
    write_text_atomic(tmp_path / "next.txt", "done")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, "next.txt"])
