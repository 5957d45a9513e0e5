"""Test-set experiments: does routing matter for a trained CapsNet?

    python -m capsules.experiments [--checkpoint PATH] [--data-dir DIR] [--json OUT]
    python -m capsules.experiments --checkpoint checkpoints/cnn-mnist.safetensors   # robustness only

Everything is computed on the MNIST test set by plain functions that return dataclasses and
JSON-ready dicts, with an optional ``progress(fraction, message)`` callback (the dashboard passes
one that drives ``st.progress``; the command line drives a tqdm bar). Notation as in the paper:
``i`` a primary capsule, ``j`` a digit capsule, ``u_hat_{j|i} = W_ij u_i`` the prediction vectors,
``c_ij`` the coupling coefficients (eq. 3), ``b_ij`` their logits, ``v_j = squash(s_j)`` (eq. 1),
``s_j = sum_i c_ij u_hat_{j|i}`` (eq. 2).

- **Iterations** (:func:`routing_pass`): one pass of Procedure 1 with ``K = 10`` iterations per
  batch records ``v`` after every iteration; ``v`` after iteration ``k`` is exactly what routing with
  ``k`` iterations returns (tested), so one pass gives the accuracy and mean margin (longest minus
  second-longest capsule length) for ``k = 1 .. K``, and the routing dynamics: the mean
  ``|b(t+1) - b(t)| = |u_hat . v(t)|`` (the change iteration ``t`` makes to the logits, the
  paper's Appendix A), the mean routing entropy ``-sum_j c_ij ln c_ij`` (nats; ``ln 10`` when
  uniform), the share of images whose prediction differs from the ``k = 1`` prediction and, image
  by image, how many right answers turned wrong and wrong ones right (the discordant pairs of an
  exact McNemar test against ``k = 1``, :func:`mcnemar_p`).
- **Coupling ablations** (:func:`coupling_ablations`): accuracy with a fixed coupling and no
  routing iterations, ``v_j = squash(sum_i c_ij u_hat_{j|i})`` (:func:`route_fixed`), for
  uniform ``c = 1/10`` (the same as ``k = 1``); random ``c_i = softmax_j(z_i)`` with Gaussian logits
  ``z_ij ~ N(0, sigma^2)`` drawn per image from a seeded generator, ``sigma`` the spread of the
  model's own final logits (see :class:`RoutingPass`); class-mean coupling (Zhao et al. 2019,
  "master" coefficients): ``c_ij`` = the mean over the test images predicted as ``j`` of their
  final ``c_ij``, one (1152, 10) matrix for every image (column ``j`` from class ``j``'s images,
  so rows need not sum to 1; equivalently, each class is scored by its own capsule's length under
  its own class-mean coupling); and the model's own routing. Each with a 95% Wilson score interval.
- **Robustness** (:func:`robustness_pass`): accuracy of any model with class predictions on a
  seeded subset of the test set under rotation, scaling, shear and horizontal shift, with
  torchvision's ``affine`` on batched tensors (bilinear, zeros outside, about the image centre),
  and per image the number of a curve's points it is classified right at, so that two models on
  the same digits compare image by image (:func:`compare_robustness`: a paired test of the
  difference of their mean accuracies over a curve).
- **Errors**: the confusion matrix and the misclassified test images of the model's own routing.

:func:`run_experiments` does all of it and returns the JSON object that the command line writes
and :func:`load_results` reads back for the checkpoint whose sha256 it records. For a model that
does not route (the baseline CNN) only the robustness curves apply: :func:`robustness_experiments`
writes them as a results file of their own (the command line picks it by the checkpoint's kind),
on the same seeded subset, so that the dashboard draws them beside a CapsNet's.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .data import DatasetError, load_mnist, to_float
from .device import DEVICE_HELP, describe, pick_device
from .evaluate import binomial_interval
from .nn import CapsNet, capsule_lengths, routing_iterations, squash

__all__ = [
    "Ablation", "FORMAT", "ROBUST_LEVEL", "ROBUSTNESS", "RobustnessDiff", "RoutingPass", "SIGNIFICANCE",
    "accuracy_interval", "affine", "changed_from_k1", "checkpoint_sha256", "compare_robustness", "confusion_matrix",
    "coupling_ablations", "curve_mean", "intervals_overlap", "load_results", "mcnemar_p", "mcnemar_verdict",
    "misclassified", "number_text", "paired_mean_p", "predict", "random_logits", "results_path", "robust_range",
    "robustness", "robustness_experiments", "robustness_paired", "robustness_pass", "robustness_results",
    "robustness_subset", "route_fixed", "routing_pass", "run_experiments", "same_subset", "save_results",
    "untransformed", "wilson_interval", "merge_results", "parse_sections", "read_results",
]

FORMAT = "capsules.experiments"
VERSION = 1

Progress = Callable[[float, str], None]

# Transform values of the robustness curves and their units (torchvision's ``affine`` arguments).
ROBUSTNESS: dict[str, list[float]] = {
    "rotate": [float(a) for a in range(-60, 61, 10)],
    "scale": [round(0.5 + 0.1 * k, 1) for k in range(11)],
    "shear": [float(a) for a in range(-40, 41, 10)],
    "shift_x": [float(d) for d in range(-8, 9, 2)],
}
UNITS = {
    "rotate": "degrees, counter-clockwise",
    "scale": "factor about the centre",
    "shear": "degrees, x-shear (torchvision affine)",
    "shift_x": "pixels, right",
}
IDENTITY = {"rotate": 0.0, "scale": 1.0, "shear": 0.0, "shift_x": 0.0}


def _report(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(min(max(fraction, 0.0), 1.0), message)


def _span(progress: Progress | None, lo: float, hi: float) -> Progress | None:
    """A callback mapping [0, 1] onto [lo, hi] of ``progress``."""
    if progress is None:
        return None
    return lambda f, msg: progress(lo + (hi - lo) * f, msg)


def wilson_interval(correct: int, total: int) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion ``correct / total``, in percent
    (:func:`capsules.evaluate.binomial_interval`)."""
    lo, hi = binomial_interval(correct, total)
    return 100.0 * lo, 100.0 * hi


