"""Argument types shared by every subcommand: argparse rejects a bad number or device before any work starts.

Each type raises argparse.ArgumentTypeError, so the parser prints its usage line and one error naming the
flag, and exits with code 2; none of them imports anything heavy.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
DEVICE_HELP = "auto | cpu | cuda[:N]"
PRECISION_HELP = (
    "trained methods' forward passes: bf16 autocast where the device computes bf16 natively (a CUDA GPU, a CPU "
    "with AMX) under auto, else float32 (default auto)"
)


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type accepting whole numbers in [low, high] (no upper bound when high is None)."""

    def parse(text: str) -> int:
        value = _integer(text)
        if value < low or (high is not None and value > high):
            bound = f"at least {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


positive_int = int_range(1)
nonnegative_int = int_range(0)
# Seeds feed numpy/torch generators, which take unsigned 32/64-bit values.
seed_int = int_range(0, 2**32 - 1)
# Images are resized to a square of this side; 16 px is the smallest the backbones' strides allow.
image_size = int_range(16, 8192)


def positive_float(text: str) -> float:
    """An argparse type accepting finite numbers > 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value:g}")
    return value


def device_name(text: str) -> str:
    """auto, cpu, cuda or cuda:N; whether the device exists is checked when the command starts."""
    if not DEVICE_PATTERN.match(text):
        raise argparse.ArgumentTypeError(f"expected {DEVICE_HELP}, got {text!r}")
    return text
