"""Test-set experiments: does routing matter for this checkpoint?

A page of ``streamlit run dashboard/app.py``. It opens on the paper's Table 1 beside the shipped
models (:func:`capsules.zoo.table1`: their test errors with 95% intervals, epochs, hardware, and
which rows are within the noise of each other) and routing at inference across them
(:func:`capsules.zoo.routing_at_inference`), then shows what :mod:`capsules.experiments` computes
over the MNIST test set (accuracy by routing iterations, the routing dynamics, coupling ablations,
affine robustness, the confusion matrix and the misclassified digits), each figure with what the
paper claimed, what later papers found and what this checkpoint shows. The sentences are built by
the plain functions ``*_notes`` of :mod:`dashboard.figures.experiments_notes` from the results (never typed in), so
they follow any checkpoint (the one picked in the sidebar); a misclassified digit opens in the
explorer page with one click. A shipped baseline CNN joins the robustness curves, from its own results file (the
robustness keys only, :func:`capsules.experiments.robustness_experiments`) on the same test digits.

Where the results come from: every shipped model's ship beside it and load at once
(:func:`capsules.experiments.load_results`, which checks the checkpoint's sha256). For another
checkpoint the page gives the one command that computes them (``python -m capsules.experiments
--checkpoint PATH``, with its progress bar) and reads the file it writes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from capsules import analysis, experiments, zoo
from capsules.data import DatasetError
from dashboard.figures.experiments_notes import (
    Notes, ablation_notes, confusion_note, dynamics_notes, iteration_intervals, iterations_notes, model_r,
    robustness_notes,
)
from dashboard.app_pages import EXPLORER_PAGE, TEST_DIGIT
from dashboard.figures.base import digit_thumbnail
from dashboard.figures.experiments import (
    ablation_figure, confusion_figure, dynamics_figure, iterations_figure, robustness_figure,
)
from dashboard.models import (
    LoadedModel, get_baselines, get_model, get_samples, get_test_set, model_panel, results_of, shipped,
)
from dashboard.views import Clock, chart, figure, report_time

ABLATION_LABELS = {"routing": "own routing", "uniform": "uniform c = 1/10", "random": "random c",
                   "class_mean": "class-mean c"}
GALLERY_COLUMNS = 8
GALLERY_PAGE = 48  # misclassified digits per page of the gallery (6 rows)
SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


# ------------------------------------------------------------------------------ the results


def stored(loaded: LoadedModel, what: str, minutes: str) -> dict | None:
    """The results shipped beside ``loaded``'s checkpoint (those of its very weights: the sha256 is
    checked), else None, after saying how to compute them: one command, ``minutes`` on a 2-core
    CPU, whose file the page reads as soon as it is there."""
    path = loaded.model.checkpoint_path
    if path is None:
        st.info(f"This untrained model has no {what}: they are computed for a trained checkpoint.")
        return None
    found = results_of(loaded)
    if found is None:
        st.info(f"No {what} ship with `{path.name}`. Compute them ({minutes} on a 2-core CPU) with\n\n"
                f"```bash\npython -m capsules.experiments --checkpoint {path}\n```\n\nwhich writes "
                f"`{experiments.results_path(path).name}` beside the checkpoint; this page reads it on its next run.")
    return found


def baseline_results(baselines: list[LoadedModel], results: dict) -> dict[str, dict]:
    """The robustness results of each shipped baseline CNN drawn on the same test digits as
    ``results``, by name; one without them says how to compute them, one on other digits is named
    in a caption."""
    found = {}
    for b in baselines:
        other = stored(b, f"robustness curves of the baseline CNN `{b.name}`", "about 5 minutes")
        if other is None:
            continue
        if experiments.same_subset(results, other):
            found[b.name] = other
        else:
            st.caption(f"The robustness curves of `{b.name}` were drawn on other test digits "
                       f"({other.get('robustness_subset')} of {other.get('test_images')}, seed "
                       f"{other.get('robustness_seed')}) than the CapsNet's: not compared.")
    return found


# ------------------------------------------------------------------------------ drawing


def show_notes(notes: Notes) -> None:
    cols = st.columns([1, 1, 1.5], gap="medium")
    for col, (head, text) in zip(cols, (("The paper", notes.paper), ("Later work", notes.later),
                                        ("This model", notes.here))):
        with col:
            st.markdown(f"**{head}.** {text}")


def error_images(indices: list[int], samples: dict[str, np.ndarray]) -> tuple[dict[int, np.ndarray], str | None]:
    """The images of test digits ``indices``: from the built-in samples (the shipped model's
    mistakes are among them), else from the MNIST test set; a note when some have neither."""
    where = {int(i): k for k, i in enumerate(samples["indices"])}
    images = {i: samples["images"][where[i]] for i in indices if i in where}
    missing = [i for i in indices if i not in images]
    if not missing:
        return images, None
    try:
        test_images, _ = get_test_set()
    except DatasetError as exc:
        return images, (f"{len(missing)} of these digits are not among the built-in samples and the MNIST test set "
                        f"could not be read, so they are listed without their image. {exc}")
    images.update({i: test_images[i].numpy() for i in missing})
    return images, None


def gallery(results: dict, samples: dict[str, np.ndarray]) -> None:
    """The misclassified test digits, filtered by true and predicted digit, a page at a time; a
    click opens one in the explorer page."""
    errors = results["errors"]
    if not errors:
        st.caption("This checkpoint classifies every test digit correctly.")
        return
    digits = [None, *range(10)]
    c1, c2, c3 = st.columns([1, 1, 1])
    def shown_as(d):
        return "any" if d is None else str(d)

    true = c1.selectbox("True digit", digits, key="errors_true", format_func=shown_as)
    pred = c2.selectbox("Predicted digit", digits, key="errors_pred", format_func=shown_as)
    shown = [e for e in errors if (true is None or e["label"] == true) and (pred is None or e["prediction"] == pred)]
    pages = max(1, -(-len(shown) // GALLERY_PAGE))
    page = 1
    if pages > 1:
        page = int(c3.number_input(f"Page (of {pages})", 1, pages, 1, key="errors_page"))
    shown = shown[(page - 1) * GALLERY_PAGE:page * GALLERY_PAGE]
    if not shown:
        st.caption("No misclassified digit with this true and predicted digit.")
        return
    images, note = error_images([e["index"] for e in shown], samples)
    if note:
        st.info(note)
    for row in range(0, len(shown), GALLERY_COLUMNS):
        for col, e in zip(st.columns(GALLERY_COLUMNS, gap="small"), shown[row:row + GALLERY_COLUMNS]):
            with col:
                idx, t, p = e["index"], e["label"], e["prediction"]
                if idx in images:
                    st.image(digit_thumbnail(images[idx], 3), width=84)
                st.markdown(f"**{t} → {p}**")
                st.caption(f"|v{str(p).translate(SUBSCRIPTS)}| = {e['lengths'][p]:.2f}  \n"
                           f"|v{str(t).translate(SUBSCRIPTS)}| = {e['lengths'][t]:.2f}")
                if st.button(f"#{idx}", key=f"open_{idx}", help=f"Open test digit #{idx} in the one-digit explorer"):
                    st.switch_page(EXPLORER_PAGE, query_params={TEST_DIGIT: str(idx)})


def show_table1() -> None:
    """The paper's Table 1 beside the shipped models (:func:`capsules.zoo.table1`)."""
    st.subheader("Table 1: the paper's models and the shipped ones")
    table = zoo.table1(shipped())
    st.dataframe(pd.DataFrame(table.records(), columns=list(zoo.COLUMNS)), hide_index=True)
    st.markdown(f"**Within the noise?** {table.noise}")
    st.caption(f"Test error in percent on the full test set. The paper's ± is the standard deviation over three "
               f"trials; this project's brackets are the 95% Wilson interval of one model (on MNIST's 10,000 test "
               f"images 0.05 points is five images). “{zoo.PENDING}”: no such model shipped yet. Rows compare fairly "
               "only at the same epochs; the paper trained far longer, on a GPU. Pick a CapsNet in the sidebar "
               "for its experiments below.")


