"""Precision choice: bf16 autocast for trained methods only where the hardware computes bf16 natively."""

from __future__ import annotations

from unittest import mock

import pytest
import torch

from fractalad import devices
from fractalad.detectors import create_detector
from fractalad.errors import InputError

CPU = torch.device("cpu")


@pytest.mark.parametrize(("amx", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_precision_follows_the_cpu_s_bf16_hardware(amx: bool, expected: str) -> None:
    with mock.patch.object(torch.cpu, "_is_amx_tile_supported", return_value=amx):
        assert devices.native_bf16(CPU) is amx
        assert devices.resolve_precision("auto", CPU) == expected
        assert devices.resolve_precision("fp32", CPU) == "fp32"
        assert devices.resolve_precision("bf16", CPU) == "bf16"


def test_unknown_precision_is_named() -> None:
    with pytest.raises(InputError, match="unknown precision 'half'; use auto, fp32, bf16"):
        devices.resolve_precision("half", CPU)


@pytest.mark.parametrize(("amx", "auto"), [(True, "bf16"), (False, "fp32")])
def test_fit_records_the_precision_it_trained_at(amx: bool, auto: str) -> None:
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with mock.patch.object(torch.cpu, "_is_amx_tile_supported", return_value=amx):
        for precision, expected in (("auto", auto), ("fp32", "fp32"), ("bf16", "bf16")):
            detector = create_detector("stfpm", weights="random", epochs=1, batch_size=2).fit(
                images, device="cpu", precision=precision
            )
            assert detector.fit_info_["precision"] == expected
