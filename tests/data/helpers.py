"""What the drawing tests share: a hand-drawn 7 and checks of an MNIST-like output."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

SIZE = 280


def seven_mask(size: int = SIZE, width: int = 20) -> np.ndarray:
    """A '7': a top bar and a diagonal, anti-aliased (drawn at 4x and box-reduced), uint8 0..255."""
    big = Image.new("L", (4 * size, 4 * size), 0)
    draw = ImageDraw.Draw(big)
    s = 4 * size / 280
    draw.line([(70 * s, 60 * s), (210 * s, 60 * s)], fill=255, width=int(4 * width * size / 280))
    draw.line([(210 * s, 60 * s), (120 * s, 230 * s)], fill=255, width=int(4 * width * size / 280))
    return np.asarray(big.reduce(4))


def check_valid(out) -> None:
    assert isinstance(out, np.ndarray)
    assert out.shape == (28, 28)
    assert out.dtype == np.float32
    assert out.flags.c_contiguous
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out.max() == pytest.approx(1.0, abs=1e-6)  # the brightest ink is normalised to 1


def centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    ys, xs = np.mgrid[:img.shape[0], :img.shape[1]]
    total = img.sum()
    return float((img * ys).sum() / total), float((img * xs).sum() / total)


def bbox(img: np.ndarray) -> tuple[int, int]:
    rows = np.flatnonzero(img.any(axis=1))
    cols = np.flatnonzero(img.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
