"""The shipped models (``checkpoints/``) and the paper's Table 1 beside what they measure.

A shipped model is ``<name>.safetensors`` with its JSON ``<name>.json`` beside it
(:mod:`capsules.checkpoint`, written by ``scripts/ship_checkpoint.py``). :func:`list_shipped`
lists them from their JSONs alone, no weights read: the kind (``capsnet``, ``cnn``: the JSON's
``format``), the data set, the two training options Table 1 varies (routing iterations and
reconstruction weight, from ``train_config``), the epochs trained (by every run that trained the
weights, when one started from another's: :func:`stages_of`), the test score and how the weights
are stored. A newly shipped model appears by itself.

:func:`table1` sets the paper's Table 1 (Sabour, Frosst & Hinton 2017: test error in percent of
the baseline CNN and of CapsNet routed with 1 or 3 iterations, with and without the reconstruction
loss; MNIST, and MultiMNIST for three of its rows) beside the shipped models that match each row:
their measured error with a 95% Wilson interval (:func:`capsules.evaluate.binomial_interval`), the
epochs and the hardware, and which measured rows are within the noise of each other (overlapping
intervals, :func:`capsules.experiments.intervals_overlap`). A row no shipped model matches yet is
marked as in training, never filled in. ``python scripts/table1.py`` prints it as markdown (the
docs/results.md), the dashboard's experiments page as a table.

:func:`routing_at_inference` asks the zoo the experiments page asks one model: does routing
matter at inference? From each shipped MNIST CapsNet's test-set experiments (the results file
beside it, :mod:`capsules.experiments`; nothing is evaluated), its accuracy with k = 1 (uniform
coupling), 3 and 10 routing iterations, and with random and class-mean coupling, and in words
how its own routing compares with the uniform coupling of k = 1, within the noise or beyond it.

:func:`robustness_against_cnn` sets the main CapsNet's robustness curves beside the baseline
CNN's, drawn on the same test digits (from their results files): per transform the range kept at
95% or more, the ends of the curve, the mean over it, the digits each model gets right at more of
the curve's points and a paired test of the difference of the means
(:func:`capsules.experiments.compare_robustness`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from .analysis import training_iterations
from .nn import BaselineCNN, CapsNet
from .checkpoint import SHIPPED, CheckpointError, read_metadata
from .evaluate import binomial_interval
from .experiments import (IDENTITY, ROBUST_LEVEL, SIGNIFICANCE, changed_from_k1, compare_robustness,
                          intervals_overlap, load_results, mcnemar_verdict, number_text, robust_range, same_subset,
                          untransformed, wilson_interval)

__all__ = ["CHECKPOINT_DIR", "COLUMNS", "DATASET_NAMES", "KIND_NAMES", "PAPER", "PENDING", "PaperRow", "Shipped",
           "Stage", "Table1", "Table1Row", "ROUTING_COLUMNS", "RobustnessAgainstCNN", "RoutingAtInference",
           "checkpoints_dir", "dataset_of", "list_shipped", "main_model", "robustness_against_cnn",
           "pretrained_on", "routing_at_inference", "stages_of", "table1"]

CHECKPOINT_DIR = "CAPSULES_CHECKPOINT_DIR"  # environment variable: the folder of shipped models
KIND_NAMES = {CapsNet.FORMAT: "capsnet", BaselineCNN.FORMAT: "cnn"}  # as ``python -m capsules.train --model``
DATASET_NAMES = {"mnist": "MNIST", "multimnist": "MultiMNIST"}
PENDING = "training"  # what a Table 1 row without a shipped model says in place of a figure


def checkpoints_dir() -> Path:
    """The folder of the shipped models: ``$CAPSULES_CHECKPOINT_DIR``, else ``checkpoints/``."""
    return Path(os.environ.get(CHECKPOINT_DIR) or SHIPPED.parent)


def dataset_of(info: dict) -> str:
    """The data set a checkpoint's JSON says it was trained on (``mnist`` when it does not say)."""
    return info.get("dataset") or (info.get("train_config") or {}).get("dataset", "mnist")


