"""What every figure shares: the colours, the style (transparent, grey grids, a left title,
so that a figure reads in Streamlit's light and dark themes alike), images and the capsule lengths.

Plain functions from numpy arrays to ``go.Figure``: no Streamlit and no model. Each digit keeps its
colour from :data:`DIGIT_COLORS` in every figure.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from capsules.analysis import M_MINUS, M_PLUS

# One colour per digit 0..9 (d3 category10), used by every figure.
DIGIT_COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)
# One colour per pose dimension 1..16, from a sequential scale (so never confused with digits).
DIM_COLORS = tuple(sample_colorscale("Plasma", list(np.linspace(0.0, 0.88, 16))))
GRIDLINE = "rgba(128,128,128,0.22)"  # colour of the axes' grid lines
ZERO = "rgba(128,128,128,0.55)"
DIVERGING = "RdBu_r"  # signed values: negative blue, zero white, positive red
SEQUENTIAL = "Viridis"  # magnitudes: dark (0) to yellow, monotonic in lightness
GREY = [[0.0, "#000000"], [1.0, "#ffffff"]]  # MNIST: white ink on black
# The two digits of a pair (MultiMNIST), as the paper's Fig. 5 draws them: red and green, over the
# grey input; a capsule the model rejects is drawn in blue.
PAIR_COLORS = ("#ff4136", "#2ecc40")
REJECTED_COLOR = "#4f8cff"


def rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[k:k + 2], 16) for k in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def styled(fig: go.Figure, title: str, height: int, **layout) -> go.Figure:
    """Transparent backgrounds, a left-aligned title, thin grey grids."""
    base = dict(
        title=dict(text=title, x=0.0, xanchor="left", font=dict(size=15)),
        height=height,
        margin=dict(l=60, r=20, t=56, b=48),
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        legend=dict(bgcolor="rgba(0,0,0,0)", orientation="h", x=0.0, xanchor="left", y=0.0,
                    yanchor="bottom", yref="container", font=dict(size=11)),
        hoverlabel=dict(namelength=-1),
    )
    legends = sum(1 for tr in fig.data if getattr(tr, "showlegend", False) is not False and tr.name)
    if legends > 1:
        base["margin"]["b"] = 92  # room for the legend under the x axis
    base["margin"].update(layout.pop("margin", {}))  # a caller's margins replace single sides
    fig.update_layout(**{**base, **layout})
    fig.update_xaxes(gridcolor=GRIDLINE, zerolinecolor=ZERO, linecolor=ZERO)
    fig.update_yaxes(gridcolor=GRIDLINE, zerolinecolor=ZERO, linecolor=ZERO)
    return fig


def image_axes(fig: go.Figure, row: int | None = None, col: int | None = None) -> None:
    kw = dict(row=row, col=col) if row is not None else {}
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="", showline=False,
                     constrain="domain", **kw)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="", showline=False,
                     constrain="domain",
                     autorange="reversed", scaleratio=1, **kw)


def png_uri(image: np.ndarray, upscale: int = 1) -> str:
    """A (H, W) [0, 1] array (NaN = transparent gap), or a (H, W, 3) uint8 colour image, or a
    (H, W, 4) uint8 one with its alpha, as a PNG data URI, upscaled by pixel repeats."""
    from PIL import Image

    if np.asarray(image).ndim == 3 and np.asarray(image).shape[-1] == 4:
        rgba = np.asarray(image, dtype=np.uint8)
    elif np.asarray(image).ndim == 3:
        rgb = np.asarray(image, dtype=np.uint8)
        rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    else:
        a = np.asarray(image, dtype=np.float32)
        gap = np.isnan(a)
        grey = (np.clip(np.nan_to_num(a), 0, 1) * 255 + 0.5).astype(np.uint8)
        rgba = np.stack([grey, grey, grey, np.where(gap, 0, 255).astype(np.uint8)], axis=-1)
    if upscale > 1:
        rgba = rgba.repeat(upscale, axis=0).repeat(upscale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def mosaic(images: np.ndarray, gap: int = 2) -> np.ndarray:
    """(R, C, h, w) images -> one (R*h + (R-1)*gap, C*w + (C-1)*gap) array with NaN gaps."""
    images = np.asarray(images, dtype=np.float32)
    r, c, h, w = images.shape
    out = np.full((r * (h + gap) - gap, c * (w + gap) - gap), np.nan, np.float32)
    for i in range(r):
        for j in range(c):
            out[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = images[i, j]
    return out


# --------------------------------------------------------------------------------------------
# images


def image_trace(image: np.ndarray, name: str) -> go.Heatmap:
    return go.Heatmap(z=np.asarray(image, dtype=np.float32), colorscale=GREY, zmin=0, zmax=1,
                      showscale=False, name=name,
                      hovertemplate=f"{name}<br>row %{{y}}, col %{{x}}: %{{z:.2f}}<extra></extra>")


def image_figure(image: np.ndarray, title: str, height: int = 300) -> go.Figure:
    """One 28x28 image as a grey heatmap (0 black, 1 white), square pixels."""
    fig = go.Figure(image_trace(image, title))
    image_axes(fig)
    fig.update_yaxes(scaleanchor="x")
    return styled(fig, title, height, margin=dict(l=10, r=10, t=40, b=10))


def image_pair_figure(image: np.ndarray, reconstruction: np.ndarray, digit: int,
                      height: int = 300, first: str = "Input") -> go.Figure:
    """The input the model sees (titled ``first``) beside the decoder's reconstruction from
    capsule ``digit``. The titles are short: they must fit over half of a narrow column."""
    side = np.asarray(image).shape[-1]
    titles = (f"{first} ({side}×{side})", f"Reconstruction ({digit})")
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles, horizontal_spacing=0.06)
    fig.add_trace(image_trace(image, "input"), row=1, col=1)
    fig.add_trace(image_trace(reconstruction, f"reconstruction ({digit})"), row=1, col=2)
    for col in (1, 2):
        image_axes(fig, row=1, col=col)
    fig.update_yaxes(scaleanchor="x", row=1, col=1)
    fig.update_yaxes(scaleanchor="x2", row=1, col=2)
    fig.update_annotations(font_size=13)
    return styled(fig, "", height, margin=dict(l=10, r=10, t=34, b=10))


# --------------------------------------------------------------------------------------------
# capsule lengths


THRESHOLD_MARGIN = 64  # right margin, pixels, that holds the m⁺ / m⁻ labels


def threshold_lines(fig: go.Figure, **kw) -> None:
    """Dashed lines at the margin loss's m⁺ and m⁻ (eq. 4), labelled in the right margin, outside
    the plot, where no bar label or line can cover them."""
    for y, text in ((M_PLUS, f"m⁺ = {M_PLUS:g}"), (M_MINUS, f"m⁻ = {M_MINUS:g}")):
        fig.add_hline(y=y, line=dict(color=ZERO, dash="dash", width=1), **kw)
        fig.add_annotation(x=1.0, xref="paper", xanchor="left", xshift=4, y=y, yref="y",
                           text=text, showarrow=False, font=dict(size=11), align="left")


def lengths_figure(lengths: np.ndarray, prediction: int | tuple[int, ...] | None = None,
                   title: str = "Digit-capsule lengths |v<sub>j</sub>| (class probabilities)",
                   height: int = 320, values: bool = True) -> go.Figure:
    """Bars of the 10 capsule lengths, each digit in its colour, the predicted one outlined (or
    each of several: the two digits of a pair), with the margin-loss thresholds m⁺ = 0.9 and
    m⁻ = 0.1 (eq. 4)."""
    lengths = np.asarray(lengths, dtype=float)
    pred = {int(np.argmax(lengths))} if prediction is None else {int(d) for d in np.atleast_1d(prediction)}
    widths = [3 if j in pred else 0 for j in range(10)]
    fig = go.Figure(go.Bar(
        x=[str(j) for j in range(10)], y=lengths, marker=dict(
            color=list(DIGIT_COLORS), line=dict(width=widths, color=[ZERO] * 10)),
        text=[f"{v:.2f}" for v in lengths] if values else None, textposition="outside", cliponaxis=False,
        hovertemplate="digit %{x}: |v| = %{y:.4f}<extra></extra>", showlegend=False,
    ))
    threshold_lines(fig)
    fig.update_xaxes(title_text="digit capsule j", type="category", tickmode="array", tickangle=0,
                     tickvals=[str(j) for j in range(10)], ticktext=[str(j) for j in range(10)])
    fig.update_yaxes(title_text="length |v<sub>j</sub>|", range=[0, 1.1])
    return styled(fig, title, height, margin=dict(l=60, r=THRESHOLD_MARGIN, t=56, b=48))


def lengths_per_iteration_figure(lengths: np.ndarray, highlight: int | None = None,
                                 title: str = "Capsule lengths after each routing iteration",
                                 height: int = 340) -> go.Figure:
    """``lengths`` (T, 10): one line per digit over iterations 1..T, thresholds 0.9 / 0.1, and a
    dotted vertical line at iteration ``highlight`` (the r in use). Points above m⁺ = 0.9 are
    drawn large, on a shaded band, so that capsules driven towards length 1 stand out."""
    lengths = np.asarray(lengths, dtype=float)
    t = np.arange(1, lengths.shape[0] + 1)
    fig = go.Figure()
    fig.add_hrect(y0=M_PLUS, y1=1.05, fillcolor=ZERO, opacity=0.12, line_width=0, layer="below")
    for j in range(lengths.shape[1]):
        fig.add_trace(go.Scatter(
            x=t, y=lengths[:, j], mode="lines+markers", name=str(j),
            line=dict(color=DIGIT_COLORS[j], width=2),
            marker=dict(size=np.where(lengths[:, j] > M_PLUS, 10, 5).tolist()),
            hovertemplate=f"digit {j}, iteration %{{x}}: |v| = %{{y:.4f}}<extra></extra>"))
    threshold_lines(fig)
    if highlight is not None:
        fig.add_vline(x=highlight, line=dict(color=ZERO, dash="dot", width=1.5))
        fig.add_annotation(x=highlight, y=1.0, yref="paper", yanchor="bottom", text=f"r = {highlight}",
                           showarrow=False, font=dict(size=11))
    fig.update_xaxes(title_text="routing iterations", tickmode="array", tickvals=list(t),
                     range=[0.7, t[-1] + 0.3])
    fig.update_yaxes(title_text="length |v<sub>j</sub>|", range=[0, 1.05])
    return styled(fig, title, height, legend_title_text="digit", margin=dict(r=THRESHOLD_MARGIN))


def length_change_figure(change: np.ndarray,
                         title: str = "Change of |v<sub>j</sub>| from one iteration to the next",
                         height: int = 320) -> go.Figure:
    """``change`` (T, 10) with row 0 zero (:attr:`Analysis.length_change`): grouped bars per
    transition t-1 → t, one bar per digit."""
    change = np.asarray(change, dtype=float)
    labels = [f"{t} → {t + 1}" for t in range(1, change.shape[0])]
    fig = go.Figure()
    for j in range(change.shape[1]):
        fig.add_trace(go.Bar(x=labels, y=change[1:, j], name=str(j), marker_color=DIGIT_COLORS[j],
                             hovertemplate=f"digit {j}, %{{x}}: Δ|v| = %{{y:+.4f}}<extra></extra>"))
    fig.update_xaxes(title_text="iterations", type="category")
    fig.update_yaxes(title_text="Δ |v<sub>j</sub>|", zeroline=True, exponentformat="e")
    return styled(fig, title, height, barmode="group", legend_title_text="digit")


def digit_thumbnail(image: np.ndarray, scale: int = 3) -> np.ndarray:
    """A (28, 28) image (uint8, or float in [0, 1]), or a colour one (H, W, 3) uint8 such as
    :func:`overlay` makes, as uint8 enlarged ``scale`` times by pixel repeats, so that the browser
    shows sharp pixels instead of a blur."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    return a.repeat(scale, axis=0).repeat(scale, axis=1)
