"""File output: atomic writes, output-location checks before long work, and write failures as one line.

A reader sees the previous file or the complete new one, never part of a file. Files get the permissions
the user's umask allows (so other users and nodes of a shared file system can read them), and temporary
files that a killed process left behind are removed by the next write into the same folder.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import resource
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fractalad.errors import OutputError

# `.NAME.PID-HEX.tmp`: the writer's process id makes a leftover of a dead process recognisable.
_TEMP_NAME = re.compile(r"^\..+\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")
_SWEPT: set[Path] = set()
# Messages of libraries that report a failed write without an OSError (safetensors: "(os error 28)").
_OS_ERROR_IN_TEXT = re.compile(r"os error (\d+)")
_LOW_SPACE_BYTES = 1 << 20
ADVICE: dict[int, str] = {
    errno.ENOSPC: "free space or choose an output on another disk",
    errno.EDQUOT: "free space within your quota or choose an output on another disk",
    errno.EFBIG: "raise the file-size limit (`ulimit -f`) or write smaller outputs",
    errno.EACCES: "choose a writable output location or fix its permissions",
    errno.EPERM: "choose a writable output location or fix its permissions",
    errno.EROFS: "choose an output on a writable disk",
    errno.ENOTDIR: "a part of the path is a file; choose another output path",
    errno.EISDIR: "give a file name, not a folder",
    errno.ENAMETOOLONG: "choose a shorter output path",
}


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once: os.umask can only be read by setting it, which is not thread-safe later on.
UMASK = _read_umask()
FILE_MODE = 0o666 & ~UMASK
FOLDER_MODE = 0o777 & ~UMASK


def write_error(path: str | Path, error: BaseException) -> OutputError | None:
    """The one-line error for a failed write of `path`, or None when `error` is not a write failure."""
    code = _errno_of(error, Path(path))
    if code is None:
        return None
    reason = os.strerror(code)
    return OutputError(f"cannot write {path}: {reason}; {ADVICE.get(code, 'choose another output location')}")


def _errno_of(error: BaseException, path: Path) -> int | None:
    """The OS error behind a failed write; libraries that hide it (torch.save) are diagnosed from the disk."""
    if isinstance(error, OSError) and error.errno is not None:
        return error.errno
    if not isinstance(error, RuntimeError | OSError) and type(error).__name__ != "SafetensorError":
        return None
    found = _OS_ERROR_IN_TEXT.search(str(error))
    if found:
        return int(found.group(1))
    folder = _existing_ancestor(path.parent)
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and any(
        p.stat().st_size >= limit for p in _temps_of(path) if p.exists()
    ):
        return errno.EFBIG
    stats = os.statvfs(folder)
    free = stats.f_bfree if os.geteuid() == 0 else stats.f_bavail
    return errno.ENOSPC if free * stats.f_frsize < _LOW_SPACE_BYTES else None


def _temps_of(path: Path) -> list[Path]:
    """This process's temporary files for `path`."""
    return list(path.parent.glob(f".{glob.escape(path.name)}.{os.getpid()}-*.tmp"))


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_folder(folder: str | Path) -> Path:
    """Fail now, not after hours of work, when `folder` cannot become a writable folder.

    A missing folder is fine (it is created when the first file is written) as long as its nearest existing
    ancestor is a folder in which a file can be created.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output folder {folder} is a file; choose another output path or remove the file")
    _probe(folder, _existing_ancestor(folder))
    return folder


def check_output_file(path: str | Path) -> Path:
    """Fail now when the file `path` could not be written: it is a folder, or its folder is not writable."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"output file {path} is a folder; remove the folder or give another file name")
    ancestor = _existing_ancestor(path.parent)
    if ancestor == path.parent.absolute() and not ancestor.is_dir():
        raise OutputError(f"cannot write {path}: {path.parent} is a file, not a folder")
    _probe(path, ancestor)
    return path


def _probe(target: Path, ancestor: Path) -> None:
    """Create and remove a file in `ancestor`: the one test that also holds for root and read-only mounts."""
    if not ancestor.is_dir():
        raise OutputError(f"cannot write {target}: {ancestor} is a file, not a folder; choose another path")
    try:
        handle, name = tempfile.mkstemp(prefix=".fractalad-probe-", dir=ancestor)
        os.close(handle)
        os.unlink(name)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        advice = ADVICE.get(error.errno or 0, "choose another output location")
        raise OutputError(
            f"cannot write {target}: no file can be created in {ancestor} ({reason}); {advice}"
        ) from error


def temp_sibling(path: Path) -> Path:
    """A fresh temporary name beside `path`: `.NAME.PID-HEX.tmp`."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def sweep_stale_temps(folder: Path) -> None:
    """Remove temporary files and folders of writers that no longer run (once per folder and process)."""
    if folder in _SWEPT:
        return
    _SWEPT.add(folder)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match and not _process_alive(int(match.group("pid"))):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def make_folder(folder: Path) -> None:
    """mkdir -p, with a failure reported as one line naming the folder."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_error(folder, error) or error


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on any failure it is removed.

    The temporary file sits in the same folder because os.replace is atomic only within one file system, and
    its name ends in ".tmp" so an interrupted write is never mistaken for a result. Writers that infer the
    format from the file name must therefore name the format explicitly. A write that fails for lack of
    space, a size limit or permissions raises OutputError naming `path`.
    """
    path = Path(path)
    make_folder(path.parent)
    sweep_stale_temps(path.parent)
    tmp = temp_sibling(path)
    try:
        yield tmp
        # Some writers (safetensors) create owner-only files; results follow the umask like any other file.
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except Exception as error:
        failure = write_error(path, error) if _is_own_failure(error, path, tmp) else None
        if failure is None:
            raise
        raise failure from error
    finally:
        tmp.unlink(missing_ok=True)


def _is_own_failure(error: Exception, path: Path, tmp: Path) -> bool:
    """Whether `error` came from writing `tmp`/`path` (not, say, from reading an input inside the block)."""
    if isinstance(error, OSError):
        return error.filename in (None, str(tmp), str(path), tmp, path)
    return True


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