# --------------------------------------------------------------------------------------------
# the shipped models


@dataclass(frozen=True)
class Stage:
    """One run in the training of a shipped model's weights, as its JSON records it (None: not
    recorded). A run started from another's weights (``--init-from``) follows that one."""

    epochs: int | None
    train_seconds: float | None
    hardware: str | None

    @property
    def time(self) -> str:
        """"3.9 h on CPU: AMD EPYC, 2 threads"."""
        hours = f"{self.train_seconds / 3600:.1f} h" if self.train_seconds is not None else "time not recorded"
        return f"{hours} on {self.hardware}" if self.hardware else hours


MAX_STAGES = 32  # a longer chain of init_from records is not followed (a JSON that nests without end)


def stages_of(info: dict) -> tuple[Stage, ...]:
    """The runs that trained the weights ``info`` (a checkpoint's JSON) describes on its data set,
    the first first: those its ``init_from`` records name, each nested in the next, then its own.
    A run on another data set (the 28x28 MNIST CapsNet a MultiMNIST run warm-starts from) ends the
    chain: its epochs are not this data set's (:func:`pretrained_on` names it)."""
    chain, record = [], info
    while isinstance(record, dict) and len(chain) < MAX_STAGES and dataset_of(record) == dataset_of(info):
        chain.append(record)
        record = record.get("init_from")

    def number(d, key, type_):
        try:
            return type_(d[key]) if d.get(key) is not None else None
        except (TypeError, ValueError):
            return None

    return tuple(Stage(number(d, "epoch", int), number(d, "train_seconds", float),
                       d.get("hardware") if isinstance(d.get("hardware"), str) else None) for d in reversed(chain))


def pretrained_on(info: dict) -> str | None:
    """The checkpoint of another data set the weights started from (its file name without
    .safetensors), or None: the first ``init_from`` record in the chain whose data set differs."""
    record = info.get("init_from")
    for _ in range(MAX_STAGES):
        if not isinstance(record, dict):
            return None
        if dataset_of(record) != dataset_of(info):
            return Path(str(record.get("path", "?"))).stem
        record = record.get("init_from")
    return None


def _total(values: list) -> float | None:
    return None if any(v is None for v in values) else sum(values)


