"""Figures of the pose explorer and the transform explorer (the paper's Fig. 4): the grid of
perturbed reconstructions on one colour scale, the 16-dimensional pose, the strip under each pose
slider (how that pose value spreads over a class), and pose and lengths along a transform."""

from __future__ import annotations

import base64
import html
import re

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from dashboard.figures.base import (
    DIGIT_COLORS,
    DIM_COLORS,
    DIVERGING,
    GREY,
    ZERO,
    mosaic,
    png_uri,
    rgba,
    styled,
)


def _colour_lut(scale, n: int = 256) -> np.ndarray:
    """(n, 3) uint8 colours of a plotly colour scale, from its low end to its high end."""
    found = sample_colorscale(scale, list(np.linspace(0.0, 1.0, n)), colortype="tuple")
    return (np.clip(np.asarray(found, dtype=float), 0, 1) * 255 + 0.5).astype(np.uint8)


def perturbation_figure(grid: np.ndarray, deltas: np.ndarray, digit: int,
                        title: str | None = None, height: int = 760, change: bool = False) -> go.Figure:
    """Fig. 4 of the paper: ``grid`` (16, K, 28, 28), row d = pose dimension d + 1, column k =
    offset ``deltas[k]`` added to it. Drawn as one image, 16 rows x K columns, on one colour scale
    for the whole grid, its bar at the right: the decoded ink (0 black … 1 white) or, with
    ``change``, each image minus its row's image at offset 0 (red: ink the offset adds, blue: ink
    it takes away), the scale symmetric about 0 and as wide as the largest change in the grid."""
    grid = np.asarray(grid, dtype=np.float32)
    rows, cols, h, w = grid.shape
    gap = 2
    deltas = np.asarray(deltas, dtype=float)
    if change:
        values = grid - grid[:, [int(np.argmin(np.abs(deltas)))]]  # (16, K, 28, 28): 0 in the middle column
        top = max(float(np.abs(values).max()), 1e-6)
        tiles = mosaic(values, gap=gap)
        rgba = np.zeros(tiles.shape + (4,), np.uint8)
        inside = ~np.isnan(tiles)
        lut = _colour_lut(DIVERGING)
        rgba[inside, :3] = lut[np.round((tiles[inside] / top + 1) / 2 * (len(lut) - 1)).astype(int)]
        rgba[inside, 3] = 255
        source, scale, bounds, bar = png_uri(rgba), DIVERGING, (-top, top), "decoded −<br>offset 0"
    else:
        source, scale, bounds, bar = png_uri(mosaic(grid, gap=gap)), GREY, (0.0, 1.0), "decoded<br>ink"
    fig = go.Figure(go.Image(source=source, hoverinfo="skip"))
    # the colour bar of the whole grid: a heatmap of its two ends that draws nothing
    fig.add_trace(go.Heatmap(z=[list(bounds)], x=[0, 1], y=[0, 0], colorscale=scale, zmin=bounds[0], zmax=bounds[1],
                             opacity=0, hoverinfo="skip", showscale=True,
                             colorbar=dict(title=dict(text=bar, side="top", font=dict(size=11)), thickness=12,
                                           len=0.5, y=1.0, yanchor="top", tickfont=dict(size=10))))
    # every column has a tick; the first, middle and last are labelled (all eleven overlap in a
    # narrow column), the axis title gives the step
    labelled = {0, cols // 2, cols - 1}
    step = f", steps of {deltas[1] - deltas[0]:.2f}" if cols > 1 else ""
    fig.update_xaxes(tickmode="array", tickvals=[k * (w + gap) + (w - 1) / 2 for k in range(cols)],
                     ticktext=[f"{d:+.2f}" if k in labelled else "" for k, d in enumerate(deltas)],
                     title_text=f"offset added to the dimension{step}", title_standoff=4,
                     side="top", showgrid=False, zeroline=False, showline=False, tickangle=0, ticks="outside",
                     ticklen=3)
    fig.update_yaxes(tickmode="array", tickvals=[d * (h + gap) + (h - 1) / 2 for d in range(rows)],
                     ticktext=[f"dim {d + 1}" for d in range(rows)], showgrid=False, zeroline=False,
                     showline=False, scaleanchor="x", constrain="domain", constraintoward="top",
                     autorange="reversed")
    fig.update_xaxes(constrain="domain")
    fig.update_layout(meta=dict(rows=rows, cols=cols))
    title = title or (f"Fig. 4: each dimension of v<sub>{digit}</sub> tweaked and decoded" + (
        ", change from offset 0" if change else ""))
    return styled(fig, title, height, margin=dict(l=60, r=10, t=100, b=10))


def pose_spread_svg(spread, quantiles, value: float, moved: float, limit: float = 0.5,
                    color: str = ZERO, what: str = "") -> str:
    """A strip to put under a pose slider: the slider's range, ``value`` ± ``limit`` (the pose
    value with each offset), and on it how that pose value spreads over the test digits of the
    class (``spread``: its ``quantiles``, percent; :func:`capsules.analysis.pose_distribution`):
    a line from the first to the last quantile, a band over the middle 90% (5–95%), a box over
    the middle half (25–75%) with the median, a thin mark at ``value`` and a bold one at
    ``moved``, the value with the slider's offset. Parts off the range are cut at its ends. An
    SVG string, 100% wide (no plotly: sixteen of these rerun with every slider), its title the
    numbers (``what`` names the digits); :func:`svg_image` makes it an ``<img>`` for the page."""
    q = dict(zip((int(p) for p in quantiles), (float(x) for x in spread)))
    lo = value - limit

    def x(v: float) -> float:
        return round(float(np.clip((v - lo) / (2 * limit) * 100, 0, 100)), 2)

    parts = []
    ends = min(q), max(q)
    parts.append(f'<line x1="{x(q[ends[0]])}" y1="9" x2="{x(q[ends[1]])}" y2="9" stroke="{color}" '
                 'stroke-width="1" vector-effect="non-scaling-stroke"/>')
    if 5 in q and 95 in q:
        parts.append(f'<rect x="{x(q[5])}" y="5" width="{x(q[95]) - x(q[5])}" height="8" fill="{color}" '
                     'fill-opacity="0.25"/>')
    if 25 in q and 75 in q:
        parts.append(f'<rect x="{x(q[25])}" y="3" width="{x(q[75]) - x(q[25])}" height="12" fill="{color}" '
                     'fill-opacity="0.55"/>')
    if 50 in q:
        parts.append(f'<line x1="{x(q[50])}" y1="2" x2="{x(q[50])}" y2="16" stroke="{color}" stroke-width="2" '
                     'vector-effect="non-scaling-stroke"/>')
    parts.append(f'<line x1="{x(value)}" y1="0" x2="{x(value)}" y2="18" stroke="#888888" stroke-width="1" '
                 'stroke-dasharray="2 2" vector-effect="non-scaling-stroke"/>')
    parts.append(f'<line x1="{x(moved)}" y1="0" x2="{x(moved)}" y2="18" stroke="#e4572e" stroke-width="3" '
                 'vector-effect="non-scaling-stroke"/>')
    numbers = ", ".join(f"{p}%: {v:+.2f}" for p, v in q.items())
    title = f"Over {what}: {numbers}. This digit: {value:+.2f}; with the offset: {moved:+.2f}"
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="pose-spread" viewBox="0 0 100 18" '
            f'preserveAspectRatio="none" width="100%" height="18"><title>{title}</title>{"".join(parts)}</svg>')


def svg_image(svg: str, height: int = 18) -> str:
    """An SVG string as an HTML ``<img>`` (a data URI) for ``st.html``, whose sanitiser drops inline
    SVG; its ``<title>`` becomes the image's tooltip and alternative text."""
    found = re.search(r"<title>(.*?)</title>", svg)
    title = html.escape(found[1] if found else "", quote=True)
    data = base64.b64encode(svg.encode()).decode("ascii")
    return (f'<img class="pose-spread" alt="{title}" title="{title}" style="display:block;width:100%;'
            f'height:{height}px" src="data:image/svg+xml;base64,{data}">')


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


