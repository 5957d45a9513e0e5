"""The explorer of one digit: draw, pick or upload a digit and watch the capsules route it.

A page of ``streamlit run dashboard/app.py``. :func:`main` reads the widgets, calls
:mod:`capsules.analysis` for every number and :mod:`dashboard.figures` for every figure, and lays
the page out; the functions below each read their widgets and return what they read, or draw
one view. Each view is a fragment (:func:`dashboard.views.view`): its own controls rerun only
the view; the input, r and the tabs rerun the page. Figures are cached by their numbers
(:func:`dashboard.views.figure`), so a rerun redraws only what changed.

The CapsNet is the one picked in the sidebar. A shipped baseline CNN (the paper's Table 1 baseline)
answers beside it where a comparison makes sense: its prediction and softmax probability for the
same input, and for the transformed input of the transform explorer.

The view is kept in the address (:mod:`dashboard.url_state`), so that a link reopens it: the
model and r (the sidebar), the open tab (``tab``), the input as the MNIST test digit it is
(``?test_digit=N``, :data:`dashboard.app_pages.TEST_DIGIT`; another page opens a digit here so:
from the built-in samples when it is one of them, else from the MNIST test set) or a drawing
(``draw``), and each view's own choices (its module says which). An upload cannot go in a link,
and the page says so. The routing views are in :mod:`.explorer_routing`, the pose view in
:mod:`.explorer_pose`.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from capsules import analysis
from dashboard import url_state
from dashboard.app_pages import TEST_DIGIT
from dashboard.app_pages.explorer_pose import forget_offsets_of_old_input, view_pose
from dashboard.app_pages.explorer_routing import view_evidence, view_iterations, view_routing
from dashboard.figures.base import image_pair_figure, length_change_figure, lengths_figure, lengths_per_iteration_figure
from dashboard.figures.pose import pose_figure, transform_figure
from dashboard.models import (
    LoadedModel, cached_analysis, cached_classification, get_baselines, get_model, get_samples, model_panel,
)
from dashboard.views import Clock, chart, end_run, figure, show_views, view
from dashboard.widgets import Input, choose_input, routing_iterations



# ------------------------------------------------------------------------------ cached work


def classified(baselines: list[LoadedModel], image: np.ndarray,
               clock: Clock) -> list[tuple[str, analysis.Classification]]:
    """Each baseline CNN's answer for ``image``, by checkpoint name."""
    return [(b.name, clock(f"CNN {b.name}", cached_classification, b.model, b.key, np.ascontiguousarray(image)))
            for b in baselines]


def baseline_metric(col, name: str, answer: analysis.Classification, label: str = "Baseline CNN") -> None:
    col.metric(f"{label} ({name})", f"{answer.prediction} ({answer.probability:.2f})",
               help=f"The paper's baseline CNN (`{name}`) on the same 28×28 image: its prediction and, in brackets, "
                    "its softmax probability (the CapsNet's figure is the capsule's length, a probability of "
                    "another kind).")


@st.cache_data(max_entries=32, show_spinner=False)
def cached_sweep(_model, model_key: str, image: np.ndarray, kind: str, base: tuple, digit: int,
                 iterations: int) -> analysis.TransformSweep:
    return analysis.transform_sweep(_model, image, kind, base=dict(base), digit=digit, iterations=iterations)


# ------------------------------------------------------------------------------ reading widgets


def slider_format(t: analysis.transforms.Transform) -> str:
    """A slider's number format: the step's decimals, a sign about a zero identity, the unit's suffix."""
    decimals = len(f"{t.explore[2]:g}".partition(".")[2])
    return f"%{'+' if t.identity == 0 else ''}.{decimals}f{t.suffix}"


def reset_transform() -> None:
    for kind, t in analysis.TRANSFORMS.items():
        st.session_state[f"tf_{kind}"] = t.identity


# ------------------------------------------------------------------------------ top row