@dataclass(frozen=True)
class Shipped:
    """One shipped model as its JSON describes it. Figures the JSON lacks are None. A model
    trained further from another's weights (``--init-from``) counts the epochs and the time of
    every run that trained it (:attr:`stages`)."""

    name: str  # the file name without .safetensors: capsnet-mnist-r1
    path: Path  # the .safetensors file
    kind: str  # "capsnet" or "cnn"
    dataset: str  # "mnist" or "multimnist"
    iterations: int | None  # routing iterations r of training (a CapsNet)
    reconstruction_weight: float | None  # of training (a CapsNet); 0: no reconstruction loss
    epochs: int | None  # epochs trained, by every run that trained these weights (the last one is shipped)
    correct: int | None  # test examples right (MultiMNIST: pairs with both digits right)
    total: int | None  # test examples
    accuracy: float | None  # percent, as the JSON records it
    weights_dtype: str  # how the file stores the weights: fp32, fp16, bf16 or int8 (blockwise)
    hardware: str | None  # of the last run
    train_seconds: float | None  # of every run that trained these weights
    stages: tuple[Stage, ...] = ()  # those runs, the first first; () when not recorded
    pretrained: str | None = None  # the checkpoint of another data set the weights started from

    @classmethod
    def of(cls, path: str | os.PathLike, info: dict) -> Shipped:
        """The description of the checkpoint at ``path`` from its JSON ``info``; raises
        :class:`~capsules.checkpoint.CheckpointError` for a format that is no model kind."""
        path = Path(path)
        kind = KIND_NAMES.get(info.get("format"))
        if kind is None:
            raise CheckpointError(f"{path}: format {info.get('format')!r} is not a model kind "
                                  f"({', '.join(KIND_NAMES)})")
        trained = info.get("train_config") if isinstance(info.get("train_config"), dict) else {}
        iterations = weight = None
        if kind == "capsnet":
            iterations = training_iterations(info)
            if iterations is None and isinstance(info.get("config"), dict):
                iterations = info["config"].get("routing_iterations")
            weight = trained.get("reconstruction_weight")

        def number(key, type_):
            return type_(info[key]) if info.get(key) is not None else None

        stages = stages_of(info)
        epochs, seconds = _total([s.epochs for s in stages]), _total([s.train_seconds for s in stages])
        return cls(name=path.stem, path=path, kind=kind, dataset=dataset_of(info), iterations=iterations,
                   reconstruction_weight=None if weight is None else float(weight),
                   epochs=None if epochs is None else int(epochs),
                   correct=number("test_correct", int), total=number("test_total", int),
                   accuracy=number("test_accuracy", float), weights_dtype=info.get("weights_dtype", "fp32"),
                   hardware=info.get("hardware"), train_seconds=seconds, stages=stages,
                   pretrained=pretrained_on(info))

    @property
    def epochs_text(self) -> str:
        """The epochs trained: "29", or "44 (29 + 15)" for weights trained by two runs; "?" when not recorded."""
        if self.epochs is None:
            return "?"
        if len(self.stages) < 2:
            return str(self.epochs)
        return f"{self.epochs} ({' + '.join(str(s.epochs) for s in self.stages)})"

    @property
    def training_text(self) -> str:
        """How long and on what: "3.9 h on CPU: AMD EPYC, 2 threads", each run's, the first first
        ("…, then 2.4 h on …")."""
        if len(self.stages) < 2:
            return Stage(self.epochs, self.train_seconds, self.hardware).time
        return ", then ".join(s.time for s in self.stages)

    @property
    def reconstruction(self) -> bool | None:
        """Whether training used the reconstruction loss (None: not recorded, or not a CapsNet)."""
        return None if self.reconstruction_weight is None else self.reconstruction_weight > 0

    @property
    def errors(self) -> int | None:
        return None if self.correct is None or self.total is None else self.total - self.correct

    @property
    def error(self) -> float | None:
        """Test error, percent."""
        return None if self.errors is None or not self.total else 100.0 * self.errors / self.total

    @property
    def error_interval(self) -> tuple[float, float] | None:
        """95% Wilson interval of the test error, percent."""
        if self.errors is None:
            return None
        lo, hi = binomial_interval(self.errors, self.total)
        return 100.0 * lo, 100.0 * hi

    @property
    def recipe(self) -> str:
        """What Table 1 varies, in words: "r = 3, with reconstruction"; "baseline CNN"."""
        if self.kind == "cnn":
            return "baseline CNN"
        said = {True: "with reconstruction", False: "no reconstruction", None: "reconstruction not recorded"}
        start = f", from {self.pretrained}'s weights" if self.pretrained else ""
        return f"r = {self.iterations if self.iterations is not None else '?'}, {said[self.reconstruction]}{start}"

    @property
    def label(self) -> str:
        """One line for a picker: name, recipe, epochs, test accuracy."""
        parts = [self.recipe]
        if self.epochs is not None:
            parts.append(f"{self.epochs} epochs")
        if self.accuracy is not None:
            parts.append(f"{self.accuracy:.2f}%")
        return f"{self.name} · " + ", ".join(parts)

    @property
    def short_label(self) -> str:
        """What fits a sidebar picker (about 28 characters): "r3 + recon · 29 ep · 99.56%",
        "r1 no recon · 10 ep · 99.40%", "CNN · 10 ep · 99.61%"; :attr:`label` says it in full."""
        if self.kind == "cnn":
            parts = ["CNN"]
        else:
            recon = {True: "+ recon", False: "no recon", None: "recon ?"}[self.reconstruction]
            parts = [f"r{self.iterations if self.iterations is not None else '?'} {recon}"]
        if self.epochs is not None:
            parts.append(f"{self.epochs} ep")
        if self.accuracy is not None:
            parts.append(f"{self.accuracy:.2f}%")
        return " · ".join(parts)


