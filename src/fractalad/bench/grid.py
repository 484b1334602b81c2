"""Grid files: datasets x categories x methods (with their parameters) x weights x layer sets x seeds x
few-shot k, expanded into RunSpecs in a fixed order."""

from __future__ import annotations

import dataclasses
import inspect
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fractalad.bench.spec import (
    GRID_LEVEL_PARAMS,
    RUNTIME_PARAMS,
    RunSpec,
    canonical_json,
    data_hash,
    few_shot_subset,
    weights_identity,
)
from fractalad.config import coerce, coerce_call_arguments, dataclass_from_mapping, read_yaml_mapping
from fractalad.errors import InputError
from fractalad.files import write_text_atomic

REQUIRED_KEYS: tuple[str, ...] = (
    "dataset",
    "root",
    "categories",
    "methods",
    "weights",
    "backbone",
    "layers",
    "seeds",
    "size",
)


@dataclass(frozen=True)
class GridFile:
    """A grid file's keys. `methods`: name -> parameters; `weights`: label -> source; `layers`: a list of
    layer sets or "default" (each method's own); `few_shot`: list of k, null = the full training split."""

    dataset: str = ""
    root: str | None = None
    categories: Any = ()
    methods: Any = None
    weights: Any = None
    backbone: str = ""
    layers: Any = "default"
    seeds: tuple[int, ...] = ()
    size: int = 256
    few_shot: tuple[int | None, ...] = (None,)
    normalization: str | None = None
    name: str = ""
    description: str = ""


def read_grid(path: str | Path) -> GridFile:
    """Read and check a grid file's keys (unknown and missing keys are refused, naming the valid ones)."""
    values = read_yaml_mapping(path, "grid file")
    missing = [key for key in REQUIRED_KEYS if key not in values]
    if missing:
        raise InputError(
            f"grid file {path}: missing key(s) {', '.join(missing)}; required: {', '.join(REQUIRED_KEYS)}"
        )
    grid = dataclass_from_mapping(GridFile, values, source=f"grid file {path}")
    return grid if grid.name else GridFile(**{**grid.__dict__, "name": Path(path).stem})


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively, so a grid dumps as plain YAML."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def write_grid(grid: GridFile, path: str | Path) -> Path:
    """Write `grid` as a grid file that `read_grid` reads back to an equal GridFile (atomic write)."""
    import yaml

    values = {name: _plain(value) for name, value in dataclasses.asdict(grid).items()}
    write_text_atomic(Path(path), yaml.safe_dump(values, sort_keys=False))
    return Path(path)


def _method_params(method: str, given: Any, source: str) -> dict[str, Any]:
    """The method's resolved hyper-parameters: its defaults overridden by the grid's, grid-level ones out."""
    from fractalad.detectors.registry import detector_class

    cls = detector_class(method)
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise InputError(f"{source}: parameters of {method!r} must be a mapping, got {given!r}")
    reserved = [key for key in given if key in GRID_LEVEL_PARAMS + RUNTIME_PARAMS]
    if reserved:
        raise InputError(
            f"{source}: {method} sets {', '.join(reserved)}; backbone, weights, layers, normalization and "
            "seeds are grid-level keys, and the device is chosen with `bench run --devices`"
        )
    params = coerce_call_arguments(cls.__init__, given, f"{source}, method {method!r}")
    resolved = {}
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or name in GRID_LEVEL_PARAMS + RUNTIME_PARAMS:
            continue
        value = params.get(name, parameter.default)
        resolved[name] = list(value) if isinstance(value, tuple) else value
    return resolved


def _default_layers(method: str) -> tuple[int, ...]:
    from fractalad.detectors.registry import detector_class

    default = inspect.signature(detector_class(method).__init__).parameters["layers"].default
    return tuple(int(layer) for layer in default)


def _layer_sets(grid: GridFile, method: str, source: str) -> list[tuple[int, ...]]:
    entries = grid.layers if isinstance(grid.layers, list) else [grid.layers]
    sets = []
    for entry in entries:
        if entry == "default":
            sets.append(_default_layers(method))
        else:
            layers = coerce("layers", entry, tuple[int, ...])
            if not layers or not all(1 <= layer <= 4 for layer in layers):
                raise InputError(f"{source}: layer set {entry!r} must list stages 1..4 (or be 'default')")
            sets.append(layers)
    return sets


def _categories(grid: GridFile, source: str) -> list[str]:
    from fractalad.data import DATASETS, SYNTHETIC_CATEGORIES, list_categories

    if grid.dataset not in DATASETS:
        raise InputError(f"{source}: unknown dataset {grid.dataset!r}; choose one of {', '.join(DATASETS)}")
    if grid.categories == "all":
        if grid.dataset == "synthetic" and grid.root is None:
            return list(SYNTHETIC_CATEGORIES)
        if grid.root is None:
            raise InputError(f"{source}: categories 'all' needs a root folder")
        return list_categories(grid.dataset, grid.root)
    categories = coerce("categories", grid.categories, tuple[str, ...])
    if not categories:
        raise InputError(f"{source}: categories is empty; list names or write 'all'")
    return list(categories)


