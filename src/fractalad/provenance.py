"""Where a result came from: library versions, the code's git commit, file hashes, host and device, and the
peak memory of one run (not of the whole process)."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import platform
import resource
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from fractalad import __version__

# Distributions whose versions change results; anomalib only when a parity adapter imported it.
RESULT_LIBRARIES: tuple[str, ...] = (
    "torch",
    "torchvision",
    "timm",
    "numpy",
    "scikit-learn",
    "scipy",
    "FrEIA",
)
CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


def file_sha256(path: str | Path) -> str:
    """Full SHA-256 hex digest of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(path: str | Path) -> str:
    """SHA-256 of a weight file's content: for safetensors, its header with sorted keys and then its tensor bytes.

    safetensors writes the metadata map in hash-map order, so exporting one checkpoint twice gives files whose
    bytes differ while every tensor and metadata value is equal; hashing the parsed header in a canonical form
    keeps such files one weights identity. Other formats hash their bytes.
    """
    path = Path(path)
    if path.suffix != ".safetensors" or path.stat().st_size < 8:
        return file_sha256(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        try:
            if length > path.stat().st_size - 8:
                raise ValueError("header longer than the file")
            header = json.loads(handle.read(length))
        except ValueError:
            return file_sha256(path)  # not a readable safetensors file: its bytes are its identity
        digest.update(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def library_versions() -> dict[str, str]:
    """Versions of Python, fractalad and the libraries that shape results (absent ones are left out)."""
    versions = {"python": platform.python_version(), "fractalad": __version__}
    names = RESULT_LIBRARIES + (("anomalib",) if "anomalib" in sys.modules else ())
    for name in names:
        version = _distribution_version(name)
        if version is not None:
            versions[name] = version
    return versions


@functools.cache
def git_state() -> dict[str, str | bool | None]:
    """{"sha": commit of this package's checkout or None, "dirty": whether it has uncommitted changes}."""
    folder = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if sha.returncode != 0:
            return {"sha": None, "dirty": None}
        status = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):  # no git binary, or a hung network file system
        return {"sha": None, "dirty": None}
    return {"sha": sha.stdout.strip(), "dirty": bool(status.stdout.strip())}


def host_name() -> str:
    return socket.gethostname()


def _vm_hwm_mb() -> float | None:
    """This process's resident-memory high-water mark (VmHWM), MiB; None where /proc is missing."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def process_peak_rss_mb() -> float:
    """Peak resident memory of this process over its whole life, MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0


@dataclass
class PeakMemory:
    """Peak RSS and CUDA memory between `start()` and `stop()`, for one run inside a long-lived process.

    On Linux, writing 5 to /proc/self/clear_refs resets VmHWM to the current RSS, so the high-water mark
    read at the end belongs to this run alone. Elsewhere the scope is the process lifetime, and
    `rss_scope` says so, because ru_maxrss can never be reset.
    """

    rss_mb: float | None = None
    gpu_mb: float | None = None
    rss_scope: str = "run"

    def start(self, device: str) -> None:
        try:
            CLEAR_REFS.write_text("5")
            self.rss_scope = "run" if _vm_hwm_mb() is not None else "process"
        except OSError:
            self.rss_scope = "process"
        if device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats(device)

    def stop(self, device: str) -> None:
        hwm = _vm_hwm_mb() if self.rss_scope == "run" else None
        self.rss_mb = process_peak_rss_mb() if hwm is None else hwm
        if device.startswith("cuda"):
            import torch

            self.gpu_mb = torch.cuda.max_memory_allocated(device) / 2**20


def device_name(device: str) -> str:
    """'cpu (x86_64)' or the CUDA device's product name."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()})"


def run_provenance(device: str) -> dict[str, object]:
    """Everything a result row records about where it was computed."""
    return {
        "versions": library_versions(),
        "git": git_state(),
        "host": host_name(),
        "device": device_name(device),
    }
