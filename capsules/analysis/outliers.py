"""Is this a digit? Outlier scores of a model, and how well they tell MNIST from other images.

Scores (:data:`SCORES`, :func:`scores`), per image ``x``:

- ``max_length`` (CapsNet): the longest digit capsule's length ``max_j |v_j|`` (eq. 1 keeps it in
  [0, 1); the margin loss, eq. 4, trains the present digit's above 0.9). Higher: more digit-like.
- ``reconstruction_distance`` (CapsNet with a trained decoder): ``|x - r(x)|_2`` over the 784 pixels,
  ``r(x)`` decoded from the longest capsule with the others masked, as the paper's decoder sees it
  at test time (Frosst, Sabour & Hinton 2018 use it to detect adversarial images). Lower: more
  digit-like.
- ``max_softmax`` (CNN): the largest softmax probability (Hendrycks & Gimpel 2017's baseline),
  computed in float64 from the float32 logits so that confident images do not all round to 1.

How well a score tells MNIST test digits from an outlier set is its AUROC (:func:`auroc`): the
probability that a random digit scores more digit-like than a random outlier, ties counting one
half, i.e. the Mann-Whitney U statistic over ``n_digits x n_outliers``, computed from ranks. Its 95%
interval (:func:`bootstrap_interval`) is the percentile bootstrap, resampling both sets with
replacement from a seeded generator. The outlier sets: Fashion-MNIST's test images
(:mod:`capsules.data.fashion`), uniform noise and blank (constant grey) images (:func:`outlier_sets`).

A detector flags an image whose score is on the outlier side of the threshold that flags 5% of the
MNIST test digits (:func:`threshold`: the 95th percentile of the distances, the 5th of the others).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..data import to_float
from .inputs import prepare

FALSE_POSITIVE = 0.05  # the share of MNIST test digits a detector's threshold flags
OUTLIER_SETS = ("fashion-mnist", "noise", "blank")
DIGITS = "mnist-test"

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class Score:
    """One outlier score: what it measures and which way digits lie."""

    description: str
    higher_is_digit: bool


SCORES = {
    "max_length": Score("length of the longest digit capsule, max_j |v_j|", True),
    "reconstruction_distance": Score("L2 distance |x - r(x)| between the input and its reconstruction from "
                                     "the longest capsule", False),
    "max_softmax": Score("largest softmax probability", True),
}


def has_decoder(model) -> bool:
    """Whether ``model`` reconstructs its input with a trained decoder: a CapsNet with a decoder whose
    checkpoint was not trained with ``reconstruction_weight = 0`` (such a decoder never learnt)."""
    if getattr(model, "decoder", None) is None or not hasattr(model, "decode"):
        return False
    weight = (getattr(model, "metadata", {}).get("train_config") or {}).get("reconstruction_weight")
    return weight is None or float(weight) > 0.0


def check_decoder(model) -> None:
    """Refuse, with one line, reconstruction scores for a model without a trained decoder."""
    if has_decoder(model):
        return
    path = getattr(model, "checkpoint_path", None)
    name = path.name if path else type(model).__name__
    if getattr(model, "decoder", None) is None or not hasattr(model, "decode"):
        raise ValueError(f"{name} has no decoder: the reconstruction distance needs a CapsNet "
                         "(its other scores: " + ", ".join(score_names(model)) + ")")
    raise ValueError(f"{name} was trained without the reconstruction loss (reconstruction_weight 0): its decoder "
                     "is untrained, so its reconstruction distance means nothing; use max_length instead")


def score_names(model) -> tuple[str, ...]:
    """The scores that apply to ``model``: a CapsNet's lengths (and distances with a trained
    decoder), a softmax classifier's largest probability."""
    if hasattr(model, "digits"):  # a CapsNet
        return ("max_length", "reconstruction_distance") if has_decoder(model) else ("max_length",)
    return ("max_softmax",)


def reconstruction_distances(x: Tensor, out) -> Tensor:
    """``|x - r(x)|_2`` per image (B,) of images ``x`` (B, 1, 28, 28) and a CapsNet's output on them,
    whose ``reconstruction`` was decoded from the longest capsule (no labels given)."""
    return torch.linalg.vector_norm((x.float() - out.reconstruction.float()).flatten(1), dim=1)


def _batch_scores(model, x: Tensor, names: tuple[str, ...]) -> dict[str, Tensor]:
    out = model(x)
    got = {}
    if "max_length" in names:
        got["max_length"] = out.lengths.float().amax(dim=-1)
    if "reconstruction_distance" in names:
        got["reconstruction_distance"] = reconstruction_distances(x, out)
    if "max_softmax" in names:
        got["max_softmax"] = out.logits.double().softmax(dim=-1).amax(dim=-1)
    return got


