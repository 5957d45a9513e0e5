"""Figures of the two-digit page (the paper's Fig. 5): two digits in their colours over the grey
input, and each capsule's reconstruction."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.figures.base import PAIR_COLORS, REJECTED_COLOR, png_uri, styled

# --------------------------------------------------------------------------------------------
# two digits (MultiMNIST): the paper's Fig. 5


def rgb(hex_color: str) -> np.ndarray:
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
        out = np.maximum(out, np.clip(np.asarray(layer, dtype=np.float32), 0, 1)[:, :, None] * rgb(color))
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
        fig.add_trace(go.Image(source=png_uri(rgb), name=name, hoverinfo="skip"), row=1, col=col)
        fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, showline=False, ticks="",
                         constrain="domain", row=1, col=col)
        fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, showline=False, ticks="",
                         constrain="domain", scaleanchor=f"x{'' if col == 1 else col}", row=1, col=col)
    title_colors = [None, colors[0], colors[1], None, REJECTED_COLOR]
    for annotation, color in zip(fig.layout.annotations, title_colors):
        annotation.font = dict(size=13, color=color)
    return styled(fig, title, height, margin=dict(l=10, r=10, t=70, b=10), showlegend=False)


