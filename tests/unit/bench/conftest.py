"""Fixtures of the bench tests: hand-made specs and a tiny synthetic category."""

from __future__ import annotations

import pytest
from bench_rows import make_spec

from fractalad.bench.spec import RunSpec


@pytest.fixture
def specs() -> list[RunSpec]:
    return [make_spec(category, seed=seed) for category in ("tile", "weave") for seed in (0, 1)]


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory):
    from fractalad.data.synthetic import generate_synthetic

    root = tmp_path_factory.mktemp("synthetic")
    return generate_synthetic(root, categories=["tile"], size=64, n_train=6, n_test_good=3, n_test_defect=4)
