"""Turn a drawing or a photo of a digit into an MNIST-style 28x28 image.

MNIST recipe (LeCun et al.): the digit's bounding box is scaled, preserving its aspect ratio and
with anti-aliasing, so that its longer side is 20 pixels; the result is placed in a 28x28 frame so
that its centre of mass lies at the centre, pixel (14, 14) in row/column index coordinates (the
mean centre of mass of the MNIST test set is (13.99, 14.01)); ink is white (1.0) on black (0.0).

:func:`to_mnist` follows that recipe for what the dashboard gets:

* the drawing pad's strokes, drawn as white ink on black, one mask per pen
  (:func:`capsules.data.strokes.rasterise_strokes`);
* drawings exported as images: RGBA where the stroke may exist only in the alpha channel (RGB all
  zero), or a coloured stroke on an opaque background;
* uploaded photos and scans (:mod:`capsules.data.uploads`): grey, RGB or RGBA, dark ink on light
  paper or light ink on a dark background.

Anything that is no usable image raises :class:`ImageError` (a ``ValueError``) with one line
saying why; :func:`convert` also reports how large the ink was (a tiny mark is enlarged a lot).
Two digits drawn over each other, one mask each, are :func:`capsules.data.strokes.convert_pair`'s.
Pure numpy + PIL; no torch. The images returned are float32, C-contiguous, in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["BOX", "FRAME", "Converted", "ImageError", "MAX_PIXELS", "MIN_CONTRAST", "TINY", "convert", "to_mnist"]

#: Largest image :func:`load_image` decodes (50 megapixels); bigger ones are refused.
MAX_PIXELS = 50_000_000
#: Ink weaker than this (fraction of full scale, ~20/255) is not a stroke: ``to_mnist`` gives None.
MIN_CONTRAST = 0.08
#: After normalising the strongest ink to 1, ink below this is treated as background noise.
NOISE_FLOOR = 0.05
#: Images are block-averaged to at most this many pixels a side before anything else.
WORK_SIDE = 512
#: Box the bounding box is fitted into, and the frame it is placed in (the MNIST sizes).
BOX, FRAME = 20, 28
_CENTRE = 14.0
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as PIL's "L"
_CHUNK_ELEMENTS = 1 << 22  # elements converted to float at a time when block-averaging

#: Ink whose bounding box spans less than this fraction of the input's side is a tiny mark.
TINY = 0.125

_EXPECTED = ("expected a 2-D (H, W) or 3-D (H, W, C) image with C in 1..4 "
             "(gray, gray+alpha, RGB, RGBA) of bool, integer or float dtype")




class ImageError(ValueError):
    """The input is no usable image (wrong shape or type, not an image file, too large); the
    message is one line saying why."""


@dataclass
class Converted:
    """A drawing or photo as the model's input, and how large its ink was."""

    image: np.ndarray  # (28, 28) float32 in [0, 1], MNIST-style
    extent: float  # the ink's bounding box, longer side, as a fraction of the input's longer side

    @property
    def tiny(self) -> bool:
        """The ink spans less than :data:`TINY` of the input: it was enlarged to fill MNIST's box."""
        return self.extent < TINY

    @property
    def zoom(self) -> float:
        """How much larger the ink is drawn than it was, relative to the input's frame: MNIST's
        digits span BOX / FRAME (20/28) of theirs."""
        return (BOX / FRAME) / self.extent


# ----------------------------------------------------------------------------- input checking

