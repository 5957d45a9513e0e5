"""The affine transforms of the project, in one table and one convention: the explorer's sliders
and sweeps, and the robustness curves of :mod:`capsules.experiments`.

One convention, as seen on the screen (x right, y down), about the image centre:
``rotate`` in degrees counter-clockwise, ``scale`` a factor, ``shift_x``/``shift_y`` in pixels
right/down, ``shear`` in degrees, ``x += tan(shear) * y``; combined as
``p_out = R(rotate) Sh(shear) S(scale) p_in + shift``. One implementation, :func:`affine`
(torchvision's, bilinear, zeros outside).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .inputs import _np, prepare


@dataclass(frozen=True)
class Transform:
    """One parameter of :func:`affine`: its words, unit and ranges."""

    title: str  # a figure's title: "Rotation"
    plural: str  # in a sentence: "rotations"
    unit: str  # what a value means
    suffix: str  # after a number: "°"
    identity: float  # the value that leaves the image as it is
    explore: tuple[float, float, float]  # the explorer's slider: minimum, maximum, step
    curve: tuple[float, ...] = ()  # the values of its robustness curve (none: not on the curves)

    @property
    def axis(self) -> str:
        """An axis title: the unit's first word ("degrees")."""
        return self.unit.split(",")[0]


TRANSFORMS: dict[str, Transform] = {
    "rotate": Transform("Rotation", "rotations", "degrees, counter-clockwise", "°", 0.0, (-45.0, 45.0, 1.0),
                        tuple(float(a) for a in range(-60, 61, 10))),
    "scale": Transform("Scale", "scales", "factor, about the centre", "×", 1.0, (0.6, 1.4, 0.02),
                       tuple(round(0.5 + 0.1 * k, 1) for k in range(11))),
    "shear": Transform("Shear", "shears", "degrees, x += tan(shear)·y", "°", 0.0, (-30.0, 30.0, 1.0),
                       tuple(float(a) for a in range(-40, 41, 10))),
    "shift_x": Transform("Horizontal shift", "horizontal shifts", "pixels, right", " px", 0.0, (-6.0, 6.0, 0.5),
                         tuple(float(d) for d in range(-8, 9, 2))),
    "shift_y": Transform("Vertical shift", "vertical shifts", "pixels, down", " px", 0.0, (-6.0, 6.0, 0.5)),
}
ROBUSTNESS = {kind: list(t.curve) for kind, t in TRANSFORMS.items() if t.curve}  # the curves' values
IDENTITY = {kind: t.identity for kind, t in TRANSFORMS.items()}


def affine(x: Tensor, rotate: float = 0.0, scale: float = 1.0, shift_x: float = 0.0, shift_y: float = 0.0,
           shear: float = 0.0) -> Tensor:
    """Images ``x`` (..., H, W) under one affine transform of the module's convention, about the
    image centre: torchvision's ``affine`` (bilinear, zeros outside), whose angles turn clockwise
    and shear ``x -= tan(shear) * y``, hence the two minus signs."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    # imported here: torchvision takes a second to import (it loads torch._dynamo), which every
    # page of the dashboard would pay at a cold start for what only the transforms use
    import torchvision.transforms.v2.functional as TF

    return TF.affine(x, angle=-float(rotate), translate=[float(shift_x), float(shift_y)], scale=float(scale),
                     shear=[-float(shear), 0.0], interpolation=TF.InterpolationMode.BILINEAR, fill=0.0)


def transform_images(image, params: list[dict]) -> Tensor:
    """One image (28, 28) under several transforms: (N, 28, 28) float32 tensor. Each dict in
    ``params`` holds keyword arguments of :func:`affine`."""
    x = prepare(image)  # (1, 1, 28, 28)
    unknown = {k for p in params for k in p} - set(TRANSFORMS)
    if unknown:
        raise ValueError(f"unknown transform parameters: {', '.join(sorted(unknown))}")
    return torch.cat([affine(x, **p) for p in params])[:, 0]


def transform_image(image, **params: float):
    """``image`` (28, 28) under :func:`affine` with ``params``, of the type it is given: a numpy
    array for a numpy array (float32 in [0, 1]), a tensor for a tensor."""
    out = transform_images(image, [params])[0]
    return out if isinstance(image, Tensor) else _np(out)


def transform_values(kind: str, n: int = 21) -> np.ndarray:
    """``n`` evenly spaced values of transform ``kind`` over its range in :data:`TRANSFORMS`."""
    if kind not in TRANSFORMS:
        raise ValueError(f"unknown transform {kind!r}; one of {', '.join(TRANSFORMS)}")
    lo, hi, _ = TRANSFORMS[kind].explore
    return np.linspace(lo, hi, n).astype(np.float32)


def is_identity(params: dict) -> bool:
    """Whether the transform parameters ``params`` (keyword arguments of :func:`affine`)
    leave the image as it is."""
    return all(float(v) == TRANSFORMS[k].identity for k, v in params.items())


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