def accuracy_interval(accuracy: float, total: int) -> tuple[float, float]:
    """:func:`wilson_interval` of an accuracy given in percent over ``total`` images (as the
    results file stores the robustness curves): the count is ``round(accuracy * total / 100)``."""
    return wilson_interval(round(accuracy * total / 100.0), total)


def mcnemar_p(broke: int, fixed: int) -> float:
    """Exact two-sided McNemar test of two classifiers scored on the same images: ``broke`` images
    only the first gets right, ``fixed`` only the second. Under no difference each of these
    discordant images falls either way with probability 1/2, so the p-value is the two-sided
    binomial tail of min(broke, fixed) in broke + fixed draws (1 when there are none)."""
    n = broke + fixed
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(broke, fixed) + 1)) / 2**n
    return min(1.0, 2.0 * tail)


SIGNIFICANCE = 0.05  # a paired difference with McNemar p below this is called beyond the noise


def mcnemar_verdict(broke: int, fixed: int) -> tuple[float, bool]:
    """:func:`mcnemar_p` of the discordant pairs, and whether it is below :data:`SIGNIFICANCE`
    (the difference is beyond the noise)."""
    p = mcnemar_p(broke, fixed)
    return p, p < SIGNIFICANCE


def changed_from_k1(results: dict, k: int) -> tuple[int, int] | None:
    """Routing with ``k`` iterations against k = 1 in a results file (:func:`load_results`), image
    by image: (right answers turned wrong, wrong ones turned right), the discordant pairs of
    :func:`mcnemar_p`; None for results computed before they were recorded."""
    dyn = results.get("dynamics", {})
    if "right_to_wrong_from_k1" not in dyn or "wrong_to_right_from_k1" not in dyn:
        return None
    return int(dyn["right_to_wrong_from_k1"][k - 1]), int(dyn["wrong_to_right_from_k1"][k - 1])


def intervals_overlap(*intervals: tuple[float, float] | list[float]) -> bool:
    """Whether the intervals ``(lo, hi)`` share at least one point (``max lo <= min hi``): two 95%
    intervals that overlap leave the difference within the noise of the test set."""
    if not intervals:
        raise ValueError("intervals_overlap needs at least one interval")
    return max(lo for lo, _ in intervals) <= min(hi for _, hi in intervals)


def _percent(correct: int, total: int) -> float:
    return 100.0 * correct / total if total else 0.0


# --------------------------------------------------------------------------------------------
# routing with a fixed coupling


def route_fixed(u_hat: Tensor, c: Tensor, epsilon: float = 1e-8) -> Tensor:
    """Eqs. 2 and 1 with a fixed coupling and no routing iterations: ``v_j = squash(sum_i c_ij u_hat_{j|i})``.

    ``u_hat`` (B, j, i, m) is :meth:`Router.predictions`' layout; ``c`` is (i, j), one coupling
    for every image, or (B, i, j), one per image (the layout of :class:`RoutingTrace`).
    Returns ``v`` (B, j, m).
    """
    if c.dim() == 2:
        c = c.unsqueeze(0)
    if c.dim() != 3 or c.shape[1:] != (u_hat.shape[2], u_hat.shape[1]):
        raise ValueError(f"coupling must be (i, j) or (B, i, j) with i, j = {u_hat.shape[2]}, "
                         f"{u_hat.shape[1]}; got {tuple(c.shape)}")
    cj = c.to(u_hat.dtype).transpose(1, 2)  # (B or 1, j, i)
    s = torch.matmul(cj.unsqueeze(2), u_hat).squeeze(2)  # (B, j, m), eq. 2
    return squash(s, epsilon)


