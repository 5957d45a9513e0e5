"""capsules.data.drawing: drawings and photos -> MNIST-style 28x28 (the recipe, its errors, its properties)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from capsules.data.drawing import to_mnist
from tests.data.helpers import bbox, centre_of_mass, check_valid


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