def list_shipped(folder: str | os.PathLike | None = None) -> list[Shipped]:
    """The shipped models in ``folder`` (default :func:`checkpoints_dir`), by name: every
    ``*.safetensors`` with a readable JSON beside it that names a model kind. A file without one
    is not a shipped model and is left out (``load_model`` still reads it)."""
    folder = Path(folder) if folder is not None else checkpoints_dir()
    found = []
    for path in sorted(folder.glob("*.safetensors"), key=lambda p: p.stem):
        try:
            info = read_metadata(path)
            if info:
                found.append(Shipped.of(path, info))
        except CheckpointError:
            continue
    return found


# --------------------------------------------------------------------------------------------
# Table 1


@dataclass(frozen=True)
class PaperRow:
    """One row of the paper's Table 1: the model and its test errors (percent) as printed."""

    kind: str  # "cnn" or "capsnet"
    iterations: int | None  # routing iterations (a CapsNet)
    reconstruction: bool | None  # trained with the reconstruction loss (a CapsNet)
    mnist: float  # MNIST test error, %
    mnist_std: float | None  # its +- (standard deviation over three trials), when the paper gives one
    multimnist: float | None  # MultiMNIST test error, %, when the paper gives one

    @property
    def label(self) -> str:
        if self.kind == "cnn":
            return "baseline CNN"
        return f"CapsNet, r = {self.iterations}, {'with' if self.reconstruction else 'no'} reconstruction"

    def matches(self, model: Shipped) -> bool:
        """Whether ``model`` is what this row describes (a CapsNet by r and the reconstruction loss)."""
        if model.kind != self.kind:
            return False
        return self.kind == "cnn" or (model.iterations == self.iterations and model.reconstruction == self.reconstruction)

    def error(self, dataset: str) -> float | None:
        return self.mnist if dataset == "mnist" else self.multimnist


# Sabour, Frosst & Hinton (2017), Table 1: test error (%), single model.
PAPER = (
    PaperRow("cnn", None, None, 0.39, None, 8.1),
    PaperRow("capsnet", 1, False, 0.34, 0.032, None),
    PaperRow("capsnet", 1, True, 0.29, 0.011, 7.5),
    PaperRow("capsnet", 3, False, 0.35, 0.036, None),
    PaperRow("capsnet", 3, True, 0.25, 0.005, 5.2),
)


@dataclass(frozen=True)
class Table1Row:
    """A row of the paper's Table 1 on one data set beside one shipped model (None: none yet)."""

    paper: PaperRow
    dataset: str
    model: Shipped | None

    @property
    def paper_error(self) -> str:
        error = self.paper.error(self.dataset)
        if error is None:
            return "–"
        std = f" ± {self.paper.mnist_std:g}" if self.dataset == "mnist" and self.paper.mnist_std else ""
        return f"{error:g}%{std}"

    def cells(self) -> dict[str, str]:
        """The row as text, by column."""
        m = self.model
        row = {"Table 1 row": self.paper.label, "data set": DATASET_NAMES.get(self.dataset, self.dataset),
               "paper: error": self.paper_error}
        if m is None:
            return {**row, "this project: model": PENDING, "error [95% interval]": "–", "epochs": "–",
                    "training": "–"}
        if m.error is None:
            measured = "not recorded"
        else:
            lo, hi = m.error_interval
            measured = f"{m.error:.2f}% [{lo:.2f}, {hi:.2f}] ({m.errors}/{m.total:,})"
        return {**row, "this project: model": m.name, "error [95% interval]": measured, "epochs": m.epochs_text,
                "training": m.training_text}


COLUMNS = ("Table 1 row", "data set", "paper: error", "this project: model", "error [95% interval]", "epochs",
           "training")


