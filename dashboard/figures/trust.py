"""Figures of the Attacks & outliers page: one image attacked (the input, the perturbation, the
attacked image and its reconstruction), the class scores before and after, where one image's
outlier score falls on the test sets' histograms, and the test-set curves of the results file
(accuracy and detection against eps, AUROC bars), every number with its 95% interval.

Plain functions from numbers to ``go.Figure`` (the curves as :mod:`dashboard.figures.trust_notes`
makes them: ``{"eps", "value", "lo", "hi"}`` lists); no Streamlit and no model.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.figures.base import (
    DIVERGING,
    THRESHOLD_MARGIN,
    ZERO,
    image_axes,
    image_trace,
    styled,
    threshold_lines,
)

METHOD_COLORS = {"FGSM": "#1b9e77", "PGD": "#d95f02", "adaptive PGD": "#7570b3"}  # not the digits' colours
MODEL_DASH = {"CapsNet": "solid", "CNN": "dash"}
SET_COLORS = {"MNIST test": "#1f77b4", "Fashion-MNIST": "#e377c2", "uniform noise": "#7f7f7f",
              "blank images": "#bcbd22"}
SCORE_COLORS = ("#1f77b4", "#17becf", "#d62728")  # the CapsNet's scores, then the CNN's
BEFORE, AFTER = "rgba(128,128,128,0.55)", "#d95f02"  # class scores of the clean and the attacked image
MARK = "#d62728"  # the current input on a histogram


def _method_color(label: str) -> str:
    """A curve's colour from the method its label names ("CapsNet · adaptive PGD-20")."""
    method = label.split("·")[-1].strip()
    for name in sorted(METHOD_COLORS, key=len, reverse=True):
        if method.startswith(name):
            return METHOD_COLORS[name]
    return ZERO


def _error_bars(curve: dict) -> dict:
    v, lo, hi = (np.asarray(curve[k], dtype=float) for k in ("value", "lo", "hi"))
    return dict(type="data", symmetric=False, array=hi - v, arrayminus=v - lo, thickness=1.2, width=4)


def attack_figure(clean: np.ndarray, adversarial: np.ndarray, eps: float, reconstruction: np.ndarray | None = None,
                  digit: int | None = None, height: int | None = None) -> go.Figure:
    """The input, the perturbation (attacked minus input, blue to red over ±eps), the attacked
    image and, when given, the decoder's reconstruction of it from capsule ``digit``; by default
    as high as the panels of half a wide page are wide."""
    clean, adversarial = np.asarray(clean, dtype=np.float32), np.asarray(adversarial, dtype=np.float32)
    titles = ["Input", f"Change (±{eps:g})", "Attacked"] + ([f"Reconstruction ({digit})"] if reconstruction is not None
                                                            else [])
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=titles, horizontal_spacing=0.03)
    limit = max(float(eps), 1e-6)
    change = go.Heatmap(z=adversarial - clean, colorscale=DIVERGING, zmin=-limit, zmax=limit, showscale=False,
                        name="change", hovertemplate="row %{y}, col %{x}: %{z:+.3f}<extra>change</extra>")
    images = [image_trace(clean, "input"), change, image_trace(adversarial, "attacked")]
    if reconstruction is not None:
        images.append(image_trace(reconstruction, f"reconstruction ({digit})"))
    for col, trace in enumerate(images, start=1):
        fig.add_trace(trace, row=1, col=col)
        image_axes(fig, row=1, col=col)
        fig.update_yaxes(scaleanchor=f"x{'' if col == 1 else col}", row=1, col=col)
    fig.update_annotations(font_size=12)
    height = height or (150 if reconstruction is not None else 190)
    return styled(fig, "", height, margin=dict(l=6, r=6, t=26, b=6))


def before_after_figure(before: np.ndarray, after: np.ndarray, title: str, axis: str, lengths: bool = True,
                        height: int = 280) -> go.Figure:
    """The ten class scores of the input (grey) and of the attacked image (orange): the capsule
    lengths with the margin loss's m⁺ and m⁻ (``lengths``), or the CNN's softmax probabilities."""
    digits = [str(j) for j in range(len(before))]
    fig = go.Figure()
    for name, values, color in (("input", before, BEFORE), ("attacked", after, AFTER)):
        fig.add_trace(go.Bar(x=digits, y=np.asarray(values, dtype=float), name=name, marker_color=color,
                             hovertemplate=f"{name}, digit %{{x}}: %{{y:.3f}}<extra></extra>"))
    if lengths:
        threshold_lines(fig)
    fig.update_xaxes(title_text="digit", type="category", tickmode="array", tickvals=digits, ticktext=digits)
    fig.update_yaxes(title_text=axis, range=[0, 1.05])
    return styled(fig, title, height, barmode="group", margin=dict(r=THRESHOLD_MARGIN if lengths else 20))