@torch.inference_mode()
def scores(model, images: Tensor, names: tuple[str, ...] | list[str] | None = None, *, batch_size: int = 250,
           progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Scores of uint8 ``images`` (N, 28, 28) or float (N, 1, 28, 28) in [0, 1]: ``{name: (N,)
    float64}``, for ``names`` (default: :func:`score_names`), in float32 in eval mode."""
    names = tuple(score_names(model) if names is None else names)
    for name in names:
        if name not in SCORES:
            raise ValueError(f"unknown score {name!r}; one of {', '.join(SCORES)}")
        if name not in score_names(model) and name != "reconstruction_distance":
            raise ValueError(f"{type(model).__name__} has no {name} score; its scores: {', '.join(score_names(model))}")
    if "reconstruction_distance" in names:
        check_decoder(model)
    was_training = model.training
    model.eval()
    n, parts = images.shape[0], {name: [] for name in names}
    try:
        for lo in range(0, n, batch_size):
            x = images[lo:lo + batch_size].to(model.device)
            x = to_float(x) if x.dtype == torch.uint8 else x.float()
            for name, value in _batch_scores(model, x, names).items():
                parts[name].append(value.double().cpu())
            if progress is not None:
                progress(min(lo + batch_size, n) / n, f"scores: {min(lo + batch_size, n):,}/{n:,} images")
    finally:
        model.train(was_training)
    return {name: torch.cat(v).numpy() if v else np.empty(0) for name, v in parts.items()}


def image_scores(model, image) -> dict[str, float]:
    """:func:`scores` of one image (a (28, 28) array or tensor, as :func:`prepare` reads it)."""
    x = prepare(image, model.device, side=model.config.image_size)
    return {name: float(v[0]) for name, v in scores(model, x).items()}


# --------------------------------------------------------------------------------------------
# AUROC and its interval


def _oriented(digits, others, higher_is_digit: bool) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(digits, dtype=np.float64).ravel(), np.asarray(others, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError(f"AUROC needs scores of both sets, got {a.size} digits and {b.size} others")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("AUROC got NaN or infinite scores")
    return (a, b) if higher_is_digit else (-a, -b)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1 .. n of ``values``, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    s = values[order]
    starts = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1]
    ends = np.r_[starts[1:], s.size]
    ranks = np.empty(s.size)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # mean of ranks starts+1 .. ends
    return ranks


def auroc(digits, others, *, higher_is_digit: bool = True) -> float:
    """P(a random digit scores more digit-like than a random other image) + P(tie) / 2: the
    Mann-Whitney ``U = R_digits - n_d (n_d + 1) / 2`` over ``n_d n_o``, ``R_digits`` the digits' rank
    sum in both sets together. 0.5: no better than chance; 1: every digit on the digit side."""
    a, b = _oriented(digits, others, higher_is_digit)
    r = average_ranks(np.concatenate([a, b]))
    u = r[:a.size].sum() - a.size * (a.size + 1) / 2.0
    return float(u / (a.size * b.size))


def bootstrap_interval(digits, others, *, higher_is_digit: bool = True, resamples: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`auroc`: both sets resampled with replacement, each
    to its own size, ``resamples`` times from ``numpy.random.default_rng(seed)``.

    A resample's AUROC is counted without sorting again: with both sets' values sorted once, an
    image of the digits scoring above ``k`` resampled others and tying with ``t`` adds ``k + t / 2``.
    """
    if resamples < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap needs resamples >= 1 and 0 < level < 1, got {resamples} and {level}")
    a, b = _oriented(digits, others, higher_is_digit)
    values = np.unique(np.concatenate([a, b]))
    ga, gb = np.searchsorted(values, a), np.searchsorted(values, b)  # each image's value index
    rng = np.random.default_rng(seed)
    aucs = np.empty(resamples)
    for k in range(resamples):
        ia, ib = rng.integers(0, a.size, a.size), rng.integers(0, b.size, b.size)
        tie = np.bincount(gb[ib], minlength=values.size)  # resampled others at each value
        below = np.cumsum(tie) - tie  # resampled others below each value
        g = ga[ia]
        aucs[k] = (below[g].sum() + 0.5 * tie[g].sum()) / (a.size * b.size)
    lo, hi = np.quantile(aucs, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


def threshold(digit_scores, name: str, false_positive: float = FALSE_POSITIVE) -> float:
    """The score beyond which an image is flagged, so that a share ``false_positive`` of the digits
    ``digit_scores`` is: their ``1 - fp`` quantile for a distance, their ``fp`` quantile otherwise."""
    q = false_positive if SCORES[name].higher_is_digit else 1.0 - false_positive
    return float(np.quantile(np.asarray(digit_scores, dtype=np.float64), q))


def flagged(values, name: str, limit: float) -> np.ndarray:
    """(N,) bool: the images a detector with threshold ``limit`` calls outliers."""
    v = np.asarray(values, dtype=np.float64)
    return v < limit if SCORES[name].higher_is_digit else v > limit


def histogram(by_set: dict[str, np.ndarray], bins: int = 40) -> dict:
    """Counts of several sets' scores over shared, equal bins spanning all of them:
    ``{"edges": [bins + 1], "counts": {set: [bins]}}`` (a constant score gets a unit-wide bin)."""
    every = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in by_set.values()])
    lo, hi = float(every.min()), float(every.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    return {"edges": edges.tolist(),
            "counts": {k: np.histogram(v, bins=edges)[0].tolist() for k, v in by_set.items()}}


# --------------------------------------------------------------------------------------------
# the outlier sets and the results file's section


def noise_images(n: int, seed: int = 0) -> Tensor:
    """``n`` images of independent uniform grey levels 0 .. 255 (uint8 (n, 28, 28)), seeded."""
    return torch.randint(0, 256, (n, 28, 28), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def blank_images(n: int) -> Tensor:
    """``n`` constant images, grey levels evenly from black (0, the empty canvas) to white (255)."""
    levels = torch.linspace(0, 255, n).round().to(torch.uint8)
    return levels[:, None, None].expand(n, 28, 28).contiguous()


def subset(n: int, size: int, seed: int = 0) -> Tensor:
    """``size`` of ``n`` indices drawn without replacement by a seeded generator, sorted (all when
    ``size >= n``)."""
    if size >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size].sort().values


def outlier_sets(fashion: Tensor, *, noise: int = 1000, blank: int = 100, seed: int = 0) -> dict[str, Tensor]:
    """The outlier sets of :data:`OUTLIER_SETS`, uint8 (N, 28, 28): Fashion-MNIST images as given,
    ``noise`` noise images and ``blank`` blank ones."""
    return {"fashion-mnist": fashion, "noise": noise_images(noise, seed), "blank": blank_images(blank)}
