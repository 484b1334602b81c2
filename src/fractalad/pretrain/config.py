"""Pre-training configuration: one frozen dataclass, named presets, YAML files and `key=value` overrides."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from fractalad.config import dataclass_from_mapping, parse_overrides, read_yaml_mapping
from fractalad.errors import InputError
from fractalad.files import write_text_atomic

SCHEDULES: tuple[str, ...] = ("multistep", "cosine")
SAMPLERS: tuple[str, ...] = ("sigma-factor", "fractaldb")
IMAGE_SOURCES: tuple[str, ...] = ("render", "fixed")
AUGMENTS: tuple[str, ...] = ("crop", "imagenet")
DEVICES_HINT = "'auto', 'cpu', 'cuda' or 'cuda:N'"


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Everything that defines a pre-training run; YAML files and overrides use these field names as keys.

    `batch_size` is the global batch per optimiser step (all ranks and accumulation micro-steps together),
    so a recipe means the same on 1 or 64 devices. One epoch is `num_classes * samples_per_class` samples.
    `image_source="fixed"` renders one image per system once (at `render_size`) and caches it in the run
    folder; all variety then comes from `augment` ("crop" or the "imagenet" stack), `background_lift` (the
    probability of lifting the black background to a random grey level), `random_erasing` and
    MixUp/CutMix (`mix_prob`, `mix_alpha`). With `device_render` the cached images are augmented on the
    training device instead of in DataLoader workers. `amp` trains under bf16 autocast only where the
    device computes bf16 natively (a CUDA GPU with bf16, a CPU with AMX) and in float32 elsewhere, where
    emulated bf16 would be slower; summary.json records which precision ran. `head_stage` is the stage whose
    pooled output the classifier reads: 4 is the standard network; 3 drops layer4 from training (1.6x the
    images per second for resnet18 at 64 px, where layer4 works on 2x2 maps), puts the class signal directly on
    the stages the detectors read, and exports layer4 at its seeded initial values.
    """

    preset: str = "custom"
    arch: str = "resnet18"
    head_stage: int = 4
    num_classes: int = 1000
    num_systems: int = 1000
    samples_per_class: int = 1000
    epochs: int = 100
    batch_size: int = 512
    accumulation_steps: int = 1
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    schedule: str = "multistep"
    milestones: tuple[int, ...] = (30, 60)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    render_preset: str = "paper"
    render_size: int = 256
    render_points: int | None = None
    crop: int | None = 224
    mean: tuple[float, float, float] | None = (0.2, 0.2, 0.2)
    std: tuple[float, float, float] | None = (0.5, 0.5, 0.5)
    image_source: str = "render"
    augment: str = "crop"
    random_erasing: float = 0.0
    background_lift: float = 0.0
    mix_prob: float = 0.0
    mix_alpha: float = 1.0
    sampler: str = "sigma-factor"
    n_min: int = 2
    n_max: int = 8
    systems_file: str | None = None
    multi_instance: bool = False
    instances: tuple[int, int] = (1, 5)
    same_class_instances: bool = False
    seed: int = 0
    workers: int = 8
    threads: int = 0
    device: str = "auto"
    device_render: bool = False
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    checkpoint_every_steps: int = 1000
    log_every_steps: int = 20

    def __post_init__(self) -> None:
        for problem in _problems(self):
            raise InputError(f"pre-training config ({self.preset}): {problem}")

    @property
    def image_size(self) -> int:
        """Side length of the training images (after the random crop)."""
        return self.crop if self.crop is not None else self.render_size

    @property
    def epoch_size(self) -> int:
        """Samples per epoch: C x K."""
        return self.num_classes * self.samples_per_class

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def _problems(c: PretrainConfig) -> list[str]:
    """Human-readable reasons why `c` is invalid (empty when it is valid)."""
    checks = [
        (c.num_classes >= 1, f"num_classes={c.num_classes} must be >= 1"),
        (
            c.head_stage in (3, 4),
            f"head_stage={c.head_stage} must be 3 or 4 (the stage the classifier reads)",
        ),
        (c.samples_per_class >= 1, f"samples_per_class={c.samples_per_class} must be >= 1"),
        (
            c.num_systems >= c.num_classes and c.num_systems % c.num_classes == 0,
            f"num_systems={c.num_systems} must be a multiple of num_classes={c.num_classes} (each class owns "
            "num_systems / num_classes systems)",
        ),
        (
            c.epoch_size % c.num_systems == 0,
            f"num_classes * samples_per_class = {c.epoch_size} must be a multiple of "
            f"num_systems={c.num_systems} "
            "(every system is drawn equally often per epoch)",
        ),
        (c.epochs >= 1, f"epochs={c.epochs} must be >= 1"),
        (
            c.batch_size >= 1 and c.accumulation_steps >= 1 and c.batch_size % c.accumulation_steps == 0,
            f"batch_size={c.batch_size} must be a positive multiple of "
            f"accumulation_steps={c.accumulation_steps}",
        ),
        (
            c.epoch_size >= c.batch_size,
            f"an epoch ({c.epoch_size} samples) is smaller than one batch (batch_size={c.batch_size})",
        ),
        (
            c.lr > 0 and c.momentum >= 0 and c.weight_decay >= 0,
            "lr must be > 0, momentum and weight_decay >= 0",
        ),
        (c.schedule in SCHEDULES, f"schedule={c.schedule!r} is not one of {', '.join(SCHEDULES)}"),
        (all(m > 0 for m in c.milestones), f"milestones={list(c.milestones)} must be positive epochs"),
        (0 <= c.warmup_epochs < c.epochs, f"warmup_epochs={c.warmup_epochs} must lie in [0, epochs)"),
        (c.render_size >= 8, f"render_size={c.render_size} must be >= 8"),
        (
            c.crop is None or 8 <= c.crop <= c.render_size,
            f"crop={c.crop} must lie in [8, render_size={c.render_size}] or be null",
        ),
        ((c.mean is None) == (c.std is None), "mean and std must both be set or both be null"),
        (c.std is None or all(s > 0 for s in c.std), f"std={c.std} must be positive"),
        (
            c.image_source in IMAGE_SOURCES,
            f"image_source={c.image_source!r} is not one of {', '.join(IMAGE_SOURCES)}",
        ),
        (c.augment in AUGMENTS, f"augment={c.augment!r} is not one of {', '.join(AUGMENTS)}"),
        (
            all(0 <= p <= 1 for p in (c.random_erasing, c.mix_prob, c.background_lift)) and c.mix_alpha > 0,
            f"random_erasing={c.random_erasing}, mix_prob={c.mix_prob} and background_lift={c.background_lift} "
            "must lie in [0, 1], "
            f"mix_alpha={c.mix_alpha} must be > 0",
        ),
        (
            not (c.multi_instance and (c.mix_prob > 0 or c.image_source == "fixed")),
            "multi_instance composites are rendered per sample with multi-hot labels: use image_source=render "
            "and mix_prob=0 with it",
        ),
        (
            c.image_source == "render" or c.num_systems == c.num_classes,
            f"image_source=fixed caches one image per class: num_systems={c.num_systems} must equal "
            f"num_classes={c.num_classes}",
        ),
        (c.sampler in SAMPLERS, f"sampler={c.sampler!r} is not one of {', '.join(SAMPLERS)}"),
        (1 <= c.n_min <= c.n_max, f"n_min={c.n_min}, n_max={c.n_max} must satisfy 1 <= n_min <= n_max"),
        (
            1 <= c.instances[0] <= c.instances[1],
            f"instances={list(c.instances)} must satisfy 1 <= low <= high",
        ),
        (c.workers >= 0 and c.threads >= 0, "workers and threads must be >= 0"),
        (
            c.checkpoint_every_steps >= 0 and c.log_every_steps >= 1,
            "checkpoint_every_steps must be >= 0 (0 = epoch ends only) and log_every_steps >= 1",
        ),
        (
            c.device == "auto" or c.device == "cpu" or c.device.startswith("cuda"),
            f"device={c.device!r} must be {DEVICES_HINT}",
        ),
    ]
    return [message for ok, message in checks if not ok]


