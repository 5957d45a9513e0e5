"""Uploaded photos and scans (PNG, JPEG, GIF, BMP, TIFF, WebP...) decoded safely
(:func:`load_image`: size limits, EXIF orientation, one-line reasons) and turned into the model's
input by MNIST's recipe (:func:`convert_upload`, :mod:`capsules.data.drawing`)."""

from __future__ import annotations

import io
import re
import warnings
from struct import error as struct_error  # raised by some PIL plugins on bad headers

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .drawing import MAX_PIXELS, Converted, ImageError, convert


def _reason(exc: BaseException) -> str:
    """An exception's message without Python object reprs such as ``<_io.BytesIO object at 0x...>``."""
    text = re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", str(exc)).strip()
    return text or type(exc).__name__


def load_image(data: bytes) -> np.ndarray:
    """Decode an uploaded image file (PNG, JPEG, GIF, BMP, TIFF, WebP...) into an array for
    :func:`to_mnist`.

    * Refuses images over ``MAX_PIXELS`` (50 megapixels) with an :class:`ImageError`, from the
      header alone (PIL's decompression-bomb warning and error become that error too; the global
      ``Image.MAX_IMAGE_PIXELS`` is left alone, the warning is caught with
      ``warnings.catch_warnings`` around the decode).
    * Bytes that are not a readable image raise ``ImageError("not an image ...")``.
    * The EXIF orientation is applied (a phone photo comes out upright).
    * The first frame of an animation is used.
    * Modes: 1/L -> (H, W) uint8; LA/La -> (H, W, 2); P/PA with transparency -> RGBA, else RGB;
      RGB/RGBA kept (RGBa, RGBX, CMYK, YCbCr, LAB, HSV converted); 16-bit and 32-bit integer grey
      -> (H, W) uint16; float grey -> (H, W) float32 rescaled into [0, 1].
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"load_image expects the file's bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise ImageError("not an image: the upload is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise ImageError(f"image too large: {width}x{height} = {width * height:,} pixels, "
                                 f"the limit is {MAX_PIXELS // 1_000_000} megapixels")
            im.load()
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image: no image format PIL reads (PNG, JPEG, GIF, BMP, TIFF, "
                         "WebP...)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"image too large (decompression-bomb guard, limit "
                         f"{MAX_PIXELS // 1_000_000} megapixels): {_reason(exc)}") from None
    except (ValueError, OSError, SyntaxError, EOFError, TypeError, KeyError, IndexError,
            struct_error) as exc:
        raise ImageError(f"not an image (or a corrupt one): {_reason(exc)}") from None
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block must not stop the upload; keep it as stored
        pass
    return _pil_to_array(im)


def _pil_to_array(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode == "1":
        im = im.convert("L")
    elif mode == "La":
        im = im.convert("LA")
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode.startswith("I"):  # I, I;16, I;16B, I;16L, I;16N...
        arr = np.asarray(im)
        return np.ascontiguousarray(np.clip(arr, 0, 65535).astype(np.uint16))
    elif mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        return np.ascontiguousarray(arr, dtype=np.float32)
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX...
    return np.ascontiguousarray(np.asarray(im))


def convert_upload(data: bytes, name: str = "the file") -> tuple[Converted | None, str]:
    """An uploaded file to ``(Converted, "")``, or ``(None, message)`` saying in one sentence why
    there is no image (not an image, too large, no ink). Never raises for any content."""
    try:
        converted = convert(load_image(data))
    except (ImageError, TypeError) as exc:
        return None, f"Could not read `{name}`: {_reason(exc)}"
    except MemoryError:
        return None, f"Could not read `{name}`: it does not fit in memory"
    if converted is None:
        return None, f"`{name}` shows no digit (no ink found)."
    return converted, ""
