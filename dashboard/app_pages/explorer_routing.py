"""The one-digit explorer's routing views (:mod:`dashboard.app_pages.explorer`, whose tabs they
are): the coupling coefficients step by step, the evidence maps and the routing iterations. Each
is a fragment (:func:`dashboard.views.view`); every number comes from
:class:`capsules.analysis.Analysis`, every figure from :mod:`dashboard.figures.routing` and
:mod:`dashboard.figures.base`. Each view's choices are kept in the address
(``routing_capsule``, ``t``, ``coupling``; ``evidence_capsule``, ``evidence_mode``, ``evidence_spread``)."""

from __future__ import annotations

import streamlit as st

from capsules import analysis
from dashboard import url_state
from dashboard.figures.base import lengths_per_iteration_figure
from dashboard.figures.routing import (
    agreement_figure, coupling_figure, evidence_figure, iteration_strip_figure, routing_mass_figure,
)
from dashboard.views import Clock, chart, figure, view
from dashboard.widgets import EVIDENCE_BARS, digit_picker, evidence_controls, evidence_notes, evidence_title

COUPLING_VIEWS = {"c − 1/10 (move from uniform)": "deviation",
                  "c[t] − c[t−1] (change in this step)": "step",
                  "c itself (white = 1/10)": "raw"}
COUPLING_BARS = {"deviation": "c − 1/10", "step": "Δc", "raw": "c"}


def routing_metrics(step: analysis.RoutingStep) -> None:
    """Four numbers of one iteration; none of them is a change over time, so no arrows."""
    e1, e2, e3, e4 = st.columns(4)
    caps, n = step.primaries, step.digits
    e1.metric("Routing entropy", f"{step.entropy:.5f}", f"{step.entropy_gap:+.1e} vs ln {n}",
              delta_color="off", delta_arrow="off",
              help=f"Mean over the {caps} primaries of −Σⱼ cᵢⱼ ln cᵢⱼ (nats); "
                   f"ln {n} = {step.uniform_entropy:.5f} is uniform coupling.")
    e2.metric(f"Largest |c − 1/{n}|", f"{step.max_deviation:.1e}",
              help="The largest move of any coupling coefficient away from uniform at this iteration.")
    uniform = step.top is None
    e3.metric(f"Coupling mass Σᵢ cᵢ{step.digit}", f"{step.mass:.3f}",
              f"uniform: {step.uniform_mass:g}" if uniform else f"{step.mass_gap:+.3f} vs {step.uniform_mass:g}",
              delta_color="off", delta_arrow="off",
              help=f"Sum of the coupling coefficients of all {caps} primaries to this digit "
                   f"({caps}/{n} when uniform).")
    if uniform:
        e4.metric("Most coupled primary", "none: all equal", f"c = {step.top_c:.4f} for every primary",
                  delta_color="off", delta_arrow="off",
                  help=f"At iteration 1 every primary couples 1/{n} to every digit (b = 0, eq. 3): a tie.")
    else:
        ty, row, col = step.top
        e4.metric("Most coupled primary", f"type {ty} ({row},{col})", f"c = {step.top_c:.4f}",
                  delta_color="off", delta_arrow="off",
                  help="The primary capsule (type, row, col) with the largest c to this digit.")