@st.cache_data(show_spinner=False, max_entries=4)
def zoo_routing(folder: str, stamp: float) -> tuple[list[dict[str, str]], list[str]]:
    """:func:`capsules.zoo.routing_at_inference` of the shipped models: its rows and findings, read
    again when the folder changes (shipping a model or its results writes into it)."""
    table = zoo.routing_at_inference(shipped())
    return table.records(), table.findings


def show_zoo_routing() -> None:
    """Routing at inference across the shipped MNIST CapsNets, from their experiments files."""
    folder = zoo.checkpoints_dir()
    records, findings = zoo_routing(str(folder), folder.stat().st_mtime if folder.is_dir() else 0.0)
    st.subheader("Routing at inference, across the zoo")
    if records:
        st.dataframe(pd.DataFrame(records, columns=list(zoo.ROUTING_COLUMNS)), hide_index=True)
    st.markdown("**Does routing help at inference?**\n" + "".join(f"\n- {line}" for line in findings))
    st.caption("Test accuracy on MNIST's 10,000 test images with k routing iterations at inference (k = 1: "
               "uniform coupling; “own”: as the model was trained), and with random and class-mean coupling, "
               "from each model's shipped experiments (the sections below show them one model at a time). "
               "The figures of one model are scored on the same images, so the noise is judged on the "
               "predictions that change between them, image by image: McNemar's exact test, beyond the noise "
               f"when p < {experiments.SIGNIFICANCE:g}.")


