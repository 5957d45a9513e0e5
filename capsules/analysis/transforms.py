"""Input transforms of the explorer: rotate, scale, shift and shear one image about its centre,
and sweep one parameter while tracking a capsule's pose."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .inputs import _np, prepare



# Transform parameters of :func:`transform_image`: (minimum, maximum, identity value, unit).
TRANSFORMS: dict[str, tuple[float, float, float, str]] = {
    "rotate": (-45.0, 45.0, 0.0, "degrees, counter-clockwise"),
    "scale": (0.6, 1.4, 1.0, "factor"),
    "shift_x": (-6.0, 6.0, 0.0, "pixels, right"),
    "shift_y": (-6.0, 6.0, 0.0, "pixels, down"),
    "shear": (-0.6, 0.6, 0.0, "x += shear * y"),
}


# --------------------------------------------------------------------------------------------
# input transforms


def _theta(side: int, rotate: float = 0.0, scale: float = 1.0, shift_x: float = 0.0,
           shift_y: float = 0.0, shear: float = 0.0) -> Tensor:
    """The (2, 3) ``affine_grid`` matrix (output -> input, normalised coordinates) of the forward
    map ``p_out = R(rotate) Sh(shear) S(scale) p_in + shift`` about the centre of a
    ``side x side`` image (shifts in pixels)."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    a = math.radians(rotate)
    # x right, y down: a counter-clockwise rotation on screen is [[cos, sin], [-sin, cos]]
    rot = torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]], dtype=torch.float64)
    sh = torch.tensor([[1.0, shear], [0.0, 1.0]], dtype=torch.float64)
    m = rot @ sh * scale
    t = torch.tensor([shift_x, shift_y], dtype=torch.float64) * (2.0 / side)  # pixels -> [-1, 1]
    inv = torch.linalg.inv(m)
    return torch.cat([inv, (-inv @ t)[:, None]], dim=1).float()


def transform_images(image, params: list[dict]) -> Tensor:
    """One image (28, 28) under several transforms: (N, 28, 28) float32 tensor, bilinear, zeros
    outside. Each dict in ``params`` holds keyword arguments of :func:`transform_image`."""
    x = prepare(image)  # (1, 1, 28, 28)
    side = x.shape[-1]
    unknown = {k for p in params for k in p} - set(TRANSFORMS)
    if unknown:
        raise ValueError(f"unknown transform parameters: {', '.join(sorted(unknown))}")
    theta = torch.stack([_theta(side, **p) for p in params])  # (N, 2, 3)
    grid = F.affine_grid(theta, [len(params), 1, side, side], align_corners=False)
    return F.grid_sample(x.expand(len(params), -1, -1, -1), grid, mode="bilinear",
                         padding_mode="zeros", align_corners=False)[:, 0]


def transform_image(image, rotate: float = 0.0, scale: float = 1.0, shift_x: float = 0.0,
                    shift_y: float = 0.0, shear: float = 0.0):
    """Rotate (degrees, counter-clockwise), scale (factor), shift (pixels; +x right, +y down) and
    shear (``x += shear * y``) a (28, 28) image about its centre, with ``affine_grid`` /
    ``grid_sample`` (bilinear, zeros outside).

    Returns the type it is given: a numpy array for a numpy array (float32 in [0, 1]), a tensor
    for a tensor.
    """
    out = transform_images(image, [dict(rotate=rotate, scale=scale, shift_x=shift_x,
                                        shift_y=shift_y, shear=shear)])[0]
    return out if isinstance(image, Tensor) else _np(out)


def transform_values(kind: str, n: int = 21) -> np.ndarray:
    """``n`` evenly spaced values of transform ``kind`` over its range in :data:`TRANSFORMS`."""
    if kind not in TRANSFORMS:
        raise ValueError(f"unknown transform {kind!r}; one of {', '.join(TRANSFORMS)}")
    lo, hi, _, _ = TRANSFORMS[kind]
    return np.linspace(lo, hi, n).astype(np.float32)


def is_identity(params: dict) -> bool:
    """Whether the transform parameters ``params`` (keyword arguments of :func:`transform_image`)
    leave the image as it is."""
    return all(float(v) == TRANSFORMS[k][2] for k, v in params.items())


@dataclass
class TransformSweep:
    """One image transformed along one parameter, with the tracked capsule's pose at each value."""

    kind: str
    values: np.ndarray  # (N,) the swept parameter
    digit: int  # the digit capsule whose pose is tracked
    images: np.ndarray  # (N, 28, 28) the transformed inputs
    lengths: np.ndarray  # (N, 10) digit-capsule lengths
    poses: np.ndarray  # (N, 16) the tracked capsule's pose vector v_digit
    predictions: np.ndarray  # (N,) int64


@torch.inference_mode()
def transform_sweep(model, image, kind: str, values=None, base: dict | None = None,
                    digit: int | None = None, iterations: int | None = None) -> TransformSweep:
    """Sweep transform ``kind`` over ``values`` (default :func:`transform_values`) with the other
    parameters at ``base``, and record the lengths and the pose vector of capsule ``digit``.

    ``digit`` None tracks the digit predicted for the untransformed image. All transformed
    images run through the model in one batch.
    """
    values = transform_values(kind) if values is None else np.asarray(values, dtype=np.float32)
    if kind not in TRANSFORMS:
        raise ValueError(f"unknown transform {kind!r}; one of {', '.join(TRANSFORMS)}")
    base = dict(base or {})
    params = [{**base, kind: float(v)} for v in values]
    images = transform_images(image, params)
    x = images[:, None].to(model.device)
    if digit is None:
        x = torch.cat([x, prepare(image, model.device)])
    out = model(x, iterations=iterations)
    if digit is None:
        digit = int(out.prediction[-1])
    n = len(values)
    return TransformSweep(
        kind=kind, values=values, digit=int(digit), images=_np(images),
        lengths=_np(out.lengths[:n]), poses=_np(out.v[:n, int(digit)]),
        predictions=out.prediction[:n].cpu().numpy().astype(np.int64),
    )
