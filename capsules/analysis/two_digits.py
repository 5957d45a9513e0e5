"""Two digits (MultiMNIST, section 6): the two longest capsules decoded and one the model rejects
(the paper's Fig. 5), reconstructions matched with the digits they redraw, an evidence map split
between the two digits' ink."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from .pose import reconstruct
from .trace import Analysis, longest



# --------------------------------------------------------------------------------------------
# two digits (MultiMNIST, section 6)


@dataclass
class PairReading:
    """An image of two digits as the paper reads it (section 6): the two longest capsules are the
    digits, each decoded from its own capsule alone (the others masked to zero, as the decoder is
    trained on MultiMNIST), and a capsule outside the two decoded the same way, to show the digit
    the model rejects (Fig. 5's starred reconstructions)."""

    digits: tuple[int, int]  # the two longest capsules, longest first
    lengths: np.ndarray  # (10,) every capsule's length
    reconstructions: np.ndarray  # (2, side, side): row k decoded from capsule digits[k]
    absent: int  # the rejected capsule decoded below
    absent_reconstruction: np.ndarray  # (side, side) decoded from capsule ``absent``

    def correct(self, labels) -> bool:
        """The paper's criterion for a pair whose true digits are ``labels`` (two classes): the
        two longest capsules are exactly those digits
        (:func:`capsules.evaluate.two_digit_correct`, the metric the test error counts)."""
        from ..evaluate import two_digit_correct

        lengths = torch.as_tensor(np.asarray(self.lengths, dtype=np.float32))[None]
        return bool(two_digit_correct(lengths, torch.as_tensor([[int(d) for d in labels]]))[0])


def read_pair(model, res: Analysis, absent: int | None = None) -> PairReading:
    """:class:`PairReading` of the analysis ``res`` of one image: its two longest capsules
    decoded, each from its own pose, and capsule ``absent`` (default: the third-longest, the
    strongest digit the model rejects), all in one decoder call."""
    digits = longest(res.lengths, 2)
    absent = longest(res.lengths, 3)[2] if absent is None else int(absent)
    if absent in digits or not 0 <= absent < len(res.lengths):
        raise ValueError(f"capsule {absent} is not one the model rejects: the digits read are {digits}")
    chosen = [*digits, absent]
    images = reconstruct(model, res.v[chosen], chosen)
    return PairReading(digits=(digits[0], digits[1]), lengths=res.lengths, reconstructions=images[:2],
                       absent=absent, absent_reconstruction=images[2])


def match_sources(images, sources) -> tuple[int, ...]:
    """Which source each of ``images`` (K, H, W) redraws: ``order[k]`` is the index in
    ``sources`` (K, H, W) of the one image ``k`` is matched with, the one-to-one assignment with
    the largest total cosine similarity (a source without ink matches nothing better than any
    other). For the two reconstructions of a pair and its two digits (or two pens' ink)."""
    a = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    b = np.asarray(sources, dtype=np.float64).reshape(len(sources), -1)
    if a.shape != b.shape:
        raise ValueError(f"{a.shape[0]} images of {a.shape[1]} pixels against {b.shape[0]} sources of "
                         f"{b.shape[1]}: expected as many of the same size")

    def unit(x):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    similarity = unit(a) @ unit(b).T  # (K, K)
    orders = itertools.permutations(range(len(a)))
    return tuple(int(k) for k in max(orders, key=lambda o: similarity[np.arange(len(o)), list(o)].sum()))


def source_shares(maps, sources) -> np.ndarray:
    """How an evidence map divides between the ink of several sources (the two digits of a
    pair, or the two pens of a drawing): ``maps`` (..., H, W) non-negative (NaN pixels left out),
    ``sources`` (K, H, W) ink of each source, the same frame. Each pixel's value is shared among
    the sources in proportion to their ink there (where both digits overlap, half and half when
    equally bright); returns (..., K), each source's part of the map's total. The parts add up to
    1 when the map lies on the sources' ink (the "ink" spread of :func:`evidence_maps`), to less
    when some of it lies elsewhere; a map without evidence gives zeros."""
    m = np.nan_to_num(np.asarray(maps, dtype=np.float64), nan=0.0)
    ink = np.clip(np.asarray(sources, dtype=np.float64), 0.0, None)
    if ink.ndim != 3 or ink.shape[1:] != m.shape[-2:]:
        raise ValueError(f"sources of shape {ink.shape} do not match maps of shape {m.shape}")
    weight = ink / np.maximum(ink.sum(axis=0), 1e-12)  # (K, H, W): each pixel's split
    parts = np.einsum("...hw,khw->...k", m, weight)
    total = m.sum(axis=(-2, -1))[..., None]
    return np.where(total > 0, parts / np.where(total > 0, total, 1.0), 0.0)
