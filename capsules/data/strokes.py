"""The drawing pad's strokes as ink masks (:func:`rasterise_strokes`: point lists, one mask per pen),
and two digits drawn with two pens as the MultiMNIST model's input (:func:`convert_pair`: each
fitted by MNIST's recipe, :mod:`capsules.data.drawing`, in MultiMNIST's 36x36 frame, where both
keep their sizes and relative positions). Pure numpy + PIL; the masks are uint8."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .drawing import (
    _CENTRE, BOX, FRAME, ImageError, _as_image, _box, _centre_of_mass, _cleaned, _paste, _reduce, _resize,
)

#: Most points a drawing's strokes may have together; :func:`rasterise_strokes` refuses more.
MAX_POINTS = 100_000
_FAR = 1e5  # stroke coordinates are clipped to +-this many pixels (PIL draws with C ints)


def _stroke_points(stroke, n: int, pens: int) -> tuple[int, np.ndarray]:
    """One stroke of :func:`rasterise_strokes`'s input as (pen, (m, 2) float64 points); raise
    ImageError saying what is wrong with it."""
    if not isinstance(stroke, Mapping):
        raise ImageError(f"stroke {n} is a {type(stroke).__name__}; expected a mapping "
                         "{'pen': k, 'xy': [x0, y0, x1, y1, ...]}")
    pen = stroke.get("pen", 0)
    if isinstance(pen, bool) or not isinstance(pen, (int, np.integer)) or not 0 <= pen < pens:
        raise ImageError(f"stroke {n} has pen {pen!r}; expected an integer in 0..{pens - 1}")
    xy = stroke.get("xy")
    try:
        arr = np.asarray(xy)
    except Exception:  # ragged nesting and the like
        arr = np.asarray(None)
    if arr.ndim != 1 or arr.dtype.kind not in "iuf" or arr.size < 2 or arr.size % 2:
        raise ImageError(f"stroke {n} has no usable points; expected 'xy' a flat list of numbers "
                         "x0, y0, x1, y1, ... (an even count, at least 2)")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ImageError(f"stroke {n} has a NaN or infinite coordinate")
    return int(pen), arr.reshape(-1, 2)


def rasterise_strokes(strokes, side: int, width: float, pens: int = 1) -> np.ndarray:
    """Pen strokes as ink masks, one per pen: uint8 (pens, side, side), 255 where that pen's
    ink is and 0 elsewhere -- white ink on black, which :func:`convert` reads (all the ink:
    ``convert(masks.max(axis=0))``).

    ``strokes`` is what the dashboard's drawing pad sends: a sequence of mappings
    ``{"pen": k, "xy": [x0, y0, x1, y1, ...]}``, one per stroke (pen down to pen up), with ``k`` in
    ``range(pens)`` (a missing pen is pen 0) and the points in the pad's pixels: x to the right
    and y down from the top-left corner of a ``side`` x ``side`` pad, whose pixel (i, j) covers
    [j, j + 1) x [i, i + 1). Points off the pad are allowed (a stroke may leave it and come
    back; coordinates beyond 100,000 pixels are clipped there); the masks show the part on the
    pad. Each stroke is drawn as the pad draws it: straight segments ``width`` pixels wide with
    round ends and joins, so a stroke of one point is a disc of diameter ``width`` (to the
    nearest pixel; no anti-aliasing, which :func:`convert`'s downscaling brings). Where strokes
    of two pens cross, both masks have the ink.

    Anything else (not a sequence of such mappings, a pen out of range, an odd count of
    coordinates or a non-numeric or non-finite one, more than :data:`MAX_POINTS` points in all,
    ``side`` < 1 or ``width`` not a positive number) raises :class:`ImageError` with one line
    saying what was expected. Pure PIL, about a millisecond for 500 points.
    """
    if isinstance(side, bool) or not isinstance(side, (int, np.integer)) or side < 1:
        raise ImageError(f"the pad's side is {side!r}; expected a positive integer (pixels)")
    if isinstance(pens, bool) or not isinstance(pens, (int, np.integer)) or pens < 1:
        raise ImageError(f"pens is {pens!r}; expected a positive integer")
    if not isinstance(width, (int, float, np.integer, np.floating)) or not 0 < width < math.inf:
        raise ImageError(f"the stroke width is {width!r}; expected a positive number (pixels)")
    if isinstance(strokes, (str, bytes, Mapping)) or not isinstance(strokes, Sequence):
        raise ImageError(f"the strokes are a {type(strokes).__name__}; expected a list of "
                         "{'pen': k, 'xy': [x0, y0, x1, y1, ...]}")
    parsed, total = [], 0
    for n, stroke in enumerate(strokes):
        pen, points = _stroke_points(stroke, n, pens)
        total += len(points)
        if total > MAX_POINTS:
            raise ImageError(f"the drawing has more than {MAX_POINTS:,} points")
        parsed.append((pen, points))
    masks = [Image.new("L", (int(side), int(side)), 0) for _ in range(pens)]
    draws = [ImageDraw.Draw(m) for m in masks]
    w = max(1, round(width))
    r = (w - 1) / 2  # PIL's boxes are inclusive: the box [a, a + w - 1] is w pixels wide
    for pen, points in parsed:
        # A point's disc covers pixels a .. a + w - 1 with a = floor(x - w/2 + 1/2), centred on it
        # to the nearest pixel; PIL (pixel centres at integers) is given that disc's centre.
        centres = np.floor(np.clip(points, -_FAR, _FAR) - w / 2 + 0.5) + r
        xy = [(float(x), float(y)) for x, y in centres]
        draw = draws[pen]
        if len(xy) > 1:
            draw.line(xy, fill=255, width=w)
        for x, y in xy:  # round ends and joins (PIL's own round joint is ten times slower)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
    return np.stack([np.asarray(m, dtype=np.uint8) for m in masks])


#: MultiMNIST's frame (section 6): an MNIST frame padded by 4 on each side, 36x36, in which each
#: digit is shifted by up to PAIR_SHIFT pixels per axis (:class:`capsules.data.MultiMNIST`).
PAIR_PAD, PAIR_SHIFT = 4, 4
PAIR_FRAME = FRAME + 2 * PAIR_PAD
_PAIR_CENTRE = _CENTRE + PAIR_PAD


@dataclass
class ConvertedPair:
    """Two digits drawn apart (one ink mask each) as the MultiMNIST model's input."""

    image: np.ndarray  # (36, 36) float32 in [0, 1]: the clipped sum of the two, what the model sees
    sources: np.ndarray  # (2, 36, 36) float32: each digit alone, as placed (zeros for one without ink)
    distance: float | None  # the larger of the row and column distances between the digits'
    #                         centres of mass, pixels; None when one has no ink

    @property
    def apart(self) -> bool:
        """Further apart than any MultiMNIST pair: each digit moves up to PAIR_SHIFT pixels per
        axis, so their centres are never more than 2 x PAIR_SHIFT apart in training."""
        return self.distance is not None and self.distance > 2 * PAIR_SHIFT + 0.5

    @property
    def missing(self) -> list[int]:
        """The digits (0, 1) without ink."""
        return [k for k in range(len(self.sources)) if not self.sources[k].any()]


def convert_pair(masks) -> ConvertedPair | None:
    """Two digits drawn over each other, one ink mask each (white ink on black, e.g. the two pens
    of :func:`rasterise_strokes`), as a MultiMNIST image: :func:`convert`'s recipe for a 36x36
    frame in which both digits keep their sizes and relative positions.

    ``masks`` is (2, H, W), grey (any dtype :func:`to_mnist` takes). Both are cropped
    to the bounding box of all the ink and scaled by one factor, the one that makes the larger
    digit's box 20 pixels on its longer side as an MNIST digit's (smaller when the two together
    would not fit the 36x36 frame), anti-aliased; then placed so that the midpoint of their centres
    of mass lies at the centre of the frame, pixel (18, 18), where a MultiMNIST pair's digits lie
    on average (each is an MNIST digit, centred at (14, 14), padded by 4 and shifted by -4..4).
    Each digit is scaled so that its brightest pixel is 1 and the image is their clipped sum,
    min(a + b, 1), as :class:`capsules.data.MultiMNIST` merges. None when there is no ink at all
    (below ``MIN_CONTRAST``); one digit alone is placed as the pair would be.
    """
    try:
        arrays = [_as_image(m) for m in masks]
    except TypeError:
        raise ImageError("the masks are no sequence of images; expected (2, H, W)") from None
    if len(arrays) != 2 or len({a.shape for a in arrays}) != 1 or arrays[0].shape[2] != 1:
        raise ImageError(f"expected two grey ink masks (2, H, W) of one size, got shapes "
                         f"{[a.shape[:2] if a.shape[2] == 1 else a.shape for a in arrays]}")
    ink = _cleaned(np.stack([_reduce(a, premultiply=False)[:, :, 0] for a in arrays]))  # (2, h, w)
    if ink is None:
        return None
    boxes = [_box(k) for k in ink]
    drawn = [k for k, b in enumerate(boxes) if b is not None]
    if not drawn:
        return None
    rows, cols = _box(ink.max(axis=0))
    union = max(rows.stop - rows.start, cols.stop - cols.start)
    largest = max(max(r.stop - r.start, c.stop - c.start) for r, c in (boxes[k] for k in drawn))
    scale = min(BOX / largest, PAIR_FRAME / union)
    fitted = [_resize(k[rows, cols], scale) for k in ink]
    centres = [_centre_of_mass(fitted[k]) for k in drawn]
    centres = [c for c in centres if c is not None]
    if not centres:
        return None
    cy, cx = np.mean(centres, axis=0)
    top, left = int(round(_PAIR_CENTRE - cy)), int(round(_PAIR_CENTRE - cx))
    placed = [_paste(f, top, left, PAIR_FRAME) for f in fitted]
    sources = np.stack([np.zeros((PAIR_FRAME, PAIR_FRAME), np.float32) if p is None else p for p in placed])
    if not sources.any():
        return None
    distance = None
    if len(centres) == 2:
        distance = float(max(abs(centres[0][0] - centres[1][0]), abs(centres[0][1] - centres[1][1])))
    image = np.ascontiguousarray(np.clip(sources.sum(axis=0), 0.0, 1.0), dtype=np.float32)
    return ConvertedPair(image=image, sources=sources, distance=distance)
