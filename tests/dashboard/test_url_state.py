"""dashboard/url_state.py's plain functions: what goes in a link and back, and text that is no
state (a malformed drawing, an offset off the sliders, an index out of range) refused with a
ValueError, never another exception. The Streamlit side is tested in tests/dashboard/test_links.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capsules.data.strokes import rasterise_strokes
from dashboard.url_state import (
    ALPHABET, GRID, MAX_DRAWING, decode_index, decode_offsets, decode_strokes, encode_offsets, encode_strokes,
    one_of, slug, snap_strokes,
)

SIDE = 240
CELL = SIDE / GRID

points = st.lists(st.tuples(st.integers(-20, SIDE + 20), st.integers(-20, SIDE + 20)), min_size=1, max_size=60)
strokes = st.lists(st.builds(lambda pen, xy: {"pen": pen, "xy": [v for p in xy for v in p]},
                             st.integers(0, 1), points), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(strokes)
def test_a_drawing_comes_back_snapped_to_the_grid(drawn):
    text = encode_strokes(drawn, SIDE)
    assert set(text) <= set(ALPHABET) | {"~", "."}  # URL-safe: nothing to escape
    back = decode_strokes(text, SIDE, pens=2)
    assert [s["pen"] for s in back] == [s["pen"] for s in drawn]
    for original, got in zip(drawn, back):
        xy = np.clip(np.reshape(original["xy"], (-1, 2)), 0, SIDE - 1)
        cells = np.reshape(got["xy"], (-1, 2))
        # every point drawn is within half a cell of a point kept, and the kept ones are cell centres
        distance = np.abs(xy[:, None, :] - cells[None, :, :]).max(axis=-1).min(axis=1)
        assert distance.max() <= CELL / 2 + 0.5
        assert len(cells) <= len(xy)
    assert encode_strokes(back, SIDE) == text  # snapping twice changes nothing
    assert snap_strokes(back, SIDE, pens=2) == back
    rasterise_strokes(back, SIDE, 18, pens=2)  # what the page draws from it


def test_a_digit_is_about_a_hundred_characters():
    # a "7" drawn with the pad's pointer events, a point every 2 to 3 pixels
    top = [(x, 50) for x in range(60, 181, 2)]
    down = [(180 - k, 50 + 2 * k) for k in range(0, 80)]
    seven = [{"pen": 0, "xy": [v for p in top + down for v in p]}]
    text = encode_strokes(seven, SIDE)
    assert len(text) < 120, len(text)
    assert decode_strokes(text, SIDE)[0]["xy"][:2] == [62, 50]  # the first cell's centre


def test_a_long_move_is_a_jump():
    text = encode_strokes([{"pen": 0, "xy": [0, 0, 239, 239]}], SIDE)
    assert "~" in text
    assert decode_strokes(text, SIDE) == [{"pen": 0, "xy": [2, 2, 238, 238]}]


@pytest.mark.parametrize("text, said", [
    ("", "empty"), ("AB", "cut short"), ("A" * (MAX_DRAWING + 1), "more than"),
    ("BAA", "pen 2"),  # pen B on a one-pen pad
    ("AAA~A", "inside a jump"), ("A9A", "no grid cell"),  # '9' is cell 61 of 60
    ("AAA!", "does not belong"), ("AAAA", "leaves the pad"),  # a move to (-3, -3)
    ("AAA..AAA", "cut short"), ("A AA", "no grid cell"),
])
def test_a_malformed_drawing_is_refused_with_its_reason(text, said):
    with pytest.raises(ValueError, match=said):
        decode_strokes(text, SIDE, pens=1)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=ALPHABET + "~.!% ", max_size=80))
def test_any_text_is_a_drawing_or_a_value_error(text):
    try:
        back = decode_strokes(text, SIDE, pens=2)
    except ValueError:
        return
    rasterise_strokes(back, SIDE, 18, pens=2)
    assert all(0 <= v < SIDE for s in back for v in s["xy"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-10, 10), min_size=16, max_size=16))
def test_pose_offsets_round_trip(steps):
    offsets = np.array(steps, np.float32) * 0.05
    text = encode_offsets(offsets)
    assert (text == "") == (not any(steps))
    if text:
        np.testing.assert_allclose(decode_offsets(text, 16, 0.5, 0.05), offsets, atol=1e-6)


def test_pose_offsets_are_short_and_refused_off_the_sliders():
    offsets = np.zeros(16)
    offsets[[2, 6]] = [0.1, -0.25]
    assert encode_offsets(offsets) == "3:0.1,7:-0.25"
    for text, said in (("17:0.1", "no pose dimension 17"), ("0:0.1", "no pose dimension 0"),
                       ("3:0.6", "not a value of pose dimension 3"), ("3:0.12", "not a value"),
                       ("3=0.1", "not name:value"), ("3:nan", "not name:value"), ("", "not name:value"),
                       ("3:1e5", "not name:value")):
        with pytest.raises(ValueError, match=said):
            decode_offsets(text, 16, 0.5, 0.05)


def test_indices_names_and_slugs():
    assert decode_index("0", 10) == 0 and decode_index("9", 10) == 9 and decode_index("3", 11, 1) == 3
    for text in ("10", "-1", "1.5", "", "x", "0" * 12, "0", "11"):
        with pytest.raises(ValueError):
            decode_index(text, 11, 1) if text in ("0", "11") else decode_index(text, 10)
    assert one_of({"a": 1}, "model")("a") == 1
    with pytest.raises(ValueError, match="no model 'b'"):
        one_of({"a": 1}, "model")("b")
    assert slug("Pose perturbation") == "pose-perturbation"
    assert slug("Reconstructions (Fig. 5)") == "reconstructions-fig-5"
