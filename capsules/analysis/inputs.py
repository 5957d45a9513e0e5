"""The analysis's inputs: where the primary capsules sit on an image (:class:`Geometry`), one image
as the model's input (:func:`prepare`), and the baseline CNN's answer (:func:`classify`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..nn import CapsNetConfig, primary_position


@dataclass(frozen=True)
class Geometry:
    """Where the primary capsules sit on the input, from a model's :class:`CapsNetConfig`.

    Conv1 (stride 1) followed by PrimaryCaps (kernel ``k``, stride ``s``): a primary capsule sees
    a ``conv1_kernel + k - 1`` pixel square of the input (9 + 9 - 1 = 17 for the paper's model),
    and moving one step on the primary grid moves that window by ``s`` pixels.
    """

    side: int  # input side, pixels (28)
    grid: int  # primary-capsule grid side (6)
    types: int  # primary-capsule types (32)
    field: int  # receptive-field side of a primary capsule, pixels (17)
    stride: int  # input pixels per grid step (2)

    @classmethod
    def of(cls, config: CapsNetConfig) -> "Geometry":
        return cls(side=config.image_size, grid=config.primary_grid, types=config.primary_types,
                   field=config.conv1_kernel + config.primary_kernel - 1, stride=config.primary_stride)

    @property
    def caps(self) -> int:
        """Number of primary capsules, ``types * grid**2`` (1152)."""
        return self.types * self.grid * self.grid

    def position(self, i: int) -> tuple[int, int, int]:
        """Primary capsule ``i`` -> (type, row, col) on the grid."""
        return tuple(int(v) for v in primary_position(int(i), self.grid))


MNIST = Geometry.of(CapsNetConfig())  # the paper's model: 28x28 input, 32 types on a 6x6 grid

# --------------------------------------------------------------------------------------------
# inputs


def prepare(image, device: torch.device | str | None = None, side: int | None = None) -> Tensor:
    """One image as the model's input: (1, 1, side, side) float32 in [0, 1].

    ``image`` is a (side, side) (or (1, side, side) / (1, 1, side, side)) numpy array or tensor;
    integer arrays are read as 0..255 grey levels, floats as 0..1. ``side`` None accepts any
    square image.
    """
    x = torch.as_tensor(np.asarray(image) if not isinstance(image, Tensor) else image)
    if x.dim() == 4 and x.shape[:2] == (1, 1):
        x = x[0, 0]
    elif x.dim() == 3 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 2 or x.shape[0] != x.shape[1] or (side is not None and x.shape[0] != side):
        want = f"{side}x{side}" if side is not None else "square"
        raise ValueError(f"expected one {want} image, got shape {tuple(x.shape)}")
    x = x.float() / 255.0 if not x.is_floating_point() else x.float()
    return x.clamp(0.0, 1.0)[None, None].to(device or "cpu")


def as_image(image) -> np.ndarray:
    """:func:`prepare`'s image as a (side, side) float32 numpy array in [0, 1]."""
    return _np(prepare(image)[0, 0])


def _np(t: Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


@dataclass(frozen=True)
class Classification:
    """What a softmax classifier (the baseline CNN) says about one image."""

    prediction: int
    probability: float  # the softmax probability of the prediction
    probabilities: np.ndarray  # (n_classes,) float32, sums to 1


@torch.inference_mode()
def classify(model, image) -> Classification:
    """One image through a model whose output has softmax ``probabilities`` (the baseline CNN),
    in eval mode as loaded: its prediction and the probability it gives it."""
    x = prepare(image, model.device, side=model.config.image_size)
    p = model(x).probabilities[0]  # (10,)
    k = int(p.argmax())
    return Classification(prediction=k, probability=float(p[k]), probabilities=_np(p))
