"""PretrainConfig: presets follow the specs, YAML and overrides parse to typed values, bad input is named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fractalad.errors import InputError
from fractalad.pretrain.config import (
    PRESETS,
    PretrainConfig,
    field_names,
    get_preset,
    load_config,
    parse_overrides,
    resolve_config,
    save_config,
)

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


@pytest.mark.parametrize("name", ["paper-resnet18", "paper-wide_resnet50_2", "paper-wide_resnet101_2"])
def test_paper_presets_match_specs_section_5(name: str) -> None:
    c = PRESETS[name]
    assert c.arch == name.removeprefix("paper-")
    assert (c.lr, c.momentum, c.weight_decay, c.schedule, c.milestones, c.gamma) == (
        0.1,
        0.9,
        1e-4,
        "multistep",
        (30, 60),
        0.1,
    )
    assert (c.epochs, c.batch_size, c.epoch_size, c.render_size, c.crop) == (100, 512, 1_000_000, 256, 224)
    assert (c.num_classes, c.num_systems, c.mean, c.std) == (1000, 100_000, (0.2,) * 3, (0.5,) * 3)
    assert not c.multi_instance and c.sampler == "sigma-factor"


def test_af_and_tiny_presets() -> None:
    af, tiny = PRESETS["af"], PRESETS["tiny"]
    assert (af.arch, af.epochs, af.schedule, af.mean, af.std, af.num_systems) == (
        "resnet50",
        90,
        "cosine",
        None,
        None,
        1000,
    )
    assert tiny.arch == "resnet18" and tiny.num_classes == 100 and tiny.image_size <= 96
    assert tiny.device == "cpu" and not tiny.amp


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_shipped_yaml_equals_preset(name: str) -> None:
    path = CONFIGS / f"{name}.yaml"
    assert load_config(path) == PRESETS[name]
    # Every field is written out, so a file read alone (without the preset it names) says the whole recipe.
    assert set(yaml.safe_load(path.read_text())) == {"preset", *field_names()}


def test_yaml_round_trip(tmp_path: Path) -> None:
    config = resolve_config("af", None, ["epochs=3", "milestones=[1,2]"])
    save_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config
    assert not list(tmp_path.glob("*.tmp"))


def test_unknown_yaml_key_names_key_and_lists_valid_ones(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"preset": "tiny", "learning_rate": 0.1}))
    with pytest.raises(InputError, match="'learning_rate'") as error:
        load_config(tmp_path / "bad.yaml")
    assert str(tmp_path / "bad.yaml") in str(error.value)
    assert all(key in str(error.value) for key in field_names())


def test_overrides_are_typed() -> None:
    c = resolve_config(
        "tiny",
        None,
        [
            "lr=0.05",
            "epochs=3",
            "amp=true",
            "milestones=2,4",
            "mean=null",
            "std=null",
            "crop=48",
            "render_points=5000",
            "warmup_epochs=1",
        ],
    )
    assert (c.lr, c.epochs, c.amp, c.milestones, c.mean, c.std, c.crop) == (
        0.05,
        3,
        True,
        (2, 4),
        None,
        None,
        48,
    )
    assert isinstance(c.warmup_epochs, float) and c.render_points == 5000
    assert resolve_config("tiny", None, ["mean=0.1,0.2,0.3", "std=[1,1,1]"]).mean == (0.1, 0.2, 0.3)
    assert parse_overrides(["arch=resnet50"]) == {"arch": "resnet50"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("epochs=abc", "'epochs': expected int"),
        ("amp=3", "'amp': expected bool"),
        ("mean=0.1,0.2", "'mean': expected 3 values"),
        ("schedule=linear", "schedule='linear' is not one of"),
        ("num_systems=150", "num_systems=150 must be a multiple of num_classes=100"),
        ("crop=500", "crop=500 must lie in"),
        ("batch_size=10", "batch_size=10 must be a positive multiple of accumulation_steps=4"),
        ("nonsense", "expected key=value"),
        ("device=tpu", "device='tpu'"),
        ("head_stage=2", "head_stage=2 must be 3 or 4"),
    ],
)
def test_bad_values_raise_input_error(override: str, message: str) -> None:
    extra = ["accumulation_steps=4"] if "accumulation" in message else []
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace("[", r"\[")):
        resolve_config("tiny", None, [*extra, override])


def test_unknown_preset_lists_presets() -> None:
    with pytest.raises(InputError, match="paper-resnet18"):
        get_preset("paper-resnet19")


def test_missing_config_file() -> None:
    with pytest.raises(FileNotFoundError):
        load_config("/nonexistent/config.yaml")


def test_config_is_frozen_and_serialisable() -> None:
    c = PretrainConfig()
    with pytest.raises(AttributeError):
        c.lr = 1.0  # type: ignore[misc]
    assert yaml.safe_load(yaml.safe_dump(c.to_dict())) == c.to_dict()