def _as_image(image) -> np.ndarray:
    """Validate ``image`` and return it as a (H, W, C) view, C in 1..4; raise ImageError."""
    try:
        arr = np.asarray(image)
    except Exception as exc:  # ragged sequences and the like
        raise ImageError(f"not an image array ({exc}); {_EXPECTED}") from None
    kind = arr.dtype.kind
    if kind not in "biuf":
        raise ImageError(f"unsupported dtype {arr.dtype}; {_EXPECTED}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    elif arr.ndim != 3 or not 1 <= arr.shape[2] <= 4:
        raise ImageError(f"unsupported shape {arr.shape}; {_EXPECTED}")
    if arr.size == 0:
        raise ImageError(f"empty image of shape {arr.shape}; {_EXPECTED}")
    return arr


def _to_unit(chunk: np.ndarray) -> np.ndarray:
    """A chunk of any accepted dtype as float32 in [0, 1] (ints scaled by their dtype's max)."""
    kind = chunk.dtype.kind
    if kind == "b":
        return chunk.astype(np.float32)
    if kind in "iu":
        top = float(np.iinfo(chunk.dtype).max)
        out = chunk.astype(np.float64 if chunk.dtype.itemsize > 2 else np.float32)
        out *= 1.0 / top
        np.clip(out, 0.0, 1.0, out=out)  # negative values of signed types are no light at all
        return out.astype(np.float32, copy=False)
    # floats: assumed in [0, 1]
    if not np.isfinite(chunk).all():
        raise ImageError("image contains NaN or infinite values; expected finite floats in [0, 1]")
    return np.clip(chunk, 0.0, 1.0).astype(np.float32)  # clip first: no overflow to inf


def _reduce(arr: np.ndarray, premultiply: bool) -> np.ndarray:
    """Block-average (H, W, C) to at most WORK_SIDE a side, as float32 in [0, 1].

    Works on row chunks so that memory stays bounded for huge inputs. With ``premultiply`` the
    colour channels are multiplied by the last (alpha) channel before averaging (the correct way
    to downsample images with transparency); they stay premultiplied in the result.
    """
    h, w, c = arr.shape
    f = max(1, math.ceil(max(h, w) / WORK_SIDE))
    rows_per_chunk = max(f, (_CHUNK_ELEMENTS // max(1, w * c)) // f * f)
    col_starts = np.arange(0, w, f)
    col_sizes = np.diff(np.append(col_starts, w)).astype(np.float32)
    out = np.empty((math.ceil(h / f), len(col_starts), c), dtype=np.float32)
    pil = f > 1 and arr.dtype == np.uint8
    for r0 in range(0, h, rows_per_chunk):
        if pil:  # PIL's C box reduction: fastest for the common case, a big uint8 photo
            x = _pil_reduce(arr[r0:r0 + rows_per_chunk], f)
            if premultiply:
                x[..., :-1] *= x[..., -1:]
            out[r0 // f:r0 // f + x.shape[0]] = x
            continue
        x = _to_unit(arr[r0:r0 + rows_per_chunk])
        if premultiply:
            x[..., :-1] *= x[..., -1:]
        if f > 1:
            n = x.shape[0]
            row_starts = np.arange(0, n, f)
            row_sizes = np.diff(np.append(row_starts, n)).astype(np.float32)
            x = np.add.reduceat(x, row_starts, axis=0)
            x = np.add.reduceat(x, col_starts, axis=1)
            x /= row_sizes[:, None, None] * col_sizes[None, :, None]
        out[r0 // f:r0 // f + x.shape[0]] = x
    np.clip(out, 0.0, 1.0, out=out)
    return out


def _pil_reduce(chunk: np.ndarray, f: int) -> np.ndarray:
    """Box-average a uint8 (n, W, C) chunk by ``f`` with PIL (it premultiplies alpha itself and
    returns straight colours), as float32 (ceil(n/f), ceil(W/f), C) in [0, 1]."""
    c = chunk.shape[2]
    im = Image.fromarray(np.ascontiguousarray(chunk[:, :, 0] if c == 1 else chunk))
    x = np.asarray(im.reduce(f), dtype=np.float32) * (1.0 / 255.0)
    return x.reshape(x.shape[0], x.shape[1], c)


def _border(a: np.ndarray) -> np.ndarray:
    """The pixels on the edge of a (h, w, ...) array (all of it when it is tiny)."""
    if a.shape[0] <= 2 or a.shape[1] <= 2:
        return a.reshape(-1, *a.shape[2:])
    return np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])


def _luminance(colour: np.ndarray) -> np.ndarray:
    """(h, w, 1 or 3) -> (h, w)."""
    if colour.shape[2] == 1:
        return colour[:, :, 0]
    return colour @ _LUMA


def _ink(arr: np.ndarray) -> np.ndarray:
    """Ink strength, (h, w) float32 >= 0, at the working resolution, background level removed."""
    c = arr.shape[2]
    has_alpha = c in (2, 4)
    small = _reduce(arr, premultiply=has_alpha)
    if has_alpha:
        alpha = small[:, :, -1]
        premult = small[:, :, :-1]
        if alpha.min() < 1.0 - 1e-6:  # not fully opaque: composite
            border_alpha = float(np.median(_border(alpha)))
            if border_alpha < 0.5:
                # Transparent background (the drawing canvas): the stroke's colour cannot be
                # compared with a background that has none, so ink = opacity, above the level of
                # the border (a uniformly half-transparent canvas is no ink).
                return np.clip(alpha - border_alpha, 0.0, None)
            # Opaque background with transparent holes: composite over the background colour
            # (the median colour of the opaque border pixels), then treat it as opaque.
            border_a = _border(alpha)
            keep = border_a >= 0.5
            border_colour = _border(premult)[keep] / border_a[keep][:, None]
            background = np.median(border_colour, axis=0).astype(np.float32)
            colour = premult + background * (1.0 - alpha)[:, :, None]
        else:
            colour = premult
    else:
        colour = small
    gray = _luminance(colour)
    level = float(np.median(_border(gray)))
    # Polarity from the background: light ink on a dark background, or dark ink on a light one.
    ink = gray - level if level < 0.5 else level - gray
    return np.clip(ink, 0.0, None)


# ----------------------------------------------------------------------------- the recipe

def _cleaned(ink: np.ndarray) -> np.ndarray | None:
    """Ink scaled so that the strongest is 1, what is below NOISE_FLOOR of it dropped; None when
    the strongest is below MIN_CONTRAST (no stroke)."""
    peak = float(ink.max())
    if not peak >= MIN_CONTRAST:
        return None
    ink = ink / peak
    ink[ink < NOISE_FLOOR] = 0.0
    return ink


def _box(ink: np.ndarray) -> tuple[slice, slice] | None:
    """The bounding box of the ink (rows, cols), or None when there is none."""
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    if not rows.size:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _resize(crop: np.ndarray, scale: float) -> np.ndarray:
    """``crop`` scaled by ``scale`` (at least one pixel a side), anti-aliased, clipped at 0."""
    crop = np.ascontiguousarray(crop, dtype=np.float32)
    h, w = crop.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL: (width, height)
    # PIL resizes with a filter widened by the scale factor when shrinking: anti-aliased.
    fitted = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    return np.clip(fitted, 0.0, None)


def _centre_of_mass(a: np.ndarray) -> tuple[float, float] | None:
    """(row, col) of the centre of mass of ``a``, or None when it has no ink."""
    total = float(a.sum())
    if not total > 0.0:
        return None
    ys = np.arange(a.shape[0], dtype=np.float64)
    xs = np.arange(a.shape[1], dtype=np.float64)
    return float(a.sum(axis=1) @ ys) / total, float(a.sum(axis=0) @ xs) / total


def _paste(fitted: np.ndarray, top: int, left: int, frame: int) -> np.ndarray | None:
    """``fitted`` on a black ``frame`` x ``frame`` square with its corner at (top, left), clipped
    at the edges (a lopsided digit can stick out on one side), scaled so that its brightest pixel
    is 1; None when nothing of it lands in the frame."""
    out = np.zeros((frame, frame), dtype=np.float32)
    fy0, fx0 = max(0, -top), max(0, -left)
    oy0, ox0 = max(0, top), max(0, left)
    hh = min(fitted.shape[0] - fy0, frame - oy0)
    ww = min(fitted.shape[1] - fx0, frame - ox0)
    if hh <= 0 or ww <= 0:
        return None
    out[oy0:oy0 + hh, ox0:ox0 + ww] = fitted[fy0:fy0 + hh, fx0:fx0 + ww]
    peak = float(out.max())
    if not peak > 0.0:
        return None
    out /= peak
    np.clip(out, 0.0, 1.0, out=out)
    return np.ascontiguousarray(out, dtype=np.float32)


def _fit_and_centre(ink: np.ndarray) -> np.ndarray | None:
    """Crop to the bounding box, fit into BOX x BOX, place by centre of mass in FRAME x FRAME."""
    rows, cols = _box(ink)
    crop = ink[rows, cols]
    fitted = _resize(crop, BOX / max(crop.shape))
    centre = _centre_of_mass(fitted)
    if centre is None:
        return None
    cy, cx = centre
    return _paste(fitted, int(round(_CENTRE - cy)), int(round(_CENTRE - cx)), FRAME)


def to_mnist(image) -> np.ndarray | None:
    """A drawing or photo of a digit as an MNIST-style float32 (28, 28) image in [0, 1], or None;
    :func:`convert`'s image.

    Input: a numpy array (or anything ``np.asarray`` takes) of shape (H, W), (H, W, 1) gray,
    (H, W, 2) gray+alpha, (H, W, 3) RGB or (H, W, 4) RGBA; dtype bool, any integer (scaled by the
    dtype's maximum, negatives clipped to 0) or float (assumed in [0, 1], clipped; NaN or inf is a
    ValueError). Anything else (other ndim, more than 4 channels, zero size, complex, object,
    strings) raises :class:`ImageError` with a one-line message saying what was expected.

    Steps:

    1. Block-average to at most 512 pixels a side (row by row, so a 10000x10000 image takes
       bounded memory and well under a second); alpha is premultiplied first.
    2. Ink strength, white-on-black:
       * alpha not uniformly opaque and the border mostly transparent (the drawing canvas, whose
         stroke may exist only in the alpha channel): ink = alpha above the border's alpha;
       * alpha not uniformly opaque but the border opaque: composite over the border's median
         colour, then as opaque;
       * opaque: luminance (ITU-R 601); the background level is the median of the border pixels;
         a dark background (< 0.5) means light ink (ink = gray - level), a light one dark ink
         (ink = level - gray), clipped at 0 -- so a uniform grey image has no ink.
    3. None when the strongest ink is below ``MIN_CONTRAST`` (blank, all-transparent, uniform or
       too faint to be a stroke). An image filled edge to edge with ink, or a 1x1 image, has no
       background to tell ink from and also gives None. Ink below ``NOISE_FLOOR`` of the strongest
       is dropped (paper texture, JPEG noise).
    4. The MNIST recipe: crop to the ink's bounding box, resize (anti-aliased, aspect ratio kept)
       so the longer side is 20 pixels, paste into a black 28x28 frame so that the centre of mass
       lands on pixel (14, 14) (to the nearest pixel), and scale so the brightest pixel is 1.0.
    """
    converted = convert(image)
    return None if converted is None else converted.image


def convert(image) -> Converted | None:
    """:func:`to_mnist` with the size of the ink: a :class:`Converted`, or None when there is
    no ink. Raises :class:`ImageError` as :func:`to_mnist` does."""
    ink = _cleaned(_ink(_as_image(image)))
    if ink is None:
        return None
    out = _fit_and_centre(ink)
    if out is None:
        return None
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    extent = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) / max(ink.shape)
    return Converted(image=out, extent=float(extent))
