"""Attacks & outliers: can a change the eye hardly sees fool the CapsNet, and does it know when an
image is no digit? (issue 24)

A page of ``streamlit run dashboard/app.py`` (``/trust``), in three parts:

- **Attack it**, live: the input (drawn, picked or uploaded, as on the one-digit page, or a
  Fashion-MNIST image of the shipped sample) attacked with FGSM, PGD-20 or the adaptive PGD-20 at
  the eps picked (:func:`capsules.analysis.attacks.attack_image`, untargeted, away from the model's
  own answer), the CapsNet and the shipped baseline CNN side by side: the attacked image and the
  change, the predictions and class scores before and after, the CapsNet's reconstruction, its
  distance and whether the reconstruction-distance detector flags it. A fragment: the method and
  eps rerun only it; each result is cached per model, image, method and eps.
- **Is it a digit?**: the input's outlier scores (:func:`capsules.analysis.outliers.image_scores`)
  on the histograms of the MNIST test digits and Fashion-MNIST images, with the detector's threshold.
- **On the test set**: accuracy and detection against eps, and the AUROCs, with 95% intervals and
  a sentence each (:mod:`dashboard.figures.trust_notes`).

The histograms, threshold and curves come from the ``ood`` and ``adversarial`` sections of the
results shipped beside each checkpoint; for one without them the page gives the command that
computes them. The address keeps the input (``draw``, ``test_digit``, ``fashion``), the attack
(``attack``) and ``eps``; a bad value falls back to the default with a notice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from capsules import analysis, experiments
from capsules.analysis import attacks, outliers
from dashboard.figures import trust_notes as notes
from capsules.data import fashion
from dashboard import url_state
from dashboard.figures.trust import (
    accuracy_figure, attack_figure, auroc_figure, before_after_figure, detection_figure, histogram_figure,
)
from dashboard.models import (
    LoadedModel, cached_analysis, cached_classification, get_baselines, get_model, get_samples, model_panel, results_of,
)
from dashboard.views import Clock, chart, end_run, figure, view
from dashboard.widgets import Input, choose_input

METHOD_LABELS = {"fgsm": "FGSM", "pgd": f"PGD-{attacks.STEPS}", "pgd_adaptive": f"adaptive PGD-{attacks.STEPS}"}
EPS_MAX, EPS_STEP, EPS_DEFAULT = 0.5, 0.01, 0.1  # the eps slider, in pixel units of images in [0, 1]
HISTOGRAM_SETS = (outliers.DIGITS, "fashion-mnist")
SCORE_AXES = {"max_length": "max<sub>j</sub> |v<sub>j</sub>|", "reconstruction_distance": "|x − r(x)|",
              "max_softmax": "largest softmax probability"}


# ------------------------------------------------------------------------------ cached work and results


@st.cache_data(max_entries=64, show_spinner=False)
def cached_attack(_model, model_key: str, image: np.ndarray, method: str, eps: float,
                  threshold: float | None) -> attacks.AttackedImage:
    return attacks.attack_image(_model, image, method, eps, threshold=threshold)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_scores(_model, model_key: str, image: np.ndarray) -> dict[str, float]:
    return outliers.image_scores(_model, image)


def _stamp(path) -> float:
    return path.stat().st_mtime if path.is_file() else 0.0


def missing_note(loaded: LoadedModel, results: dict | None, what: str) -> None:
    """Says which sections ``loaded``'s results lack and the command that computes them."""
    path = loaded.model.checkpoint_path
    if path is None:
        st.info(f"The untrained {what} has no test-set results: they are computed for a trained checkpoint.")
        return
    missing = notes.missing_sections(results)
    if not missing:
        return
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path  # as run from here
    st.info(f"The results of the {what} `{path.name}` hold no {' and no '.join(missing)} section. Compute them with"
            f"\n\n```bash\n{notes.command(shown, results)}\n```\n\nwhich writes `{experiments.results_path(path).name}` "
            "beside the checkpoint; this page reads it on its next run.")