@dataclass(frozen=True)
class Table1:
    """The paper's Table 1 beside the shipped models; :attr:`noise` says which measured rows are
    within the noise of each other."""

    rows: tuple[Table1Row, ...]

    def measured(self, dataset: str) -> list[Shipped]:
        return [r.model for r in self.rows if r.dataset == dataset and r.model is not None and r.model.error is not None]

    def pairs(self, dataset: str) -> tuple[list[tuple[Shipped, Shipped]], list[tuple[Shipped, Shipped]]]:
        """The pairs of measured models on ``dataset``: (within the noise: 95% intervals overlap,
        beyond it: apart)."""
        within, beyond = [], []
        for a, b in combinations(self.measured(dataset), 2):
            (within if intervals_overlap(a.error_interval, b.error_interval) else beyond).append((a, b))
        return within, beyond

    @property
    def noise(self) -> str:
        """Which measured rows are within the noise of each other, per data set, in sentences."""
        sentences = []
        for dataset in dict.fromkeys(r.dataset for r in self.rows):
            name, models = DATASET_NAMES.get(dataset, dataset), self.measured(dataset)
            if len(models) < 2:
                only = f"one measured row ({models[0].name})" if models else "no measured row"
                sentences.append(f"{name}: {only}, nothing to compare yet.")
                continue
            within, beyond = self.pairs(dataset)
            if not beyond:
                which = "both" if len(models) == 2 else f"all {len(models)}"
                totals = {m.total for m in models}
                of = f" of {totals.pop():,} test images" if len(totals) == 1 else ""
                sentences.append(f"{name}: the 95% intervals of {which} measured rows "
                                 f"({', '.join(m.name for m in models)}) overlap{'' if len(models) == 2 else ' pairwise'}: "
                                 f"every difference between them is within the noise{of}.")
                continue

            def row(m):
                return f"{m.name} ({m.error:.2f}%)"

            def listed(pairs):  # the pairs of one model in a run as "a and each of b, c"
                groups = {}
                for a, b in pairs:
                    groups.setdefault(a.name, (a, []))[1].append(b)
                return "; ".join(f"{row(a)} and {'each of ' if len(bs) > 1 else ''}{', '.join(map(row, bs))}"
                                 for a, bs in groups.values())

            paired = {m.name for pair in within for m in pair}
            close = [m.name for m in models if m.name in paired]  # in the table's order
            if len(close) > 2 and len(within) == len(close) * (len(close) - 1) // 2:  # all of them, pairwise
                rest = f" Within the noise: the intervals of {', '.join(close)} overlap pairwise."
            elif within:
                rest = f" Within the noise (intervals overlap): {listed(within)}."
            else:
                rest = " No two measured rows are within the noise of each other."
            sentences.append(f"{name}: beyond the noise (95% intervals apart): {listed(beyond)}.{rest}")
        return " ".join(sentences)

    def records(self) -> list[dict[str, str]]:
        """The rows as text, by column (:data:`COLUMNS`): for a dataframe or :meth:`markdown`."""
        return [r.cells() for r in self.rows]

    def markdown(self) -> str:
        """The table as a GitHub markdown table."""
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(rec[c].replace("|", "\\|") for c in COLUMNS) + " |" for rec in self.records()]
        return "\n".join(lines)


def table1(models: list[Shipped] | None = None) -> Table1:
    """Table 1 beside ``models`` (default: :func:`list_shipped`): on MNIST every row of the paper,
    once per shipped model it matches (fewer epochs first, then by name) or once marked :data:`PENDING`; on another data
    set (MultiMNIST) only the rows a shipped model matches. A model no row matches is left out."""
    models = list_shipped() if models is None else models
    datasets = ["mnist", *sorted({m.dataset for m in models} - {"mnist"})]
    rows = []
    for dataset in datasets:
        for paper in PAPER:
            found = sorted((m for m in models if m.dataset == dataset and paper.matches(m)),
                           key=lambda m: (m.epochs or 0, m.name))  # the zoo's common budget before longer runs
            if found:
                rows += [Table1Row(paper, dataset, m) for m in found]
            elif dataset == "mnist":
                rows.append(Table1Row(paper, dataset, None))
    return Table1(tuple(rows))


# ------------------------------------------------------------------- routing at inference, per model