_PAPER = PretrainConfig(preset="paper-resnet18", num_systems=100_000)
PAPER_ARCHS: tuple[str, ...] = ("resnet18", "wide_resnet50_2", "wide_resnet101_2")


def _ofdb(arch: str) -> PretrainConfig:
    """OFDB-4AD (SPECS section 13): 1,000 classes x one fixed 512 px image, the ImageNet augmentation stack,
    SGD 0.1 cosine with 5 warm-up epochs, 20,000 epochs of 1,000 images at batch 128.

    One of our epochs shows every image 16 times (16 of OFDB's epochs), so 1,250 epochs see the same
    20,000,000 images in the same 156,250 steps with the same warm-up (5 / 16 of an epoch), while the run
    checkpoints every 125 steps instead of every 8. Augmentation runs on the training device.
    """
    return dataclasses.replace(
        _PAPER,
        preset=f"ofdb-{arch}",
        arch=arch,
        num_systems=1000,
        samples_per_class=16,
        epochs=1250,
        batch_size=128,
        schedule="cosine",
        milestones=(),
        warmup_epochs=5 / 16,
        render_size=512,
        n_max=4,
        image_source="fixed",
        augment="imagenet",
        random_erasing=0.5,
        mix_prob=0.8,
        mix_alpha=1.0,
        device_render=True,
    )


def _paper_multi(arch: str) -> PretrainConfig:
    """The paper's recipe on multi-instance images (SPECS section 4, the paper code's variant): each image
    composites 4-10 of its class's systems; multi-hot labels with BCE."""
    return dataclasses.replace(
        _PAPER,
        preset=f"paper-multi-{arch}",
        arch=arch,
        multi_instance=True,
        instances=(4, 10),
        same_class_instances=True,
    )


# Minutes on a laptop CPU: 100 classes at 64 px, one system per class.
_TINY = PretrainConfig(
    preset="tiny",
    num_classes=100,
    num_systems=100,
    samples_per_class=50,
    epochs=10,
    batch_size=64,
    lr=0.1,
    schedule="cosine",
    milestones=(),
    warmup_epochs=0.5,
    render_size=72,
    render_points=20_000,
    crop=64,
    n_max=4,
    workers=1,
    threads=2,  # the render worker needs ~3 % of a core, so the trainer takes both
    device="cpu",
    amp=False,
    channels_last=False,
    checkpoint_every_steps=100,
    log_every_steps=10,
)