def reading_notes(res: analysis.Analysis, inp: Input, trained: int | None) -> list[str]:
    """What the lengths (and the size of a drawn mark) say about this input, in sentences."""
    rd, notes = res.reading, []

    def listed(digits, lengths):
        return ", ".join(f"{j} ({lengths[j]:.2f})" for j in digits) or "none"

    if rd.several and trained and res.iterations > trained:
        notes.append(f"Several capsules are long: {listed(rd.long, res.lengths)}. Routing with r = "
                     f"{res.iterations}, more iterations than training's r = {trained}, drives capsules "
                     f"towards length 1 (see Routing iterations); with r = {trained} the long ones are "
                     f"{listed(res.sweep.long(trained, analysis.LONG), res.sweep.lengths[trained - 1])}.")
    elif rd.several:
        notes.append(f"Several capsules are long: {listed(rd.long, res.lengths)}. Two digits, or a shape "
                     "between them; this model never saw overlapping digits in training.")
    elif rd.nothing:
        notes.append(f"No capsule is longer than {analysis.LONG}: the model recognises no digit here "
                     f"(the longest, {rd.prediction}, has length {rd.length:.2f}).")
    elif not rd.confident:
        notes.append(f"No capsule reaches m⁺ = {analysis.M_PLUS}: {rd.prediction} at {rd.length:.2f} is a "
                     "hesitant answer.")
    if inp.converted is not None and inp.converted.tiny:
        notes.append(f"The mark spans only {inp.converted.extent:.0%} of the "
                     f"{'canvas' if inp.drawn else 'image'}: it was enlarged about "
                     f"{inp.converted.zoom:.0f}× to fill MNIST's 20-pixel box (a dot becomes a disk).")
    return notes


def prediction_panel(res: analysis.Analysis, inp: Input, trained: int | None,
                     compared: list[tuple[str, analysis.Classification]]) -> None:
    st.subheader("Prediction")
    m1, m2 = st.columns(2)
    m1.metric("Prediction", f"{res.prediction} ({res.confidence:.2f})",
              help="The longest digit capsule and its length |v|, the model's probability that the digit is present.")
    m2.metric("Runner-up", f"{res.runner_up} ({res.lengths[res.runner_up]:.2f})")
    for name, answer in compared:  # below, the whole width: a third column would cut the figures short
        baseline_metric(st, name, answer)
    if inp.label is not None:
        st.caption(f"True label: **{inp.label}** " + ("✓" if inp.label == res.prediction else "✗ (misclassified)")
                   + "".join(f"; CNN `{name}` " + ("✓" if inp.label == a.prediction else "✗")
                             for name, a in compared))
    for note in reading_notes(res, inp, trained):
        st.info(note)
    chart(figure(image_pair_figure, res.image, res.reconstruction, res.prediction, height=260), "fig_pair")
    st.caption("Left: the 28×28 image the model classifies. Right: the decoder's reconstruction from "
               "the winning capsule alone, the others masked to zero (§4.1).")


# ------------------------------------------------------------------------------ views


@view
def view_lengths(res: analysis.Analysis, clock: Clock) -> None:
    left, right = st.columns(2, gap="large")
    with left:
        chart(figure(lengths_figure, res.lengths, res.prediction), "fig_lengths")
        st.caption(f"The length of digit capsule j is the probability that digit j is present "
                   f"(squash, eq. 1). The margin loss (eq. 4) pushes the true digit above m⁺ = {analysis.M_PLUS} "
                   f"and every other below m⁻ = {analysis.M_MINUS}.")
    with right:
        title = f"|v<sub>j</sub>| after each of the r = {res.iterations} iterations"
        chart(figure(lengths_per_iteration_figure, res.lengths_per_iteration, title=title), "fig_lengths_iter")
        if res.iterations > 1:
            chart(figure(length_change_figure, res.length_change), "fig_length_change")
            st.caption("Change of every capsule's length from one routing iteration to the next: "
                       "routing moves the lengths only through the coupling coefficients c (eq. 2).")


def set_transform(values: dict[str, float]) -> None:
    for kind, value in values.items():
        st.session_state[f"tf_{kind}"] = float(value)


def transform_params() -> tuple[dict[str, float], str]:
    """The five transform sliders and the swept transform, kept in the address (``tf``: the sliders
    off the identity, ``rotate:15,scale:1.1``; ``sweep``)."""
    sliders = {kind: t.explore for kind, t in analysis.TRANSFORMS.items()}
    url_state.restore("tf", set_transform, lambda t: url_state.decode_values(t, sliders, "transform"), "transform")
    cols = st.columns(len(analysis.TRANSFORMS) + 1)
    params = {}
    for col, (kind, t) in zip(cols, analysis.TRANSFORMS.items()):
        with col:
            lo, hi, step = t.explore
            params[kind] = st.slider(t.title, lo, hi, t.identity, step, key=f"tf_{kind}", help=t.unit,
                                     format=slider_format(t))
    url_state.remember("tf", url_state.encode_values(params, {k: t.identity for k, t in analysis.TRANSFORMS.items()}))
    with cols[-1]:
        kind = url_state.kept("sweep", "tf_sweep", {k: k for k in analysis.TRANSFORMS}, "swept transform",
                              lambda: st.selectbox("Sweep", list(analysis.TRANSFORMS), key="tf_sweep",
                                                   format_func=lambda k: analysis.TRANSFORMS[k].title))
        st.button("Reset", key="tf_reset", on_click=reset_transform)
    return params, kind


