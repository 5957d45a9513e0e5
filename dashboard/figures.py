"""Plotly figures of the dashboard: plain functions from numpy arrays to ``go.Figure``.

No Streamlit and no model here: :mod:`capsules.analysis` computes, these functions draw. Every
figure has a transparent background, no template colours of its own, grey grid lines and a
title, so it reads in Streamlit's light and dark themes alike; each digit keeps its colour from
:data:`DIGIT_COLORS` in every figure.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from capsules.analysis import M_MINUS, M_PLUS, MNIST, Geometry

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
TILE_COLS = 8  # coupling layout: the 32 primary types as 4 rows x 8 columns of grid tiles

__all__ = [
    "DIGIT_COLORS", "DIM_COLORS", "MODEL_COLORS", "PAIR_COLORS", "REJECTED_COLOR", "ablation_figure",
    "agreement_figure", "confusion_figure", "coupling_figure", "coupling_tiles", "digit_thumbnail", "dynamics_figure",
    "evidence_figure", "evidence_grid_figure", "image_figure", "image_pair_figure", "iteration_strip_figure",
    "iterations_figure", "length_change_figure", "lengths_figure", "lengths_per_iteration_figure", "mosaic",
    "overlay", "pair_figure", "perturbation_figure", "pose_figure", "robustness_figure", "routing_mass_figure",
    "transform_figure",
]


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[k:k + 2], 16) for k in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _style(fig: go.Figure, title: str, height: int, **layout) -> go.Figure:
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


def _image_axes(fig: go.Figure, row: int | None = None, col: int | None = None) -> None:
    kw = dict(row=row, col=col) if row is not None else {}
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="", showline=False,
                     constrain="domain", **kw)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="", showline=False,
                     constrain="domain",
                     autorange="reversed", scaleratio=1, **kw)


def _png_uri(image: np.ndarray, upscale: int = 1) -> str:
    """A (H, W) [0, 1] array (NaN = transparent gap), or a (H, W, 3) uint8 colour image, as a PNG
    data URI, upscaled by pixel repeats."""
    from PIL import Image

    if np.asarray(image).ndim == 3:
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


def _image_trace(image: np.ndarray, name: str) -> go.Heatmap:
    return go.Heatmap(z=np.asarray(image, dtype=np.float32), colorscale=GREY, zmin=0, zmax=1,
                      showscale=False, name=name,
                      hovertemplate=f"{name}<br>row %{{y}}, col %{{x}}: %{{z:.2f}}<extra></extra>")


def image_figure(image: np.ndarray, title: str, height: int = 300) -> go.Figure:
    """One 28x28 image as a grey heatmap (0 black, 1 white), square pixels."""
    fig = go.Figure(_image_trace(image, title))
    _image_axes(fig)
    fig.update_yaxes(scaleanchor="x")
    return _style(fig, title, height, margin=dict(l=10, r=10, t=40, b=10))


def image_pair_figure(image: np.ndarray, reconstruction: np.ndarray, digit: int,
                      height: int = 300, first: str = "Input") -> go.Figure:
    """The input the model sees (titled ``first``) beside the decoder's reconstruction from
    capsule ``digit``. The titles are short: they must fit over half of a narrow column."""
    side = np.asarray(image).shape[-1]
    titles = (f"{first} ({side}×{side})", f"Reconstruction ({digit})")
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles, horizontal_spacing=0.06)
    fig.add_trace(_image_trace(image, "input"), row=1, col=1)
    fig.add_trace(_image_trace(reconstruction, f"reconstruction ({digit})"), row=1, col=2)
    for col in (1, 2):
        _image_axes(fig, row=1, col=col)
    fig.update_yaxes(scaleanchor="x", row=1, col=1)
    fig.update_yaxes(scaleanchor="x2", row=1, col=2)
    fig.update_annotations(font_size=13)
    return _style(fig, "", height, margin=dict(l=10, r=10, t=34, b=10))


# --------------------------------------------------------------------------------------------
# capsule lengths


THRESHOLD_MARGIN = 64  # right margin, pixels, that holds the m⁺ / m⁻ labels


def _thresholds(fig: go.Figure, **kw) -> None:
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
    _thresholds(fig)
    fig.update_xaxes(title_text="digit capsule j", type="category", tickmode="array", tickangle=0,
                     tickvals=[str(j) for j in range(10)], ticktext=[str(j) for j in range(10)])
    fig.update_yaxes(title_text="length |v<sub>j</sub>|", range=[0, 1.1])
    return _style(fig, title, height, margin=dict(l=60, r=THRESHOLD_MARGIN, t=56, b=48))


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
    _thresholds(fig)
    if highlight is not None:
        fig.add_vline(x=highlight, line=dict(color=ZERO, dash="dot", width=1.5))
        fig.add_annotation(x=highlight, y=1.0, yref="paper", yanchor="bottom", text=f"r = {highlight}",
                           showarrow=False, font=dict(size=11))
    fig.update_xaxes(title_text="routing iterations", tickmode="array", tickvals=list(t),
                     range=[0.7, t[-1] + 0.3])
    fig.update_yaxes(title_text="length |v<sub>j</sub>|", range=[0, 1.05])
    return _style(fig, title, height, legend_title_text="digit", margin=dict(r=THRESHOLD_MARGIN))


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
    return _style(fig, title, height, barmode="group", legend_title_text="digit")


# --------------------------------------------------------------------------------------------
# routing


def coupling_tiles(values: np.ndarray, geometry: Geometry = MNIST, gap: int = 1) -> np.ndarray:
    """(1152,) values per primary capsule -> a (4*6 + 3, 8*6 + 7) array: one grid x grid tile per
    type, tile ``type`` at tile row ``type // 8``, tile column ``type % 8``, NaN between tiles."""
    g = geometry
    rows = -(-g.types // TILE_COLS)
    v = np.full((rows * TILE_COLS, g.grid, g.grid), np.nan, np.float32)
    v[:g.types] = np.asarray(values, dtype=np.float32).reshape(g.types, g.grid, g.grid)
    return mosaic(v.reshape(rows, TILE_COLS, g.grid, g.grid), gap=gap)


def _tile_hover(geometry: Geometry, gap: int = 1) -> np.ndarray:
    """customdata (H, W, 3) = (type, row, col) for :func:`coupling_tiles`, -1 in the gaps."""
    parts = np.array([geometry.position(i) for i in range(geometry.caps)]).T  # (3, caps)
    return np.stack([np.nan_to_num(coupling_tiles(p, geometry, gap), nan=-1).astype(int)
                     for p in parts], -1)


def coupling_figure(values: np.ndarray, digit: int, title: str | None = None,
                    iteration: int | None = None, zmax: float | None = None, centre: float = 0.0,
                    colorbar_title: str = "c − 1/10", geometry: Geometry = MNIST,
                    height: int = 280) -> go.Figure:
    """A per-primary quantity for one digit capsule over the 32 types x 6x6 grid.

    ``values`` is (1152,) for one iteration, or (T, 1152) for all of them: then the figure is an
    animation with one frame per iteration (``len(fig.frames) == T``) and a slider, starting at
    ``iteration`` (1-based, default the last). The colour scale is diverging around ``centre``
    (white) and shared by all frames: ``centre ± zmax`` (default: the largest distance from
    ``centre``). The colour bar shows the values themselves.
    """
    values = np.asarray(values, dtype=np.float32)
    frames_data = values[None] if values.ndim == 1 else values
    t_count = frames_data.shape[0]
    shown = (t_count if iteration is None else int(iteration)) - 1
    if zmax is None:
        zmax = float(np.abs(frames_data - centre).max())
    zmax = zmax if zmax > 0 else 1e-6
    custom = _tile_hover(geometry)
    g, rows = geometry.grid, -(-geometry.types // TILE_COLS)

    def trace(t: int) -> go.Heatmap:
        return go.Heatmap(
            z=coupling_tiles(frames_data[t], geometry), customdata=custom, colorscale=DIVERGING,
            zmid=centre, zmin=centre - zmax, zmax=centre + zmax, hoverongaps=False,
            colorbar=dict(title=dict(text=colorbar_title, side="right"), exponentformat="e",
                          thickness=14),
            hovertemplate="type %{customdata[0]}, row %{customdata[1]}, col %{customdata[2]}"
                          f"<br>{colorbar_title}: %{{z:.4e}}<extra>digit {digit}</extra>")

    fig = go.Figure(trace(shown))
    tick_x = [c * (g + 1) + (g - 1) / 2 for c in range(TILE_COLS)]
    tick_y = [r * (g + 1) + (g - 1) / 2 for r in range(rows)]
    fig.update_xaxes(tickmode="array", tickvals=tick_x, ticktext=[f"+{c}" for c in range(TILE_COLS)],
                     showgrid=False, zeroline=False, title_text="type = first type of the row + column offset")
    fig.update_yaxes(tickmode="array", tickvals=tick_y,
                     ticktext=[f"types {r * TILE_COLS}–{min(geometry.types, (r + 1) * TILE_COLS) - 1}"
                               for r in range(rows)],
                     showgrid=False, zeroline=False, autorange="reversed", scaleanchor="x",
                     constrain="domain")
    fig.update_xaxes(constrain="domain", showline=False)
    fig.update_yaxes(showline=False)
    title = title or f"Coupling coefficients to digit {digit}: c<sub>i{digit}</sub> − 1/10"
    if values.ndim == 2:
        fig.frames = [go.Frame(data=[trace(t)], name=str(t + 1)) for t in range(t_count)]
        _frame_slider(fig, t_count, shown)
    return _style(fig, title, height)


def _frame_slider(fig: go.Figure, count: int, active: int) -> None:
    steps = [dict(method="animate", label=str(t + 1),
                  args=[[str(t + 1)], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                           transition=dict(duration=0))])
             for t in range(count)]
    fig.update_layout(sliders=[dict(active=active, steps=steps, x=0.0, len=1.0, y=-0.02,
                                    yanchor="top", pad=dict(t=8, b=4),
                                    currentvalue=dict(prefix="iteration ", font=dict(size=12)))])


def routing_mass_figure(mass: np.ndarray, vote_mass: np.ndarray, title: str | None = None,
                        height: int = 340) -> go.Figure:
    """Per iteration, each digit's share (%) of ``mass = Σ_i c_ij`` (left) and of
    ``vote_mass = Σ_i c_ij |û_j|i|`` (right); both (T, 10). 10 % is uniform coupling."""
    caps = round(float(np.asarray(mass, dtype=float)[0].sum()))  # sum_j c_ij = 1 for every primary
    panels = ((np.asarray(mass, dtype=float), "Σ<sub>i</sub> c<sub>ij</sub> (share of coupling, %)"),
              (np.asarray(vote_mass, dtype=float), "Σ<sub>i</sub> c<sub>ij</sub>|û<sub>j|i</sub>| (share of vote, %)"))
    fig = make_subplots(rows=1, cols=2, subplot_titles=[p[1] for p in panels], horizontal_spacing=0.12)
    for col, (m, _) in enumerate(panels, start=1):
        share = 100 * m / m.sum(axis=1, keepdims=True)
        t = np.arange(1, share.shape[0] + 1)
        for j in range(share.shape[1]):
            fig.add_trace(go.Scatter(
                x=t, y=share[:, j], mode="lines+markers", name=str(j), legendgroup=str(j),
                showlegend=col == 1, line=dict(color=DIGIT_COLORS[j], width=2),
                hovertemplate=f"digit {j}, iteration %{{x}}: %{{y:.4f}} %<extra></extra>"),
                row=1, col=col)
        fig.update_xaxes(title_text="routing iteration", tickmode="array", tickvals=list(t),
                         range=[0.7, t[-1] + 0.3], row=1, col=col)
    fig.add_hline(y=10.0, line=dict(color=ZERO, dash="dot", width=1), row=1, col=1)
    fig.update_yaxes(title_text=f"% of all {caps} primaries", row=1, col=1)
    fig.update_annotations(font_size=12)
    title = title or f"Where the routing sends the {caps} primary capsules"
    return _style(fig, title, height, legend_title_text="digit")


def agreement_figure(agreement: np.ndarray, iteration: int, title: str | None = None,
                     geometry: Geometry = MNIST, height: int = 330) -> go.Figure:
    """``agreement`` (1152, 10) = û<sub>j|i</sub> · v<sub>j</sub> of one iteration: digits x
    primary index (i = type·36 + row·6 + col), diverging around 0."""
    a = np.asarray(agreement, dtype=np.float32).T  # (10, 1152)
    zmax = float(np.abs(a).max()) or 1e-6
    per_type = geometry.grid * geometry.grid
    fig = go.Figure(go.Heatmap(
        z=a, x=np.arange(a.shape[1]), y=[str(j) for j in range(a.shape[0])], colorscale=DIVERGING,
        zmid=0, zmin=-zmax, zmax=zmax,
        colorbar=dict(title=dict(text="û·v", side="right"), thickness=14, exponentformat="e"),
        hovertemplate="primary %{x} → digit %{y}: û·v = %{z:.3e}<extra></extra>"))
    fig.update_xaxes(title_text=f"primary capsule i (blocks of {per_type} = one type's "
                                f"{geometry.grid}×{geometry.grid} grid)",
                     tickmode="array", tickvals=list(range(0, geometry.caps, 4 * per_type)),
                     ticktext=[f"type {k}" for k in range(0, geometry.types, 4)], showgrid=False)
    fig.update_yaxes(title_text="digit capsule j", type="category", showgrid=False)
    title = title or f"Agreement û<sub>j|i</sub> · v<sub>j</sub> after iteration {iteration} (added to b<sub>ij</sub>)"
    return _style(fig, title, height)


# --------------------------------------------------------------------------------------------
# evidence


def _evidence_scale(maps: np.ndarray, diverging: bool) -> tuple[dict, str]:
    """The colour scale of evidence ``maps`` (any shape, NaN left out): sequential from 0 to the
    largest value, or with ``diverging`` red/blue around 0 up to the largest magnitude; and the
    colour of the ink outline that reads on it."""
    top = float(np.nanmax(np.abs(maps))) if np.isfinite(maps).any() else 0.0
    top = top if top > 0 else 1e-9
    if diverging:
        return dict(colorscale=DIVERGING, zmin=-top, zmax=top, zmid=0), "rgba(0,0,0,0.85)"
    return dict(colorscale=SEQUENTIAL, zmin=0.0, zmax=top), "rgba(255,255,255,0.9)"


def _ink_outline(image: np.ndarray, line: str, width: float = 1.6) -> go.Contour:
    """The outline of the input's ink, its 0.5 level, as a line of colour ``line``."""
    return go.Contour(z=np.asarray(image, dtype=np.float32),
                      contours=dict(start=0.5, end=0.5, size=1, coloring="lines"), colorscale=[[0, line], [1, line]],
                      showscale=False, line=dict(width=width), hoverinfo="skip", name="input outline")


def evidence_figure(image: np.ndarray, maps: np.ndarray, digit: int, title: str | None = None,
                    diverging: bool = False, iteration: int | None = None, outline: bool = True,
                    colorbar_title: str = "c·|û|", height: int = 440) -> go.Figure:
    """Evidence maps on the input grid, one animation frame per routing iteration.

    ``maps`` (T, 28, 28) for digit ``digit`` (:meth:`capsules.analysis.Analysis.evidence_for`),
    NaN where no receptive field reaches: those pixels are left out (transparent, no hover).
    Magnitudes are drawn on a sequential scale from 0 to the largest value over all frames;
    with ``diverging`` (signed values) on a red/blue scale centred on 0. With ``outline`` the
    outline of the input's ink (the 0.5 level of ``image``) is drawn on top.
    ``len(fig.frames) == T``; the slider starts at ``iteration`` (1-based, default the last).
    """
    maps = np.asarray(maps, dtype=np.float32)
    t_count = maps.shape[0]
    shown = (t_count if iteration is None else int(iteration)) - 1
    scale, line = _evidence_scale(maps, diverging)

    def heat(t: int) -> go.Heatmap:
        return go.Heatmap(z=maps[t], **scale, hoverongaps=False,
                          colorbar=dict(title=dict(text=colorbar_title, side="right"), thickness=14,
                                        exponentformat="e"),
                          hovertemplate="row %{y}, col %{x}: %{z:.4g}<extra>" + f"digit {digit}</extra>")

    traces = [heat(shown)]
    if outline:
        traces.append(_ink_outline(image, line))
    fig = go.Figure(traces)
    fig.frames = [go.Frame(data=[heat(t)], traces=[0], name=str(t + 1)) for t in range(t_count)]
    _frame_slider(fig, t_count, shown)
    _image_axes(fig)
    fig.update_yaxes(scaleanchor="x")
    title = title or (f"Evidence for digit {digit}: votes c<sub>i{digit}</sub>·|û<sub>{digit}|i</sub>| "
                      "on the input")
    return _style(fig, title, height, margin=dict(l=10, r=10, t=56, b=70), showlegend=False)


def evidence_grid_figure(image: np.ndarray, maps: np.ndarray, digits, title: str | None = None,
                         diverging: bool = False, outline: bool = True, colorbar_title: str = "c·|û|",
                         colors=None, height: int | None = None) -> go.Figure:
    """Evidence maps of several digit capsules at every routing iteration at once, as small
    multiples: ``maps`` (K, T, side, side) for capsules ``digits`` (K), one row per capsule (its
    label in its colour from ``colors``, default :data:`DIGIT_COLORS`), one column per iteration,
    all on one colour scale (:func:`evidence_figure`'s, one colour bar), NaN pixels left out,
    the ink's outline on each with ``outline``. For the two digits of a pair: read along a row
    how routing moves a capsule's votes from stroke to stroke."""
    maps = np.asarray(maps, dtype=np.float32)
    k_count, t_count = maps.shape[:2]
    digits = [int(d) for d in digits]
    colors = list(colors) if colors is not None else [DIGIT_COLORS[d % 10] for d in digits]
    scale, line = _evidence_scale(maps, diverging)
    fig = make_subplots(rows=k_count, cols=t_count, horizontal_spacing=0.02, vertical_spacing=0.06,
                        column_titles=[f"iteration {t + 1}" for t in range(t_count)])
    for k, d in enumerate(digits):
        for t in range(t_count):
            fig.add_trace(go.Heatmap(z=maps[k, t], coloraxis="coloraxis", hoverongaps=False,
                                     hovertemplate="row %{y}, col %{x}: %{z:.4g}"
                                                   f"<extra>capsule {d}, iteration {t + 1}</extra>"),
                          row=k + 1, col=t + 1)
            if outline:
                fig.add_trace(_ink_outline(image, line, width=1.0), row=k + 1, col=t + 1)
            _image_axes(fig, row=k + 1, col=t + 1)
            n = k * t_count + t + 1
            fig.update_yaxes(scaleanchor=f"x{'' if n == 1 else n}", row=k + 1, col=t + 1)
        fig.update_yaxes(title_text=f"<b>capsule {d}</b>", title_font=dict(color=colors[k], size=13),
                         row=k + 1, col=1)
    fig.update_layout(coloraxis=dict(**{("c" + key[1:] if key.startswith("z") else key): v for key, v in scale.items()},
                                     colorbar=dict(title=dict(text=colorbar_title, side="right"), thickness=14,
                                                   exponentformat="e")))
    fig.update_annotations(font_size=12)
    title = title or "Evidence of each capsule, iteration by iteration"
    return _style(fig, title, height or 80 + 190 * k_count, margin=dict(l=40, r=10, t=80, b=10), showlegend=False)


# --------------------------------------------------------------------------------------------
# two digits (MultiMNIST): the paper's Fig. 5


def _rgb(hex_color: str) -> np.ndarray:
    h = hex_color.lstrip("#")
    return np.array([int(h[k:k + 2], 16) for k in (0, 2, 4)], dtype=np.float32) / 255.0


def overlay(image: np.ndarray, layers=(), colors=(), base: float = 0.5) -> np.ndarray:
    """Grey ``image`` (H, W) in [0, 1], dimmed to ``base``, with each of ``layers`` (H, W) in
    [0, 1] drawn over it in its colour from ``colors`` (hex), channel by channel the brighter of
    the two, so that red and green where both digits are read add up to yellow, as in the paper's
    Fig. 5. Returns (H, W, 3) uint8."""
    grey = np.clip(np.asarray(image, dtype=np.float32), 0, 1) * base
    out = np.repeat(grey[:, :, None], 3, axis=2)
    for layer, color in zip(layers, colors):
        out = np.maximum(out, np.clip(np.asarray(layer, dtype=np.float32), 0, 1)[:, :, None] * _rgb(color))
    return (out * 255 + 0.5).astype(np.uint8)


def pair_figure(image: np.ndarray, reconstructions: np.ndarray, digits, lengths: np.ndarray,
                rejected: np.ndarray, absent: int, colors=PAIR_COLORS, height: int = 260,
                title: str = "Fig. 5: each digit reconstructed from its own capsule, over the input") -> go.Figure:
    """The paper's Fig. 5 for one image of two digits, five panels: the input (grey); each of
    ``reconstructions`` (2, side, side), decoded from capsule ``digits[k]`` alone, in its colour
    from ``colors`` over the dimmed input; both together (yellow where they overlap); and
    ``rejected``, decoded from capsule ``absent``, which the model does not read, in
    :data:`REJECTED_COLOR`. Panel titles give each capsule's length from ``lengths`` (10,)."""
    lengths = np.asarray(lengths, dtype=float)
    a, b = (int(d) for d in digits)
    panels = [
        ("Input", overlay(image, base=1.0)),
        (f"{a} ({lengths[a]:.2f})", overlay(image, [reconstructions[0]], [colors[0]])),
        (f"{b} ({lengths[b]:.2f})", overlay(image, [reconstructions[1]], [colors[1]])),
        (f"{a} and {b}", overlay(image, reconstructions[:2], colors[:2])),
        (f"{absent} ({lengths[absent]:.2f}): rejected", overlay(image, [rejected], [REJECTED_COLOR])),
    ]
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.02, subplot_titles=[p[0] for p in panels])
    for col, (name, rgb) in enumerate(panels, start=1):
        fig.add_trace(go.Image(source=_png_uri(rgb), name=name, hoverinfo="skip"), row=1, col=col)
        fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, showline=False, ticks="",
                         constrain="domain", row=1, col=col)
        fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, showline=False, ticks="",
                         constrain="domain", scaleanchor=f"x{'' if col == 1 else col}", row=1, col=col)
    title_colors = [None, colors[0], colors[1], None, REJECTED_COLOR]
    for annotation, color in zip(fig.layout.annotations, title_colors):
        annotation.font = dict(size=13, color=color)
    return _style(fig, title, height, margin=dict(l=10, r=10, t=70, b=10), showlegend=False)


