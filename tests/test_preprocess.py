"""capsules.data.drawing: drawings/photos -> MNIST-style 28x28, and safe decoding of uploads."""

from __future__ import annotations

import io
import re
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageDraw

from capsules.data.drawing import MAX_PIXELS, ImageError, convert, to_mnist
from capsules.data.strokes import rasterise_strokes
from capsules.data.uploads import load_image

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


# ----------------------------------------------------------------------------- the recipe

@pytest.fixture(scope="module")
def mask() -> np.ndarray:
    return seven_mask()


def variants(mask: np.ndarray) -> dict[str, np.ndarray]:
    h, w = mask.shape
    m = mask.astype(np.float64) / 255.0
    alpha_only = np.zeros((h, w, 4), np.uint8)
    alpha_only[..., 3] = mask
    coloured_transparent = np.zeros((h, w, 4), np.uint8)
    coloured_transparent[..., :3] = (200, 30, 60)  # the colour is everywhere; only alpha says where
    coloured_transparent[..., 3] = mask
    blue_on_white = np.empty((h, w, 3), np.uint8)
    for k, (ink, paper) in enumerate(zip((30, 60, 200), (255, 255, 255))):
        blue_on_white[..., k] = np.round(paper + (ink - paper) * m).astype(np.uint8)
    white_on_black_rgba = np.full((h, w, 4), 255, np.uint8)
    white_on_black_rgba[..., :3] = mask[..., None]
    dark_on_grey = np.round(128 - 128 * m).astype(np.uint8)
    return {
        "white on black": mask,
        "black on white": 255 - mask,
        "alpha only (RGB zero)": alpha_only,
        "coloured stroke on transparent": coloured_transparent,
        "blue stroke on white RGB": blue_on_white,
        "white on black, opaque RGBA": white_on_black_rgba,
        "black ink on grey": dark_on_grey,
        "gray+alpha": np.stack([np.zeros_like(mask), mask], axis=-1),
        "(H, W, 1)": mask[..., None],
        "float64 in [0, 1]": m,
        "uint16": (m * 65535).round().astype(np.uint16),
    }


def test_seven_output_is_mnist_like(mask):
    out = to_mnist(mask)
    check_valid(out)
    h, w = bbox(out > 0)
    assert h <= 20 and w <= 20
    assert max(h, w) >= 19  # the longer side is fitted to 20
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) <= 0.6 and abs(cx - 14) <= 0.6
    # It is still a 7: the top bar is the row with the most ink, in the upper part.
    assert np.argmax(out.sum(axis=1)) < 10
    assert out[out > 0].size > 40  # a stroke, not a speck


def test_all_encodings_of_the_same_drawing_agree(mask):
    reference = to_mnist(mask)
    for name, image in variants(mask).items():
        out = to_mnist(image)
        assert out is not None, name
        check_valid(out)
        assert np.abs(out - reference).max() < 0.03, name


def test_input_is_not_modified(mask):
    image = variants(mask)["coloured stroke on transparent"]
    before = image.copy()
    to_mnist(image)
    np.testing.assert_array_equal(image, before)


def test_non_contiguous_and_read_only_inputs(mask):
    image = np.ascontiguousarray((255 - mask).T).T  # a transposed (Fortran-order) view
    image.flags.writeable = False
    np.testing.assert_allclose(to_mnist(image), to_mnist(mask), atol=1e-6)


def test_aspect_ratio_is_kept():
    tall = np.zeros((300, 300), np.uint8)
    tall[40:260, 140:160] = 255  # 220 x 20: a "1"
    out = to_mnist(tall)
    check_valid(out)
    h, w = bbox(out > 0.05)
    assert h == 20 and w <= 3
    wide = np.ascontiguousarray(tall.T)
    h, w = bbox(to_mnist(wide) > 0.05)
    assert w == 20 and h <= 3