def detector_threshold(results: dict | None) -> float | None:
    """The reconstruction distance above which the detector flags an image: the ``ood`` section's
    (fp32, as the live attack runs), else the ``adversarial`` section's; None without either."""
    limit = ((results or {}).get("ood") or {}).get("thresholds", {}).get("reconstruction_distance")
    if limit:
        return float(limit["value"])
    det = ((results or {}).get("adversarial") or {}).get("detector")
    return float(det["threshold"]) if det else None


@st.cache_data(show_spinner=False, max_entries=2)
def _fashion(path: str, stamp: float) -> tuple[np.ndarray, np.ndarray]:
    images, labels = fashion.load_fashion_sample(path)
    return images.numpy(), labels.numpy()


def fashion_sample() -> tuple[np.ndarray, np.ndarray] | None:
    """The Fashion-MNIST images shipped with the package; None, after saying how to make them, when
    the file is missing or unreadable."""
    path = fashion.SAMPLE
    try:
        return _fashion(str(path), _stamp(path))
    except (OSError, KeyError, ValueError) as exc:
        st.info(f"No Fashion-MNIST images to pick: the sample `{path}` could not be read ({exc}). "
                f"`python -m capsules.data.fashion` writes it from Fashion-MNIST (`{fashion.INSTALL}`).")
        return None


# ------------------------------------------------------------------------------ reading widgets


def pick_fashion() -> Input | None:
    """The Fashion-MNIST picker (kept in the address as ``fashion``): the image picked, or None."""
    found = fashion_sample()
    if found is None:
        url_state.forget("fashion")
        return None
    images, labels = found
    url_state.restore("fashion", "fashion", lambda t: url_state.decode_index(t, len(labels)), "Fashion-MNIST image")
    k = st.selectbox("Or an image that is no digit (Fashion-MNIST)", [None, *range(len(labels))], key="fashion",
                     format_func=lambda i: "none" if i is None else f"{fashion.CLASSES[labels[i]]} · #{i}",
                     help="Images of clothes from the Fashion-MNIST test set, which the model never saw: "
                          "the outliers of “Is it a digit?”. Set it back to “none” for the digit.")
    url_state.remember("fashion", None if k is None else str(k))
    if k is None:
        return None
    return Input(analysis.as_image(images[k]), f"Fashion-MNIST image #{k} ({fashion.CLASSES[labels[k]]})", None, None,
                 drawn=False)


def decode_eps(text: str) -> float:
    """An eps of the slider from the address; ``ValueError`` saying why for anything else."""
    try:
        eps = attacks.check_eps(float(text))
    except ValueError as exc:
        raise ValueError(str(exc) if "eps" in str(exc) else f"{text[:20]!r} is not a number") from None
    steps = round(eps / EPS_STEP)
    if eps > EPS_MAX or abs(steps * EPS_STEP - eps) > 1e-9:
        raise ValueError(f"the slider takes 0 … {EPS_MAX:g} in steps of {EPS_STEP:g}")
    return round(steps * EPS_STEP, 2)


def offered_methods(loaded: LoadedModel, threshold: float | None) -> tuple[list[str], str | None]:
    """The attacks offered for ``loaded`` and, when the adaptive one is not, why."""
    try:
        outliers.check_decoder(loaded.model)
    except ValueError as exc:
        return ["fgsm", "pgd"], f"No adaptive attack: {exc}."
    if threshold is None:
        return ["fgsm", "pgd"], "No adaptive attack: it needs the detector's threshold, which comes with the results."
    return list(attacks.METHODS), None


def attack_controls(methods: list[str], why: str | None) -> tuple[str, float]:
    """The method and eps, kept in the address as ``attack`` and ``eps`` (the defaults, PGD-20 and
    eps 0.1, are not)."""

    def decode_method(text: str) -> str:
        if text not in attacks.METHODS:
            raise ValueError(f"there is no attack {text!r} (one of {', '.join(attacks.METHODS)})")
        if text not in methods:
            raise ValueError(why.rstrip("."))
        return text

    st.session_state.setdefault("attack_eps", EPS_DEFAULT)
    if st.session_state.setdefault("attack_method", "pgd") not in methods:  # another model picked
        st.session_state["attack_method"] = "pgd"
    url_state.restore("attack", "attack_method", decode_method, "attack")
    url_state.restore("eps", "attack_eps", decode_eps, "eps")
    left, right = st.columns([1.2, 1], gap="large")
    method = left.radio("Attack", methods, key="attack_method", horizontal=True, format_func=METHOD_LABELS.get,
                        help=f"FGSM: one step of eps along the sign of the loss's gradient. PGD: {attacks.STEPS} "
                             "such steps of eps/4, each projected back into the eps-ball, stopping at the first that "
                             "fools the model. Adaptive PGD: PGD that also keeps the reconstruction distance under "
                             "the detector's threshold.")
    eps = right.slider("eps", 0.0, EPS_MAX, step=EPS_STEP, key="attack_eps", format="%.2f",
                       help="The largest change of any pixel (images in [0, 1]); MNIST's usual budget is 0.1 to 0.3.")
    if why:
        left.caption(why)
    url_state.remember("attack", None if method == "pgd" else method)
    url_state.remember("eps", None if round(eps, 2) == EPS_DEFAULT else f"{eps:g}")
    return method, float(eps)


