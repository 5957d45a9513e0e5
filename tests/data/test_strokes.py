"""capsules.data.strokes: the drawing pad's strokes rasterised in their pens' widths, and two pens' digits
fitted into the MultiMNIST frame."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from capsules.data.drawing import ImageError, convert, to_mnist
from capsules.data.strokes import rasterise_strokes
from tests.data.helpers import bbox, centre_of_mass, check_valid

PAD, WIDTH = 240, 18  # the dashboard's pad and pen


def test_a_dot_is_a_disc_of_the_pen_width():
    masks = rasterise_strokes([{"pen": 0, "xy": [120, 120]}], PAD, WIDTH)
    assert masks.shape == (1, PAD, PAD) and masks.dtype == np.uint8
    assert set(np.unique(masks)) == {0, 255}
    ink = masks[0] > 0
    assert bbox(ink) == (WIDTH, WIDTH)
    assert centre_of_mass(ink.astype(float)) == pytest.approx((119.5, 119.5), abs=0.01)  # pixel centres
    assert ink.sum() == pytest.approx(np.pi * WIDTH ** 2 / 4, rel=0.05)


def test_a_stroke_is_as_wide_as_the_pen_with_round_ends():
    ink = rasterise_strokes([{"pen": 0, "xy": [20, 120, 110, 120, 200, 120]}], PAD, WIDTH)[0] > 0
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    assert (rows[0], rows[-1]) == (111, 128)  # 18 rows centred on y = 120
    assert abs(cols[0] - (20 - WIDTH / 2)) <= 1 and abs(cols[-1] + 1 - (200 + WIDTH / 2)) <= 1
    assert ink[120, 12] and not ink[112, 12]  # a round end: the corner of the square end is empty


def test_strokes_are_read_as_the_digit_they_draw():
    """A vertical stroke through the pad's JSON (ints, as the pad sends) is a "1" for convert,
    as the same stroke drawn as an image is."""
    import json

    payload = json.loads(json.dumps([{"pen": 0, "xy": [120, 43, 120, 90, 121, 150, 120, 197]}]))
    out = convert(rasterise_strokes(payload, PAD, WIDTH).max(axis=0))
    check_valid(out.image)
    h, w = bbox(out.image > 0.05)
    assert h == 20 and w <= 5
    assert out.extent == pytest.approx((197 - 43 + WIDTH) / PAD, abs=0.02)
    reference = Image.new("L", (PAD, PAD), 0)
    ImageDraw.Draw(reference).line([(120, 43), (120, 197)], fill=255, width=WIDTH)
    assert np.abs(out.image - to_mnist(np.asarray(reference))).max() < 0.35  # ends: round vs square


def test_two_pens_keep_their_own_ink():
    """Pen 0 draws a vertical bar, pen 1 a horizontal one over it: each mask has its pen's
    stroke (both have the crossing), whatever the order they were drawn in."""
    vertical = {"pen": 0, "xy": [120, 30, 120, 210]}
    horizontal = {"pen": 1, "xy": [30, 120, 210, 120]}
    masks = rasterise_strokes([vertical, horizontal], PAD, WIDTH, pens=2)
    assert masks.shape == (2, PAD, PAD)
    np.testing.assert_array_equal(masks, rasterise_strokes([horizontal, vertical], PAD, WIDTH, pens=2))
    np.testing.assert_array_equal(masks[0], rasterise_strokes([vertical], PAD, WIDTH)[0])
    np.testing.assert_array_equal(masks[1], rasterise_strokes([{**horizontal, "pen": 0}], PAD, WIDTH)[0])
    assert masks[0, 120, 120] == masks[1, 120, 120] == 255  # the crossing: both pens' ink
    assert masks[0, 120, 40] == 0 and masks[1, 40, 120] == 0
    assert rasterise_strokes([vertical], PAD, WIDTH, pens=3)[1:].max() == 0  # an unused pen: no ink


def test_no_strokes_or_strokes_off_the_pad_are_no_ink():
    assert rasterise_strokes([], PAD, WIDTH).max() == 0
    assert convert(rasterise_strokes([], PAD, WIDTH)[0]) is None
    off = rasterise_strokes([{"pen": 0, "xy": [-100, -100, -50, -60]}], PAD, WIDTH)
    assert off.max() == 0
    across = rasterise_strokes([{"xy": [-1e9, 120, 60, 120]}], PAD, WIDTH)[0] > 0  # no pen: pen 0
    assert across[120, 0] and across[120, 68] and not across[120, 75]


@pytest.mark.parametrize("strokes, kwargs, message", [
    ({"pen": 0, "xy": [1, 2]}, {}, "expected a list"),
    ("strokes", {}, "expected a list"),
    (None, {}, "expected a list"),
    ([[1, 2]], {}, "stroke 0 is a list"),
    ([{"pen": 1, "xy": [1, 2]}], {}, "pen 1"),
    ([{"pen": -1, "xy": [1, 2]}], {"pens": 2}, "0..1"),
    ([{"pen": True, "xy": [1, 2]}], {}, "pen True"),
    ([{"pen": "0", "xy": [1, 2]}], {}, "pen '0'"),
    ([{"pen": 0, "xy": [1, 2, 3]}], {}, "even count"),
    ([{"pen": 0, "xy": []}], {}, "no usable points"),
    ([{"pen": 0}], {}, "no usable points"),
    ([{"pen": 0, "xy": ["1", "2"]}], {}, "no usable points"),
    ([{"pen": 0, "xy": [[1, 2], [3, 4]]}], {}, "flat list"),
    ([{"pen": 0, "xy": [1, [2, 3]]}], {}, "no usable points"),
    ([{"pen": 0, "xy": [True, False]}], {}, "no usable points"),
    ([{"pen": 0, "xy": [1, 2]}, {"pen": 0, "xy": [float("nan"), 2]}], {}, "stroke 1 has a NaN"),
    ([], {"side": 0}, "side"),
    ([], {"side": 24.0}, "side"),
    ([], {"width": 0}, "width"),
    ([], {"width": float("nan")}, "width"),
    ([], {"pens": 0}, "pens"),
])
def test_malformed_strokes_raise_saying_what_was_expected(strokes, kwargs, message):
    args = {"side": PAD, "width": WIDTH, **kwargs}
    with pytest.raises(ImageError, match=re.escape(message)) as info:
        rasterise_strokes(strokes, **args)
    assert "\n" not in str(info.value)


def test_too_many_points_are_refused(monkeypatch):
    import capsules.data.strokes

    monkeypatch.setattr(capsules.data.strokes, "MAX_POINTS", 10)
    rasterise_strokes([{"pen": 0, "xy": list(range(20))}], PAD, WIDTH)  # 10 points: fine
    with pytest.raises(ImageError, match="more than 10 points"):
        rasterise_strokes([{"pen": 0, "xy": list(range(12))}] * 2, PAD, WIDTH)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 60), st.integers(3, 25), st.integers(1, 3), st.data())
def test_property_every_point_is_inked_in_its_pen(side, width, pens, data):
    coordinate = st.floats(0, side, exclude_max=True, allow_nan=False)
    strokes = data.draw(st.lists(st.fixed_dictionaries({
        "pen": st.integers(0, pens - 1),
        "xy": st.lists(coordinate, min_size=1, max_size=20).map(lambda v: v + v[-1:] if len(v) % 2 else v),
    }), max_size=5))
    masks = rasterise_strokes(strokes, side, width, pens)
    assert masks.shape == (pens, side, side) and set(np.unique(masks)) <= {0, 255}
    for stroke in strokes:
        for x, y in np.reshape(stroke["xy"], (-1, 2)):
            assert masks[stroke["pen"], int(y), int(x)] == 255


ONE_A = {"pen": 0, "xy": [100, 40, 100, 200]}  # pen A: a "1", 160 pixels tall
SEVEN_B = {"pen": 1, "xy": [70, 60, 160, 60, 120, 180]}  # pen B: a "7" over it, shifted


def test_a_pair_is_fitted_into_the_multimnist_frame():
    import torch

    from capsules.data import MultiMNIST
    from capsules.data.strokes import PAIR_FRAME, convert_pair

    assert PAIR_FRAME == MultiMNIST(torch.zeros(2, 28, 28, dtype=torch.uint8), torch.tensor([0, 1])).image_size == 36
    masks = rasterise_strokes([ONE_A, SEVEN_B], PAD, WIDTH, pens=2)
    out = convert_pair(masks)
    assert out.image.shape == (36, 36) and out.sources.shape == (2, 36, 36)
    assert out.image.dtype == out.sources.dtype == np.float32 and out.image.flags.c_contiguous
    for s in out.sources:  # each digit at full strength
        assert s.max() == pytest.approx(1.0) and s.min() >= 0
    np.testing.assert_allclose(out.image, np.minimum(out.sources.sum(axis=0), 1.0))  # MultiMNIST's merge
    assert out.image.max() == 1.0 and (out.sources.sum(axis=0) > 1.0).any()  # they overlap: clipped
    # the larger digit fills MNIST's 20-pixel box; the other keeps its size relative to it
    tall, _ = bbox(out.sources[0] > 0.05)
    assert tall == pytest.approx(20, abs=1)
    h_b, w_b = bbox(out.sources[1] > 0.05)
    scale = tall / (160 + WIDTH)
    assert h_b == pytest.approx((120 + WIDTH) * scale, abs=1.5) and w_b == pytest.approx((90 + WIDTH) * scale, abs=1.5)
    # both keep their places: the midpoint of their centres of mass at the frame's centre, (18, 18),
    # and the offset between them scaled as the digits are
    (ya, xa), (yb, xb) = (centre_of_mass(s) for s in out.sources)
    assert ((ya + yb) / 2, (xa + xb) / 2) == pytest.approx((18.0, 18.0), abs=0.6)
    (ya0, xa0), (yb0, xb0) = (centre_of_mass(m.astype(float)) for m in masks)
    assert (yb - ya, xb - xa) == pytest.approx(((yb0 - ya0) * scale, (xb0 - xa0) * scale), abs=0.6)
    assert out.distance == pytest.approx(max(abs(yb - ya), abs(xb - xa)), abs=0.6)
    assert not out.apart and out.missing == []


def test_one_pen_alone_and_no_ink():
    from capsules.data.strokes import convert_pair

    masks = rasterise_strokes([ONE_A], PAD, WIDTH, pens=2)
    out = convert_pair(masks)
    assert out.missing == [1] and out.distance is None and not out.apart
    assert not out.sources[1].any() and np.array_equal(out.image, out.sources[0])
    assert centre_of_mass(out.sources[0]) == pytest.approx((18.0, 18.0), abs=0.6)
    assert bbox(out.sources[0] > 0.05)[0] == pytest.approx(20, abs=1)
    assert convert_pair(rasterise_strokes([], PAD, WIDTH, pens=2)) is None
    assert convert_pair(np.full((2, 50, 50), 3, np.uint8)) is None  # too faint to be ink


def test_digits_far_apart_are_shrunk_into_the_frame_and_flagged():
    from capsules.data.strokes import convert_pair

    left = {"pen": 0, "xy": [20, 60, 20, 140]}
    right = {"pen": 1, "xy": [220, 60, 220, 140]}
    out = convert_pair(rasterise_strokes([left, right], PAD, WIDTH, pens=2))
    assert out.apart and out.distance > 8
    scale = 36 / (200 + WIDTH)  # the two together fill the frame's width (not 20 / the digit's height)
    for s in out.sources:  # each whole, at that scale
        assert bbox(s > 0.05)[0] == pytest.approx((80 + WIDTH) * scale, abs=1.5)
        assert s.max() == pytest.approx(1.0)


@pytest.mark.parametrize("masks, message", [
    (np.zeros((3, 10, 10)), "two grey ink masks"),
    ([np.zeros((10, 10)), np.zeros((10, 12))], "two grey ink masks"),
    (np.zeros((2, 10, 10, 3)), "two grey ink masks"),
    (5, "no sequence of images"),
])
def test_malformed_pairs_raise_saying_what_was_expected(masks, message):
    from capsules.data.strokes import convert_pair

    with pytest.raises(ImageError, match=message):
        convert_pair(masks)