def random_logits(n: int, in_caps: int, out_caps: int, std: float, generator: torch.Generator) -> Tensor:
    """Gaussian routing logits ``z ~ N(0, std^2)``, (n, in_caps, out_caps), drawn one image at a
    time from ``generator`` so that the draw for an image does not depend on the batch size."""
    return torch.stack([torch.randn(in_caps, out_caps, generator=generator) for _ in range(n)]) * std


# --------------------------------------------------------------------------------------------
# one traced pass


@dataclass
class RoutingPass:
    """What one pass of ``K`` routing iterations over a test set records (all on the CPU).

    ``model_iterations`` is the ``r`` the model routes with; "final" below means its iteration
    ``r``: the coupling and logits that produced the model's own output.
    """

    labels: Tensor  # (N,) int64
    lengths: Tensor  # (K, N, J) capsule lengths after iteration k = 1 .. K
    logit_change: Tensor  # (K,) mean |b(t+1) - b(t)| = mean |u_hat . v(t)| over images, i and j
    entropy: Tensor  # (K,) mean routing entropy -sum_j c_ij ln c_ij of iteration t's c, nats
    class_coupling: Tensor  # (I, J) column j: mean final c_ij over the images predicted as j
    class_counts: Tensor  # (J,) images predicted as each class (model's own routing)
    logit_std: float  # sigma: sqrt of the mean over images and i of the variance over j (n - 1) of the final b_ij
    u: Tensor  # (N, I, n) primary capsules, for the fixed-coupling ablations
    model_iterations: int
    seconds: float

    @property
    def iterations(self) -> int:
        return self.lengths.shape[0]

    @property
    def predictions(self) -> Tensor:
        """(K, N) prediction after iteration k."""
        return self.lengths.argmax(dim=-1)

    @property
    def correct(self) -> list[int]:
        """Correct predictions after iteration k = 1 .. K."""
        return [int(n) for n in (self.predictions == self.labels).sum(dim=1)]

    @property
    def margins(self) -> list[float]:
        """Mean over images of longest minus second-longest capsule length, k = 1 .. K."""
        top2 = self.lengths.topk(2, dim=-1).values
        return [float(m) for m in (top2[..., 0] - top2[..., 1]).mean(dim=1)]

    @property
    def changed(self) -> list[float]:
        """Percent of images whose prediction after iteration k differs from the k = 1 prediction."""
        p = self.predictions
        return [float(x) for x in 100.0 * (p != p[:1]).double().mean(dim=1)]

    @property
    def paired(self) -> tuple[list[int], list[int]]:
        """Per k = 1 .. K against k = 1, image by image: (right answers turned wrong, wrong answers
        turned right), the discordant pairs of :func:`mcnemar_p`."""
        right = self.predictions == self.labels  # (K, N)
        broke, fixed = (right[:1] & ~right).sum(dim=1), (~right[:1] & right).sum(dim=1)
        return [int(x) for x in broke], [int(x) for x in fixed]

    @property
    def own(self) -> Tensor:
        """(N, J) lengths from the model's own routing (iteration ``model_iterations``)."""
        return self.lengths[self.model_iterations - 1]


