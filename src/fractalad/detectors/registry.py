"""Detector names and where each class lives; importing this module imports no detector (and no torch).

Entries are `module:Class` strings resolved on first use, so the CLI can list methods for `--help` and argument
errors without paying for torch, timm or numba.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from fractalad.errors import InputError

DETECTORS: dict[str, str] = {
    "patchcore": "fractalad.detectors.patchcore:PatchCore",
    "padim": "fractalad.detectors.padim:PaDiM",
}


def list_detectors() -> list[str]:
    """Registered detector names, sorted."""
    return sorted(DETECTORS)


def detector_class(name: str) -> type:
    """The class registered under `name` (imported on first use)."""
    if name not in DETECTORS:
        raise InputError(f"unknown detector {name!r}; choose one of {list_detectors()}")
    module_name, class_name = DETECTORS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def detector_params(name: str) -> list[str]:
    """The hyper-parameter names of detector `name` (its `__init__` arguments)."""
    from fractalad.detectors.base import init_params

    return init_params(detector_class(name))


def create_detector(name: str, **params: Any) -> Any:
    """Instantiate the detector registered as `name` with hyper-parameters `params`."""
    cls = detector_class(name)
    valid = detector_params(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise InputError(f"bad parameters for detector {name!r}: unknown {unknown}; valid ones are {valid}")
    try:
        return cls(**params)
    except TypeError as error:
        raise InputError(f"bad parameters for detector {name!r}: {error}") from error


def load_detector(path: str | Path, device: str = "auto") -> Any:
    """Load any registered detector from a file written by its `save`."""
    from fractalad.detectors.base import read_detector_file

    name, _, _, _ = read_detector_file(path)
    return detector_class(name).load(path, device=device)