# --------------------------------------------------------------------------------------------
# routing iterations and pose


def iteration_strip_figure(reconstructions: np.ndarray, predictions: np.ndarray,
                           title: str = "Reconstruction of the winning capsule after k iterations",
                           height: int = 190) -> go.Figure:
    """(T, 28, 28) reconstructions in a row, labelled with the predicted digit per iteration."""
    recons = np.asarray(reconstructions, dtype=np.float32)
    t_count = recons.shape[0]
    strip = mosaic(recons[None], gap=3)
    fig = go.Figure(go.Image(source=_png_uri(strip), hoverinfo="skip"))
    centres = [k * 31 + 13.5 for k in range(t_count)]
    fig.update_xaxes(tickmode="array", tickvals=centres, side="bottom", showgrid=False,
                     ticktext=[f"k={k + 1}: <b>{int(p)}</b>" for k, p in enumerate(predictions)],
                     zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, scaleanchor="x",
                     showline=False, ticks="")
    fig.update_xaxes(showline=False)
    return _style(fig, title, height, margin=dict(l=10, r=10, t=40, b=30))


def perturbation_figure(grid: np.ndarray, deltas: np.ndarray, digit: int,
                        title: str | None = None, height: int = 760) -> go.Figure:
    """Fig. 4 of the paper: ``grid`` (16, K, 28, 28), row d = pose dimension d + 1, column k =
    offset ``deltas[k]`` added to it. Drawn as one image, 16 rows x K columns."""
    grid = np.asarray(grid, dtype=np.float32)
    rows, cols, h, w = grid.shape
    gap = 2
    fig = go.Figure(go.Image(source=_png_uri(mosaic(grid, gap=gap)), hoverinfo="skip"))
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
    return _style(fig, title, height, margin=dict(l=60, r=10, t=100, b=10))


