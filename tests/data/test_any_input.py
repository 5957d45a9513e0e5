"""Everything a stranger can feed the dashboard gives a prediction or one clear sentence."""

import io

import numpy as np
import pytest
from PIL import Image

from capsules import load_model
from capsules.analysis import analyse
from capsules.data.drawing import to_mnist
from capsules.data.uploads import convert_upload


def png(array, mode=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def one(h=280, w=280, thick=20):
    """White vertical stroke on black, (h, w) uint8."""
    a = np.zeros((h, w), np.uint8)
    a[h // 6: 5 * h // 6, w // 2 - thick // 2: w // 2 + thick // 2] = 255
    return a


@pytest.fixture(scope="module")
def model():
    return load_model(device="cpu")


CASES = {
    "white on black, grayscale": png(one()),
    "black on white, grayscale": png(255 - one()),
    "RGB, black on white": png(np.stack([255 - one()] * 3, -1)),
    "RGBA opaque": png(np.dstack([np.stack([one()] * 3, -1), np.full((280, 280), 255, np.uint8)])),
    "transparent PNG, ink in alpha only": png(np.dstack([np.zeros((280, 280, 3), np.uint8), one()])),
    "JPEG photo-like, dark ink on light grey": jpeg(np.stack([np.clip(230 - one().astype(int), 0, 255).astype(np.uint8)] * 3, -1)),
    "very thick stroke": png(one(thick=120)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_images_give_a_prediction(name, model):
    converted, message = convert_upload(CASES[name], name)
    image = converted.image
    assert message == "" and image.shape == (28, 28)
    res = analyse(model, image)
    assert 0 <= res.prediction <= 9
    if name != "very thick stroke":  # a slab 120 px wide is no longer a 1
        assert res.prediction == 1, name


@pytest.mark.parametrize("data, expected", [
    (b"%PDF-1.4 not an image at all", "not an image"),
    (b"", "empty"),
    (png(np.zeros((280, 280), np.uint8)), "no digit"),  # blank canvas, saved
    (png(np.full((50, 50), 255, np.uint8)), "no digit"),  # all ink: nothing tells ink from paper
])
def test_non_images_and_blank_images_give_one_sentence(data, expected):
    converted, message = convert_upload(data, "upload.bin")
    assert converted is None and expected in message and "\n" not in message
    assert " at 0x" not in message and "BytesIO" not in message  # no Python object reprs


def test_a_10000_by_10000_image_gives_a_clear_message_or_a_prediction(model):
    big = Image.new("L", (10000, 10000), 0)
    big.paste(255, (4500, 1500, 5500, 8500))  # a fat vertical bar: a "1"
    buf = io.BytesIO()
    big.save(buf, format="PNG", optimize=False)
    converted, message = convert_upload(buf.getvalue(), "huge.png")
    if converted is None:
        assert "too large" in message
    else:
        assert analyse(model, converted.image).prediction == 1
    # as a canvas array (no file decoding involved) it is always read
    arr = np.asarray(big)
    assert analyse(model, to_mnist(arr)).prediction == 1


def test_canvas_inputs(model):
    blank = np.zeros((280, 280, 4), np.uint8)
    assert to_mnist(blank) is None  # the app falls back to the sample, with its hint
    dot = blank.copy()
    dot[140:150, 140:150, 3] = 255
    assert to_mnist(dot).shape == (28, 28)  # a dot is a (tiny) drawing: a prediction, no error
    full = np.full((280, 280, 4), 255, np.uint8)
    assert to_mnist(full) is None
    stroke = blank.copy()
    stroke[..., 3] = one()
    assert analyse(model, to_mnist(stroke)).prediction == 1
