"""Figures of the pose explorer and the transform explorer (the paper's Fig. 4): the grid of
perturbed reconstructions, the 16-dimensional pose, and pose and lengths along a transform."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.figures.base import DIGIT_COLORS, DIM_COLORS, ZERO, mosaic, png_uri, rgba, styled


def perturbation_figure(grid: np.ndarray, deltas: np.ndarray, digit: int,
                        title: str | None = None, height: int = 760) -> go.Figure:
    """Fig. 4 of the paper: ``grid`` (16, K, 28, 28), row d = pose dimension d + 1, column k =
    offset ``deltas[k]`` added to it. Drawn as one image, 16 rows x K columns."""
    grid = np.asarray(grid, dtype=np.float32)
    rows, cols, h, w = grid.shape
    gap = 2
    fig = go.Figure(go.Image(source=png_uri(mosaic(grid, gap=gap)), hoverinfo="skip"))
    # every column has a tick; the first, middle and last are labelled (all eleven overlap in a
    # narrow column), the axis title gives the step
    deltas = np.asarray(deltas, dtype=float)
    labelled = {0, cols // 2, cols - 1}
    step = f", steps of {deltas[1] - deltas[0]:.2f}" if cols > 1 else ""
    fig.update_xaxes(tickmode="array", tickvals=[k * (w + gap) + (w - 1) / 2 for k in range(cols)],
                     ticktext=[f"{d:+.2f}" if k in labelled else "" for k, d in enumerate(deltas)],
                     title_text=f"offset added to the dimension{step}", title_standoff=4,
                     side="top", showgrid=False, zeroline=False, showline=False, tickangle=0, ticks="outside",
                     ticklen=3)
    fig.update_yaxes(tickmode="array", tickvals=[d * (h + gap) + (h - 1) / 2 for d in range(rows)],
                     ticktext=[f"dim {d + 1}" for d in range(rows)], showgrid=False, zeroline=False,
                     showline=False, scaleanchor="x", constrain="domain", constraintoward="top")
    fig.update_xaxes(constrain="domain")
    fig.update_layout(meta=dict(rows=rows, cols=cols))
    title = title or f"Fig. 4: each dimension of v<sub>{digit}</sub> tweaked and decoded"
    return styled(fig, title, height, margin=dict(l=60, r=10, t=100, b=10))


def pose_figure(pose: np.ndarray, digit: int, perturbed: np.ndarray | None = None,
                title: str | None = None, height: int = 300,
                names: tuple[str, str] = ("v (model)", "v + offsets")) -> go.Figure:
    """The 16 components of capsule ``digit``'s pose vector (bars, digit colour); ``perturbed``
    (16,) drawn over it as diamonds. ``names`` label the two in the legend (under the plot)."""
    pose = np.asarray(pose, dtype=float)
    dims = [str(d + 1) for d in range(pose.shape[0])]
    color = DIGIT_COLORS[digit % 10]
    fig = go.Figure(go.Bar(x=dims, y=pose, name=names[0], marker_color=rgba(color, 0.55),
                           hovertemplate=f"dim %{{x}}: %{{y:+.3f}}<extra>{names[0]}</extra>"))
    if perturbed is not None:
        fig.add_trace(go.Scatter(x=dims, y=np.asarray(perturbed, dtype=float), mode="markers",
                                 name=names[1], marker=dict(color=color, size=10, symbol="diamond",
                                                            line=dict(width=1, color=ZERO)),
                                 hovertemplate=f"dim %{{x}}: %{{y:+.3f}}<extra>{names[1]}</extra>"))
    fig.update_xaxes(title_text="pose dimension", type="category", tickmode="array", tickvals=dims,
                     ticktext=dims, tickangle=0, tickfont=dict(size=9))
    fig.update_yaxes(title_text="value", zeroline=True)
    title = title or f"Pose vector v<sub>{digit}</sub> (16D instantiation parameters)"
    return styled(fig, title, height, showlegend=perturbed is not None, margin=dict(l=48, r=10))


def transform_figure(values: np.ndarray, poses: np.ndarray, lengths: np.ndarray, kind: str,
                     digit: int, current: float | None = None, unit: str = "",
                     title: str | None = None, height: int = 720) -> go.Figure:
    """Top: the 16 pose components of capsule ``digit`` against the transform parameter
    (``values`` (N,), ``poses`` (N, 16)); bottom: all 10 lengths (N, 10). A dotted line marks the
    ``current`` setting. Two legends, one per panel, right of it: "pose dim" and "digit"; every
    line's hover names it and the parameter's value."""
    values = np.asarray(values, dtype=float)
    poses, lengths = np.asarray(poses, dtype=float), np.asarray(lengths, dtype=float)
    name = kind.replace("_", " ")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1, row_heights=[0.6, 0.4],
                        subplot_titles=(f"Pose of capsule {digit}: one line per dimension",
                                        "Capsule lengths |v<sub>j</sub>|"))
    for d in range(poses.shape[1]):
        fig.add_trace(go.Scatter(x=values, y=poses[:, d], mode="lines", name=f"dim {d + 1}",
                                 legend="legend2", line=dict(color=DIM_COLORS[d], width=1.6),
                                 hovertemplate=f"{name} %{{x:.2f}}: %{{y:+.3f}}<extra>dim {d + 1}</extra>"),
                      row=1, col=1)
    for j in range(lengths.shape[1]):
        fig.add_trace(go.Scatter(x=values, y=lengths[:, j], mode="lines", name=f"digit {j}",
                                 line=dict(color=DIGIT_COLORS[j], width=3 if j == digit else 1.6),
                                 hovertemplate=f"{name} %{{x:.2f}}: |v| = %{{y:.3f}}<extra>digit {j}</extra>"),
                      row=2, col=1)
    if current is not None:
        for row in (1, 2):
            fig.add_vline(x=current, line=dict(color=ZERO, dash="dot", width=1.5), row=row, col=1)
    fig.update_xaxes(title_text=name + (f" ({unit})" if unit else ""), row=2, col=1)
    fig.update_yaxes(title_text="pose value", row=1, col=1)
    fig.update_yaxes(title_text="length", range=[0, 1.05], row=2, col=1)
    fig.update_annotations(font_size=12)
    title = title or f"Capsule {digit} under {name}"
    side = dict(orientation="v", x=1.01, xanchor="left", yref="paper", yanchor="top",
                bgcolor="rgba(0,0,0,0)", font=dict(size=10), tracegroupgap=0, itemwidth=30,
                title_font=dict(size=11))
    return styled(fig, title, height, margin=dict(r=90, b=48),
                  legend=dict(side, y=0.38, title_text="digit"),
                  legend2=dict(side, y=1.0, title_text="pose dim"))


