"""A catalogue of mistakes and environment faults a user can cause, run through the CLI as a user would.

Every case must end with exit code 2 and exactly one line on stderr that names the culprit (a path, a flag
or a key), and no traceback. Fixtures are generated here; faults that need privileges (a full disk, a
folder even root cannot write) use a small tmpfs mount or the immutable attribute when run as root, and
are skipped where they cannot be set up.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fractalad.cli import main
from fractalad.pretrain import checkpoints as ckpt
from fractalad.pretrain.config import get_preset

ROOT = os.geteuid() == 0


def terminal_lines(err: str) -> list[str]:
    """stderr as a terminal shows it: a carriage return lets the text after it overwrite a progress bar."""
    shown = [line.rsplit("\r", 1)[-1].strip() for line in err.split("\n")]
    return [line for line in shown if line]


def cli_error(capsys: pytest.CaptureFixture[str], argv: list[object], *named: object) -> str:
    """Run the CLI; assert exit code 2, one stderr line naming every item of `named`, no traceback."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_info:  # argparse errors exit from parse_args
        code = exit_info.code
    err = capsys.readouterr().err
    lines = terminal_lines(err)
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for item in named:
        assert str(item) in lines[0], lines[0]
    return lines[0]


@contextlib.contextmanager
def immutable(folder: Path) -> Iterator[Path]:
    """A folder nobody can create files in: mode 0555, or for root the immutable attribute."""
    folder.mkdir(parents=True, exist_ok=True)
    if not ROOT:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    if (
        shutil.which("chattr") is None
        or subprocess.run(["chattr", "+i", str(folder)], check=False).returncode
    ):
        pytest.skip("cannot make a folder read-only for root here (no chattr +i)")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    with immutable(tmp_path / "read-only") as folder:
        yield folder


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs that fills up after a few small files."""
    mount = tmp_path / "full"
    mount.mkdir()
    if (
        not ROOT
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=False
        ).returncode
    ):
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield mount
    finally:
        # Lazy: a failed writer's handle may be released only when garbage-collected.
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """`ulimit -f` for this process; Python ignores SIGXFSZ, so writes past it fail with EFBIG."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.fixture
def no_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Output problems must surface before the detector is even built."""

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the detector was built before the output location was checked")

    monkeypatch.setattr("fractalad.detectors.registry.create_detector", fail)


def write_mvtec(root: Path, category: str = "widget") -> Path:
    """The smallest MVTec layout: two good train images, one good and one defective test image with mask."""
    rng = np.random.default_rng(0)
    for folder, count in (("train/good", 2), ("test/good", 1), ("test/crack", 1)):
        (root / category / folder).mkdir(parents=True)
        for i in range(count):
            image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / category / folder / f"{i:03d}.png")
    (root / category / "ground_truth" / "crack").mkdir(parents=True)
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[8:16, 8:16] = 255
    Image.fromarray(mask).save(root / category / "ground_truth" / "crack" / "000_mask.png")
    return root


def write_checkpoint(path: Path) -> Path:
    """A real pre-training checkpoint of the tiny preset's resnet18 (no training)."""
    import torchvision

    config = get_preset("tiny")
    model = torchvision.models.resnet18(num_classes=config.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    ckpt.save_checkpoint(path, model, optimizer, scheduler, config.to_dict(), ckpt.TrainState())
    return path


class Opaque:
    """A class torch.load(weights_only=True) refuses to unpickle."""


DETECT = ["detect", "--dataset", "mvtec", "--category", "widget", "--weights", "random", "--device", "cpu"]

# (arguments, text the one line must contain): argparse range checks, before any import of torch.
BAD_FLAGS = [
    (["detect", "--dataset", "mvtec", "--out", "o", "--size", "0"], "--size"),
    (["detect", "--dataset", "mvtec", "--out", "o", "--batch-size", "0"], "--batch-size"),
    (["detect", "--dataset", "mvtec", "--out", "o", "--batch-size", "many"], "--batch-size"),
    (["detect", "--dataset", "mvtec", "--out", "o", "--overlays", "-1"], "--overlays"),
    (["detect", "--dataset", "mvtec", "--out", "o", "--device", "tpu"], "--device"),
    (["detect", "--dataset", "mvtec", "--out", "o", "--method", "nope"], "--method"),
    (["detect", "--dataset", "mvtec", "--out", "o", "--layers", "0"], "--layers"),
    (["detect", "--dataset", "imagenet", "--out", "o"], "--dataset"),
    (["data", "synth", "--n-train", "0"], "--n-train"),
    (["data", "synth", "--contrast", "0"], "--contrast"),
    (["data", "synth", "--contrast", "nan"], "--contrast"),
    (["data", "synth", "--categories", "teapot"], "--categories"),
    (["data", "synth", "--size", "4"], "--size"),
    (["fractals", "sample", "--count", "0", "--out", "s.npz"], "--count"),
    (["fractals", "sample", "--count", "4", "--workers", "0", "--out", "s.npz"], "--workers"),
    (["fractals", "preview", "--columns", "0", "--out", "p.png"], "--columns"),
    (["fractals", "preview", "--n-points", "0", "--out", "p.png"], "--n-points"),
    (["fractals", "export", "--systems", "s.npz", "--out", "e", "--samples-per-class", "0"], "--samples"),
    (["fractals", "export", "--systems", "s.npz", "--out", "e", "--workers", "-2"], "--workers"),
    (["demo", "--size", "8"], "--size"),
    (["demo", "--seed", "-1"], "--seed"),
    (["pretrain", "--preset", "giant"], "--preset"),
    (["teleport"], "teleport"),
]


@pytest.mark.parametrize(("argv", "named"), BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flag_is_one_line(argv: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    cli_error(capsys, argv, named, "--help")


# ---- outputs: checked before the work starts --------------------------------------------------------------


def test_detect_out_is_a_file(tmp_path: Path, no_fit: None, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.write_text("x")
    cli_error(capsys, [*DETECT, "--root", write_mvtec(tmp_path / "d"), "--out", out], out, "is a file")


def test_detect_out_below_a_file(tmp_path: Path, no_fit: None, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "plain").write_text("x")
    out = tmp_path / "plain" / "run"
    cli_error(capsys, [*DETECT, "--root", write_mvtec(tmp_path / "d"), "--out", out], out)


def test_detect_out_read_only(
    tmp_path: Path, read_only: Path, no_fit: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = read_only / "run"
    cli_error(capsys, [*DETECT, "--root", write_mvtec(tmp_path / "d"), "--out", out], out)
    assert not out.exists()


def test_detect_metrics_file_is_a_folder(
    tmp_path: Path, no_fit: None, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "out" / "metrics.json").mkdir(parents=True)
    argv = [*DETECT, "--root", write_mvtec(tmp_path / "d"), "--out", tmp_path / "out"]
    cli_error(capsys, argv, tmp_path / "out" / "metrics.json", "is a folder")


def test_detect_saved_model_is_a_folder(
    tmp_path: Path, no_fit: None, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "out" / "detector.safetensors").mkdir(parents=True)
    argv = [*DETECT, "--root", write_mvtec(tmp_path / "d"), "--out", tmp_path / "out", "--save-model"]
    cli_error(capsys, argv, tmp_path / "out" / "detector.safetensors")


def test_detect_overlays_folder_is_a_file(
    tmp_path: Path, no_fit: None, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "overlays").write_text("x")
    argv = [*DETECT, "--root", write_mvtec(tmp_path / "d"), "--out", tmp_path / "out"]
    cli_error(capsys, argv, tmp_path / "out" / "overlays")


def test_preview_out_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli_error(capsys, ["fractals", "preview", "--count", "1", "--out", tmp_path], tmp_path, "is a folder")


def test_preview_out_read_only(read_only: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli_error(capsys, ["fractals", "preview", "--count", "1", "--out", read_only / "p.png"], read_only)


def test_sample_out_below_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "plain").write_text("x")
    out = tmp_path / "plain" / "s.npz"
    cli_error(capsys, ["fractals", "sample", "--count", "2", "--out", out], out, "is a file")


def test_export_out_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    systems = tmp_path / "s.npz"
    assert main(["fractals", "sample", "--count", "2", "--out", str(systems)]) == 0
    (tmp_path / "e").write_text("x")
    argv = ["fractals", "export", "--systems", systems, "--out", tmp_path / "e"]
    cli_error(capsys, argv, tmp_path / "e", "is a file")


def test_synth_root_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "root").write_text("x")
    cli_error(capsys, ["data", "synth", "--root", tmp_path / "root"], tmp_path / "root", "is a file")


def test_synth_root_read_only(read_only: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli_error(capsys, ["data", "synth", "--root", read_only / "syn"], read_only / "syn")


def test_pretrain_out_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run").write_text("x")
    argv = ["pretrain", "--preset", "tiny", "--out", tmp_path / "run"]
    cli_error(capsys, argv, tmp_path / "run", "is a file")


def test_pretrain_out_read_only(read_only: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli_error(capsys, ["pretrain", "--preset", "tiny", "--out", read_only / "run"], read_only / "run")
    assert not (read_only / "run").exists()


def test_pretrain_export_out_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = write_checkpoint(tmp_path / "last.pt")
    cli_error(capsys, ["pretrain-export", checkpoint, tmp_path], tmp_path, "is a folder")


def test_filters_out_read_only(read_only: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli_error(capsys, ["viz", "filters", "random", "--out", read_only / "f.png"], read_only / "f.png")


def test_demo_out_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "demo").write_text("x")
    cli_error(capsys, ["demo", "--out", tmp_path / "demo"], tmp_path / "demo", "is a file")


# ---- outputs: failures in the middle of a write -------------------------------------------------------------


def test_synth_on_a_full_disk(full_disk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["data", "synth", "--root", full_disk, "--categories", "wood", "--size", "64", "--n-train", "40"]
    cli_error(capsys, argv, full_disk / "wood", "No space left on device", "free space")
    assert list(full_disk.iterdir()) == []  # the half-built category is gone


def test_sample_on_a_full_disk(full_disk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = full_disk / "s.npz"
    cli_error(capsys, ["fractals", "sample", "--count", "3000", "--out", out], out, "No space left")
    assert list(full_disk.iterdir()) == []


def test_pretrain_export_on_a_full_disk(
    tmp_path: Path, full_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = write_checkpoint(tmp_path / "last.pt")
    out = full_disk / "b.safetensors"
    cli_error(capsys, ["pretrain-export", checkpoint, out], out, "No space left")
    assert list(full_disk.iterdir()) == []


def test_checkpoint_on_a_full_disk(full_disk: Path) -> None:
    # torch.save reports a failed write as a bare RuntimeError; the writer still names the file and cause.
    from fractalad.errors import OutputError

    with pytest.raises(OutputError, match="cannot write .*last.pt: No space left on device"):
        write_checkpoint(full_disk / "last.pt")
    assert list(full_disk.iterdir()) == []


def test_sample_past_the_file_size_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.npz"
    with file_size_limit(4096):
        line = cli_error(capsys, ["fractals", "sample", "--count", "500", "--out", out], out, "ulimit -f")
    assert "File too large" in line
    assert list(tmp_path.iterdir()) == []


def test_pretrain_export_past_the_file_size_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = write_checkpoint(tmp_path / "last.pt")
    out = tmp_path / "b.safetensors"
    with file_size_limit(1 << 20):
        cli_error(capsys, ["pretrain-export", checkpoint, out], out, "ulimit -f")
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


# ---- inputs that are not what they claim ------------------------------------------------------------------


def test_checkpoint_with_python_objects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pickled.pt"
    torch.save({"format": ckpt.CHECKPOINT_FORMAT, "model": Opaque()}, path)
    line = cli_error(capsys, ["pretrain-export", path, tmp_path / "b.safetensors"], path, "not a plain")
    assert "weights_only" not in line and "safe_globals" not in line


def test_checkpoint_is_a_plain_state_dict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    cli_error(capsys, ["pretrain-export", path, tmp_path / "b.safetensors"], path, "fractalad pretrain")


def test_checkpoint_is_truncated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_checkpoint(tmp_path / "last.pt")
    path.write_bytes(path.read_bytes()[:5000])
    cli_error(capsys, ["pretrain-export", path, tmp_path / "b.safetensors"], path)


def test_checkpoint_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nowhere.pt"
    cli_error(capsys, ["pretrain-export", path, tmp_path / "b.safetensors"], path, "does not exist")


def test_weight_file_with_python_objects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pickled.pt"
    torch.save({"conv1.weight": Opaque()}, path)
    line = cli_error(capsys, ["viz", "filters", path, "--out", tmp_path / "f.png"], path)
    assert "weights_only" not in line and "fractalad.backbones" not in line


def test_config_is_not_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("epochs: 3\nlr: [0.1\nseed: 1\n")
    line = cli_error(capsys, ["pretrain", "--config", path, "--print-config"], path, "not valid YAML")
    assert f"{path}:3:" in line  # file:line:column of the problem


def test_config_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("preset: tiny # caf\u00e9\n".encode("latin-1"))
    cli_error(capsys, ["pretrain", "--config", path, "--print-config"], path, "UTF-8")


def test_config_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli_error(capsys, ["pretrain", "--config", tmp_path, "--print-config"], tmp_path, "not a file")


def test_config_is_a_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- epochs\n- 3\n")
    cli_error(capsys, ["pretrain", "--config", path, "--print-config"], path, "mapping")


def test_config_override_unknown_key(capsys: pytest.CaptureFixture[str]) -> None:
    cli_error(capsys, ["pretrain", "--preset", "tiny", "--print-config", "epoch=3"], "'epoch'")


def test_config_override_wrong_type(capsys: pytest.CaptureFixture[str]) -> None:
    cli_error(capsys, ["pretrain", "--preset", "tiny", "--print-config", "epochs=many"], "'epochs'")


def _visa(root: Path, csv_bytes: bytes) -> Path:
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv" / "1cls.csv").write_bytes(csv_bytes)
    return root


def test_visa_split_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "object,split,label,image,mask\ncandle,train,normal,candle/Data/Images/Normal/caf\u00e9.JPG,\n"
    root = _visa(tmp_path / "visa", text.encode("latin-1"))
    cli_error(capsys, ["data", "info", "visa", root], root / "split_csv" / "1cls.csv", "UTF-8")


def test_visa_split_not_utf8_in_detect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _visa(tmp_path / "visa", b"object,split,label,image,mask\n\xff\xfe,train,normal,x.JPG,\n")
    argv = ["detect", "--dataset", "visa", "--root", root, "--category", "candle", "--out", tmp_path / "o"]
    cli_error(capsys, argv, root / "split_csv" / "1cls.csv", "UTF-8")


def test_visa_split_lacks_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _visa(tmp_path / "visa", b"object,split\ncandle,train\n")
    cli_error(capsys, ["data", "info", "visa", root, "candle"], root / "split_csv" / "1cls.csv", "label")


def test_dataset_root_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli_error(capsys, ["data", "info", "mvtec", tmp_path / "absent"], tmp_path / "absent")


def test_folder_dataset_without_train_good(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cat" / "test").mkdir(parents=True)
    cli_error(capsys, ["data", "info", "folder", tmp_path / "cat"], tmp_path / "cat")


def test_systems_file_is_garbage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.npz"
    path.write_bytes(b"not a zip file")
    cli_error(capsys, ["fractals", "preview", "--systems", path, "--out", tmp_path / "p.png"], path)


def test_map_count_range_reversed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["fractals", "sample", "--count", "2", "--n-range", "5", "2", "--out", tmp_path / "s.npz"]
    cli_error(capsys, argv, "n_min=5")


# ---- the machine ------------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_detect_on_cuda_without_a_gpu(
    tmp_path: Path, no_fit: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*DETECT[:-1], "cuda", "--root", write_mvtec(tmp_path / "d"), "--out", tmp_path / "o"]
    cli_error(capsys, argv, "'cuda'", "CUDA is not available")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_pretrain_on_cuda_without_a_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["pretrain", "--preset", "tiny", "--out", tmp_path / "run", "device=cuda:1"]
    cli_error(capsys, argv, "'cuda:1'", "CUDA is not available")
