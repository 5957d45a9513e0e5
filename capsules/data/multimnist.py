"""MultiMNIST (section 6): two overlapping digits of different classes on a 36x36 canvas.

Sabour et al. (2017), section 6: "each digit is shifted by up to 4 pixels in each direction
resulting in a 36x36 image"; two digits of different classes from the same split are overlaid.
Details as the official generator builds them (research/capsules/input_data/mnist/mnist_shift.py,
shift_2d and shift_write_multi_mnist; mnist_input_record.py reads the pairs back; read, not copied):
- the 28x28 digit is zero-padded by ``pad`` (4) to 36x36, then moved inside that frame by integer
  offsets drawn uniformly from [-max_shift, max_shift] per axis (zeros fill in, nothing wraps),
  so with max_shift 4 its top-left corner lies at 0..8 and no ink is lost; a larger max_shift
  (the official README's test command uses 6) crops the digit at the canvas edge, as there;
- the second digit is drawn uniformly among the digits of the split whose class differs from the
  first's (the official code rejects same-class candidates); each digit has its own shift;
- the pair is merged by a clipped sum, min(a + b, 255) on the uint8 images (min(a + b, 1) in [0, 1]);
- each sample keeps both shifted source images (the official ``image_raw_1`` / ``image_raw_2``)
  and both labels, for the per-digit reconstruction loss.
The paper builds 1,000 pairs per digit offline; here training pairs are drawn afresh every epoch
(each training digit is the first digit of one pair per epoch) and the test set is a fixed,
seeded draw of ``pairs_per_digit`` pairs per test digit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from .mnist import load_mnist, to_float

DIGIT_SIDE = 28  # an MNIST digit's frame
MULTI_PAD = 4  # 28 + 2 x 4 = 36
MULTI_SHIFT = 4  # up to 4 pixels in each direction
MULTI_TEST_SEED = 20171026  # the paper's arXiv date; any fixed seed gives a fixed test set


@dataclass
class MultiMNISTBatch:
    """Pairs of overlaid digits, all uint8 (use :meth:`floats` for the model's input).

    ``merged[n] = min(first[n] + second[n], 255)``; ``labels[n] = (class of first, class of second)``,
    always different; ``index[n]`` the two digits' positions in their MNIST split; ``shifts[n, k]``
    digit ``k``'s (dy, dx) from the centre of the canvas, each in [-max_shift, max_shift].
    """

    merged: Tensor  # (B, S, S) uint8, S = 28 + 2 pad
    first: Tensor  # (B, S, S) uint8: the first digit alone, shifted, on the canvas
    second: Tensor  # (B, S, S) uint8: the second digit alone
    labels: Tensor  # (B, 2) int64
    index: Tensor  # (B, 2) int64
    shifts: Tensor  # (B, 2, 2) int64

    def __len__(self) -> int:
        return self.merged.shape[0]

    def __getitem__(self, rows) -> "MultiMNISTBatch":
        return MultiMNISTBatch(*(getattr(self, f.name)[rows] for f in fields(self)))

    def to(self, device, non_blocking: bool = False) -> "MultiMNISTBatch":
        return MultiMNISTBatch(*(getattr(self, f.name).to(device, non_blocking=non_blocking)
                                 for f in fields(self)))

    def floats(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(merged, first, second)`` as float (B, 1, S, S) in [0, 1], as :func:`to_float`."""
        return to_float(self.merged), to_float(self.first), to_float(self.second)


class MultiMNIST:
    """The digits of one MNIST split, ready to be paired: ``images`` (N, 28, 28) uint8 on any
    device, ``labels`` (N,). Random draws come from a CPU ``torch.Generator``; every batch is built
    with a few tensor operations (one gather for all its digits), no loop over images.

        train = MultiMNIST(*load_mnist("train"))
        for batch in train.epoch(128, generator): ...      # 60,000 fresh pairs
        test = MultiMNIST(*load_mnist("test")).test_set()   # fixed, seeded: 10,000 pairs
    """

    def __init__(self, images: Tensor, labels: Tensor, *, max_shift: int = MULTI_SHIFT, pad: int = MULTI_PAD):
        if images.dim() != 3 or images.dtype != torch.uint8 or labels.shape != images.shape[:1]:
            raise ValueError(f"MultiMNIST expects uint8 images (N, H, W) and labels (N,), got "
                             f"{images.dtype} {tuple(images.shape)} and {tuple(labels.shape)}")
        if max_shift < 0 or pad < 0:
            raise ValueError(f"max_shift and pad must be at least 0, got {max_shift} and {pad}")
        self.images, self.labels = images, labels.cpu().long()
        self.max_shift, self.pad = max_shift, pad
        counts = torch.bincount(self.labels)
        if int((counts > 0).sum()) < 2:
            raise ValueError("MultiMNIST needs digits of at least two classes")
        # the digits sorted by class; class c occupies order[starts[c] : starts[c] + counts[c]]
        self._order = torch.argsort(self.labels, stable=True)
        self._counts, self._starts = counts, torch.cumsum(counts, 0) - counts

    @property
    def image_size(self) -> int:
        """The canvas side: 28 + 2 pad = 36."""
        return self.images.shape[-1] + 2 * self.pad

    def __len__(self) -> int:
        return self.labels.shape[0]

    def partners(self, first: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """For each digit index in ``first`` (B,), one drawn uniformly among the digits of another
        class (what the official rejection sampling draws, without its loop): a uniform position
        among the N - n_c digits not of class c, stepped over class c's block in the sorted order."""
        c = self.labels[first]
        others = len(self) - self._counts[c]  # (B,)
        u = torch.rand(first.shape[0], generator=generator, dtype=torch.float64)
        r = torch.minimum((u * others).long(), others - 1)  # uniform in [0, others)
        r = torch.where(r >= self._starts[c], r + self._counts[c], r)  # step over class c's block
        return self._order[r]

    def pairs(self, first: Tensor, generator: torch.Generator | None = None) -> MultiMNISTBatch:
        """Pairs whose first digits are the indices ``first`` (B,): each partner and all four shift
        offsets drawn from ``generator``. On the images' device."""
        first = first.cpu().long()
        second = self.partners(first, generator)
        s = self.max_shift
        shifts = torch.randint(-s, s + 1, (first.shape[0], 2, 2), generator=generator)
        index = torch.stack([first, second], dim=1)  # (B, 2)
        dev = self.images.device
        digits = self.images[index.to(dev).flatten()]  # (2B, 28, 28): first, second, first, ...
        placed = place_digits(digits, shifts.to(dev).flatten(0, 1), self.pad).unflatten(0, (-1, 2))
        a, b = placed[:, 0], placed[:, 1]  # (B, S, S) each
        merged = (a.to(torch.int16) + b.to(torch.int16)).clamp_(max=255).to(torch.uint8)
        return MultiMNISTBatch(merged=merged, first=a, second=b, labels=self.labels[index].to(dev),
                               index=index.to(dev), shifts=shifts.to(dev))

    def epoch(self, batch_size: int, generator: torch.Generator | None = None):
        """One epoch of fresh pairs: every digit is the first digit of exactly one pair, in a random
        order; yields :class:`MultiMNISTBatch` of ``batch_size`` (the last may be smaller). All
        draws come from ``generator``, so a generator in the same state repeats the epoch."""
        order = torch.randperm(len(self), generator=generator)
        for lo in range(0, len(self), batch_size):
            yield self.pairs(order[lo:lo + batch_size], generator)

    def test_set(self, pairs_per_digit: int = 1, seed: int = MULTI_TEST_SEED) -> MultiMNISTBatch:
        """A fixed set: ``pairs_per_digit`` pairs with each digit as the first digit (10,000 per
        unit from the 10,000 test digits), drawn from a CPU generator seeded with ``seed``: the
        same seed gives identical tensors on every run."""
        if pairs_per_digit < 1:
            raise ValueError(f"pairs_per_digit must be at least 1, got {pairs_per_digit}")
        generator = torch.Generator().manual_seed(seed)
        return self.pairs(torch.arange(len(self)).repeat(pairs_per_digit), generator)


def load_multimnist_test(data_dir: str | os.PathLike | None = None, *, pairs_per_digit: int = 1,
                         seed: int = MULTI_TEST_SEED) -> MultiMNISTBatch:
    """The fixed MultiMNIST test set from the MNIST test split (see :meth:`MultiMNIST.test_set`)."""
    return MultiMNIST(*load_mnist("test", data_dir)).test_set(pairs_per_digit, seed)


def place_digits(images: Tensor, shifts: Tensor, pad: int = MULTI_PAD) -> Tensor:
    """Digits ``images`` (B, H, W) on a canvas padded by ``pad``, moved by ``shifts`` (B, 2) =
    (dy, dx): (B, H + 2 pad, W + 2 pad), zeros around, the digit's corner at (pad + dy, pad + dx).
    Pixels moved off the canvas are lost (only when a shift exceeds ``pad``), as in the official
    ``shift_2d``. One gather for the whole batch."""
    b, h, w = images.shape
    m = int(shifts.abs().max()) if shifts.numel() else 0
    p = pad + m
    padded = torch.nn.functional.pad(images, (p, p, p, p))  # the digit's corner at (p, p)
    # canvas pixel (y, x) shows padded pixel (y + m - dy, x + m - dx)
    dev = images.device
    rows = (m - shifts[:, 0])[:, None] + torch.arange(h + 2 * pad, device=dev)  # (B, S)
    cols = (m - shifts[:, 1])[:, None] + torch.arange(w + 2 * pad, device=dev)
    return padded[torch.arange(b, device=dev)[:, None, None], rows[:, :, None], cols[:, None, :]]


def ink_boxes(images: Tensor) -> Tensor:
    """Bounding boxes of the non-zero pixels of ``images`` (B, H, W): (B, 4) int64 as
    (top, left, bottom, right), inclusive; an empty image gives (H, W, -1, -1), an empty box."""
    _, h, w = images.shape
    rows, cols = images.amax(dim=2) > 0, images.amax(dim=1) > 0  # (B, H), (B, W)
    ys, xs = torch.arange(h, device=images.device), torch.arange(w, device=images.device)
    top = torch.where(rows, ys, h).amin(dim=1)
    bottom = torch.where(rows, ys, -1).amax(dim=1)
    left = torch.where(cols, xs, w).amin(dim=1)
    right = torch.where(cols, xs, -1).amax(dim=1)
    return torch.stack([top, left, bottom, right], dim=1)


def box_overlap(boxes_a: Tensor, boxes_b: Tensor) -> dict[str, Tensor]:
    """Overlap of inclusive pixel boxes (B, 4) (top, left, bottom, right), per pair (float64):
    ``iou`` = intersection / union, ``of_smaller`` = intersection / the smaller box's area."""
    def area(box: Tensor) -> Tensor:
        return ((box[:, 2] - box[:, 0] + 1).clamp(min=0) * (box[:, 3] - box[:, 1] + 1).clamp(min=0)).double()

    inter = torch.cat([torch.maximum(boxes_a[:, :2], boxes_b[:, :2]),
                       torch.minimum(boxes_a[:, 2:], boxes_b[:, 2:])], dim=1)
    i, a, b = area(inter), area(boxes_a), area(boxes_b)
    return {"iou": i / (a + b - i), "of_smaller": i / torch.minimum(a, b)}


def pair_overlap(batch: MultiMNISTBatch) -> dict[str, Tensor]:
    """How much the two digits of each pair overlap, per pair (float64), three ways:
    ``frame``: their 28x28 frames, intersection / 784 (from the shifts alone);
    ``ink_iou`` and ``ink_of_smaller``: the bounding boxes of their ink (see :func:`box_overlap`)."""
    d = (batch.shifts[:, 0] - batch.shifts[:, 1]).abs()  # (B, 2): frame offset (dy, dx)
    frame = (DIGIT_SIDE - d).clamp(min=0).prod(dim=1).double() / DIGIT_SIDE**2
    ink = box_overlap(ink_boxes(batch.first), ink_boxes(batch.second))
    return {"frame": frame, "ink_iou": ink["iou"], "ink_of_smaller": ink["of_smaller"]}