@view
def view_routing(res: analysis.Analysis, clock: Clock) -> None:
    c1, c2, c3 = st.columns([1.2, 1.0, 2.2])
    with c1:
        if res.iterations > 1:
            url_state.restore("t", "routing_iteration", lambda v: url_state.decode_index(v, res.iterations + 1, 1),
                              "routing iteration")
            t = st.slider("Iteration", 1, res.iterations, res.iterations, key="routing_iteration",
                          help="Iteration t uses the coupling coefficients c = softmax(b) of that step.")
            url_state.remember("t", None if t == res.iterations else str(t))
        else:
            t = 1
            url_state.forget("t")
            st.caption("With r = 1 there is one iteration, with uniform coupling.")
    with c2:
        j = digit_picker("Digit capsule", "routing_digit", res.prediction, "routing_capsule")
    with c3:
        shown = COUPLING_VIEWS[url_state.kept(
            "coupling", "routing_view", {v: k for k, v in COUPLING_VIEWS.items()}, "coupling view",
            lambda: st.radio("Show", list(COUPLING_VIEWS), key="routing_view", horizontal=True))]
    cv = res.coupling(j, shown)
    titles = {
        "deviation": f"Coupling to digit {j} at iteration {t}: c<sub>i{j}</sub> − 1/10",
        "step": (f"Coupling to digit {j}: change from iteration {t - 1} to {t}" if t > 1 else
                 f"Coupling to digit {j}: iteration 1 has no previous step"),
        "raw": f"Coupling coefficients c<sub>i{j}</sub> at iteration {t}",
    }
    routing_metrics(res.routing_step(t, j))
    left, right = st.columns(2, gap="large")
    with left:
        chart(figure(coupling_figure, cv.values[t - 1], j, title=titles[shown], zmax=cv.spread, centre=cv.centre,
                     colorbar_title=COUPLING_BARS[shown], geometry=res.geometry), "fig_coupling")
        g = res.geometry
        st.caption(f"Each tile is one of the {g.types} primary-capsule types over its {g.grid}×{g.grid} grid "
                   f"positions (i = type·{g.grid ** 2} + row·{g.grid} + col). Iteration 1 always uses "
                   "c = 1/10 (b = 0, eq. 3), so it is blank; later iterations raise c where the "
                   "prediction û agrees with v. In a trained CapsNet most coefficients move by only "
                   "10⁻³ to 10⁻² (the mean routing entropy stays within 10⁻³ of ln 10), hence the scale "
                   "of the colour bar, the same for every iteration.")
    with right:
        chart(figure(coupling_figure, res.agreement[t - 1, :, j], j, colorbar_title="û·v", geometry=res.geometry,
                     title=f"Agreement û<sub>{j}|i</sub> · v<sub>{j}</sub> after iteration {t}"),
              "fig_agreement_tiles")
        st.caption(f"What iteration {t} adds to each logit bᵢ{j} (Procedure 1, line 7): red primaries "
                   f"predict a pose that agrees with v{j} and gain coupling in the next iteration.")
    chart(figure(routing_mass_figure, res.mass, res.vote_mass), "fig_mass")
    st.caption("Share of the coupling (left: Σᵢ cᵢⱼ) and of the vote length flowing into sⱼ "
               "(right: Σᵢ cᵢⱼ|ûⱼ|ᵢ|, eq. 2) that each digit receives over the iterations; 10 % is uniform.")
    every = st.expander("Agreement of every primary with every digit capsule", key="routing_every",
                        on_change="rerun")
    if every.open:  # built and sent only when opened (11,520 cells; opening reruns this view)
        with every:
            chart(figure(agreement_figure, res.agreement[t - 1], t, geometry=res.geometry), "fig_agreement")
            st.caption(f"ûⱼ|ᵢ · vⱼ after iteration {t} for every pair; columns are primaries "
                       f"i = type·{g.grid ** 2} + row·{g.grid} + col.")


@view
def view_evidence(res: analysis.Analysis, clock: Clock) -> None:
    c1, c2 = st.columns([1, 2.8])
    with c1:
        j = digit_picker("Digit capsule", "evidence_digit", res.prediction, "evidence_capsule")
    with c2:
        mode, spread = evidence_controls("evidence")
    maps = clock("evidence map", res.evidence_for, j, mode, spread)
    left, right = st.columns([1.2, 1], gap="large")
    with left:
        chart(figure(evidence_figure, res.image, maps, j, title=evidence_title(mode, j), diverging=mode != "votes",
                     outline=spread != "ink", colorbar_title=EVIDENCE_BARS[mode]), "fig_evidence")
    with right:
        evidence_notes(res.geometry, "Step through the routing iterations with the slider under the map.")


@view
def view_iterations(res: analysis.Analysis, trained: int | None, clock: Clock) -> None:
    sweep, last = res.sweep, len(res.sweep.predictions)
    left, right = st.columns([1.2, 1], gap="large")
    with left:
        chart(figure(lengths_per_iteration_figure, sweep.lengths, highlight=res.iterations,
                     title=f"Capsule lengths when routing with k = 1 … {last} iterations"),
              "fig_sweep_lengths")
    with right:
        st.markdown("**Prediction by number of iterations:** "
                    + " · ".join(f"k={k_}: **{int(p)}**" for k_, p in zip(sweep.iterations, sweep.predictions)))
        changes = sweep.changes
        st.caption("The prediction never changes over 1 … 10 iterations." if not changes else
                   f"The prediction changes at k = {', '.join(map(str, changes))}.")
        base = trained or res.iterations
        at_base, at_last = sweep.long(base), sweep.long(last)

        def listed(k, digits):
            return ", ".join(f"{j} ({sweep.lengths[k - 1, j]:.2f})" for j in digits) or "none"

        source = ("training used r = " + str(trained) + " (the checkpoint's train_config)" if trained
                  else f"the model's default r is {base}")
        st.caption(f"Above m⁺ = {analysis.M_PLUS} (the shaded band, large points): at k = {base}, "
                   f"{listed(base, at_base)}; "
                   f"at k = {last}, {listed(last, at_last)}. Each iteration adds the agreement to the logits "
                   f"again, so routing longer than {source} keeps raising the coupling to every capsule "
                   "its primaries agree with, and several capsules can approach length 1.")
        st.caption(f"Routing with k iterations equals the first k iterations of a longer routing, so one "
                   f"trace gives all ten. The sidebar's r = {res.iterations} (dotted line) is used by every view.")
    chart(figure(iteration_strip_figure, sweep.reconstructions, sweep.predictions), "fig_sweep_strip")