@view
def view_transform(loaded: LoadedModel, inp: Input, res: analysis.Analysis, baselines: list[LoadedModel],
                   clock: Clock) -> None:
    model, pred = loaded.model, res.prediction
    st.caption("Transform the input and watch the capsules respond: the paper argues the pose vector "
               "changes smoothly with the digit's pose (equivariance) while the length, the "
               "probability, stays put (invariance).")
    params, kind = transform_params()
    if analysis.is_identity(params):
        tres = res
    else:
        moved = clock("transform", analysis.transform_image, inp.image, **params)
        tres = clock("analysis (transformed)", cached_analysis, model, loaded.key,
                     np.ascontiguousarray(moved), res.iterations)
    left, mid, right = st.columns([1.1, 1, 1.3], gap="medium")
    with left:
        chart(figure(image_pair_figure, tres.image, tres.reconstruction, tres.prediction, height=250,
                     first="Transformed"), "fig_tf_pair")
        st.metric("Prediction (transformed)", f"{tres.prediction} ({tres.confidence:.2f})")
        for name, answer in classified(baselines, tres.image, clock):
            baseline_metric(st, name, answer, label="Baseline CNN, transformed")
    with mid:
        chart(figure(lengths_figure, tres.lengths, tres.prediction, title="Lengths |v<sub>j</sub>|", height=300,
                     values=False), "fig_tf_lengths")
    with right:
        chart(figure(pose_figure, res.v[pred], pred, tres.v[pred], height=300, names=("original", "transformed"),
                     title=f"Pose v<sub>{pred}</sub>"), "fig_tf_pose")
    base = tuple(sorted((k_, v_) for k_, v_ in params.items() if k_ != kind))
    sweep = clock("transform sweep (21 images)", cached_sweep, model, loaded.key, inp.image, kind, base, pred,
                  res.iterations)
    chart(figure(transform_figure, sweep.values, sweep.poses, sweep.lengths, kind, pred, current=params[kind],
                 unit=analysis.TRANSFORMS[kind].unit), "fig_tf_sweep")
    st.caption(f"Each line is one of the 16 dimensions of capsule {pred} (the prediction for the "
               f"untransformed input) as the {analysis.TRANSFORMS[kind].title.lower()} sweeps its range, "
               "the other transforms held at their slider values; below, all ten lengths.")


# ------------------------------------------------------------------------------ page


def main() -> None:
    clock = Clock()
    loaded = get_model()
    trained = analysis.training_iterations(loaded.model.metadata)
    cfg, g = loaded.model.config, analysis.Geometry.of(loaded.model.config)
    st.title("Capsule network explorer")
    st.caption(f"Dynamic routing between capsules (Sabour, Frosst & Hinton, 2017) on MNIST: Conv1 → "
               f"{g.caps} primary capsules ({g.types} types × {g.grid}×{g.grid}, {cfg.primary_dim}D) → routing "
               f"→ {cfg.n_classes} digit capsules ({cfg.digit_dim}D) → decoder. Draw a digit or pick one, "
               "then explore the tabs.")
    iterations = routing_iterations(loaded, trained)
    time_slot = model_panel(loaded)
    baselines = get_baselines()
    samples = get_samples()
    draw_col, pick_col, pred_col = st.columns([1.1, 1.0, 1.3], gap="medium")
    inp = choose_input(samples, draw_col, pick_col)
    res = clock("analysis (traced forward)", cached_analysis, loaded.model, loaded.key, inp.image, iterations)
    forget_offsets_of_old_input(inp.key)
    with pick_col:
        st.caption(f"**Input now:** {inp.source}. " + ("Clear the canvas to go back to the sample." if inp.drawn
                                                       else "Draw on the canvas to replace it."))
        if inp.source.startswith("upload"):
            st.caption(f"An upload cannot be shared: a link to this view opens test digit "
                       f"#{st.query_params.get(TEST_DIGIT)} in its place.")
    with pred_col:
        prediction_panel(res, inp, trained, classified(baselines, inp.image, clock))
    views = {  # each a fragment: its controls rerun only the view
        "Capsule lengths": lambda: view_lengths(res),
        "Routing step by step": lambda: view_routing(res),
        "Evidence map": lambda: view_evidence(res),
        "Routing iterations": lambda: view_iterations(res, trained),
        "Pose perturbation": lambda: view_pose(loaded, res),
        "Transform explorer": lambda: view_transform(loaded, inp, res, baselines),
    }
    show_views(views, "view")
    end_run(time_slot, clock, ("one digit", inp.key, iterations))  # last: the whole run


if __name__ == "__main__":  # run as a page by st.navigation (dashboard/app.py)
    main()
