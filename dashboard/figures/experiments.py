"""Figures of the test-set experiments page: accuracy by routing iterations, routing dynamics,
coupling ablations, robustness curves and the confusion matrix, with 95% intervals as error bars."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from capsules.analysis.transforms import TRANSFORMS
from dashboard.figures.base import ZERO, styled

# --------------------------------------------------------------------------------------------
# test-set experiments (capsules.experiments): figures of one results file, or of several models


MODEL_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")  # one per model compared


def _error_bars(values: np.ndarray, intervals: np.ndarray) -> dict:
    """Plotly asymmetric error bars from ``intervals`` (N, 2) of lower and upper bounds."""
    return dict(type="data", symmetric=False, array=intervals[:, 1] - values,
                arrayminus=values - intervals[:, 0], thickness=1.2, width=4)


def _mark_iteration(fig: go.Figure, k: int, cols: int) -> None:
    """A dotted vertical line at iteration ``k`` in every panel (the figure's title says what it is:
    a label over the plot would collide with the panel titles)."""
    for col in range(1, cols + 1):
        fig.add_vline(x=k, line=dict(color=ZERO, dash="dot", width=1.5), row=1, col=col)


def _log_ticks(values: np.ndarray) -> list[float]:
    """1, 2, 5 x 10^e ticks spanning positive ``values``, one below and one above them."""
    lo, hi = float(np.min(values)), float(np.max(values))
    ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
             for m in (1, 2, 5)]
    below = [t for t in ticks if t <= lo][-1:]
    above = [t for t in ticks if t >= hi][:1]
    return below + [t for t in ticks if lo < t < hi] + above


def iterations_figure(accuracy: np.ndarray, intervals: np.ndarray, margins: np.ndarray,
                      trained: int | None = None, height: int = 360, title: str | None = None) -> go.Figure:
    """Left: test accuracy (%) when routing with k iterations, ``accuracy`` (K,) with its 95%
    ``intervals`` (K, 2) as error bars; right: the mean margin (longest minus second-longest
    capsule length), ``margins`` (K,). k = 1 is uniform coupling. A dotted line marks the ``r``
    the model was trained with (the title says so)."""
    accuracy, margins = np.asarray(accuracy, dtype=float), np.asarray(margins, dtype=float)
    intervals = np.asarray(intervals, dtype=float)
    k = np.arange(1, accuracy.shape[0] + 1)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=(
        "Test accuracy (%), 95% intervals", "Mean margin |v|<sub>1st</sub> − |v|<sub>2nd</sub>"))
    fig.add_trace(go.Scatter(x=k, y=accuracy, mode="lines+markers", name="accuracy", showlegend=False,
                             line=dict(color=MODEL_COLORS[0], width=2), error_y=_error_bars(accuracy, intervals),
                             customdata=intervals,
                             hovertemplate="k = %{x}: %{y:.2f}% [%{customdata[0]:.2f}, %{customdata[1]:.2f}]"
                                           "<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=k, y=margins, mode="lines+markers", name="mean margin", showlegend=False,
                             line=dict(color=MODEL_COLORS[1], width=2),
                             hovertemplate="k = %{x}: mean margin %{y:.3f}<extra></extra>"), row=1, col=2)
    for col in (1, 2):
        fig.update_xaxes(title_text="routing iterations k", tickmode="array", tickvals=list(k),
                         range=[0.6, k[-1] + 0.4], row=1, col=col)
    fig.update_yaxes(title_text="accuracy (%)", ticksuffix="", row=1, col=1)
    fig.update_yaxes(title_text="mean margin", rangemode="tozero", row=1, col=2)
    if trained is not None:
        _mark_iteration(fig, trained, 2)
    fig.update_annotations(font_size=12)
    title = title or (f"Routing with k = 1 … {k[-1]} iterations at inference, whole test set"
                      + (f" (dotted: r = {trained}, as trained)" if trained is not None else ""))
    return styled(fig, title, height, margin=dict(t=72))


def dynamics_figure(logit_change: np.ndarray, entropy: np.ndarray, changed: np.ndarray,
                    trained: int | None = None, uniform_entropy: float = float(np.log(10)), height: int = 340,
                    title: str | None = None) -> go.Figure:
    """Three panels over the iterations t = 1 … K: the mean change of the routing logits
    |b(t+1) − b(t)| on a log scale (the paper's Appendix A), the mean routing entropy of iteration t's
    coupling (nats; a dotted line at ``uniform_entropy`` = ln 10, uniform coupling), and the share
    (%) of images whose prediction with k = t differs from the k = 1 prediction."""
    panels = (np.asarray(logit_change, dtype=float), np.asarray(entropy, dtype=float),
              np.asarray(changed, dtype=float))
    t = np.arange(1, panels[0].shape[0] + 1)
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.09, subplot_titles=(
        "Mean |b(t+1) − b(t)| (log scale)", "Routing entropy (nats)", "Predictions ≠ k = 1 (%)"))
    hovers = ("t = %{x}: mean |Δb| = %{y:.3e}", "t = %{x}: entropy %{y:.5f} nats",
              "k = %{x}: %{y:.2f}% of predictions differ from k = 1")
    for col, (values, hover) in enumerate(zip(panels, hovers), start=1):
        fig.add_trace(go.Scatter(x=t, y=values, mode="lines+markers", showlegend=False,
                                 line=dict(color=MODEL_COLORS[col - 1], width=2),
                                 hovertemplate=hover + "<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text="routing iteration t" if col < 3 else "routing iterations k",
                         tickmode="array", tickvals=list(t), range=[0.6, t[-1] + 0.4], row=1, col=col)
    fig.add_hline(y=uniform_entropy, line=dict(color=ZERO, dash="dot", width=1), row=1, col=2)
    fig.add_annotation(x=t[-1], xref="x2", y=uniform_entropy, yref="y2", xanchor="right", yanchor="bottom",
                       text=f"uniform: ln 10 = {uniform_entropy:.4f}", showarrow=False, font=dict(size=10))
    ticks = _log_ticks(panels[0][panels[0] > 0]) if (panels[0] > 0).any() else [1e-3, 1e-2]
    fig.update_yaxes(type="log", tickmode="array", tickvals=ticks, ticktext=[f"{v:.0e}" for v in ticks],
                     range=[math.log10(ticks[0]), math.log10(ticks[-1])], title_text="mean |Δb|", row=1, col=1)
    fig.update_yaxes(title_text="nats", tickformat=".3f", row=1, col=2)
    fig.update_yaxes(title_text="% of test images", rangemode="tozero", row=1, col=3)
    if trained is not None:
        _mark_iteration(fig, trained, 3)
    fig.update_annotations(font_size=12)
    title = title or ("Routing dynamics per iteration, mean over the test set"
                      + (f" (dotted: r = {trained}, as trained)" if trained is not None else ""))
    return styled(fig, title, height, margin=dict(t=72))


def ablation_figure(names: list[str], accuracy: np.ndarray, intervals: np.ndarray, reference: int = 0,
                    height: int = 300, title: str = "Coupling rules at inference: accuracy with 95% intervals"
                    ) -> go.Figure:
    """One row per coupling rule: its accuracy (%) as a point with its 95% interval as error bars,
    the value printed beside it. The interval of rule ``reference`` (the model's own routing) is
    shaded across the plot, so an interval that reaches into the band overlaps it."""
    accuracy, intervals = np.asarray(accuracy, dtype=float), np.asarray(intervals, dtype=float)
    names = list(names)
    lo, hi = intervals[reference]
    fig = go.Figure()
    fig.add_vrect(x0=lo, x1=hi, fillcolor=MODEL_COLORS[0], opacity=0.12, line_width=0, layer="below")
    colors = [MODEL_COLORS[0] if i == reference else "#555555" for i in range(len(names))]
    fig.add_trace(go.Scatter(
        x=accuracy, y=names, mode="markers+text", marker=dict(size=11, color=colors), showlegend=False,
        error_x=_error_bars(accuracy, intervals), customdata=intervals,
        text=[f"{a:.2f}%" for a in accuracy], textposition="top center", textfont=dict(size=11),
        hovertemplate="%{y}: %{x:.2f}% [%{customdata[0]:.2f}, %{customdata[1]:.2f}]<extra></extra>"))
    span = max(float(intervals[:, 1].max() - intervals[:, 0].min()), 0.1)
    fig.update_xaxes(title_text="test accuracy (%)",
                     range=[intervals[:, 0].min() - 0.15 * span, intervals[:, 1].max() + 0.15 * span])
    # categories top to bottom, with room above the first for its printed value
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=names, range=[len(names) - 0.5, -0.8])
    return styled(fig, title, height, margin=dict(l=150, t=56))


def robustness_figure(curves: dict[str, dict[str, list]], intervals: dict[str, dict[str, list]] | None = None,
                      subset: int | None = None, units: dict[str, str] | None = None, height: int = 560,
                      title: str | None = None) -> go.Figure:
    """Accuracy (%) under each affine transform, one panel per transform (2 x 2), one curve per
    model: ``curves[model][kind] = [[value, accuracy], ...]`` (the results file's ``robustness``),
    ``intervals[model][kind] = [[lo, hi], ...]`` their 95% intervals (error bars). Each model keeps
    its colour in every panel; the legend names the models. A dotted line marks the identity."""
    kinds = [k for k in TRANSFORMS if any(k in c for c in curves.values())]
    units = units or {}
    rows = -(-len(kinds) // 2)
    fig = make_subplots(rows=rows, cols=2, vertical_spacing=0.2, horizontal_spacing=0.1,
                        subplot_titles=[TRANSFORMS[k].title for k in kinds])
    for m, (model, model_curves) in enumerate(curves.items()):
        color = MODEL_COLORS[m % len(MODEL_COLORS)]
        for p, kind in enumerate(kinds):
            if kind not in model_curves:
                continue
            row, col = p // 2 + 1, p % 2 + 1
            points = np.asarray(model_curves[kind], dtype=float)
            bars = None
            if intervals is not None and kind in intervals.get(model, {}):
                bars = _error_bars(points[:, 1], np.asarray(intervals[model][kind], dtype=float))
            fig.add_trace(go.Scatter(
                x=points[:, 0], y=points[:, 1], mode="lines+markers", name=model, legendgroup=model,
                showlegend=p == 0, line=dict(color=color, width=2), marker=dict(size=5), error_y=bars,
                hovertemplate=f"{TRANSFORMS[kind].title.lower()} %{{x:g}}: %{{y:.1f}}%<extra>{model}</extra>"),
                row=row, col=col)
    for p, kind in enumerate(kinds):
        row, col = p // 2 + 1, p % 2 + 1
        fig.add_vline(x=TRANSFORMS[kind].identity, line=dict(color=ZERO, dash="dot", width=1), row=row, col=col)
        fig.update_xaxes(title_text=units.get(kind, TRANSFORMS[kind].axis), title_standoff=4, row=row, col=col)
        fig.update_yaxes(title_text="accuracy (%)" if col == 1 else None, range=[0, 102], row=row, col=col)
    fig.update_annotations(font_size=12)
    on = f" ({subset:,} test images)" if subset else ""
    title = title or f"Accuracy under affine transforms of the test digits{on}"
    return styled(fig, title, height, legend_title_text="model", showlegend=True, margin=dict(b=92))


def confusion_figure(matrix: np.ndarray, height: int = 440, title: str = "Confusion matrix") -> go.Figure:
    """``matrix[true][predicted]`` counts as a 10 x 10 grid with every count printed. Only the
    errors (off the diagonal) are coloured, on a sequential scale: the diagonal's thousands would
    leave every error the same pale colour."""
    m = np.asarray(matrix, dtype=float)
    n = m.shape[0]
    errors = m.copy()
    np.fill_diagonal(errors, np.nan)
    top = float(np.nanmax(errors)) if n > 1 and np.nanmax(errors) > 0 else 1.0
    digits = [str(j) for j in range(n)]
    text = [[f"{int(v)}" if v else "" for v in row] for row in m]
    fig = go.Figure(go.Heatmap(
        z=errors, x=digits, y=digits, text=text, texttemplate="%{text}", textfont=dict(size=11),
        colorscale=[[0.0, "rgba(0,0,0,0)"], [1e-9, "#fde0c5"], [1.0, "#b2182b"]], zmin=0, zmax=top,
        colorbar=dict(title=dict(text="errors", side="right"), thickness=14), hoverongaps=False, xgap=1, ygap=1,
        customdata=m, hovertemplate="true %{y}, predicted %{x}: %{customdata}<extra></extra>"))
    fig.add_trace(go.Heatmap(  # the diagonal: correct answers, grey, hover only
        z=np.where(np.eye(n, dtype=bool), 1.0, np.nan), x=digits, y=digits, showscale=False,
        colorscale=[[0, "rgba(128,128,128,0.18)"], [1, "rgba(128,128,128,0.18)"]], hoverongaps=False,
        customdata=m, hovertemplate="true %{y}, correct: %{customdata}<extra></extra>", xgap=1, ygap=1))
    fig.data = fig.data[::-1]  # the grey diagonal below, the counts on top
    fig.update_xaxes(title_text="predicted digit", type="category", side="bottom", showgrid=False)
    fig.update_yaxes(title_text="true digit", type="category", autorange="reversed", showgrid=False)
    return styled(fig, title, height, margin=dict(t=48, l=60))


