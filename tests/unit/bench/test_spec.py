"""Run identity, few-shot subsets, weights identity and grid files."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench_rows import make_spec

from fractalad.bench.grid import expand_grid, load_grid, read_grid
from fractalad.bench.spec import RunSpec, canonical_json, few_shot_subset, weights_identity
from fractalad.data.records import Sample
from fractalad.errors import InputError
from fractalad.provenance import file_sha256, weights_sha256


def test_run_id_is_the_hash_of_identity_fields_only() -> None:
    spec = make_spec()
    moved = make_spec(root="/elsewhere", weights="/other/name.safetensors", weights_label="mine")
    assert spec.run_id == moved.run_id and len(spec.run_id) == 64
    assert make_spec(seed=1).run_id != spec.run_id and make_spec(size=128).run_id != spec.run_id
    assert "root" not in spec.identity() and canonical_json(spec.identity()).startswith('{"backbone"')
    assert RunSpec.from_json(spec.to_json()) == spec


def test_weights_identity_follows_file_content_not_name(tmp_path: Path) -> None:
    first = tmp_path / "a.safetensors"
    first.write_bytes(b"weights")
    renamed = tmp_path / "b.safetensors"
    renamed.write_bytes(b"weights")
    assert weights_identity(str(first), "resnet18", 0) == weights_identity(str(renamed), "resnet18", 0)
    renamed.write_bytes(b"edited")
    assert weights_identity(str(first), "resnet18", 0) != weights_identity(str(renamed), "resnet18", 0)
    assert weights_identity("random", "resnet18", 3) == "random:3"
    assert weights_identity("imagenet", "resnet18", 0) == "imagenet-tv"
    with pytest.raises(InputError, match="neither imagenet"):
        weights_identity(str(tmp_path / "missing.pt"), "resnet18", 0)


def test_few_shot_subsets_are_nested_and_seeded(tmp_path: Path) -> None:
    train = [Sample(tmp_path / "train" / "good" / f"{i:03d}.png", 0, None, "good") for i in range(10)]
    subsets = {k: few_shot_subset(train, tmp_path, k, seed=5) for k in (1, 2, 4, 8)}
    for small, large in ((1, 2), (2, 4), (4, 8)):
        assert set(subsets[small]) <= set(subsets[large])
    assert few_shot_subset(train[::-1], tmp_path, 4, seed=5) == subsets[4]  # independent of listing order
    assert few_shot_subset(train, tmp_path, 4, seed=6) != subsets[4]
    with pytest.raises(InputError, match="1..10"):
        few_shot_subset(train, tmp_path, 11, seed=0)


GRID = """
dataset: synthetic
root: {root}
categories: [tile]
methods:
  patchcore: {{}}
  padim: {{n_features: 20}}
weights: {{random: random}}
backbone: resnet18
layers: [[1, 2], [2, 3]]
seeds: [0, 1]
size: 64
few_shot: [2, null]
"""


def write_grid(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


def test_grid_expands_every_axis_with_resolved_parameters(tmp_path: Path, synthetic_root: Path) -> None:
    specs = load_grid(write_grid(tmp_path, GRID.format(root=synthetic_root)))
    assert len(specs) == 2 * 2 * 2 * 2  # methods x layer sets x seeds x k
    assert len({s.run_id for s in specs}) == len(specs)
    padim = next(s for s in specs if s.method == "padim")
    assert '"n_features":20' in padim.params and '"regularization":0.01' in padim.params
    assert {s.few_shot for s in specs} == {2, None} and {s.layers for s in specs} == {(1, 2), (2, 3)}
    assert {s.weights_id for s in specs} == {"random:0", "random:1"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("size: 64", "size: 64\ncolour: red"),
        ("padim: {n_features: 20}", "padim: {n_feature: 20}"),
        ("padim: {n_features: 20}", "padim: {device: cpu}"),
        ("padim: {n_features: 20}", "fancy: {}"),
        ("seeds: [0, 1]", ""),
        ("dataset: synthetic", "dataset: imagenet"),
    ],
)
def test_bad_grid_files_are_refused_with_the_valid_choices(
    tmp_path: Path, synthetic_root: Path, change: str, message: str
) -> None:
    expected = {
        "colour": "unknown key.*'colour'.*valid keys: dataset, root",
        "n_feature": "unknown parameter.*'n_feature'.*valid:.*n_features",
        "device": "grid-level keys.*--devices",
        "fancy": "unknown detector 'fancy'",
        "": "missing key.*seeds",
        "imagenet": "unknown dataset 'imagenet'",
    }
    key = next((k for k in expected if k and k in message), "")
    path = write_grid(tmp_path, GRID.format(root=synthetic_root).replace(change, message))
    with pytest.raises(InputError, match=expected[key]):
        expand_grid(read_grid(path), str(path))


def _safetensors_bytes(header: str, data: bytes) -> bytes:
    encoded = header.encode()
    return len(encoded).to_bytes(8, "little") + encoded + data


def test_weights_hash_ignores_safetensors_metadata_order_but_not_values(tmp_path: Path) -> None:
    tensor = '"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}'
    first, second, edited = (tmp_path / f"{name}.safetensors" for name in ("a", "b", "c"))
    first.write_bytes(
        _safetensors_bytes('{"__metadata__":{"arch":"resnet18","std":"0.5"},' + tensor + "}", b"\0\0\x80?")
    )
    second.write_bytes(
        _safetensors_bytes("{" + tensor + ',"__metadata__":{"std":"0.5","arch":"resnet18"}}', b"\0\0\x80?")
    )
    edited.write_bytes(
        _safetensors_bytes('{"__metadata__":{"arch":"resnet18","std":"0.5"},' + tensor + "}", b"\0\0\0@")
    )
    assert file_sha256(first) != file_sha256(second)  # safetensors writes its metadata in hash-map order
    assert weights_sha256(first) == weights_sha256(second) != weights_sha256(edited)