def show(results: dict, loaded: LoadedModel, clock: Clock) -> None:
    trained = analysis.training_iterations(loaded.model.metadata)
    r, n = model_r(results, trained), results["test_images"]
    sha = results.get("checkpoint_sha256") or "none"
    st.caption(f"Checkpoint `{results.get('checkpoint') or 'untrained'}` (sha256 {sha[:12]}…), {n:,} MNIST test "
               f"images, computed {str(results.get('date', '?'))[:10]} on {results.get('device', '?')} in "
               f"{results.get('seconds', 0):.0f} s ({results.get('precision', 'fp32')}). Under each figure: what the "
               "paper claimed, what later papers found, and what this checkpoint shows, its numbers computed "
               "from these results. Accuracies are in percent with 95% Wilson intervals.")

    st.subheader("Accuracy by routing iterations at inference")
    acc = np.array(list(results["iterations"].values()), dtype=float)
    margins = np.array(list(results["margins"].values()), dtype=float)
    chart(figure(iterations_figure, acc, iteration_intervals(results), margins, trained=r), "fig_iterations")
    show_notes(iterations_notes(results, trained))

    st.subheader("Routing dynamics")
    dyn = results["dynamics"]
    chart(figure(dynamics_figure, np.array(dyn["logit_change"]), np.array(dyn["entropy"]),
                 np.array(dyn["changed_from_k1"]), trained=r), "fig_dynamics")
    show_notes(dynamics_notes(results, trained))

    st.subheader("Coupling ablations")
    names = list(ABLATION_LABELS)
    ab = results["ablations"]
    labels = [ABLATION_LABELS[k] + (f" (r = {r})" if k == "routing" else "") for k in names]
    chart(figure(ablation_figure, labels, np.array([ab[k]["accuracy"] for k in names]),
                 np.array([ab[k]["interval"] for k in names]), reference=0), "fig_ablations")
    show_notes(ablation_notes(results, trained))

    st.subheader("Robustness to affine transforms")
    subset = results.get("robustness_subset", n)
    others = baseline_results(get_baselines(), results)
    runs = {f"CapsNet ({loaded.name})": results, **{f"baseline CNN ({name})": r for name, r in others.items()}}
    curves = {label: r["robustness"] for label, r in runs.items()}
    intervals = {label: {kind: [list(experiments.accuracy_interval(a, subset)) for _, a in curve]
                         for kind, curve in c.items()}
                 for label, c in curves.items()}
    chart(figure(robustness_figure, curves, intervals, subset=subset, units=results.get("robustness_units")),
          "fig_robustness")
    show_notes(robustness_notes(results, others))

    st.subheader("Errors")
    left, right = st.columns([1, 1], gap="large")
    with left:
        chart(figure(confusion_figure, np.array(results["confusion"])), "fig_confusion")
    with right:
        st.markdown(f"**This model.** {confusion_note(results)}")
        st.markdown(f"**Misclassified test digits** (below; own routing, r = {r}): true → predicted digit, "
                    "the lengths of the predicted and the true digit's capsules, and the index in the MNIST "
                    "test set. Click an index to open the digit in the one-digit explorer.")
    gallery(results, get_samples())


def main() -> None:
    clock = Clock()
    loaded = get_model()
    time_slot = model_panel(loaded)
    st.title("Test-set experiments: does routing matter?")
    show_table1()
    show_zoo_routing()
    st.divider()  # above: every shipped model; below: the one picked
    results = stored(loaded, "experiment results", "about 2 minutes")
    if results is not None:
        show(results, loaded, clock)
    report_time(time_slot, clock)


if __name__ == "__main__":  # run as a page by st.navigation (dashboard/app.py)
    main()