def pose_figure(pose: np.ndarray, digit: int, perturbed: np.ndarray | None = None,
                title: str | None = None, height: int = 300,
                names: tuple[str, str] = ("v (model)", "v + offsets")) -> go.Figure:
    """The 16 components of capsule ``digit``'s pose vector (bars, digit colour); ``perturbed``
    (16,) drawn over it as diamonds. ``names`` label the two in the legend (under the plot)."""
    pose = np.asarray(pose, dtype=float)
    dims = [str(d + 1) for d in range(pose.shape[0])]
    color = DIGIT_COLORS[digit % 10]
    fig = go.Figure(go.Bar(x=dims, y=pose, name=names[0], marker_color=_rgba(color, 0.55),
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
    return _style(fig, title, height, showlegend=perturbed is not None, margin=dict(l=48, r=10))


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
    return _style(fig, title, height, margin=dict(r=90, b=48),
                  legend=dict(side, y=0.38, title_text="digit"),
                  legend2=dict(side, y=1.0, title_text="pose dim"))


# --------------------------------------------------------------------------------------------
# test-set experiments (capsules.experiments): figures of one results file, or of several models


MODEL_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")  # one per model compared
TRANSFORM_TITLES = {"rotate": "Rotation", "scale": "Scale", "shear": "Shear", "shift_x": "Horizontal shift"}
TRANSFORM_AXES = {"rotate": "degrees", "scale": "factor", "shear": "degrees", "shift_x": "pixels"}


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
    return _style(fig, title, height, margin=dict(t=72))


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
    return _style(fig, title, height, margin=dict(t=72))


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
    return _style(fig, title, height, margin=dict(l=150, t=56))


def robustness_figure(curves: dict[str, dict[str, list]], intervals: dict[str, dict[str, list]] | None = None,
                      subset: int | None = None, units: dict[str, str] | None = None, height: int = 560,
                      title: str | None = None) -> go.Figure:
    """Accuracy (%) under each affine transform, one panel per transform (2 x 2), one curve per
    model: ``curves[model][kind] = [[value, accuracy], ...]`` (the results file's ``robustness``),
    ``intervals[model][kind] = [[lo, hi], ...]`` their 95% intervals (error bars). Each model keeps
    its colour in every panel; the legend names the models. A dotted line marks the identity."""
    kinds = [k for k in TRANSFORM_TITLES if any(k in c for c in curves.values())]
    units = units or {}
    rows = -(-len(kinds) // 2)
    fig = make_subplots(rows=rows, cols=2, vertical_spacing=0.2, horizontal_spacing=0.1,
                        subplot_titles=[TRANSFORM_TITLES[k] for k in kinds])
    identity = {"rotate": 0.0, "scale": 1.0, "shear": 0.0, "shift_x": 0.0}
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
                hovertemplate=f"{TRANSFORM_TITLES[kind].lower()} %{{x:g}}: %{{y:.1f}}%<extra>{model}</extra>"),
                row=row, col=col)
    for p, kind in enumerate(kinds):
        row, col = p // 2 + 1, p % 2 + 1
        fig.add_vline(x=identity[kind], line=dict(color=ZERO, dash="dot", width=1), row=row, col=col)
        fig.update_xaxes(title_text=units.get(kind, TRANSFORM_AXES[kind]), title_standoff=4, row=row, col=col)
        fig.update_yaxes(title_text="accuracy (%)" if col == 1 else None, range=[0, 102], row=row, col=col)
    fig.update_annotations(font_size=12)
    on = f" ({subset:,} test images)" if subset else ""
    title = title or f"Accuracy under affine transforms of the test digits{on}"
    return _style(fig, title, height, legend_title_text="model", showlegend=True, margin=dict(b=92))


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
    return _style(fig, title, height, margin=dict(t=48, l=60))


def digit_thumbnail(image: np.ndarray, scale: int = 3) -> np.ndarray:
    """A (28, 28) image (uint8, or float in [0, 1]), or a colour one (H, W, 3) uint8 such as
    :func:`overlay` makes, as uint8 enlarged ``scale`` times by pixel repeats, so that the browser
    shows sharp pixels instead of a blur."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    return a.repeat(scale, axis=0).repeat(scale, axis=1)