def histogram_figure(edges: list[float], counts: dict[str, list[int]], threshold: float, marks: dict[str, float],
                     title: str, axis: str, height: int = 300) -> go.Figure:
    """Each set's scores (``counts`` over the shared bins ``edges``) as a share of the set, the
    detector's ``threshold`` dashed, and each image of ``marks`` (name -> score) as a solid line; the
    axis stretches to show a mark beyond the bins."""
    edges = np.asarray(edges, dtype=float)
    centres, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    fig = go.Figure()
    for name, c in counts.items():
        c = np.asarray(c, dtype=float)
        share = 100.0 * c / max(c.sum(), 1.0)
        fig.add_trace(go.Bar(x=centres, y=share, width=widths, name=name, opacity=0.6,
                             marker_color=SET_COLORS.get(name, ZERO),
                             hovertemplate=f"{name}: %{{y:.1f}}% at %{{x:.3g}}<extra></extra>"))
    fig.add_vline(x=threshold, line=dict(color=ZERO, dash="dash", width=1.5))
    fig.add_annotation(x=threshold, y=1.0, yref="paper", yanchor="bottom", text=f"threshold {threshold:.3g}",
                       showarrow=False, font=dict(size=11))
    lo, hi = min([float(edges[0]), *marks.values()]), max([float(edges[-1]), *marks.values()])
    for k, (name, value) in enumerate(marks.items()):
        left = value > (lo + hi) / 2  # the label on the side with room
        fig.add_vline(x=value, line=dict(color=MARK, width=2.5, dash="solid" if k == 0 else "dot"))
        fig.add_annotation(x=value, y=0.9 - 0.12 * k, yref="paper", text=f"{name} {value:.3g}", showarrow=False,
                           xanchor="right" if left else "left", xshift=-4 if left else 4,
                           font=dict(size=11, color=MARK))
    pad = 0.04 * (hi - lo or 1.0)
    fig.update_xaxes(title_text=axis, range=[lo - pad, hi + pad])
    fig.update_yaxes(title_text="% of the set")
    return styled(fig, title, height, barmode="overlay")


def accuracy_figure(curves: dict[str, dict], title: str = "Accuracy under attack (%), 95% intervals",
                    height: int = 380) -> go.Figure:
    """Accuracy (%) against eps, one line per ``"model · method"`` label of ``curves``: each method
    in its colour, the CapsNet solid, the CNN dashed; eps 0 is the clean images."""
    fig = go.Figure()
    for label, curve in curves.items():
        model = label.split("·")[0].strip()
        fig.add_trace(go.Scatter(
            x=curve["eps"], y=curve["value"], mode="lines+markers", name=label, error_y=_error_bars(curve),
            line=dict(color=_method_color(label), dash=MODEL_DASH.get(model, "dot"), width=2),
            customdata=np.stack([curve["lo"], curve["hi"]], axis=-1),
            hovertemplate=f"{label}, eps %{{x:g}}: %{{y:.1f}}% [%{{customdata[0]:.1f}}, %{{customdata[1]:.1f}}]"
                          "<extra></extra>"))
    fig.update_xaxes(title_text="eps (L∞ radius, pixel units)")
    fig.update_yaxes(title_text="accuracy (%)", range=[-2, 102])
    return styled(fig, title, height, showlegend=True)


def detection_figure(detected: dict[str, dict], fooled_both: dict[str, dict], false_positive: float,
                     title: str = "The reconstruction-distance detector, 95% intervals",
                     height: int = 380) -> go.Figure:
    """Left: the share (%) of each attack's successes the detector flags, against eps, with the
    share of clean digits it flags (``false_positive``, %) dashed. Right: the share of all images
    that fool both the classifier and the detector."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=(
        "Successful attacks flagged (%)", "Fool both classifier and detector (% of all)"))
    for col, curves in ((1, detected), (2, fooled_both)):
        for label, curve in curves.items():
            fig.add_trace(go.Scatter(
                x=curve["eps"], y=curve["value"], mode="lines+markers", name=label, legendgroup=label,
                showlegend=col == 1 or label not in detected, error_y=_error_bars(curve),
                line=dict(color=_method_color(label), width=2),
                hovertemplate=f"{label}, eps %{{x:g}}: %{{y:.1f}}%<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text="eps", row=1, col=col)
        fig.update_yaxes(range=[-2, 102], row=1, col=col)
    fig.add_hline(y=false_positive, line=dict(color=ZERO, dash="dash", width=1.5), row=1, col=1)
    fig.add_annotation(x=1, xref="x domain", y=false_positive, yref="y", yanchor="bottom", xanchor="right",
                       text=f"clean digits flagged: {false_positive:g}%", showarrow=False, font=dict(size=11))
    fig.update_annotations(font_size=12)
    return styled(fig, title, height, showlegend=True)


def auroc_figure(bars: dict[str, dict], title: str = "Is it a digit? AUROC against each outlier set, 95% intervals",
                 height: int = 360) -> go.Figure:
    """Grouped bars, one group per outlier set, one bar per score (``bars``: label -> ``{"sets",
    "value", "lo", "hi"}``), with their bootstrap intervals and a dotted line at chance (0.5)."""
    fig = go.Figure()
    for k, (label, b) in enumerate(bars.items()):
        fig.add_trace(go.Bar(x=b["sets"], y=b["value"], name=label, error_y=_error_bars(b),
                             marker_color=SCORE_COLORS[k % len(SCORE_COLORS)],
                             customdata=np.stack([b["lo"], b["hi"]], axis=-1) if b["sets"] else None,
                             hovertemplate=f"{label}, %{{x}}: %{{y:.3f}} [%{{customdata[0]:.3f}}, "
                                           "%{customdata[1]:.3f}]<extra></extra>"))
    fig.add_hline(y=0.5, line=dict(color=ZERO, dash="dot", width=1.5))
    fig.update_xaxes(type="category")
    fig.update_yaxes(title_text="AUROC", range=[0, 1.05])
    return styled(fig, title, height, barmode="group", showlegend=True)