@torch.inference_mode()
def routing_pass(model, images: Tensor, labels: Tensor, *, iterations: int = 10, batch_size: int = 250,
                 progress: Progress | None = None) -> RoutingPass:
    """Route uint8 ``images`` (N, 28, 28) with ``iterations`` iterations of Procedure 1, recording
    every iteration (see :class:`RoutingPass`). Float32 throughout."""
    r = model.config.routing_iterations
    if iterations < r:
        raise ValueError(f"iterations ({iterations}) must be at least the model's {r}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    start = time.perf_counter()
    device, router = model.device, model.digits
    n, n_in, n_out = images.shape[0], router.in_caps, router.out_caps
    lengths = torch.empty(iterations, n, n_out)
    u_all = torch.empty(n, n_in, router.in_d)
    change = torch.zeros(iterations, dtype=torch.float64)
    entropy = torch.zeros(iterations, dtype=torch.float64)
    sums = torch.zeros(n_out, n_in, dtype=torch.float64)  # sum of final c_ij over images predicted j
    counts = torch.zeros(n_out, dtype=torch.int64)
    var_sum = 0.0
    for lo in range(0, n, batch_size):
        x = to_float(images[lo:lo + batch_size].to(device))
        u = model.primary_capsules(x)  # (B, i, n)
        u_hat = router.predictions(u)  # (B, j, i, m)
        steps = routing_iterations(u_hat, iterations, router.squash.epsilon)  # [(b, c, s, v, a)], (B, j, i)
        if lo == 0:  # the steps are the model's own routing
            own, _ = router.route(u_hat, r)
            if not torch.allclose(own, steps[r - 1][3], rtol=1e-5, atol=1e-6):
                raise RuntimeError("routing_iterations no longer reproduces the model's routing")
        for t, (b, c, _, v, a) in enumerate(steps):
            lengths[t, lo:lo + x.shape[0]] = capsule_lengths(v).cpu()
            change[t] += float(a.abs().sum(dtype=torch.float64))
            entropy[t] += float(torch.special.entr(c).sum(dtype=torch.float64))  # -c ln c
        b, c, _, v, _ = steps[r - 1]
        pred = capsule_lengths(v).argmax(dim=-1)  # (B,)
        own_c = c.gather(1, pred[:, None, None].expand(-1, 1, n_in))[:, 0]  # (B, i): c_{i, pred}
        sums.index_add_(0, pred.cpu(), own_c.double().cpu())
        counts += torch.bincount(pred.cpu(), minlength=n_out)
        var_sum += float(b.var(dim=1, correction=1).sum(dtype=torch.float64))
        u_all[lo:lo + x.shape[0]] = u.cpu()
        _report(progress, min(lo + batch_size, n) / n, f"routing {iterations} iterations: "
                f"{min(lo + batch_size, n):,}/{n:,} test images")
    coupling = torch.full((n_in, n_out), 1.0 / n_out, dtype=torch.float64)  # a class never predicted: uniform
    seen = counts > 0
    coupling[:, seen] = (sums[seen] / counts[seen, None]).T
    weights = max(n, 1) * n_in
    return RoutingPass(
        labels=labels.cpu().long(), lengths=lengths,
        logit_change=(change / (weights * n_out)).float(), entropy=(entropy / weights).float(),
        class_coupling=coupling.float(), class_counts=counts, logit_std=math.sqrt(var_sum / weights),
        u=u_all, model_iterations=r, seconds=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------------------------
# coupling ablations


@dataclass
class Ablation:
    """Accuracy of one coupling rule over the test set, with its 95% Wilson interval (percent)."""

    name: str
    correct: int
    total: int
    predictions: Tensor  # (N,)

    @property
    def accuracy(self) -> float:
        return _percent(self.correct, self.total)

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.total)

    def to_dict(self) -> dict:
        lo, hi = self.interval
        return {"accuracy": self.accuracy, "correct": self.correct, "total": self.total, "interval": [lo, hi]}


def _predict_fixed(u_hat: Tensor, c: Tensor, epsilon: float) -> Tensor:
    return capsule_lengths(route_fixed(u_hat, c, epsilon)).argmax(dim=-1).cpu()


@torch.inference_mode()
def coupling_ablations(model, rp: RoutingPass, *, seed: int = 0, batch_size: int = 500,
                       progress: Progress | None = None) -> dict[str, Ablation]:
    """The model's own routing against fixed couplings (uniform, random, class-mean), all over the
    images of ``rp``; the fixed ones route once with :func:`route_fixed`, no iterations."""
    device, router = model.device, model.digits
    n, n_in, n_out = rp.u.shape[0], router.in_caps, router.out_caps
    generator = torch.Generator().manual_seed(seed)
    fixed = {"uniform": torch.full((n_in, n_out), 1.0 / n_out, device=device),
             "class_mean": rp.class_coupling.to(device)}
    preds: dict[str, list[Tensor]] = {"uniform": [], "random": [], "class_mean": []}
    for lo in range(0, n, batch_size):
        u_hat = router.predictions(rp.u[lo:lo + batch_size].to(device))  # (B, j, i, m)
        for name, c in fixed.items():
            preds[name].append(_predict_fixed(u_hat, c, router.squash.epsilon))
        c = torch.softmax(random_logits(u_hat.shape[0], n_in, n_out, rp.logit_std, generator), dim=-1)
        preds["random"].append(_predict_fixed(u_hat, c.to(device), router.squash.epsilon))
        _report(progress, min(lo + batch_size, n) / n, f"coupling ablations: {min(lo + batch_size, n):,}/{n:,}")
    own = rp.own.argmax(-1)
    out = {"routing": Ablation("routing", int((own == rp.labels).sum()), n, own)}
    for name, p in preds.items():
        p = torch.cat(p) if p else torch.empty(0, dtype=torch.int64)
        out[name] = Ablation(name, int((p == rp.labels).sum()), n, p)
    return out


# --------------------------------------------------------------------------------------------
# robustness to affine transforms


def predict(model, x: Tensor) -> Tensor:
    """Class predictions (B,) of any model: ``out.prediction`` where the output has it, else the
    longest capsule, ``out.lengths.argmax(-1)``."""
    out = model(x)
    return out.prediction if hasattr(out, "prediction") else out.lengths.argmax(dim=-1)


def affine(x: Tensor, kind: str, value: float) -> Tensor:
    """Batched images ``x`` (B, C, H, W) in [0, 1] under one transform, with torchvision's
    ``affine`` (bilinear, zeros outside, about the image centre): ``kind`` is ``rotate``
    (degrees, counter-clockwise), ``scale`` (factor), ``shear`` (degrees, along x) or ``shift_x``
    (pixels, right)."""
    if kind not in IDENTITY:
        raise ValueError(f"unknown transform {kind!r}; one of {', '.join(IDENTITY)}")
    if kind == "scale" and value <= 0:
        raise ValueError(f"scale must be positive, got {value}")
    p = {**IDENTITY, kind: float(value)}
    # imported here: torchvision takes a second to import (it loads torch._dynamo), which every
    # page of the dashboard would pay at a cold start for what only the robustness curves use
    import torchvision.transforms.v2.functional as TF

    return TF.affine(x, angle=p["rotate"], translate=[p["shift_x"], 0.0], scale=p["scale"],
                     shear=[p["shear"], 0.0], interpolation=TF.InterpolationMode.BILINEAR, fill=0.0)


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
                hit = predict(model, affine(x, kind, value)).cpu() == labels[lo:lo + batch_size]
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
            "robustness_seed": seed, "robustness_units": UNITS}


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