# ------------------------------------------------------------------------------ the live attack


def capsnet_side(loaded: LoadedModel, a: attacks.AttackedImage, threshold: float | None, clock: Clock) -> None:
    r = loaded.model.config.routing_iterations  # as the model's forward pass, which the attack ascends
    before = clock("analysis (input)", cached_analysis, loaded.model, loaded.key, np.ascontiguousarray(a.clean), r)
    after = clock("analysis (attacked)", cached_analysis, loaded.model, loaded.key,
                  np.ascontiguousarray(a.adversarial), r)
    decoder = outliers.has_decoder(loaded.model)
    st.markdown(f"**CapsNet** (`{loaded.name}`)")
    m1, m2, m3 = st.columns(3)
    m1.metric("CapsNet before", f"{a.prediction_before} ({before.lengths[a.prediction_before]:.2f})",
              help="The longest digit capsule and its length for the input.")
    m2.metric("CapsNet attacked", f"{a.prediction_after} ({after.lengths[a.prediction_after]:.2f})",
              help=f"The same for the attacked image, after {a.steps} gradient step{'s' * (a.steps != 1)}.")
    if decoder:
        m3.metric("Distance", f"{a.distance_after:.2f}", f"{a.distance_after - a.distance_before:+.2f}",
                  delta_color="inverse", help="The reconstruction distance |x − r(x)| of the attacked image, and its "
                                              f"change from the input's {a.distance_before:.2f}.")
    chart(figure(attack_figure, a.clean, a.adversarial, a.eps, after.reconstruction if decoder else None,
                 a.prediction_after), "fig_attack_capsnet")
    chart(figure(before_after_figure, before.lengths, after.lengths, "Capsule lengths |v<sub>j</sub>|", "length"),
          "fig_attack_lengths")
    if not decoder:
        try:
            outliers.check_decoder(loaded.model)
        except ValueError as exc:
            st.info(f"No reconstruction and no detector: {exc}.")
    elif threshold is None:
        st.caption("The detector's threshold comes with the test-set results (see below): none ship with this model.")
    else:
        flags = outliers.flagged([a.distance_before, a.distance_after], "reconstruction_distance", threshold)
        said = {True: "**flagged**", False: "not flagged"}
        st.markdown(f"**Detector** (distance above {threshold:.2f} flagged): the attacked image is "
                    f"{said[bool(flags[1])]} ({a.distance_after:.2f}); the input was {said[bool(flags[0])]} "
                    f"({a.distance_before:.2f}).")


def cnn_side(cnn: LoadedModel, a: attacks.AttackedImage, method: str, clock: Clock) -> None:
    before = clock("CNN (input)", cached_classification, cnn.model, cnn.key, np.ascontiguousarray(a.clean))
    after = clock("CNN (attacked)", cached_classification, cnn.model, cnn.key, np.ascontiguousarray(a.adversarial))
    st.markdown(f"**Baseline CNN** (`{cnn.name}`)")
    m1, m2 = st.columns(2)
    m1.metric("CNN before", f"{before.prediction} ({before.probability:.2f})",
              help="The CNN's prediction and its softmax probability for the input.")
    m2.metric("CNN attacked", f"{after.prediction} ({after.probability:.2f})",
              help=f"The same for the CNN's own attacked image, after {a.steps} gradient step{'s' * (a.steps != 1)}.")
    chart(figure(attack_figure, a.clean, a.adversarial, a.eps), "fig_attack_cnn")
    chart(figure(before_after_figure, before.probabilities, after.probabilities, "Softmax probabilities",
                 "probability", lengths=False), "fig_attack_softmax")
    plain = f" The adaptive attack aims at the CapsNet's detector: the CNN gets plain {METHOD_LABELS['pgd']}." if (
        method == "pgd_adaptive") else ""
    st.caption(f"The CNN has no decoder, so no reconstruction and no detector.{plain}")


