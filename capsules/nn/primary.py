"""Capsules of the first layer: Squash (eq. 1) and PrimaryCapsules, with the map between a primary
capsule's index and its place on the grid.

Index letters follow the paper: ``i`` is a lower (primary) capsule, ``n`` its dimension.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import CapsNetConfig


class Squash(nn.Module):
    """Eq. 1: ``v = |s|^2 / (1 + |s|^2) * s / |s|`` over the last axis.

    ``epsilon`` sits inside the square root, ``sqrt(|s|^2 + eps)``, so that ``s = 0`` gives
    ``v = 0`` with a finite gradient (a bare ``sqrt(0)`` gives NaN gradients).
    """

    def __init__(self, epsilon: float = 1e-8):
        super().__init__()
        self.epsilon = epsilon

    def forward(self, s: Tensor) -> Tensor:
        return squash(s, self.epsilon)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"


def squash(s: Tensor, epsilon: float = 1e-8) -> Tensor:
    """Functional form of :class:`Squash`: eq. 1 over the last axis, ``s`` (..., d) -> (..., d)."""
    s2 = (s * s).sum(dim=-1, keepdim=True)  # |s|^2, (..., 1)
    return (s2 / (1.0 + s2)) * (s / torch.sqrt(s2 + epsilon))


class PrimaryCapsules(nn.Module):
    """PrimaryCaps: a 9x9 stride-2 convolution to ``types * dim`` channels, no ReLU, whose
    ``dim`` consecutive channels at one spatial position form one capsule, then squashed.

    Index map: the primary capsule ``i`` of a ``types x H x W`` grid (32 x 6 x 6 for MNIST) is
    ``i = type * H * W + row * W + col``; its ``dim`` components are conv channels
    ``type * dim ... type * dim + dim - 1`` at ``(row, col)``. :func:`primary_index` and
    :func:`primary_position` convert between the two.
    """

    def __init__(self, in_channels: int, types: int, dim: int, kernel_size: int, stride: int):
        super().__init__()
        self.types, self.dim = types, dim
        self.conv = nn.Conv2d(in_channels, types * dim, kernel_size=kernel_size, stride=stride)
        self.squash = Squash()

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)  # (B, types*dim, H, W)
        b, _, h, w = y.shape
        y = y.view(b, self.types, self.dim, h, w)  # (B, types, dim, H, W)
        u = y.permute(0, 1, 3, 4, 2).reshape(b, self.types * h * w, self.dim)  # (B, i, n)
        return self.squash(u.float())


def primary_position(i: int | Tensor, grid: int | None = None):
    """Primary-capsule index -> (type, row, col) on a ``grid x grid`` map: pass the model's
    ``config.primary_grid`` (default: the paper's MNIST model's, ``CapsNetConfig().primary_grid``)."""
    grid = _default_grid() if grid is None else grid
    return i // (grid * grid), (i // grid) % grid, i % grid


def primary_index(capsule_type: int, row: int, col: int, grid: int | None = None) -> int:
    """(type, row, col) -> primary-capsule index, the inverse of :func:`primary_position`."""
    grid = _default_grid() if grid is None else grid
    return capsule_type * grid * grid + row * grid + col


def _default_grid() -> int:
    return CapsNetConfig().primary_grid


