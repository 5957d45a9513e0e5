"""A page's state in its address (``st.query_params``), so that a link reopens the same view.

The first half is plain functions, with no Streamlit, that turn the state into short text and
back; each ``decode_*`` raises ``ValueError`` with one line for text that is no such state:

- a drawing (:func:`encode_strokes`): the pad's strokes (``[{"pen": k, "xy": [x0, y0, ...]}]``
  in pad pixels) on a :data:`GRID` x :data:`GRID` grid (4 pixels a cell on the 240-pixel pad,
  under a quarter of the 18-pixel pen), as URL-safe characters: per stroke its pen and first cell,
  then one character per move of up to 3 cells (``~`` and two characters for a longer jump);
  strokes joined by ``.``. A digit takes about a hundred characters. The page reads the drawing
  *snapped* to the grid (:func:`snap_strokes`), so that the link restores the very input;
- sliders away from their defaults (:func:`encode_values`) as ``name:value``: the pose offsets
  ``3:0.1,7:-0.05`` (:func:`encode_offsets`), the transforms ``rotate:15,scale:1.1``;
- a tab (:func:`slug`): its label in lower case, words joined by ``-``.

The second half is the Streamlit glue. A parameter is *restored* into a widget's session state
before the widget is drawn, when the address holds a value this session has not seen yet (a
link just opened, or a page switch that names it), and *remembered* after the widget is read (the
default leaves the address). A bad or stale value (an unknown model, an index out of range, a
malformed drawing) is dropped with a short notice, and the widget keeps its default.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

GRID = 60  # cells per side of a drawing in the address
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"  # base64url: a cell, a pen
STEP = 3  # a move of up to STEP cells along each axis is one character; a longer one is a jump
JUMP, SEPARATOR = "~", "."  # both unreserved in a URL: sent as they are
MAX_DRAWING = 6000  # characters: a longer drawing is refused (browsers keep URLs to a few thousand)
_INDEX = {c: i for i, c in enumerate(ALPHABET)}


# ------------------------------------------------------------------------------ drawings


def _cells(xy: Sequence[float], side: int) -> list[tuple[int, int]]:
    """A stroke's points (pad pixels) as grid cells, consecutive repeats dropped; points off the
    pad go to the nearest cell on it."""
    scale = GRID / side
    cells = []
    for x, y in zip(xy[0::2], xy[1::2]):
        cell = tuple(min(GRID - 1, max(0, math.floor(float(v) * scale))) for v in (x, y))
        if not cells or cells[-1] != cell:
            cells.append(cell)
    return cells


def encode_strokes(strokes: Sequence[Mapping], side: int) -> str:
    """The pad's ``strokes`` (on a ``side``-pixel pad, as :func:`capsules.data.strokes.rasterise_strokes`
    takes them) as URL-safe text; "" for no strokes. Raises ``ValueError`` for a pen beyond 63."""
    out = []
    for stroke in strokes:
        pen = int(stroke.get("pen", 0))
        if not 0 <= pen < len(ALPHABET):
            raise ValueError(f"pen {pen} cannot be written in a link")
        cells = _cells(stroke["xy"], side)
        if not cells:
            continue
        text = [ALPHABET[pen], ALPHABET[cells[0][0]], ALPHABET[cells[0][1]]]
        for (x0, y0), (x1, y1) in zip(cells, cells[1:]):
            dx, dy = x1 - x0, y1 - y0
            if -STEP <= dx <= STEP + 1 and -STEP <= dy <= STEP + 1:  # 8 x 8 moves: one character
                text.append(ALPHABET[(dx + STEP) * 8 + dy + STEP])
            else:
                text += [JUMP, ALPHABET[x1], ALPHABET[y1]]
        out.append("".join(text))
    return SEPARATOR.join(out)


def decode_strokes(text: str, side: int, pens: int = 1) -> list[dict]:
    """The strokes of :func:`encode_strokes` text, each point at the centre of its cell (pad
    pixels, rounded), with pens below ``pens``. Raises ``ValueError`` saying what is wrong."""
    if not isinstance(text, str) or not text:
        raise ValueError("the drawing is empty")
    if len(text) > MAX_DRAWING:
        raise ValueError(f"the drawing has {len(text):,} characters, more than {MAX_DRAWING:,}")
    scale = side / GRID

    def cell(c: str) -> int:
        if c not in _INDEX or _INDEX[c] >= GRID:
            raise ValueError(f"{c!r} is no grid cell")
        return _INDEX[c]

    strokes = []
    for n, part in enumerate(text.split(SEPARATOR)):
        if len(part) < 3 or part[0] not in _INDEX:
            raise ValueError(f"stroke {n + 1} is cut short")
        pen = _INDEX[part[0]]
        if pen >= pens:
            raise ValueError(f"stroke {n + 1} uses pen {pen + 1}; this pad has {pens}")
        x, y = cell(part[1]), cell(part[2])
        points, i = [(x, y)], 3
        while i < len(part):
            c = part[i]
            if c == JUMP:
                if i + 2 >= len(part):
                    raise ValueError(f"stroke {n + 1} ends inside a jump")
                x, y, i = cell(part[i + 1]), cell(part[i + 2]), i + 3
            elif c in _INDEX:
                x, y, i = x + _INDEX[c] // 8 - STEP, y + _INDEX[c] % 8 - STEP, i + 1
                if not (0 <= x < GRID and 0 <= y < GRID):
                    raise ValueError(f"stroke {n + 1} leaves the pad")
            else:
                raise ValueError(f"{c!r} does not belong in a drawing")
            points.append((x, y))
        xy = [round((v + 0.5) * scale) for p in points for v in p]
        strokes.append({"pen": pen, "xy": xy})
    return strokes


def snap_strokes(strokes: Sequence[Mapping], side: int, pens: int = 1) -> list[dict]:
    """``strokes`` as a link gives them back: on the grid (what the page reads, so that the
    link restores the same input)."""
    text = encode_strokes(strokes, side)
    return decode_strokes(text, side, pens) if text else []


# ------------------------------------------------------------------------------ numbers


def encode_values(values: Mapping[str, float], defaults: Mapping[str, float]) -> str:
    """The sliders' ``values`` that differ from their ``defaults`` as ``name:value``,
    comma-separated; "" when all are at their defaults."""
    return ",".join(f"{k}:{round(float(v), 4):g}" for k, v in values.items()
                    if round(float(v), 6) != round(float(defaults[k]), 6))


def decode_values(text: str, sliders: Mapping[str, tuple[float, float, float]], what: str) -> dict[str, float]:
    """The values of :func:`encode_values` text, each on its slider's grid (``sliders``: name ->
    (low, high, step); ``what`` names a slider in messages). Raises ``ValueError`` for anything else."""
    out = {}
    for part in text.split(","):
        m = re.fullmatch(r"([a-z0-9_]{1,20}):(-?\d{1,6}(?:\.\d{1,8})?)", part.strip())
        if m is None:
            raise ValueError(f"{part[:20]!r} is not name:value")
        name, v = m[1], float(m[2])
        if name not in sliders:
            raise ValueError(f"there is no {what} {name}")
        lo, hi, step = sliders[name]
        k = round((v - lo) / step)
        if not lo - 1e-9 <= v <= hi + 1e-9 or abs(lo + k * step - v) > 1e-6:
            raise ValueError(f"{v:g} is not a value of {what} {name} ({lo:g} … {hi:g} in steps of {step:g})")
        out[name] = round(lo + k * step, 6)
    return out


def encode_offsets(offsets: Sequence[float]) -> str:
    """The non-zero pose offsets as ``dim:value`` (dimensions from 1), comma-separated; "" when
    all are zero."""
    return encode_values({str(d + 1): v for d, v in enumerate(offsets)}, {str(d + 1): 0.0 for d in range(len(offsets))})


def decode_offsets(text: str, dims: int, limit: float, step: float) -> np.ndarray:
    """The (``dims``,) offsets of :func:`encode_offsets` text, each a multiple of ``step`` within
    +-``limit`` (the sliders' grid). Raises ``ValueError`` for anything else."""
    found = decode_values(text, {str(d + 1): (-limit, limit, step) for d in range(dims)}, "pose dimension")
    out = np.zeros(dims)
    for d, v in found.items():
        out[int(d) - 1] = v
    return out


def decode_index(text: str, stop: int, start: int = 0) -> int:
    """A whole number in ``range(start, stop)`` written in decimal; ``ValueError`` otherwise."""
    if not re.fullmatch(r"\d{1,9}", text or ""):
        raise ValueError(f"{text!r} is not a whole number")
    if not start <= int(text) < stop:
        raise ValueError(f"{text} is not in {start:,} … {stop - 1:,}")
    return int(text)


def slug(label: str) -> str:
    """A tab's label as it goes in the address: "Pose perturbation" -> "pose-perturbation"."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


# ------------------------------------------------------------------------------ Streamlit


def one_of(options: Mapping[str, object], what: str) -> Callable[[str], object]:
    """A decoder of one of ``options``' names, to its value; another name is refused."""

    def decode(text: str):
        if text not in options:
            raise ValueError(f"there is no {what} {text!r} here")
        return options[text]

    return decode


def restore(name: str, into: str | Callable[[object], None], decode: Callable[[str], object], what: str) -> None:
    """Before the widget is drawn: when the address holds a value of ``name`` this session has
    not seen, put ``decode(value)`` into the widget's session state (``into`` its key, or a
    function that sets several); a value ``decode`` refuses (``ValueError``) leaves the address
    with a short notice naming ``what``."""
    import streamlit as st

    raw = st.query_params.get(name)
    seen = st.session_state.setdefault("_url_seen", {})
    if raw is None or seen.get(name) == raw:
        return
    seen[name] = raw
    try:
        value = decode(raw)
    except ValueError as exc:
        forget(name)
        shown = raw[:40].replace("`", "")  # in a code span, as the reason's every markup sign is escaped: a link
        reason = re.sub(r"([\\`*_\[\]()!<>$:~|#{}])", r"\\\1", str(exc)[:200])  # draws no image, link or math
        st.warning(f"The link's {what} (`{name}={shown}`) could not be used: {reason}. Showing the default.", icon="🔗")
        return
    if callable(into):
        into(value)
    else:
        st.session_state[into] = value


def kept(name: str, key: str, options: Mapping[str, object], what: str, widget: Callable[[], object]) -> object:
    """``widget()``, the widget with session-state ``key`` that picks one of ``options``' values
    (the first its default), with its choice kept in the address as ``name``: the option's name in
    ``options``. Returns what the widget returns."""
    restore(name, key, one_of(options, what), what)
    value = widget()
    names = {v: n for n, v in options.items()}
    remember(name, None if value == next(iter(options.values())) else names.get(value))
    return value


def remember(name: str, text: str | None) -> None:
    """After the widget is read: its value in the address as ``text``; None (the default) takes
    ``name`` out of it."""
    import streamlit as st

    seen = st.session_state.setdefault("_url_seen", {})
    if text is None or text == "":
        forget(name)
    elif st.query_params.get(name) != text:
        st.query_params[name] = text
        seen[name] = text
    else:
        seen[name] = text


def forget(name: str) -> None:
    """Take ``name`` out of the address."""
    import streamlit as st

    st.query_params.pop(name, None)
    st.session_state.setdefault("_url_seen", {}).pop(name, None)
