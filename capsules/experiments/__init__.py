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

The modules: :mod:`.routing` (iterations, dynamics, coupling rules), :mod:`.robustness` (the affine
curves, two models compared), :mod:`.results` (the results file, its sections), :mod:`.cli`
(the command line); the statistics (Wilson intervals, McNemar, the paired test) are
:mod:`capsules.stats`, the project's one place for them.

:func:`run_experiments` does all of it and returns the JSON object that the command line writes
and :func:`load_results` reads back for the checkpoint whose sha256 it records. For a model that
does not route (the baseline CNN) only the robustness curves apply: :func:`robustness_experiments`
writes them as a results file of their own (the command line picks it by the checkpoint's kind),
on the same seeded subset, so that the dashboard draws them beside a CapsNet's.
"""

from __future__ import annotations

from ..stats import (
    SIGNIFICANCE, accuracy_interval, intervals_overlap, mcnemar_p, mcnemar_verdict, paired_mean_p, wilson_interval,
)
from .cli import keep_freed_memory, main
from .common import Progress
from .results import (
    FORMAT, SECTIONS, VERSION, checkpoint_sha256, confusion_matrix, load_results, merge_results, misclassified,
    parse_sections, read_results, results_path, robustness_experiments, run_experiments, save_results,
)
from .robustness import (
    ROBUST_LEVEL, RobustnessDiff, compare_robustness, curve_mean, number_text,
    predict, robust_range, robustness, robustness_paired, robustness_pass, robustness_results, robustness_subset,
    same_subset, untransformed,
)
from .routing import (
    Ablation, RoutingPass, changed_from_k1, coupling_ablations, random_logits, route_fixed, routing_pass,
)

__all__ = [
    "keep_freed_memory", "main",
    "Ablation", "FORMAT", "Progress", "ROBUST_LEVEL", "RobustnessDiff", "RoutingPass",
    "SECTIONS", "SIGNIFICANCE", "VERSION", "accuracy_interval", "changed_from_k1",
    "checkpoint_sha256", "compare_robustness", "confusion_matrix", "coupling_ablations", "curve_mean",
    "intervals_overlap", "load_results", "mcnemar_p", "mcnemar_verdict", "merge_results", "misclassified",
    "number_text", "paired_mean_p", "parse_sections", "predict", "random_logits", "read_results", "results_path",
    "robust_range", "robustness", "robustness_experiments", "robustness_paired", "robustness_pass",
    "robustness_results", "robustness_subset", "route_fixed", "routing_pass", "run_experiments", "same_subset",
    "save_results", "untransformed", "wilson_interval",
]