@pytest.mark.parametrize("name, image", [
    ("blank white RGB", np.full((200, 200, 3), 255, np.uint8)),
    ("blank black", np.zeros((200, 200), np.uint8)),
    ("fully transparent", np.zeros((200, 200, 4), np.uint8)),
    ("transparent with white RGB", np.dstack([np.full((200, 200, 3), 255, np.uint8),
                                              np.zeros((200, 200), np.uint8)])),
    ("uniform grey", np.full((200, 200), 128, np.uint8)),
    ("uniform grey RGBA", np.full((200, 200, 4), (128, 128, 128, 255), np.uint8)),
    ("uniform half-transparent", np.full((200, 200, 4), (0, 0, 0, 100), np.uint8)),
    ("full canvas of ink (alpha 255 everywhere)", np.full((200, 200, 4), (0, 0, 0, 255), np.uint8)),
    ("uniform float", np.full((50, 50), 0.3)),
    ("all False", np.zeros((50, 50), bool)),
    ("1x1", np.full((1, 1), 255, np.uint8)),
    ("1x1 RGBA", np.full((1, 1, 4), 255, np.uint8)),
])
def test_no_ink_gives_none(name, image):
    assert to_mnist(image) is None, name


def test_faint_ink_gives_none_but_clear_ink_does_not():
    image = np.full((100, 100), 200, np.uint8)
    image[30:70, 45:55] = 195  # 5/255 of contrast: paper texture, not a stroke
    assert to_mnist(image) is None
    image[30:70, 45:55] = 120
    check_valid(to_mnist(image))


def test_convert_reports_the_size_of_the_ink():
    from capsules.data.drawing import TINY, convert

    canvas = np.zeros((280, 280, 4), np.uint8)
    digit = canvas.copy()
    digit[40:240, 130:150, 3] = 255  # a "1", 200 pixels tall
    got = convert(digit)
    assert got.extent == pytest.approx(200 / 280) and not got.tiny
    np.testing.assert_array_equal(got.image, to_mnist(digit))
    dot = canvas.copy()
    dot[140:150, 140:150, 3] = 255  # a 10-pixel dot
    got = convert(dot)
    assert got.extent == pytest.approx(10 / 280) and got.extent < TINY and got.tiny
    assert got.zoom == pytest.approx((20 / 28) / (10 / 280))
    assert convert(canvas) is None


def test_single_dot_thick_strokes_and_tiny_images():
    dot = np.zeros((28, 28), np.uint8)
    dot[3, 5] = 255
    out = to_mnist(dot)
    check_valid(out)
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) <= 0.6 and abs(cx - 14) <= 0.6

    thick = np.full((200, 200), 255, np.uint8)
    yy, xx = np.mgrid[:200, :200]
    thick[(yy - 100) ** 2 + (xx - 100) ** 2 < 90 ** 2] = 0  # a huge blot, nearly the whole canvas
    out = to_mnist(thick)
    check_valid(out)
    assert bbox(out > 0.5) == (20, 20)

    two = np.array([[0, 255], [0, 0]], np.uint8)
    check_valid(to_mnist(two))
    check_valid(to_mnist(np.array([[True, False, False]])))


def test_lopsided_shape_stays_in_frame():
    image = np.zeros((100, 100), np.uint8)
    image[10:90, 10:13] = 255  # thin vertical line
    image[80:90, 10:90] = 255  # heavy foot: the mass is far from the box's centre
    image[10:30, 10:30] = 255
    check_valid(to_mnist(image))


def test_mnist_digits_round_trip(mnist_test):
    images, _ = mnist_test
    images = images[:40].numpy()
    plain, best = [], []
    for digit in images:
        big = np.kron(digit, np.ones((10, 10), np.uint8))  # 280x280, like the canvas
        out = to_mnist(big)
        check_valid(out)
        target = digit.astype(np.float32) / 255.0
        plain.append(np.corrcoef(out.ravel(), target.ravel())[0, 1])
        # the centre of mass is rounded to a pixel, as MNIST did: allow a 1-pixel offset
        best.append(max(np.corrcoef(np.roll(out, (dy, dx), axis=(0, 1)).ravel(), target.ravel())[0, 1]
                        for dy in (-1, 0, 1) for dx in (-1, 0, 1)))
    assert np.median(plain) > 0.95
    assert min(best) > 0.9
    # the inverted (black on white) version of a digit gives the same result
    np.testing.assert_allclose(to_mnist(255 - images[0]), to_mnist(images[0]), atol=1e-5)