ROUTING_KS = (1, 3, 10)  # routing iterations at inference shown per model (k = 1: uniform coupling)
ROUTING_COLUMNS = ("model", "trained with", "epochs", *(f"k = {k}" + (" (uniform c)" if k == 1 else "")
                                                         for k in ROUTING_KS), "random c", "class-mean c")


@dataclass(frozen=True)
class RoutingAtInference:
    """Each shipped MNIST CapsNet with its test-set experiments (``results``, as
    :func:`capsules.experiments.load_results` reads them), in the order of :func:`routing_at_inference`."""

    models: tuple[tuple[Shipped, dict], ...]

    @staticmethod
    def correct(results: dict, k: int) -> int:
        """Test images right when routing with ``k`` iterations at inference."""
        return int(results["iterations_correct"][str(k)])

    def records(self) -> list[dict[str, str]]:
        """Accuracy in percent per column (:data:`ROUTING_COLUMNS`); the model's own r is marked "(own)"."""
        rows = []
        for m, res in self.models:
            n = res["test_images"]
            row = {"model": m.name, "trained with": m.recipe, "epochs": "–" if m.epochs is None else m.epochs_text}
            for k, column in zip(ROUTING_KS, ROUTING_COLUMNS[3:]):
                row[column] = f"{100 * self.correct(res, k) / n:.2f}%" + (" (own)" if k == m.iterations else "")
            row["random c"] = f"{res['ablations']['random']['accuracy']:.2f}%"
            row["class-mean c"] = f"{res['ablations']['class_mean']['accuracy']:.2f}%"
            rows.append(row)
        return rows

    def markdown(self) -> str:
        lines = ["| " + " | ".join(ROUTING_COLUMNS) + " |", "|" + "---|" * len(ROUTING_COLUMNS)]
        lines += ["| " + " | ".join(rec[c] for c in ROUTING_COLUMNS) + " |" for rec in self.records()]
        return "\n".join(lines)

    def against_uniform(self, group: list[tuple[Shipped, dict]], k: int) -> str:
        """For ``group``: routing with ``k`` iterations against uniform coupling (k = 1), per model
        in points, how often routing got more test images right, and the noise. Both are scored on
        the same images, so the noise is judged on the predictions that changed, by an exact
        McNemar test (beyond it when p < 0.05); for results that lack them (computed before they
        were recorded), by the 95% Wilson intervals of the two figures (apart or overlapping)."""
        gains = [100 * (self.correct(res, k) - self.correct(res, 1)) / res["test_images"] for _, res in group]
        points = ", ".join(f"{g:+.2f}".replace("-", "\u2212") for g in gains)
        head = f"{points} points (routing ahead in {sum(g > 0 for g in gains)} of {len(group)})"
        pairs = [changed_from_k1(res, k) for _, res in group]
        if all(p is not None for p in pairs):
            ps, beyond = zip(*(mcnemar_verdict(*p) for p in pairs))
            apart = [m.name for (m, _), b in zip(group, beyond) if b]
            head += ("; changed predictions, right \u2192 wrong / wrong \u2192 right: "
                     + ", ".join(f"{a}/{b}" for a, b in pairs)
                     + " (exact McNemar p = " + ", ".join(f"{p:.2g}" for p in ps) + ")")
            test = f"p < {SIGNIFICANCE:g}", f"p \u2265 {SIGNIFICANCE:g}"
        else:
            apart = [m.name for m, res in group
                     if not intervals_overlap(*(wilson_interval(self.correct(res, kk), res["test_images"])
                                                for kk in (k, 1)))]
            test = "95% intervals apart", "95% intervals overlap"
        within = [m.name for m, _ in group if m.name not in apart]
        if not apart:
            noise = f"{'the difference is' if len(group) == 1 else 'every difference is'} within the noise ({test[1]})"
        else:
            noise = f"beyond the noise ({test[0]}) for {', '.join(apart)}" + \
                (f", within it for {', '.join(within)}" if within else "")
        return f"{head}; {noise}"

    @property
    def summary(self) -> str:
        """:attr:`findings` in one paragraph."""
        return " ".join(self.findings)

    @property
    def findings(self) -> list[str]:
        """Per training r, two sentences: each model's own routing against uniform coupling
        (:meth:`against_uniform`; for r = 1, where its own routing is uniform coupling, k = 3
        instead), then k = 10 against k = 1."""
        if not self.models:
            return ["No shipped MNIST CapsNet has its test-set experiments yet."]
        sentences = []
        for r in sorted({m.iterations for m, _ in self.models if m.iterations is not None}):
            group = [(m, res) for m, res in self.models if m.iterations == r]
            first = (f"own routing (k = {r}) against uniform coupling (k = 1): {self.against_uniform(group, r)}"
                     if r > 1 else f"k = 3 at inference, more than trained with, against their own k = 1: "
                                   f"{self.against_uniform(group, 3)}")
            sentences.append(f"Trained with r = {r} ({', '.join(m.name for m, _ in group)}): {first}. "
                             f"k = 10 against k = 1: {self.against_uniform(group, max(ROUTING_KS))}.")
        return sentences