@view
def view_attack(loaded: LoadedModel, cnn: LoadedModel | None, inp: Input, threshold: float | None,
                clock: Clock) -> None:
    method, eps = attack_controls(*offered_methods(loaded, threshold))
    image = np.ascontiguousarray(inp.image)
    with st.spinner(f"Attacking with {METHOD_LABELS[method]} at eps {eps:g}…"):
        mine = clock("attack (CapsNet)", cached_attack, loaded.model, loaded.key, image, method, eps,
                     threshold if method == "pgd_adaptive" else None)
        theirs = None if cnn is None else clock("attack (CNN)", cached_attack, cnn.model, cnn.key, image,
                                                "fgsm" if method == "fgsm" else "pgd", eps, None)
    left, right = st.columns(2, gap="large")
    with left:
        capsnet_side(loaded, mine, threshold, clock)
    with right:
        if theirs is None:
            st.info("No baseline CNN is shipped (`checkpoints/cnn-mnist.safetensors`): the CapsNet is attacked alone.")
        else:
            cnn_side(cnn, theirs, method, clock)
    st.caption("Each model is attacked on its own gradient, away from its own answer for the input (a drawing has "
               "no true label), every pixel moved by at most eps and kept in [0, 1]. The change is drawn blue "
               "(darker) to red (brighter) over ±eps.")


# ------------------------------------------------------------------------------ is it a digit? and the test set


def show_outliers(models: list[tuple[str, LoadedModel, dict | None]], inp: Input, clock: Clock) -> None:
    """The input's scores on each shipped histogram: the CapsNet's length and distance, the CNN's softmax."""
    panels = []
    for what, loaded, results in models:
        ood = (results or {}).get("ood")
        values = clock(f"scores ({what})", cached_scores, loaded.model, loaded.key, np.ascontiguousarray(inp.image))
        for name in outliers.score_names(loaded.model):
            panels.append((what, loaded, ood, name, values[name]))
        if what == "CapsNet" and "reconstruction_distance" not in values:
            panels.append((what, loaded, None, "reconstruction_distance", None))
    for col, (what, loaded, ood, name, value) in zip(st.columns(len(panels), gap="medium"), panels):
        with col:
            title = f"{what}: {notes.SCORE_WORDS[name]}"
            if value is None:
                try:
                    outliers.check_decoder(loaded.model)
                except ValueError as exc:
                    st.markdown(f"**{title}**")
                    st.info(f"{exc}.")
                continue
            if ood is None or name not in ood.get("histograms", {}):
                st.markdown(f"**{title}**: {value:.3f} for this input; no histogram ships with `{loaded.name}`.")
                continue
            h = ood["histograms"][name]
            counts = {notes.SET_WORDS[k]: h["counts"][k] for k in HISTOGRAM_SETS if k in h["counts"]}
            chart(figure(histogram_figure, h["edges"], counts, ood["thresholds"][name]["value"], {"this input": value},
                         title, SCORE_AXES[name]), f"fig_hist_{what.lower()}_{name}")
            st.caption(notes.score_sentence(name, value, ood))
    st.caption("Each histogram: the share of the MNIST test digits and of the Fashion-MNIST images at each score, "
               "as the results computed them; the dashed line is the detector's threshold, which flags 5% of the "
               "digits; the red line is the input. A length is digit-like when high, a distance when low.")


