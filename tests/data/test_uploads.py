"""capsules.data.uploads: safe decoding of an uploaded image (formats, modes, EXIF, garbage, bombs)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from capsules.data.drawing import MAX_PIXELS, to_mnist
from capsules.data.uploads import load_image
from tests.data.helpers import check_valid


def encode(im: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def test_load_png_round_trip(mask):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    got = load_image(encode(Image.fromarray(rgb)))
    assert got.dtype == np.uint8 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, rgb)
    np.testing.assert_array_equal(load_image(encode(Image.fromarray(mask))), mask)
    rgba = rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)
    np.testing.assert_array_equal(load_image(bytearray(encode(Image.fromarray(rgba)))), rgba)


def test_load_jpeg_round_trip(mask):
    got = load_image(encode(Image.fromarray(255 - mask).convert("RGB"), "JPEG", quality=90))
    assert got.shape == (*mask.shape, 3) and got.dtype == np.uint8
    assert np.abs(got[..., 0].astype(int) - (255 - mask)).mean() < 3
    # and it goes through to_mnist like the original drawing
    out = to_mnist(got)
    check_valid(out)
    assert np.abs(out - to_mnist(mask)).max() < 0.1


def test_load_modes(mask):
    la = Image.fromarray(np.stack([np.zeros_like(mask), mask], axis=-1))
    assert la.mode == "LA"
    got = load_image(encode(la))
    assert got.shape == (*mask.shape, 2)
    np.testing.assert_array_equal(got[..., 1], mask)

    palette = Image.fromarray(255 - mask).convert("P")
    got = load_image(encode(palette))
    assert got.shape == (*mask.shape, 3)
    got = load_image(encode(palette, transparency=int(palette.getpixel((0, 0)))))
    assert got.shape == (*mask.shape, 4)
    assert got[0, 0, 3] == 0  # the background colour became transparent

    bilevel = Image.fromarray(mask > 127)
    got = load_image(encode(bilevel))
    assert got.dtype == np.uint8 and got.ndim == 2 and set(np.unique(got)) <= {0, 255}

    deep = (mask.astype(np.uint16) * 257)
    got = load_image(encode(Image.fromarray(deep)))
    assert got.dtype == np.uint16 and got.ndim == 2
    np.testing.assert_array_equal(got, deep)
    np.testing.assert_allclose(to_mnist(got), to_mnist(mask), atol=1e-3)

    cmyk = Image.fromarray(255 - mask).convert("RGB").convert("CMYK")
    got = load_image(encode(cmyk, "JPEG"))
    assert got.shape == (*mask.shape, 3) and got.dtype == np.uint8
    check_valid(to_mnist(got))

    for image in (load_image(encode(la)), load_image(encode(palette))):
        check_valid(to_mnist(image))


def test_load_applies_exif_orientation():
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # the left half is white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    got = load_image(encode(Image.fromarray(arr), "JPEG", exif=exif.tobytes(), quality=95))
    assert got.shape == (40, 20, 3)
    assert got[:20].mean() > 200 and got[20:].mean() < 50  # the left half is now on top


@pytest.mark.parametrize("data", [
    b"",
    b"hello, this is not an image",
    bytes(range(256)) * 10,
    b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,  # a PNG signature and nonsense
])
def test_load_garbage_raises(data):
    from capsules.data.drawing import ImageError

    with pytest.raises(ImageError, match="not an image") as info:
        load_image(data)
    assert " at 0x" not in str(info.value) and "BytesIO" not in str(info.value)  # no Python reprs


def test_load_truncated_raises(mask):
    data = encode(Image.fromarray(mask))
    with pytest.raises(ValueError, match="not an image"):
        load_image(data[: len(data) // 2])


def test_load_wrong_type_raises():
    with pytest.raises(TypeError):
        load_image("picture.png")


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny real PNG whose IHDR is rewritten to claim ``width`` x ``height`` (CRC fixed)."""
    data = bytearray(encode(Image.new("1", (8, 8))))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.mark.parametrize("width, height", [
    (8000, 7000),          # 56 Mpx: over our 50 Mpx limit, under PIL's own warning threshold
    (10_000, 10_000),      # 100 Mpx: PIL's DecompressionBombWarning range
    (100_000, 100_000),    # 10 Gpx: PIL's DecompressionBombError range
])
def test_load_refuses_decompression_bombs(width, height):
    assert width * height > MAX_PIXELS
    with pytest.raises(ValueError, match="too large"):
        load_image(_png_claiming(width, height))
