"""The results file: all experiments of a model (:func:`run_experiments`, :func:`robustness_experiments`)
as one JSON object beside its checkpoint, read back only for the very weights (sha256), and the
command line's sections merged into it."""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from pathlib import Path

import torch
from torch import Tensor

from ..analysis.transforms import ROBUSTNESS, TRANSFORMS
from ..device import describe
from ..nn import CapsNet
from .common import Progress, _percent, _report, _span
from .robustness import robustness_results
from .routing import coupling_ablations, routing_pass

FORMAT = "capsules.experiments"
VERSION = 1


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
    from ..checkpoint import atomic_write_json

    atomic_write_json(path, results)


def load_results(checkpoint_path: str | Path | None = None) -> dict | None:
    """The shipped results of a checkpoint (default: the shipped one), or None when there are none,
    they are unreadable or of another format, or they were computed for other weights (their
    ``checkpoint_sha256`` differs from the file's)."""
    from ..checkpoint import SHIPPED

    checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else SHIPPED
    return read_results(results_path(checkpoint_path), checkpoint_path)


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
    return one_convention(results) if results.get("checkpoint_sha256") == sha else None


def one_convention(results: dict) -> dict:
    """``results`` in the convention of :mod:`capsules.analysis.transforms`. Files written before it
    (their shear unit names torchvision) labelled rotation and shear with torchvision's signs,
    clockwise and ``x -= tan(shear) * y``: the same measurements, their values negated here."""
    if "torchvision" in (results.get("robustness_units") or {}).get("shear", ""):
        for kind in ("rotate", "shear"):
            if kind in results["robustness"]:
                results["robustness"][kind] = [[0.0 - v, a] for v, a in reversed(results["robustness"][kind])]
        results["robustness_units"] = {k: TRANSFORMS[k].unit for k in results["robustness"]}
    return results


def merge_results(path: str | Path, checkpoint_path: str | Path | None, new: dict) -> dict:
    """Write ``new`` into the results file at ``path``: over the keys of the file there when it holds
    results of the same weights (read just before writing, so that another section merged
    meanwhile stays), else alone. Returns what was written."""
    results = {**(read_results(path, checkpoint_path) or {}), **new}
    save_results(results, path)
    return results
