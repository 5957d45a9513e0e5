"""The paper's Table 1 beside the shipped models that match each row (:func:`table1`), with 95%
Wilson intervals and which measured rows are within the noise of each other."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from ..experiments import (intervals_overlap)
from .shipped import DATASET_NAMES, PENDING, Shipped, list_shipped


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


