"""The drawing pad: a black square canvas that sends its strokes the moment the pen is lifted.

An ``st.components.v2`` component of this project: ``pad.js`` and ``pad.css`` beside this file go
to the browser inline with the page (no build step, nothing fetched from another host) and draw
in the page itself, not in an iframe. The pointer (mouse, pen or finger) draws round strokes;
"Undo" takes back the last one and "Clear" all of them.

On pen-up, and only then, the pad sends every stroke so far at once (the
``streamlit-drawable-canvas`` it replaces sent a PNG of the canvas with Fabric.js's description
of it, about 7 KB, after a fixed 200 ms wait): point lists, ``[{"pen": k, "xy": [x0, y0, x1, y1,
...]}, ...]`` in whole pad pixels, a few hundred numbers.
:func:`capsules.data.strokes.rasterise_strokes` draws them again in Python as one mask per pen. The
page chooses the pens (CSS colours) and which one draws; each stroke keeps its pen, so that a page
drawing two digits in two colours knows whose ink each pixel is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent
NAME = "capsules_drawing_pad"
_PAD = st.components.v2.component(NAME, js=(HERE / "pad.js").read_text(encoding="utf-8"),
                                  css=(HERE / "pad.css").read_text(encoding="utf-8"))


def _new_drawing() -> None:
    """The strokes' callback: a new drawing reruns the page, which reads it; nothing else to do."""


def drawing_pad(key: str, side: int, width: float, pens: Sequence[str] = ("#FFFFFF",),
                pen: int = 0) -> list[dict] | None:
    """Show the pad, ``side`` pixels square, drawing strokes ``width`` pixels wide in the colour
    ``pens[pen]``; return the strokes drawn so far, ``[{"pen": k, "xy": [...]}, ...]`` (``k`` an
    index into ``pens``), an empty list once the pad was cleared, or None before anything was
    drawn. The page reruns on each pen-up, Undo and Clear.

    The strokes come from the browser: pass them to :func:`capsules.data.strokes.rasterise_strokes`
    (with ``pens=len(pens)``), which checks them. They also go back to the pad with the page, so
    a pad the browser builds anew (its element remounted) shows the same drawing.
    """
    state = st.session_state.get(key)
    strokes = state.get("strokes") if isinstance(state, Mapping) else None
    data = {"side": int(side), "width": float(width), "pens": list(pens), "pen": int(pen), "strokes": strokes}
    result = _PAD(key=key, data=data, on_strokes_change=_new_drawing, width="content", height="content")
    return result.get("strokes")