def test_large_images_work():
    big = np.zeros((10_000, 10_000), np.uint8)
    big[1500:8500, 4500:5500] = 255
    big[1500:2500, 2500:7500] = 255
    out = to_mnist(big)
    check_valid(out)
    assert max(bbox(out > 0)) == 20
    del big
    rgba = np.zeros((10_000, 10_000, 4), np.uint8)
    rgba[2000:8000, 4000:5000, 3] = 255  # alpha-only stroke
    out = to_mnist(rgba)
    check_valid(out)
    h, w = bbox(out > 0.5)
    assert h == 20 and w <= 5
    del rgba
    floats = np.zeros((3000, 3000), np.float32)  # the non-uint8 path
    floats[500:2500, 1400:1600] = 1.0
    check_valid(to_mnist(floats))


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("image", [
    np.zeros(10, np.uint8),                      # 1-D
    np.zeros((4, 4, 4, 4), np.uint8),            # 4-D
    np.zeros((), np.uint8),                      # 0-D
    np.zeros((10, 10, 5), np.uint8),             # 5 channels
    np.zeros((3, 28, 28, 1), np.uint8),
    np.zeros((0, 10), np.uint8),                 # zero size
    np.zeros((10, 10, 0), np.uint8),
    np.zeros((10, 10), np.complex64),
    np.array([[None, 1], [2, 3]], dtype=object),
    np.array([["a", "b"]]),
    [[0, 1], [2]],                               # ragged
    None,
])
def test_bad_inputs_raise_value_error_saying_what_was_expected(image):
    from capsules.data.drawing import ImageError

    with pytest.raises(ImageError, match="expected") as info:  # an ImageError is a ValueError
        to_mnist(image)
    assert "\n" not in str(info.value) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_floats_raise(bad):
    image = np.zeros((30, 30), np.float32)
    image[10:20, 14] = 1.0
    image[5, 5] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        to_mnist(image)
    big = np.zeros((2000, 600), np.float64)  # the block-averaged path checks too
    big[1999, 599] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        to_mnist(big)


def test_other_dtypes_are_scaled_by_their_max(mask):
    reference = to_mnist(mask)
    m = mask.astype(np.int64)
    for image in ((m * (2**31 - 1) // 255).astype(np.int32), (m * 127 // 255).astype(np.int8), m.astype(np.float16) / 255,
                  mask > 127):
        out = to_mnist(np.asarray(image))
        check_valid(out)
        assert np.corrcoef(out.ravel(), reference.ravel())[0, 1] > 0.97
    # negative values of signed types are black
    signed = (m * 127 // 255).astype(np.int8)
    signed[0, 0] = -128
    check_valid(to_mnist(signed))


# ----------------------------------------------------------------------------- properties

DTYPES = [np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_]


def _expected_ok(arr: np.ndarray) -> bool:
    """Whether to_mnist must accept ``arr`` (return an image or None, not raise)."""
    shape_ok = arr.ndim == 2 or (arr.ndim == 3 and 1 <= arr.shape[2] <= 4)
    finite = arr.dtype.kind != "f" or bool(np.isfinite(arr).all())
    return shape_ok and arr.size > 0 and finite


def check_contract(arr: np.ndarray) -> None:
    try:
        out = to_mnist(arr)
    except ValueError as exc:
        assert not _expected_ok(arr), f"valid input {arr.dtype} {arr.shape} refused: {exc}"
        assert str(exc) and "\n" not in str(exc)
        return
    assert _expected_ok(arr), f"invalid input {arr.dtype} {arr.shape} accepted"
    if out is not None:
        check_valid(out)


any_array = hnp.arrays(
    dtype=st.sampled_from(DTYPES),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9),
)


@st.composite
def drawings(draw):
    """A background plus a rectangle of some other value: mostly valid images with some ink."""
    dtype = draw(st.sampled_from(DTYPES))
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    c = draw(st.sampled_from([None, 1, 2, 3, 4]))
    shape = (h, w) if c is None else (h, w, c)
    elements = hnp.from_dtype(np.dtype(dtype), allow_nan=False, allow_infinity=False)
    background = draw(elements)
    ink = draw(elements)
    arr = np.full(shape, background, dtype=dtype)
    y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
    y1, x1 = draw(st.integers(y0 + 1, h)), draw(st.integers(x0 + 1, w))
    arr[y0:y1, x0:x1] = ink
    return arr


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_array)
def test_property_any_array(arr):
    check_contract(arr)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawings())
def test_property_drawings(arr):
    check_contract(arr)


# ----------------------------------------------------------------------------- strokes

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
    import capsules.data.strokes as P

    monkeypatch.setattr(P, "MAX_POINTS", 10)
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


# ----------------------------------------------------------------------------- load_image

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


# ----------------------------------------------------------------------------- two digits

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
