"""Shared test settings: small thread pools, an isolated cache folder and no network access."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Two cores on CI: one intra-op thread keeps tests predictable and leaves room for DataLoader workers.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point fractalad's cache at a per-session temporary folder so tests never touch the user's cache."""
    cache = tmp_path_factory.getbasetemp() / "fractalad-cache"
    cache.mkdir(exist_ok=True)
    monkeypatch.setenv("FRACTALAD_CACHE", str(cache))
    # Any attempt to download weights must fail fast instead of hanging on a closed network.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(config.rootpath) / ".cache" / "numba"))