def routing_at_inference(models: list[Shipped] | None = None) -> RoutingAtInference:
    """The shipped MNIST CapsNets (default: :func:`list_shipped`) whose experiments results are
    beside them and belong to their weights, ordered as Table 1 (r, then reconstruction, then
    fewer epochs first, then name); a model without results is left out."""
    models = list_shipped() if models is None else models
    found = []
    for m in models:
        if m.kind == "capsnet" and m.dataset == "mnist":
            results = load_results(m.path)
            if results is not None and "iterations_correct" in results:  # a CapsNet's, not robustness only
                found.append((m, results))
    found.sort(key=lambda p: (p[0].iterations or 0, bool(p[0].reconstruction), p[0].epochs or 0, p[0].name))
    return RoutingAtInference(tuple(found))


# ------------------------------------------------------------------- robustness against the CNN

TRANSFORM_NAMES = {"rotate": "rotation", "scale": "scale", "shear": "shear", "shift_x": "horizontal shift"}
TRANSFORM_UNITS = {"rotate": "degrees, counter-clockwise", "scale": "about the centre", "shear": "degrees, along x",
                   "shift_x": "pixels"}


@dataclass(frozen=True)
class RobustnessAgainstCNN:
    """The main CapsNet's robustness results and, when one is shipped with curves on the same
    digits, the baseline CNN's (:func:`robustness_against_cnn`)."""

    capsnet: tuple[Shipped, dict]
    cnn: tuple[Shipped, dict] | None

    def _kept(self, curve: list, kind: str) -> str:
        found = robust_range(curve, IDENTITY[kind])
        return "none" if found is None else f"{number_text(found[0])} \u2026 {number_text(found[1])}"

    @staticmethod
    def _ends(curve: list) -> str:
        (v0, a0), (v1, a1) = curve[0], curve[-1]
        return f"{a0:.1f}% at {number_text(v0)}, {a1:.1f}% at {number_text(v1)}"

    def markdown(self) -> str:
        """One row per transform: its range, then per model the values kept at 95% or more and the
        accuracy at both ends, then (with the CNN) the mean over the curve of each, the digits each
        gets right at more of the points, and the p of the paired test of the means."""
        (_, res), runs = self.capsnet, [self.capsnet] + ([self.cnn] if self.cnn else [])
        columns = ["transform", "range",
                   *(f"{n.name}: \u2265 {ROBUST_LEVEL:g}% for" for n, _ in runs),
                   *(f"{n.name}: at the ends" for n, _ in runs)]
        if self.cnn:
            columns += ["mean over the curve", "digits right at more points: CapsNet / CNN (paired test)"]
        diffs = {d.kind: d for d in compare_robustness(res, self.cnn[1])} if self.cnn else {}
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for kind, curve in res["robustness"].items():
            unit = TRANSFORM_UNITS.get(kind)
            cells = [TRANSFORM_NAMES.get(kind, kind) + (f" ({unit})" if unit else ""),
                     f"{number_text(curve[0][0])} \u2026 {number_text(curve[-1][0])}"]
            cells += [self._kept(r["robustness"][kind], kind) for _, r in runs]
            cells += [self._ends(r["robustness"][kind]) for _, r in runs]
            if self.cnn:
                d = diffs.get(kind)
                cells += ["\u2013", "\u2013"] if d is None else [
                    f"{d.mean_a:.1f}% / {d.mean_b:.1f}%",
                    "not recorded" if d.paired is None else
                    f"{d.paired[0]} / {d.paired[1]} (p = {d.p:.2g})"]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    @property
    def summary(self) -> str:
        """The comparison in one paragraph: which transforms differ beyond the noise."""
        m, res = self.capsnet
        n, seed = res.get("robustness_subset"), res.get("robustness_seed")
        if self.cnn is None:
            return (f"{m.name} alone, on {n:,} test digits drawn with seed {seed}: no baseline CNN is shipped "
                    "with robustness curves on the same digits yet.")
        cnn, theirs = self.cnn
        diffs = compare_robustness(res, theirs)
        head = (f"{m.name} against {cnn.name} on the same {n:,} test digits (seed {seed}). Each digit is right at "
                "some of a curve's points for each model; a paired z-test on those per-digit counts judges the "
                f"difference of the mean accuracies over the curve (beyond the noise when p < {SIGNIFICANCE:g}). ")
        if any(d.paired is None for d in diffs):
            return head + "The per-image counts of one of them are not recorded: the difference is not tested."
        ahead = [d for d in diffs if d.beyond and d.mean_a > d.mean_b]
        behind = [d for d in diffs if d.beyond and d.mean_a < d.mean_b]
        within = [d for d in diffs if not d.beyond]

        def names(ds):
            return ", ".join(f"{TRANSFORM_NAMES.get(d.kind, d.kind)} ({d.mean_a:.1f}% against {d.mean_b:.1f}%, "
                             f"p = {d.p:.2g})" for d in ds)

        parts = []
        if ahead:
            parts.append(f"the CapsNet is ahead beyond the noise under {names(ahead)}")
        if behind:
            parts.append(f"the CNN is ahead beyond the noise under {names(behind)}")
        if within:
            parts.append(f"the difference is within the noise under {names(within)}")
        text = "; ".join(parts)
        start = untransformed(res, theirs)
        level = "" if start is None else (
            f" Untransformed, these digits score {start[0]:.1f}% for {m.name} and {start[1]:.1f}% for {cnn.name}: "
            "part of any gap under the transforms is the gap the two models start from.")
        return head + text[0].upper() + text[1:] + "." + level