def paired_mean_p(x: list[int] | list[float], y: list[int] | list[float]) -> float:
    """Two-sided p-value of the paired z-test that the mean of ``x`` equals the mean of ``y``,
    measured on the same items: ``z = mean(d) / (sd(d) / sqrt(n))`` for the differences
    ``d = x - y`` (sample standard deviation), against the normal distribution, which the mean of
    hundreds of bounded differences follows closely. 1 when every difference is zero, 0 when they
    are all the same non-zero value."""
    n = len(x)
    if n != len(y) or n < 2:
        raise ValueError(f"paired_mean_p needs two paired samples of at least 2 items, got {n} and {len(y)}")
    d = [a - b for a, b in zip(x, y)]
    mean = sum(d) / n
    var = sum((v - mean) ** 2 for v in d) / (n - 1)
    if var == 0:
        return 1.0 if mean == 0 else 0.0
    z = mean / math.sqrt(var / n)
    return math.erfc(abs(z) / math.sqrt(2.0))


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


# --------------------------------------------------------------------------------------------
# errors


def confusion_matrix(labels: Tensor, predictions: Tensor, n_classes: int = 10) -> list[list[int]]:
    """``m[true][predicted]``: counts of test images."""
    idx = labels.long() * n_classes + predictions.long()
    return torch.bincount(idx, minlength=n_classes * n_classes).view(n_classes, n_classes).tolist()


def misclassified(labels: Tensor, lengths: Tensor) -> list[dict]:
    """The misclassified images: ``[{"index", "label", "prediction", "lengths"}]``, by test index."""
    pred = lengths.argmax(dim=-1)
    wrong = (pred != labels).nonzero().flatten().tolist()
    return [{"index": i, "label": int(labels[i]), "prediction": int(pred[i]),
             "lengths": [round(float(x), 4) for x in lengths[i]]} for i in wrong]


# --------------------------------------------------------------------------------------------
# everything, and the results file