def _weights(grid: GridFile, source: str) -> dict[str, str]:
    if isinstance(grid.weights, list):  # a bare list labels each source by itself
        return {str(w): str(w) for w in grid.weights}
    if not isinstance(grid.weights, Mapping) or not grid.weights:
        raise InputError(f"{source}: weights must map labels to sources, e.g. {{imagenet: imagenet-tv}}")
    return {str(label): str(weights) for label, weights in grid.weights.items()}


def _methods(grid: GridFile, source: str) -> dict[str, Any]:
    if isinstance(grid.methods, list):
        return {str(m): {} for m in grid.methods}
    if not isinstance(grid.methods, Mapping) or not grid.methods:
        raise InputError(f"{source}: methods must list detector names or map them to parameters")
    return dict(grid.methods)


def expand_grid(grid: GridFile, source: str = "grid") -> list[RunSpec]:
    """Every run of the grid, ordered category, method, layers, weights, seed, k (reference weights first)."""
    from fractalad.data import load_category

    if not grid.seeds:
        raise InputError(f"{source}: seeds is empty; give at least one, e.g. [0]")
    methods = {m: _method_params(m, p, source) for m, p in _methods(grid, source).items()}
    weights = _weights(grid, source)
    identities = {(w, s): weights_identity(w, grid.backbone, s) for w in weights.values() for s in grid.seeds}
    specs = []
    for category_name in _categories(grid, source):
        category = load_category(grid.dataset, grid.root, category_name)
        for method, params in methods.items():
            layer_sets = _layer_sets(grid, method, source)
            axes = itertools.product(layer_sets, weights.items(), grid.seeds, grid.few_shot)
            for layers, (label, source_weights), seed, k in axes:
                train = few_shot_subset(category.train, category.root, k, seed)
                specs.append(
                    RunSpec(
                        dataset=grid.dataset,
                        category=category.name,
                        data_hash=data_hash(category, train),
                        few_shot=k,
                        method=method,
                        params=canonical_json(params),
                        backbone=grid.backbone,
                        weights_id=identities[(source_weights, seed)],
                        layers=layers,
                        normalization=grid.normalization,
                        size=grid.size,
                        seed=seed,
                        root=None if grid.root is None else str(grid.root),
                        weights=source_weights,
                        weights_label=label,
                    )
                )
    return _unique(specs, source)


def _unique(specs: list[RunSpec], source: str) -> list[RunSpec]:
    """Drop exact repeats (two labels naming the same weights); keep the first occurrence's order."""
    seen: dict[str, RunSpec] = {}
    for spec in specs:
        seen.setdefault(spec.run_id, spec)
    if not seen:
        raise InputError(f"{source}: the grid expands to no runs")
    return list(seen.values())


def single_run_spec(
    dataset: str,
    root: str | Path | None,
    category: str | None,
    method: str,
    params: Mapping[str, Any],
    size: int,
) -> RunSpec:
    """The RunSpec of one run (`fractalad detect`) from `create_detector`-style parameters.

    The grid-level ones (backbone, weights, layers, normalization, seed) become the spec's axes; any not
    given take the method's defaults, exactly as a grid would resolve them.
    """
    from fractalad.data import load_category
    from fractalad.detectors.registry import detector_class

    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(detector_class(method).__init__).parameters.items()
        if name in GRID_LEVEL_PARAMS
    }
    axes = {**defaults, **{k: v for k, v in params.items() if k in GRID_LEVEL_PARAMS}}
    if category is None:  # the folder dataset names a category after its folder
        category = load_category(dataset, root, None).name
    grid = GridFile(
        dataset=dataset,
        root=None if root is None else str(root),
        categories=[category],
        methods={method: {k: v for k, v in params.items() if k not in GRID_LEVEL_PARAMS}},
        weights={str(axes["weights"]): str(axes["weights"])},
        backbone=str(axes["backbone"]),
        layers=[list(axes["layers"])],
        seeds=(int(axes["seed"]),),
        size=size,
        normalization=None if axes["normalization"] is None else str(axes["normalization"]),
    )
    return expand_grid(grid, source="detect")[0]


def load_grid(path: str | Path) -> list[RunSpec]:
    """Read a grid file and expand it."""
    return expand_grid(read_grid(path), source=f"grid file {path}")


def describe(specs: list[RunSpec]) -> str:
    """One line: how many runs over which axes."""
    counts = {
        name: len({getattr(s, name) for s in specs})
        for name in ("category", "method", "weights_label", "layers", "seed", "few_shot")
    }
    return f"{len(specs)} runs (" + ", ".join(f"{n} {name}" for name, n in counts.items()) + ")"