def main_model(models: list[Shipped] | None = None) -> tuple[Shipped, dict] | None:
    """The main shipped CapsNet (``checkpoints/capsnet-mnist``) with its test-set experiments;
    None when it is not shipped or has no results."""
    models = list_shipped() if models is None else models
    main = next((m for m in models if m.path.name == SHIPPED.name and m.kind == "capsnet"), None)
    results = load_results(main.path) if main is not None else None
    return None if results is None else (main, results)


def robustness_against_cnn(models: list[Shipped] | None = None,
                           main: tuple[Shipped, dict] | None = None) -> RobustnessAgainstCNN | None:
    """The main shipped CapsNet (``main``, else :func:`main_model`) with its results, beside the
    first shipped MNIST baseline CNN (by name) whose robustness curves were drawn on the same
    digits; None when the main CapsNet has no results."""
    models = list_shipped() if models is None else models
    found = main if main is not None else main_model(models)
    if found is None or "robustness" not in found[1]:
        return None
    main, results = found
    cnn = None
    for m in sorted(models, key=lambda m: m.name):
        if m.kind == "cnn" and m.dataset == "mnist":
            theirs = load_results(m.path)
            if theirs is not None and same_subset(results, theirs):
                cnn = (m, theirs)
                break
    return RobustnessAgainstCNN((main, results), cnn)