def checkpoint_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_experiments(model, images: Tensor, labels: Tensor, *, iterations: int = 10,
                    robustness_size: int = 500, seed: int = 0, batch_size: int = 250,
                    progress: Progress | None = None) -> dict:
    """All experiments for a CapsNet on uint8 test ``images`` (N, 28, 28) and ``labels`` (N,).

    Returns the JSON object of the results file (accuracies in percent). The headline figures use
    every image given; the robustness curves use ``robustness_size`` of them drawn with ``seed``,
    which also seeds the random coupling. Weights of the phases in ``progress`` follow their cost.
    """
    if not isinstance(model, CapsNet):
        raise ValueError(f"the routing experiments need a CapsNet, got {type(model).__name__} "
                         "(robustness_results() works for any model)")
    start, cpu_start = time.perf_counter(), time.process_time()
    n = images.shape[0]
    n_robust = sum(len(v) for v in ROBUSTNESS.values()) * min(robustness_size, n)
    cost = [1.5 * n, 0.15 * n, 1.0 * n_robust]  # rough relative cost per image of each phase
    edges = [sum(cost[:k]) / sum(cost) for k in range(4)]

    rp = routing_pass(model, images, labels, iterations=iterations, batch_size=batch_size,
                      progress=_span(progress, edges[0], edges[1]))
    t_ablation = time.perf_counter()
    ablations = coupling_ablations(model, rp, seed=seed, batch_size=2 * batch_size,
                                   progress=_span(progress, edges[1], edges[2]))
    t_robust = time.perf_counter()
    robust = robustness_results(model, images, labels, size=robustness_size, seed=seed,
                                batch_size=2 * batch_size, progress=_span(progress, edges[2], edges[3]))
    t_end = time.perf_counter()
    _report(progress, 1.0, "done")

    keys = [str(k) for k in range(1, rp.iterations + 1)]
    own = rp.own
    return {
        "format": FORMAT, "version": VERSION, "kind": CapsNet.FORMAT, **_source(model, n),
        "model_iterations": rp.model_iterations,
        "iterations": dict(zip(keys, (_percent(c, n) for c in rp.correct))),
        "iterations_correct": dict(zip(keys, rp.correct)),
        "margins": dict(zip(keys, rp.margins)),
        "dynamics": {
            "logit_change": [float(x) for x in rp.logit_change],
            "entropy": [float(x) for x in rp.entropy],
            "changed_from_k1": rp.changed,
            "right_to_wrong_from_k1": rp.paired[0],
            "wrong_to_right_from_k1": rp.paired[1],
        },
        "ablations": {name: a.to_dict() for name, a in ablations.items()},
        "ablation_details": {
            "interval": "Wilson score interval, 95%",
            "random_seed": seed,
            "random_logit_std": rp.logit_std,
            "class_counts": rp.class_counts.tolist(),
            "fixed_coupling": "v_j = squash(sum_i c_ij u_hat_j|i), c fixed, no routing iterations",
            "uniform": "c_ij = 1/10",
            "random": "c_i = softmax_j(z_i), z_ij ~ N(0, random_logit_std^2) drawn per image; random_logit_std: "
                      "spread over j of the model's final routing logits",
            "class_mean": "c_ij = mean of the final c_ij over the test images predicted as j (own routing); "
                          "one matrix for all images",
            "routing": f"the model's own {rp.model_iterations} routing iterations",
        },
        **robust,
        "confusion": confusion_matrix(rp.labels, own.argmax(-1), own.shape[-1]),
        "errors": misclassified(rp.labels, own),
        "phase_seconds": {"routing": rp.seconds, "ablations": t_robust - t_ablation, "robustness": t_end - t_robust},
        **_run(model, start, cpu_start, batch_size),
    }


def _source(model, n: int) -> dict:
    """The keys of a results file that name what it was computed for."""
    path = model.checkpoint_path
    return {"checkpoint": Path(path).name if path else None,
            "checkpoint_sha256": checkpoint_sha256(path) if path else None, "test_images": n}


