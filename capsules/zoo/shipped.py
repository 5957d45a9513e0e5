"""The shipped models (``checkpoints/``) as their JSONs describe them: :func:`list_shipped`, no
weights read; a newly shipped model appears by itself."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..analysis import training_iterations
from ..nn import BaselineCNN, CapsNet
from ..checkpoint import SHIPPED, CheckpointError, read_metadata
from ..stats import binomial_interval


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