PRESETS: dict[str, PretrainConfig] = {
    "paper-resnet18": _PAPER,
    "paper-wide_resnet50_2": dataclasses.replace(
        _PAPER, preset="paper-wide_resnet50_2", arch="wide_resnet50_2"
    ),
    "paper-wide_resnet101_2": dataclasses.replace(
        _PAPER, preset="paper-wide_resnet101_2", arch="wide_resnet101_2"
    ),
    # Anderson & Farrell: one system per class (all variety from augmentation), N in {2, 3, 4}, cosine decay
    # after a short warm-up, raw [0, 1] inputs (no normalisation).
    "af": PretrainConfig(
        preset="af",
        arch="resnet50",
        num_systems=1000,
        epochs=90,
        schedule="cosine",
        milestones=(),
        warmup_epochs=2.0,
        render_preset="af",
        mean=None,
        std=None,
        n_max=4,
    ),
    **{f"ofdb-{arch}": _ofdb(arch) for arch in ("resnet50", "wide_resnet50_2")},
    **{f"paper-multi-{arch}": _paper_multi(arch) for arch in PAPER_ARCHS},
    "tiny": _TINY,
    # CPU-sized OFDB: the tiny budget (50,000 images) on 100 cached images with OFDB's augmentation stack.
    "tiny-ofdb": dataclasses.replace(
        _TINY,
        preset="tiny-ofdb",
        render_size=128,
        image_source="fixed",
        augment="imagenet",
        random_erasing=0.5,
        mix_prob=0.8,
    ),
    # tiny-ofdb on 32 px crops of 64 px images, without MixUp/CutMix: the one CPU recipe measured ahead of
    # random weights for both PatchCore and PaDiM at 256 px in its first measurement (benchmarks/RESULTS.md,
    # "ofdb32"); bf16 re-runs put its PatchCore gain at +0.7 to +1.7.
    "tiny-ofdb32": dataclasses.replace(
        _TINY,
        preset="tiny-ofdb32",
        render_size=64,
        crop=32,
        image_source="fixed",
        augment="imagenet",
        random_erasing=0.5,
        mix_prob=0.0,
    ),
    # tiny at 80,000 images with bf16 autocast where the CPU computes bf16 (AMX; float32 elsewhere): the
    # best CPU recipe of the fourth session (benchmarks/RESULTS.md, "Recipe quality, fourth session"), about
    # 6 minutes on two AMX cores, 14 in float32.
    "tiny80k": dataclasses.replace(_TINY, preset="tiny80k", epochs=16, amp=True, channels_last=True),
    # tiny80k at 48 px crops with the classifier on layer3: 2.6x the images per second of tiny80k in float32
    # and the best CPU recipe measured (benchmarks/RESULTS.md, "Recipe quality, fifth session"), about
    # 5 minutes on two AVX2 cores; the demo's.
    "tiny80k-l3": dataclasses.replace(
        _TINY,
        preset="tiny80k-l3",
        epochs=16,
        amp=True,
        channels_last=True,
        crop=48,
        render_size=54,
        head_stage=3,
    ),
    # CPU-sized multi-instance (A&F's variant): 1-5 fractals of random classes per image, multi-hot labels.
    "tiny-multi": dataclasses.replace(_TINY, preset="tiny-multi", multi_instance=True),
}


def field_names() -> list[str]:
    """The valid config keys, in declaration order."""
    return [f.name for f in dataclasses.fields(PretrainConfig)]


def from_mapping(
    values: Mapping[str, Any], base: PretrainConfig | None = None, source: str = "config"
) -> PretrainConfig:
    """Build a config from a key/value mapping on top of `base` (default: the dataclass defaults)."""
    return dataclass_from_mapping(PretrainConfig, values, base, source)


def load_config(path: str | Path, base: PretrainConfig | None = None) -> PretrainConfig:
    """Read a YAML config file (keys = PretrainConfig fields); a `preset` key selects the base preset."""
    values = read_yaml_mapping(path)
    if base is None and values.get("preset") in PRESETS:
        base = PRESETS[values["preset"]]
    return from_mapping(values, base, source=f"config file {path}")


def get_preset(name: str) -> PretrainConfig:
    """The named preset, or an InputError listing the valid names."""
    if name not in PRESETS:
        raise InputError(f"unknown pre-training preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def resolve_config(
    preset: str | None = None, config_file: str | Path | None = None, overrides: Sequence[str] = ()
) -> PretrainConfig:
    """Preset, then YAML file, then `key=value` overrides, each on top of the previous."""
    config = get_preset(preset) if preset else None
    if config_file is not None:
        config = load_config(config_file, base=config)
    config = config or PretrainConfig()
    return from_mapping(parse_overrides(overrides), config, source="command-line overrides")


def save_config(config: PretrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    write_text_atomic(path, yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None))
