"""Figures of the Models page: a model's learning curve, and the paper's Table 1 beside the
measured test errors with their 95% intervals. Plain functions of numbers (what
:mod:`capsules.zoo.cards` and :func:`capsules.zoo.table1` give), no Streamlit."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.figures.base import DIGIT_COLORS, ZERO, styled

TRAIN, HELD, TEST = DIGIT_COLORS[0], DIGIT_COLORS[1], DIGIT_COLORS[3]  # blue, orange, red
HELD_NAMES = {"test": "test", "val": "validation"}


def learning_curve_figure(curves: dict[str, tuple[Sequence[int], Sequence[float]]], held_out: str,
                          test_point: tuple[int, float] | None = None, title: str = "Learning curve",
                          height: int = 560) -> go.Figure:
    """Three panels over the epochs: accuracy (training batches, and the held-out set the run scored
    every epoch: ``held_out`` "test" or "val"), loss (the same two, log scale) and the learning
    rate (log scale). ``curves`` maps a record's key (``train_accuracy``, ``test_accuracy``,
    ``train_loss``, ``val_loss``, ``lr``, ...) to (epochs, values); a key it lacks is not drawn.
    ``test_point`` (epoch, accuracy %) marks the shipped weights' score on the full test set."""
    held = HELD_NAMES.get(held_out, held_out)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07, row_heights=[0.45, 0.33, 0.22],
                        subplot_titles=("Accuracy (%)", "Loss", "Learning rate"))
    lines = [(1, "train_accuracy", "training batches", TRAIN), (1, f"{held_out}_accuracy", held, HELD),
             (1, f"ema_{held_out}_accuracy", f"{held}, moving average", TEST),
             (2, "train_loss", "training batches", TRAIN), (2, f"{held_out}_loss", held, HELD),
             (3, "lr", "learning rate", ZERO)]
    shown = set()
    for row, key, name, color in lines:
        if key not in curves or not len(curves[key][0]):
            continue
        x, y = curves[key]
        fig.add_trace(go.Scatter(x=list(x), y=list(y), mode="lines+markers", name=name, legendgroup=name,
                                 showlegend=name not in shown and row != 3, line=dict(color=color, width=2),
                                 marker=dict(size=5),
                                 hovertemplate=f"epoch %{{x}}: %{{y:.4g}}<extra>{name}</extra>"), row=row, col=1)
        shown.add(name)
    if test_point is not None:
        epoch, accuracy = test_point
        fig.add_trace(go.Scatter(x=[epoch], y=[accuracy], mode="markers", name="shipped weights, full test set",
                                 marker=dict(color=TEST, size=12, symbol="star", line=dict(width=1, color=ZERO)),
                                 hovertemplate="epoch %{x}: %{y:.2f}% on the test set<extra>shipped</extra>"),
                      row=1, col=1)
    fig.update_yaxes(type="log", row=2, col=1)
    fig.update_yaxes(type="log", exponentformat="e", row=3, col=1)
    fig.update_xaxes(title_text="epoch", row=3, col=1)
    fig.update_annotations(font_size=12)
    return styled(fig, title, height, margin=dict(t=70))


def table1_figure(points: Sequence[dict], height: int | None = None,
                  title: str = "Test error: the paper's (diamond) and the shipped model's (dot, 95% interval)"
                  ) -> go.Figure:
    """One panel per data set; a row per Table 1 row and shipped model (``points``: dicts with
    ``dataset``, ``label``, ``paper`` (percent, or None) and ``error``, ``lo``, ``hi`` (the
    measured error and its 95% interval, percent; None for a row in training)). The paper's figure
    is a diamond, the measured error a dot with its interval."""
    datasets = list(dict.fromkeys(p["dataset"] for p in points))
    counts = [sum(p["dataset"] == d for p in points) for d in datasets]
    fig = make_subplots(rows=len(datasets), cols=1, row_heights=counts or [1], vertical_spacing=0.16,
                        subplot_titles=[f"{d}: test error (%)" for d in datasets])
    for row, dataset in enumerate(datasets, start=1):
        mine = [p for p in points if p["dataset"] == dataset]
        labels = [p["label"] for p in mine]
        paper = [p for p in mine if p["paper"] is not None]
        fig.add_trace(go.Scatter(x=[p["paper"] for p in paper], y=[p["label"] for p in paper], mode="markers",
                                 name="the paper", legendgroup="paper", showlegend=row == 1,
                                 marker=dict(symbol="diamond", size=11, color=ZERO),
                                 hovertemplate="%{y}: %{x:.2f}%<extra>the paper</extra>"), row=row, col=1)
        measured = [p for p in mine if p["error"] is not None]
        fig.add_trace(go.Scatter(
            x=[p["error"] for p in measured], y=[p["label"] for p in measured], mode="markers",
            name="measured, 95% interval", legendgroup="measured", showlegend=row == 1,
            marker=dict(size=10, color=TRAIN),
            error_x=dict(type="data", symmetric=False, array=[p["hi"] - p["error"] for p in measured],
                         arrayminus=[p["error"] - p["lo"] for p in measured], color=TRAIN, thickness=2, width=5),
            hovertemplate="%{y}: %{x:.2f}%<extra>measured</extra>"), row=row, col=1)
        fig.update_yaxes(type="category", categoryorder="array", categoryarray=labels[::-1], row=row, col=1)
        fig.update_xaxes(rangemode="tozero", row=row, col=1)
    fig.update_annotations(font_size=12)
    height = height or 120 + 34 * sum(counts) + 60 * len(datasets)
    return styled(fig, title, height, margin=dict(l=300, t=70))
