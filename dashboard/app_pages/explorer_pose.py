"""The one-digit explorer's pose view (:mod:`dashboard.app_pages.explorer`, whose tab it is): the
16 pose sliders of a digit capsule with the decoder redrawing it live, under each slider how that
pose value spreads over the test digits of its class (:func:`capsules.analysis.pose_distribution`,
shipped with the experiments results), and the paper's Fig. 4 on one colour scale. The capsule,
the offsets and Fig. 4's view are kept in the address (``capsule``, ``pose``, ``change``); "Reset"
returns to the winning capsule with no offsets."""

from __future__ import annotations

import numpy as np
import streamlit as st

from capsules import analysis
from dashboard import url_state
from dashboard.figures.base import DIGIT_COLORS, image_figure
from dashboard.figures.pose import perturbation_figure, pose_figure, pose_spread_svg, svg_image
from dashboard.models import LoadedModel, pose_spread
from dashboard.views import Clock, chart, figure, view
from dashboard.widgets import digit_picker

POSE_DIMS = 16
POSE_LIMIT, POSE_STEP = 0.5, 0.05  # the pose sliders' range (+-) and step


@st.cache_data(max_entries=64, show_spinner=False)
def cached_grid(_model, model_key: str, pose: np.ndarray, digit: int) -> np.ndarray:
    return analysis.perturbation_grid(_model, pose, digit)


def set_offsets(offsets) -> None:
    for d, value in enumerate(offsets):
        st.session_state[f"pose_{d}"] = float(value)


def reset_pose() -> None:
    """The pose explorer as it opens: no offsets, the winning capsule."""
    set_offsets(np.zeros(POSE_DIMS))
    st.session_state["pose_digit"] = None


def forget_offsets_of_old_input(key: int) -> None:
    """The pose offsets belong to one input (``key``: the explorer's ``Input.key``): a new input
    starts from its own pose. The offsets a link names are for the input it names: they leave the
    address when the input changes (not on a session's first run, which may be a link's)."""
    if st.session_state.get("pose_input") != key:
        if st.session_state.get("pose_input") is not None:
            url_state.forget("pose")
        st.session_state["pose_input"] = key
        set_offsets(np.zeros(POSE_DIMS))


def pose_offsets(pose: np.ndarray, spread: dict | None, digit: int) -> np.ndarray:
    """The 16 pose sliders, four columns of four, each with how its pose value spreads over the
    test digits read as ``digit`` under it (``spread``: :func:`dashboard.models.pose_spread`); their
    offsets, kept in the address as ``pose``."""
    url_state.restore("pose", set_offsets, lambda t: url_state.decode_offsets(t, POSE_DIMS, POSE_LIMIT, POSE_STEP),
                      "pose offsets")
    rows = spread["values"][digit] if spread else None
    count = spread["counts"][digit] if spread else 0
    cols = st.columns(4)
    offsets = np.zeros(POSE_DIMS, np.float32)
    for d in range(POSE_DIMS):
        with cols[d % 4]:
            offsets[d] = st.slider(f"dim {d + 1} ({pose[d]:+.2f})", -POSE_LIMIT, POSE_LIMIT, 0.0, POSE_STEP,
                                   key=f"pose_{d}", format="%+.2f")
            if rows and rows[d]:
                st.html(svg_image(pose_spread_svg(rows[d], spread["quantiles"], float(pose[d]),
                                                  float(pose[d] + offsets[d]), POSE_LIMIT, DIGIT_COLORS[digit],
                                                  f"the {count:,} test digits read as {digit}")))
    url_state.remember("pose", url_state.encode_offsets(offsets))
    return offsets


def spread_note(spread: dict | None, digit: int, loaded: LoadedModel) -> str:
    """How to read the strips under the sliders, or why there are none."""
    if spread is None:
        path = loaded.model.checkpoint_path
        if path is None:
            return "An untrained model has no spread of its pose values to show under the sliders."
        return (f"No spread of the pose values ships with `{path.name}` (its experiments results, when there are "
                f"any, predate it): `python -m capsules.experiments --checkpoint {path} --sections pose` computes "
                "it, in about two minutes.")
    return (f"Under each slider, its range of values: how dimension d of v{digit} spreads over the "
            f"{spread['counts'][digit]:,} test digits the model reads as {digit} (line 1–99%, band 5–95%, box "
            "25–75%, median); dashed: this digit's value, red: with the offset. Fig. 4's ±0.25 is a small move "
            "where the box is wide, a large one where it is narrow.")


@view
def view_pose(loaded: LoadedModel, res: analysis.Analysis, clock: Clock) -> None:
    model = loaded.model
    left, right = st.columns([1.15, 1], gap="large")
    with left:
        c1, c2 = st.columns([1.4, 1], vertical_alignment="bottom")
        with c1:
            jp = digit_picker("Digit capsule", "pose_digit", res.prediction, "capsule")
        with c2:
            st.button("Reset", key="pose_reset", on_click=reset_pose,
                      help="Back to the winning capsule with no offsets.")
        st.caption("The 16 dimensions of a digit capsule are its instantiation parameters (§5.1); "
                   "each slider shows the dimension's value in brackets. Add an offset to any of them "
                   "and the decoder redraws the digit. A new input resets the offsets.")
        pose, spread = res.v[jp], pose_spread(loaded)
        offsets = pose_offsets(pose, spread, jp)
        st.caption(spread_note(spread, jp, loaded))
        moved, recon = clock("decode (pose sliders)", analysis.offset_pose, model, pose, offsets, jp)
        plain = res.reconstruction if jp == res.prediction else analysis.reconstruct(model, pose, jp)
        a, b = st.columns(2)
        with a:
            chart(figure(image_figure, plain, f"Decoded from v<sub>{jp}</sub>", height=250), "fig_pose_plain")
        with b:
            chart(figure(image_figure, recon, f"Decoded from v<sub>{jp}</sub> + offsets", height=250),
                  "fig_pose_live")
        chart(figure(pose_figure, pose, jp, moved if np.any(offsets) else None, height=290), "fig_pose_vector")
    with right:
        change = url_state.kept("change", "pose_change", {"off": False, "on": True}, "Fig. 4 view", lambda: st.toggle(
            "Show the change from offset 0", key="pose_change",
            help="Each image minus its row's image at offset 0, on one diverging scale for the grid."))
        grid = clock("Fig. 4 grid (176 decodes)", cached_grid, model, loaded.key, np.ascontiguousarray(pose), jp)
        chart(figure(perturbation_figure, grid, analysis.perturbation_deltas(), jp, height=760, change=change),
              "fig_perturbation")
        st.caption(f"As the paper's Fig. 4: row d adds −0.25 … +0.25 (steps of 0.05) to dimension d of "
                   f"v{jp}, all other dimensions kept, and decodes; one colour scale for the whole grid (the bar). "
                   "Some dimensions change stroke width, skew or local parts of the digit.")
