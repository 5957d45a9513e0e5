"""Losses: the margin loss (eq. 4) and the reconstruction loss (sum of squared errors x 0.0005),
for one digit (MNIST) and for two overlapping digits (MultiMNIST, section 6)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def capsule_lengths(v: Tensor) -> Tensor:
    """|v_j| over the last axis: (..., j, m) -> (..., j). Its gradient at v = 0 is 0, not NaN."""
    return torch.linalg.vector_norm(v.float(), dim=-1)


class MarginLoss(nn.Module):
    """Eq. 4: ``L_k = T_k max(0, m+ - |v_k|)^2 + lambda (1 - T_k) max(0, |v_k| - m-)^2``,
    summed over the classes ``k`` and averaged over the batch."""

    def __init__(
        self, *, n_labels: int, lambda_: float = 0.5, m_positive: float = 0.9, m_negative: float = 0.1
    ):
        super().__init__()
        self.n_labels = n_labels
        self.lambda_ = lambda_
        self.m_positive = m_positive
        self.m_negative = m_negative

    def forward(self, v: Tensor, labels: Tensor) -> Tensor:
        """``v`` (B, n_labels, m) output capsules, ``labels`` (B,) class indices, or (B, d) for
        ``d`` digits present at once (MultiMNIST: T_k = 1 for each of them)."""
        lengths = capsule_lengths(v)  # (B, k)
        t = F.one_hot(labels, self.n_labels)  # (B, k) or (B, d, k)
        if labels.dim() == 2:
            t = t.amax(dim=1)  # multi-hot
        t = t.to(lengths.dtype)  # T_k, (B, k)
        present = t * F.relu(self.m_positive - lengths) ** 2
        absent = self.lambda_ * (1.0 - t) * F.relu(lengths - self.m_negative) ** 2
        return (present + absent).sum(dim=-1).mean()

    def extra_repr(self) -> str:
        return (
            f"n_labels={self.n_labels}, lambda_={self.lambda_}, "
            f"m_positive={self.m_positive}, m_negative={self.m_negative}"
        )


def reconstruction_loss(reconstruction: Tensor, images: Tensor, weight: float = 0.0005) -> Tensor:
    """The paper's regulariser: sum of squared pixel errors per image x ``weight``, batch mean."""
    diff = reconstruction.float().flatten(1) - images.float().flatten(1)
    return weight * (diff * diff).sum(dim=1).mean()


class CapsuleLoss(nn.Module):
    """Margin loss plus the scaled reconstruction loss, the quantity training minimises."""

    def __init__(self, *, n_labels: int = 10, reconstruction_weight: float = 0.0005, **margin_kwargs):
        super().__init__()
        self.margin = MarginLoss(n_labels=n_labels, **margin_kwargs)
        self.reconstruction_weight = reconstruction_weight

    def forward(self, v: Tensor, reconstruction: Tensor, images: Tensor, labels: Tensor) -> Tensor:
        loss = self.margin(v, labels)
        if self.reconstruction_weight:
            loss = loss + reconstruction_loss(reconstruction, images, self.reconstruction_weight)
        return loss


Decode = Callable[[Tensor, Tensor], Tensor]  # (poses (N, m), digits (N,)) -> images (N, C, H, W)


def decode_pair(decode: Decode, v: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Each digit of a pair reconstructed from its own capsule, the decoder masked by its label:
    ``v`` (B, n_labels, m), ``labels`` (B, 2) -> two images (B, C, H, W). One decoder call for
    both (``decode`` is e.g. ``CapsNet.decode``)."""
    b = v.shape[0]
    digits = labels.t().reshape(-1)  # first digits of the batch, then second digits
    poses = v[torch.arange(b, device=v.device).repeat(2), digits]  # (2B, m)
    both = decode(poses, digits)
    return both[:b], both[b:]


class TwoDigitLoss(nn.Module):
    """Section 6 (MultiMNIST): the margin loss (eq. 4) with both digits present, T_k = 1 for each,
    plus each digit's reconstruction from its own capsule (the decoder masked by that digit's
    label) against that digit's own shifted image, 0.0005 x SSE per digit, the two summed
    (as the official code adds one reconstruction loss per target)."""

    def __init__(self, *, n_labels: int = 10, reconstruction_weight: float = 0.0005, **margin_kwargs):
        super().__init__()
        self.margin = MarginLoss(n_labels=n_labels, **margin_kwargs)
        self.reconstruction_weight = reconstruction_weight

    def forward(self, v: Tensor, reconstructions: tuple[Tensor, Tensor] | Decode, first: Tensor,
                second: Tensor, labels: Tensor) -> Tensor:
        """``v`` (B, n_labels, m); ``reconstructions`` the two digits' reconstructions (B, C, H, W)
        each, or a decode callable (``model.decode``) that makes them (:func:`decode_pair`);
        ``first``, ``second`` the digits' own images (B, C, H, W); ``labels`` (B, 2)."""
        if labels.dim() != 2 or labels.shape[1] != 2:
            raise ValueError(f"TwoDigitLoss expects labels of shape (batch, 2), got {tuple(labels.shape)}")
        loss = self.margin(v, labels)
        if self.reconstruction_weight:
            if callable(reconstructions):
                reconstructions = decode_pair(reconstructions, v, labels)
            recon_a, recon_b = reconstructions
            loss = loss + reconstruction_loss(recon_a, first, self.reconstruction_weight)
            loss = loss + reconstruction_loss(recon_b, second, self.reconstruction_weight)
        return loss
