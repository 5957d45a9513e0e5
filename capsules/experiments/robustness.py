"""Affine robustness: accuracy of any model with class predictions on a seeded subset of the test
set under rotation, scaling, shear and horizontal shift (:func:`capsules.analysis.transforms.affine`), per image how
many of a curve's points it gets right, and two models compared image by image."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..analysis.transforms import IDENTITY, ROBUSTNESS, TRANSFORMS, affine
from ..data import to_float
from ..stats import SIGNIFICANCE, paired_mean_p
from .common import Progress, _percent, _report


def predict(model, x: Tensor) -> Tensor:
    """Class predictions (B,) of any model: ``out.prediction`` where the output has it, else the
    longest capsule, ``out.lengths.argmax(-1)``."""
    out = model(x)
    return out.prediction if hasattr(out, "prediction") else out.lengths.argmax(dim=-1)


def robustness_subset(n: int, size: int, seed: int = 0) -> Tensor:
    """``size`` indices of ``n`` test images drawn without replacement by a seeded generator, sorted."""
    if size >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size].sort().values


@torch.inference_mode()
def robustness_pass(model, images: Tensor, labels: Tensor, *, values: dict[str, list[float]] | None = None,
                    batch_size: int = 500, progress: Progress | None = None
                    ) -> tuple[dict[str, list[list[float]]], dict[str, list[int]]]:
    """Accuracy (percent) of ``model`` on uint8 ``images`` (N, 28, 28) under each transform,
    ``{kind: [[value, accuracy], ...]}`` for ``values`` (default :data:`ROBUSTNESS`), and, image by
    image, at how many of a curve's points the model gets it right, ``{kind: [count, ...]}`` (N
    counts each): what :func:`compare_robustness` compares between two models on the same images."""
    values = ROBUSTNESS if values is None else values
    device, n = next(model.parameters()).device, images.shape[0]
    total = sum(len(v) for v in values.values()) * max(n, 1)
    done, curves, right = 0, {}, {}
    for kind, vals in values.items():
        curve, counts = [], torch.zeros(n, dtype=torch.long)
        for value in vals:
            correct = 0
            for lo in range(0, n, batch_size):
                x = to_float(images[lo:lo + batch_size].to(device))
                hit = predict(model, affine(x, **{kind: value})).cpu() == labels[lo:lo + batch_size]
                counts[lo:lo + batch_size] += hit
                correct += int(hit.sum())
                done += x.shape[0]
                _report(progress, done / total, f"robustness: {kind} {value:g}")
            curve.append([float(value), _percent(correct, n)])
        curves[kind], right[kind] = curve, counts.tolist()
    return curves, right


def robustness(model, images: Tensor, labels: Tensor, *, values: dict[str, list[float]] | None = None,
               batch_size: int = 500, progress: Progress | None = None) -> dict[str, list[list[float]]]:
    """The curves of :func:`robustness_pass`: ``{kind: [[value, accuracy (%)], ...]}``."""
    return robustness_pass(model, images, labels, values=values, batch_size=batch_size, progress=progress)[0]


def robustness_results(model, images: Tensor, labels: Tensor, *, size: int = 500, seed: int = 0,
                       batch_size: int = 500, progress: Progress | None = None) -> dict:
    """:func:`robustness_pass` of any model on the seeded subset :func:`robustness_subset` of the
    test images, as the ``robustness*`` keys of the results file (``robustness_right``: the
    per-image counts, in the subset's order), so that models compared on one page share the subset."""
    subset = robustness_subset(images.shape[0], size, seed)
    curves, right = robustness_pass(model, images[subset], labels[subset].cpu(), batch_size=batch_size,
                                    progress=progress)
    return {"robustness": curves, "robustness_right": right, "robustness_subset": len(subset),
            "robustness_seed": seed, "robustness_units": {k: TRANSFORMS[k].unit for k in curves}}


def same_subset(a: dict, b: dict) -> bool:
    """Whether two results files drew their robustness curves from the same test images (the same
    test set size, subset size and seed), so that their curves compare point for point."""
    keys = ("test_images", "robustness_subset", "robustness_seed")
    return all(a.get(k) is not None and a.get(k) == b.get(k) for k in keys)


ROBUST_LEVEL = 95.0  # the range of each transform kept at this accuracy (%) or more: robust_range


def robust_range(curve: list, identity: float, level: float = ROBUST_LEVEL) -> tuple[float, float] | None:
    """The values around ``identity`` over which a curve ``[[value, accuracy], ...]`` (sorted by
    value) stays at ``level`` or more without a break; None when even the identity is below."""
    values = [v for v, _ in curve]
    if identity not in values:
        return None
    at = values.index(identity)
    if curve[at][1] < level:
        return None
    lo = hi = at
    while lo > 0 and curve[lo - 1][1] >= level:
        lo -= 1
    while hi < len(curve) - 1 and curve[hi + 1][1] >= level:
        hi += 1
    return values[lo], values[hi]


def number_text(value: float) -> str:
    """A number as ``%g`` with a typographic minus (\u2212), as the notes and tables write values."""
    return f"{value:g}".replace("-", "\u2212")


def curve_mean(curve: list) -> float:
    """The mean accuracy (%) over a curve's points ``[[value, accuracy], ...]``."""
    return sum(a for _, a in curve) / len(curve)


def robustness_paired(a: dict, b: dict, kind: str) -> tuple[list[int], list[int]] | None:
    """Two results files' per-image counts under ``kind`` (``robustness_right``: at how many of the
    curve's points each digit is classified right), to compare image by image; None when either
    lacks them (computed before they were recorded), when the two drew other digits
    (:func:`same_subset`) or another curve."""
    ra, rb = a.get("robustness_right", {}).get(kind), b.get("robustness_right", {}).get(kind)
    if ra is None or rb is None or not same_subset(a, b) or len(ra) != len(rb):
        return None
    if [v for v, _ in a["robustness"][kind]] != [v for v, _ in b["robustness"][kind]]:
        return None
    return ra, rb


@dataclass(frozen=True)
class RobustnessDiff:
    """Two models' robustness under one transform, on the same digits (:func:`compare_robustness`)."""

    kind: str
    mean_a: float  # mean accuracy (%) over the curve's points, model a
    mean_b: float
    paired: tuple[int, int] | None  # digits a gets right at more of the points than b, b at more than a
    p: float | None  # :func:`paired_mean_p` of the per-digit counts (None without them)
    beyond: bool | None  # p below SIGNIFICANCE: the difference of the means is beyond the noise


def compare_robustness(a: dict, b: dict) -> list[RobustnessDiff]:
    """Per transform both results have: the mean accuracies over the curve (the mean of the
    per-digit counts over the points, in percent) and, where both record their per-image counts on
    the same digits, how many digits each does better on and the paired test of the difference of
    the means (:func:`paired_mean_p`; beyond the noise when p is below :data:`SIGNIFICANCE`)."""
    diffs = []
    for kind, curve in a["robustness"].items():
        if kind not in b["robustness"]:
            continue
        counts = robustness_paired(a, b, kind)
        paired = p = beyond = None
        if counts is not None:
            ra, rb = counts
            paired = sum(x > y for x, y in zip(ra, rb)), sum(y > x for x, y in zip(ra, rb))
            p = paired_mean_p(ra, rb)
            beyond = p < SIGNIFICANCE
        diffs.append(RobustnessDiff(kind, curve_mean(curve), curve_mean(b["robustness"][kind]), paired, p, beyond))
    return diffs


def untransformed(a: dict, b: dict) -> tuple[float, float] | None:
    """Two results files' accuracy (%) on their robustness digits untransformed (the identity point
    of the first curve both have it on), the level each model's curves start from; None when none has."""
    for kind, curve in a["robustness"].items():
        mine, theirs = dict(curve).get(IDENTITY.get(kind)), dict(b["robustness"].get(kind, [])).get(IDENTITY.get(kind))
        if mine is not None and theirs is not None:
            return mine, theirs
    return None
