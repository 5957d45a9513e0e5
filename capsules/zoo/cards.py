"""The story of each shipped model, from its JSON: what the dashboard's Models page tells.

:func:`model_card` reads what :class:`Shipped` already describes and, from the same JSON, the
architecture (in words, from the saved ``config``) with the parameter count (the model built on
PyTorch's ``meta`` device from that config: no weights read, no memory), each run that trained
the weights (its recipe from ``train_config``, its epochs, time, hardware and precision, and the
commands that ran it: the start, then every ``--resume``), the command that shipped it, and the
learning curve the training kept: ``learning_curve``, one record a epoch of the last run as
``capsules.train`` logs it (``lr``, ``train_loss``, ``train_accuracy``, and the held-out figures
``test_*``, or ``val_*`` for a run with a validation split; MultiMNIST adds ``*_error``), with
the shipped weights' own test score as the curve's test point. A JSON written before the training
kept its curve has none: :attr:`ModelCard.curve` is empty and the page says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checkpoint import KINDS
from ..nn import BaselineCNN, CapsNet
from .shipped import MAX_STAGES, Shipped, dataset_of

# What a run's recipe shows, from its train_config, in this order (an option it lacks is left out).
RECIPE = ("dataset", "epochs", "batch_size", "lr", "lr_decay", "warmup_steps", "iterations", "reconstruction_weight",
          "shift", "ema_decay", "freeze", "freeze_epochs", "validation", "train_subset", "seed")
OFF = ("warmup_steps", "ema_decay", "freeze_epochs", "validation", "train_subset")  # left out when 0: not used
HELD_OUT = ("test", "val")  # the prefixes of a learning curve's held-out figures


@dataclass(frozen=True)
class Run:
    """One run that trained a shipped model's weights, as its JSON records it (None: not recorded)."""

    dataset: str
    epochs: int | None
    seconds: float | None
    hardware: str | None
    precision: str | None
    recipe: dict  # the options of RECIPE its train_config records, with their values
    commands: tuple[str, ...]  # how it started, then each resume

    @property
    def recipe_text(self) -> str:
        """"epochs 50, batch_size 128, lr 0.001, …"."""
        return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.recipe.items()
                         if v not in ("", None) and not (k in OFF and not v))


def _runs(info: dict) -> tuple[Run, ...]:
    """Every run whose weights the JSON ``info`` describes, the first first (``init_from``
    records nest the earlier ones), those of other data sets included (a warm start)."""
    chain, record = [], info
    while isinstance(record, dict) and len(chain) < MAX_STAGES:
        chain.append(record)
        record = record.get("init_from")
    runs = []
    for d in reversed(chain):
        config = d.get("train_config") if isinstance(d.get("train_config"), dict) else {}
        commands = d.get("commands") or ([d["command"]] if d.get("command") else [])
        runs.append(Run(dataset=dataset_of(d), epochs=d.get("epoch"), seconds=d.get("train_seconds"),
                        hardware=d.get("hardware"), precision=d.get("precision"),
                        recipe={k: config[k] for k in RECIPE if k in config},
                        commands=tuple(str(c) for c in commands)))
    return tuple(runs)


def parameters(info: dict) -> int | None:
    """The parameter count of the model a checkpoint's JSON describes, from its ``config`` alone
    (built on the ``meta`` device); None when the JSON has no usable config."""
    kind = KINDS.get(info.get("format"))
    try:
        config = kind.CONFIG.from_dict(info["config"])
        with torch.device("meta"):
            model = kind(config)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    return sum(p.numel() for p in model.parameters())


def architecture(info: dict) -> str:
    """The layers of the model a checkpoint's JSON describes, in one line."""
    c = info.get("config") if isinstance(info.get("config"), dict) else {}
    try:
        if info.get("format") == CapsNet.FORMAT:
            side = c["image_size"]
            grid = (side - c["conv1_kernel"] + 1 - c["primary_kernel"]) // c["primary_stride"] + 1
            caps = c["primary_types"] * grid * grid
            hidden = "-".join(str(h) for h in c["decoder_hidden"])
            return (f"{side}×{side} input → Conv1 {c['conv1_channels']} × {c['conv1_kernel']}×{c['conv1_kernel']} → "
                    f"PrimaryCaps {c['primary_types']} types × {grid}×{grid} ({caps:,} capsules, {c['primary_dim']}D; "
                    f"{c['primary_kernel']}×{c['primary_kernel']}, stride {c['primary_stride']}) → routing "
                    f"(r = {c['routing_iterations']}) → DigitCaps {c['n_classes']} × {c['digit_dim']}D → decoder "
                    f"{hidden}-{side * side}")
        if info.get("format") == BaselineCNN.FORMAT:
            side, k = c["image_size"], c["conv_kernel"]
            convs = " → ".join(f"conv {n} × {k}×{k}" for n in c["conv_channels"])
            fcs = " → ".join(f"fc {n}" for n in c["fc_hidden"])
            return f"{side}×{side} input → {convs} → {fcs} (dropout {c['dropout']:g}) → {c['n_classes']} logits"
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        pass
    return "not recorded"


@dataclass(frozen=True)
class ModelCard:
    """A shipped model's story (:func:`model_card`)."""

    model: Shipped
    architecture: str
    parameters: int | None
    runs: tuple[Run, ...]  # the first first; the last made the shipped weights
    ship_command: str | None  # the command that shipped them, when the JSON says from where
    curve: tuple[dict, ...]  # the last run's learning curve, one record a epoch; () when not kept
    weights_average: bool  # the shipped weights are the run's moving average of its weights

    @property
    def held_out(self) -> str | None:
        """What the curve scores each epoch on: "test", "val", or None (no curve)."""
        return next((h for h in HELD_OUT if self.curve and f"{h}_accuracy" in self.curve[0]), None)

    @property
    def first_epoch(self) -> int:
        """The epochs trained before the curve's run on the same data set (its epoch 1 is the next)."""
        earlier = [r.epochs or 0 for r in self.runs[:-1] if r.dataset == self.model.dataset]
        return sum(earlier)

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """The curve's ``key`` by epoch (counting the earlier runs' epochs): (epochs, values), the
        records that lack it left out."""
        found = [(self.first_epoch + int(r["epoch"]), float(r[key])) for r in self.curve
                 if r.get(key) is not None and r.get("epoch") is not None]
        return [e for e, _ in found], [v for _, v in found]

    @property
    def test_point(self) -> tuple[int, float] | None:
        """The shipped weights on the full test set: (epoch, accuracy in percent)."""
        m = self.model
        return None if m.epochs is None or m.accuracy is None else (m.epochs, m.accuracy)


def ship_command(model: Shipped, info: dict) -> str | None:
    """``python -m capsules.ship SOURCE`` (and ``--name`` for a variant) as it shipped the weights,
    when the JSON names the source (``shipped_from``)."""
    source = info.get("shipped_from")
    if not source:
        return None
    default = f"{model.kind}-{model.dataset}"
    return f"python -m capsules.ship {source}" + ("" if model.name == default else f" --name {model.name}")


def model_card(model: Shipped, info: dict) -> ModelCard:
    """The card of the shipped ``model`` from its JSON ``info``."""
    curve = info.get("learning_curve")
    curve = tuple(r for r in curve if isinstance(r, dict)) if isinstance(curve, list) else ()
    return ModelCard(model=model, architecture=architecture(info), parameters=parameters(info), runs=_runs(info),
                     ship_command=ship_command(model, info), curve=curve,
                     weights_average=isinstance(info.get("weights_average"), dict))
