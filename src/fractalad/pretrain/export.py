"""Export a pre-training checkpoint as a backbone weight file (no classifier) with provenance metadata."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from fractalad import __version__
from fractalad.pretrain.checkpoints import load_checkpoint
from fractalad.pretrain.data import file_sha256

CLASSIFIER_PREFIX = "fc."
SYSTEMS_FILE = "systems.npz"


def git_revision() -> str | None:
    """The fractalad source tree's git commit, when it is a checkout with commits."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    revision = result.stdout.strip()
    return revision if result.returncode == 0 and len(revision) == 40 else None


def _systems_sha256(checkpoint: Path, config: dict) -> str:
    local = checkpoint.parent / SYSTEMS_FILE
    if local.exists():
        return file_sha256(local)
    if config.get("systems_file") and Path(config["systems_file"]).exists():
        return file_sha256(config["systems_file"])
    return "unknown"


def _floats(values: list[float] | None, default: float) -> str:
    return ",".join(repr(float(v)) for v in (values if values is not None else [default] * 3))


def export_backbone(checkpoint: str | Path, out_path: str | Path) -> Path:
    """Write `checkpoint`'s model minus `fc.*` as safetensors with arch/mean/std/provenance metadata.

    A run trained without normalisation records mean 0 and std 1: extractors then feed raw [0, 1] images.
    A run with `head_stage=3` gets layer4 at its seeded initial values and metadata `head_stage` "3".
    """
    from fractalad.backbones.weights import save_weights

    checkpoint, out_path = Path(checkpoint), Path(out_path)
    payload = load_checkpoint(checkpoint)
    config = payload["config"]
    state = {k: v for k, v in payload["model"].items() if not k.startswith(CLASSIFIER_PREFIX)}
    head_stage = int(config.get("head_stage", 4))
    if head_stage == 3:
        # layer4 did not train: write its seeded initial values, so the file is a whole backbone that every
        # loader takes, and say so in the metadata.
        from fractalad.backbones.factory import initial_stage_state

        state |= initial_stage_state(config["arch"], config["num_classes"], config["seed"], stage=4)
    metadata = {
        "arch": config["arch"],
        "mean": _floats(config.get("mean"), 0.0),
        "std": _floats(config.get("std"), 1.0),
        "source": "fractalad-pretrain",
        "fractalad_version": __version__,
        "preset": str(config.get("preset")),
        "epochs": str(payload["state"]["epoch"]),
        "global_step": str(payload["state"]["global_step"]),
        "num_classes": str(config["num_classes"]),
        "head_stage": str(head_stage),
        "systems_sha256": _systems_sha256(checkpoint, config),
        "config": json.dumps(config, sort_keys=True),
    }
    revision = git_revision()
    if revision:
        metadata["git_revision"] = revision
    save_weights(out_path, state, metadata)
    return out_path