def _run(model, start: float, cpu_start: float, batch_size: int) -> dict:
    """The keys of a results file that say how, where and when it was computed."""
    return {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu_start,
        "batch_size": batch_size,
        "precision": "fp32",
        "torch": torch.__version__,
        "device": describe(next(model.parameters()).device),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def robustness_experiments(model, images: Tensor, labels: Tensor, *, robustness_size: int = 500, seed: int = 0,
                           batch_size: int = 500, progress: Progress | None = None) -> dict:
    """The experiments that apply to a model without routing (the baseline CNN), as the JSON object
    of its results file: :func:`robustness_results` on the seeded subset a CapsNet's results use
    (the same ``robustness_size`` and ``seed`` on the same test images draw the same digits), with
    ``kind`` naming the model and none of the routing keys."""
    start, cpu_start = time.perf_counter(), time.process_time()
    robust = robustness_results(model, images, labels, size=robustness_size, seed=seed, batch_size=batch_size,
                                progress=progress)
    _report(progress, 1.0, "done")
    return {"format": FORMAT, "version": VERSION, "kind": type(model).FORMAT, **_source(model, images.shape[0]),
            **robust, **_run(model, start, cpu_start, batch_size)}


def results_path(checkpoint_path: str | Path) -> Path:
    """Where the results of a checkpoint live: ``name.experiments.json`` beside ``name.safetensors``."""
    return Path(checkpoint_path).with_suffix(".experiments.json")


def save_results(results: dict, path: str | Path) -> None:
    from .checkpoint import atomic_write_json

    atomic_write_json(path, results)


def load_results(checkpoint_path: str | Path | None = None) -> dict | None:
    """The shipped results of a checkpoint (default: the shipped one), or None when there are none,
    they are unreadable or of another format, or they were computed for other weights (their
    ``checkpoint_sha256`` differs from the file's)."""
    from .checkpoint import SHIPPED

    checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else SHIPPED
    path = results_path(checkpoint_path)
    try:
        results = json.loads(path.read_text())
        sha = checkpoint_sha256(checkpoint_path)
    except (OSError, ValueError):
        return None
    if not isinstance(results, dict) or results.get("format") != FORMAT or results.get("version") != VERSION:
        return None
    return results if results.get("checkpoint_sha256") == sha else None


def keep_freed_memory() -> bool:
    """Have glibc keep large freed blocks for reuse instead of handing them back to the kernel.

    glibc serves every block over 32 MB with its own ``mmap`` and unmaps it when freed, so the next
    batch faults every page in again: a CapsNet's (250, 10, 1152, 16) prediction vectors are 184 MB
    in float32, and an attack allocates several such tensors at every step (in the first timed run
    of the adversarial section a fifth of the CPU time went to the kernel, page faults serialising
    the two threads). ``M_MMAP_MAX = 0`` serves them from the heap and ``M_TRIM_THRESHOLD = 1 GiB``
    keeps up to that much freed heap for reuse. For the command line's own process; False where
    there is no glibc (nothing changes)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-4, 0)) and bool(libc.mallopt(-1, 1 << 30))  # M_MMAP_MAX, M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> int:
    from tqdm.auto import tqdm

    from .analysis.pose import POSE_KEY, pose_distribution
    from .analysis.trust import ATTACK_IMAGES, OOD_SIZE, trust_sections
    from .checkpoint import SHIPPED, CheckpointError, load_model
    from .data.fashion import load_fashion

    parser = argparse.ArgumentParser(prog="python -m capsules.experiments", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help=f"a .safetensors checkpoint (default: {SHIPPED})")
    parser.add_argument("--data-dir", default=None, help="MNIST folder (default: $CAPSULES_DATA or the cache)")
    parser.add_argument("--json", default=None, help="write the results here (default: NAME.experiments.json "
                        "beside the checkpoint)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--sections", default="core", help="what to compute, comma-separated: core (the routing "
                        "experiments and robustness curves; a CNN: the curves), ood (is it a digit? outlier scores "
                        "against Fashion-MNIST, noise and blank images), adversarial (FGSM and PGD), pose (a "
                        "CapsNet's: how each pose value spreads over each class, for the pose view), or all. "
                        "Without core the others are merged into the existing results of these weights")
    parser.add_argument("--iterations", type=int, default=10, help="routing iterations of the traced pass")
    parser.add_argument("--robustness-size", type=int, default=500, help="test images in the robustness curves")
    parser.add_argument("--seed", type=int, default=0, help="seeds the robustness subset and the random coupling, "
                        "and the outlier sets' subsets, noise and bootstrap")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N test images (smoke runs)")
    parser.add_argument("--ood-size", type=int, default=OOD_SIZE, help="MNIST and Fashion-MNIST test images scored "
                        "as digits and outliers (a seeded subset of each)")
    parser.add_argument("--attack-images", type=int, default=ATTACK_IMAGES, help="the first N test images attacked")
    parser.add_argument("--attack-precision", default="bf16", choices=["bf16", "fp32"],
                        help="precision of the attacks' passes (bf16: twice as fast on a CPU with bf16 units)")
    parser.add_argument("--fashion-dir", default=None, help="Fashion-MNIST folder (default: $CAPSULES_FASHION or "
                        "Debian's /usr/share/datasets/fashion-mnist)")
    args = parser.parse_args(argv)
    for name in ("iterations", "robustness_size", "batch_size", "limit", "ood_size", "attack_images"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1, got {value}", file=sys.stderr)
            return 2
    sections = parse_sections(args.sections)
    if sections is None:
        print(f"error: --sections takes a comma-separated list of {', '.join(SECTIONS)} or all, got "
              f"{args.sections!r}", file=sys.stderr)
        return 2
    try:
        model = load_model(args.checkpoint, pick_device(args.device))
        images, labels = load_mnist("test", args.data_dir)
        fashion = load_fashion("test", args.fashion_dir)[0] if "ood" in sections else None
    except (CheckpointError, DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.limit is not None:
        images, labels = images[:args.limit], labels[:args.limit]
    keep_freed_memory()
    out = Path(args.json) if args.json else results_path(model.checkpoint_path)
    if "core" not in sections and read_results(out, model.checkpoint_path) is None:
        print(f"error: no results of these weights in {out} to merge {', '.join(sections)} into: run "
              f"python -m capsules.experiments --checkpoint {model.checkpoint_path} first, or add core to --sections",
              file=sys.stderr)
        return 1
    print(f"checkpoint: {model.checkpoint_path}  device: {describe(model.device)}  sections: {', '.join(sections)}")
    with tqdm(total=1000, desc="experiments", unit="") as bar:
        def progress(fraction: float, message: str) -> None:
            bar.set_postfix_str(message, refresh=False)
            bar.update(round(1000 * fraction) - bar.n)

        split = 0.2 if "core" in sections and len(sections) > 1 else (1.0 if "core" in sections else 0.0)
        results: dict = {}
        try:
            if "core" in sections and not isinstance(model, CapsNet):  # the baseline CNN: the robustness curves only
                results = robustness_experiments(model, images, labels, robustness_size=args.robustness_size,
                                                 seed=args.seed, batch_size=args.batch_size,
                                                 progress=_span(progress, 0.0, split))
            elif "core" in sections:
                results = run_experiments(model, images, labels, iterations=args.iterations,
                                          robustness_size=args.robustness_size, seed=args.seed,
                                          batch_size=args.batch_size, progress=_span(progress, 0.0, split))
            if "pose" in sections and isinstance(model, CapsNet):  # each pose value's spread over each class
                results[POSE_KEY] = pose_distribution(model, images, batch_size=2 * args.batch_size)
            trust = [s for s in sections if s in ("ood", "adversarial")]
            if trust:
                start = time.perf_counter()
                new = trust_sections(model, images, labels, fashion, sections=trust, ood_size=args.ood_size,
                                     attack_images=args.attack_images, seed=args.seed,
                                     precision=args.attack_precision, batch_size=args.batch_size,
                                     progress=_span(progress, split, 1.0))
                for section in new.values():
                    section.update(device=describe(model.device), run_seconds=time.perf_counter() - start,
                                   date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
                results.update(new)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    results = merge_results(out, model.checkpoint_path, results)
    _print_summary(results, sections)
    print(f"wrote {out}")
    return 0


# --------------------------------------------------------------------------------------------
# sections of the command line, merged into one results file

SECTIONS = ("core", "ood", "adversarial", "pose")


def parse_sections(text: str) -> list[str] | None:
    """``--sections``: a comma-separated subset of :data:`SECTIONS` (or ``all``), in that order;
    None when it names anything else or nothing."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    if names == ["all"]:
        return list(SECTIONS)
    if not names or any(n not in SECTIONS for n in names):
        return None
    return [s for s in SECTIONS if s in names]


def read_results(path: str | Path, checkpoint_path: str | Path | None) -> dict | None:
    """The results file at ``path`` when it is of this format and version and of the weights of
    ``checkpoint_path`` (its sha256), else None (as :func:`load_results`, for any path)."""
    try:
        results = json.loads(Path(path).read_text())
        sha = checkpoint_sha256(checkpoint_path) if checkpoint_path else None
    except (OSError, ValueError):
        return None
    if not isinstance(results, dict) or results.get("format") != FORMAT or results.get("version") != VERSION:
        return None
    return results if results.get("checkpoint_sha256") == sha else None


def merge_results(path: str | Path, checkpoint_path: str | Path | None, new: dict) -> dict:
    """Write ``new`` into the results file at ``path``: over the keys of the file there when it holds
    results of the same weights (read just before writing, so that another section merged
    meanwhile stays), else alone. Returns what was written."""
    results = {**(read_results(path, checkpoint_path) or {}), **new}
    save_results(results, path)
    return results


def _print_summary(results: dict, sections: list[str]) -> None:
    if "core" in sections and "iterations" not in results:
        print("robustness (mean accuracy over each curve): " + "  ".join(
            f"{kind}: {curve_mean(curve):.1f}%" for kind, curve in results["robustness"].items()))
    elif "core" in sections:
        print("accuracy by iterations: " + "  ".join(f"{k}: {a:.2f}%" for k, a in results["iterations"].items()))
        print("ablations: " + "  ".join(f"{k}: {a['accuracy']:.2f}% [{a['interval'][0]:.2f}, {a['interval'][1]:.2f}]"
                                         for k, a in results["ablations"].items()))
    if "ood" in sections:
        ood = results["ood"]
        print("AUROC against MNIST test: " + "  ".join(
            f"{key} {name} {v['auroc']:.3f} [{v['interval'][0]:.3f}, {v['interval'][1]:.3f}]"
            for key in ("fashion-mnist", "noise", "blank") for name, v in ood[key].items()))
    if "adversarial" in sections:
        adv = results["adversarial"]
        for method in ("fgsm", "pgd", "pgd_adaptive"):
            if method in adv:
                print(f"{method} accuracy: " + "  ".join(f"eps {e:g}: {a:.1f}%" for e, a in
                                                          zip(adv[method]["eps"], adv[method]["accuracy"])))
    if "seconds" in results and "core" in sections:
        print(f"time: {results['seconds']:.1f} s")
    for key in ("ood", "adversarial"):
        if key in sections:
            print(f"time, {key}: {results[key]['seconds']:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