def show_test_set(loaded: LoadedModel, results: dict | None, cnn_results: dict | None) -> None:
    adv, ood = (results or {}).get("adversarial"), (results or {}).get("ood")
    cnn_adv, cnn_ood = (cnn_results or {}).get("adversarial"), (cnn_results or {}).get("ood")
    if adv is None and ood is None:
        st.caption("No test-set results of attacks or outliers ship with this model: the command above computes them.")
        return
    if adv is not None:
        curves = {f"CapsNet · {notes.method_name(adv, m)}": notes.accuracy_curve(adv, m)
                  for m in attacks.METHODS if m in adv}
        curves.update({f"CNN · {notes.method_name(cnn_adv, m)}": notes.accuracy_curve(cnn_adv, m)
                       for m in attacks.METHODS if cnn_adv is not None and m in cnn_adv})
        chart(figure(accuracy_figure, curves), "fig_accuracy_eps")
        st.markdown(notes.accuracy_sentence(adv, cnn_adv))
        if adv.get("detector"):
            methods = [m for m in attacks.METHODS if m in adv]
            chart(figure(detection_figure, {notes.method_name(adv, m): notes.detection_curve(adv, m) for m in methods},
                         {notes.method_name(adv, m): notes.fooled_both_curve(adv, m) for m in methods},
                         100.0 * adv["detector"]["false_positive"]), "fig_detection_eps")
        st.markdown(notes.detection_sentence(adv))
        st.caption(f"The first {adv['images']:,} MNIST test images, attacked on their true labels in "
                   f"{adv['precision']} (the live attack above runs in fp32); eps 0 is the clean images. Intervals: "
                   "95% Wilson, over all images for accuracy, over the images an attack turned wrong for the share "
                   "flagged.")
    if ood is not None:
        bars = {f"CapsNet · {notes.SCORE_WORDS[k]}": v for k, v in notes.auroc_bars(ood).items()}
        if cnn_ood is not None:
            bars.update({f"CNN · {notes.SCORE_WORDS[k]}": v for k, v in notes.auroc_bars(cnn_ood).items()})
        chart(figure(auroc_figure, bars), "fig_auroc")
        st.markdown(notes.auroc_sentence(ood, cnn_ood))
        sets = "; ".join(f"{notes.SET_WORDS.get(k, k)}: {v}" for k, v in ood.get("subsets", {}).items())
        st.caption(f"AUROC: {ood['auroc']}; 1 tells every digit from every image of the set, 0.5 is chance. "
                   f"Intervals: {ood['interval']}. Sets: {sets}.")


# ------------------------------------------------------------------------------ page


def main() -> None:
    clock = Clock()
    loaded = get_model()
    time_slot = model_panel(loaded)
    baselines = get_baselines()
    cnn = baselines[0] if baselines else None
    st.title("Attacks & outliers")
    st.caption("Can a change the eye hardly sees fool the CapsNet, and does it know an image that is no digit? "
               "Attack the input below, see where its scores fall among test digits and clothes, then the "
               "test-set numbers. The baseline CNN answers beside the CapsNet.")
    samples = get_samples()
    draw_col, pick_col, note_col = st.columns([1.1, 1.0, 1.3], gap="medium")
    inp = choose_input(samples, draw_col, pick_col)
    with pick_col:
        clothes = pick_fashion()
    if clothes is not None and inp.converted is None:  # a drawing or an upload replaces it
        inp = clothes
    results = results_of(loaded)
    cnn_results = results_of(cnn) if cnn is not None else None
    with note_col:
        st.subheader("The input")
        st.caption(f"**Input now:** {inp.source}. A drawing replaces an upload, which replaces the Fashion-MNIST "
                   "image, which replaces the test digit.")
        st.caption("Try PGD-20 at eps 0.3, then the adaptive attack, which also hides from the detector, and an "
                   "image of clothes for “Is it a digit?”.")
    missing_note(loaded, results, "CapsNet")
    if cnn is not None:
        missing_note(cnn, cnn_results, "baseline CNN")
    st.header("Attack it")
    view_attack(loaded, cnn, inp, detector_threshold(results))
    st.header("Is it a digit?")
    show_outliers([("CapsNet", loaded, results)] + ([("CNN", cnn, cnn_results)] if cnn is not None else []), inp,
                  clock)
    st.header("On the test set")
    show_test_set(loaded, results, cnn_results)
    end_run(time_slot, clock, ("trust", inp.key))


if __name__ == "__main__":  # run as a page by st.navigation (dashboard/app.py)
    main()
