"""Figures of routing (the explorer's "Routing step by step", "Evidence" and "Iterations" views):
coupling coefficients on the primary-capsule grid, routing mass, agreement, evidence maps and the
reconstructions of r = 1 ... 10."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from capsules.analysis import MNIST, Geometry
from dashboard.figures.base import (
    DIGIT_COLORS,
    DIVERGING,
    SEQUENTIAL,
    ZERO,
    image_axes,
    mosaic,
    png_uri,
    styled,
)

TILE_COLS = 8  # coupling layout: the 32 primary types as 4 rows x 8 columns of grid tiles


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
    return styled(fig, title, height)


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
    return styled(fig, title, height, legend_title_text="digit")


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
    return styled(fig, title, height)


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
    image_axes(fig)
    fig.update_yaxes(scaleanchor="x")
    title = title or (f"Evidence for digit {digit}: votes c<sub>i{digit}</sub>·|û<sub>{digit}|i</sub>| "
                      "on the input")
    return styled(fig, title, height, margin=dict(l=10, r=10, t=56, b=70), showlegend=False)


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
            image_axes(fig, row=k + 1, col=t + 1)
            n = k * t_count + t + 1
            fig.update_yaxes(scaleanchor=f"x{'' if n == 1 else n}", row=k + 1, col=t + 1)
        fig.update_yaxes(title_text=f"<b>capsule {d}</b>", title_font=dict(color=colors[k], size=13),
                         row=k + 1, col=1)
    fig.update_layout(coloraxis=dict(**{("c" + key[1:] if key.startswith("z") else key): v for key, v in scale.items()},
                                     colorbar=dict(title=dict(text=colorbar_title, side="right"), thickness=14,
                                                   exponentformat="e")))
    fig.update_annotations(font_size=12)
    title = title or "Evidence of each capsule, iteration by iteration"
    return styled(fig, title, height or 80 + 190 * k_count, margin=dict(l=40, r=10, t=80, b=10), showlegend=False)


# --------------------------------------------------------------------------------------------
# routing iterations and pose


def iteration_strip_figure(reconstructions: np.ndarray, predictions: np.ndarray,
                           title: str = "Reconstruction of the winning capsule after k iterations",
                           height: int = 190) -> go.Figure:
    """(T, 28, 28) reconstructions in a row, labelled with the predicted digit per iteration."""
    recons = np.asarray(reconstructions, dtype=np.float32)
    t_count = recons.shape[0]
    strip = mosaic(recons[None], gap=3)
    fig = go.Figure(go.Image(source=png_uri(strip), hoverinfo="skip"))
    centres = [k * 31 + 13.5 for k in range(t_count)]
    fig.update_xaxes(tickmode="array", tickvals=centres, side="bottom", showgrid=False,
                     ticktext=[f"k={k + 1}: <b>{int(p)}</b>" for k, p in enumerate(predictions)],
                     zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, scaleanchor="x",
                     showline=False, ticks="")
    fig.update_xaxes(showline=False)
    return styled(fig, title, height, margin=dict(l=10, r=10, t=40, b=30))


