"""The shipped models, one story each: what they are, how they were trained, how well they do.

A page of ``streamlit run dashboard/app.py`` (``/models``). It opens on the paper's Table 1 beside
the measured test errors with their 95% intervals and a plain statement of which differences are
within the noise (:func:`capsules.zoo.table1`, what ``python -m capsules.zoo`` prints), then tells
one model's story (:func:`capsules.zoo.cards.model_card`, from its JSON; the picker's choice is
kept in the address as ``card``): its architecture and parameters, each run that trained it
(recipe, epochs, time, hardware), the commands that made it, and the learning curve the training
kept, or a plain note where the JSON predates it. Nothing is evaluated: every figure comes from the
JSONs beside the weights, read again when the folder changes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from capsules import zoo
from capsules.checkpoint import read_metadata
from capsules.zoo.cards import ModelCard, model_card
from dashboard import url_state
from dashboard.figures.model_cards import learning_curve_figure, table1_figure
from dashboard.models import MODEL_PICKER, shipped
from dashboard.views import chart, figure

CURVE_KEYS = ("train_accuracy", "train_loss", "lr", "test_accuracy", "test_loss", "val_accuracy", "val_loss",
              "ema_test_accuracy", "ema_val_accuracy")


@st.cache_data(show_spinner=False, max_entries=4)
def cards(folder: str, stamp: float) -> list[ModelCard]:
    """Every shipped model's card, read again when the folder changes (shipping writes into it)."""
    return [model_card(m, read_metadata(m.path)) for m in shipped()]


def table1_points(table: zoo.Table1) -> list[dict]:
    """The rows of Table 1 as :func:`dashboard.figures.model_cards.table1_figure` draws them."""
    points = []
    for r in table.rows:
        m = r.model
        interval = m.error_interval if m is not None and m.error is not None else None
        points.append({"dataset": zoo.DATASET_NAMES.get(r.dataset, r.dataset),
                       "label": f"{r.paper.label} · {m.name if m else zoo.PENDING}", "paper": r.paper.error(r.dataset),
                       "error": m.error if interval else None, "lo": interval[0] if interval else None,
                       "hi": interval[1] if interval else None})
    return points


def show_table1() -> None:
    st.subheader("Table 1: the paper's models and the shipped ones")
    table = zoo.table1(shipped())
    chart(figure(table1_figure, table1_points(table)), "fig_table1")
    st.markdown(f"**Within the noise?** {table.noise}")
    st.dataframe(pd.DataFrame(table.records(), columns=list(zoo.COLUMNS)), hide_index=True)
    st.caption("Test error in percent on the full test set. The paper's ± (not drawn) is the standard deviation "
               "over three trials; this project's interval is the 95% Wilson interval of one model (on MNIST's "
               "10,000 test images 0.05 points is five images). Two rows are within the noise when their intervals "
               f"overlap. “{zoo.PENDING}”: no such model shipped yet. Rows compare fairly only at the same epochs; "
               "the paper trained far longer, on a GPU. `python -m capsules.zoo` prints the same table.")


def show_runs(card: ModelCard) -> None:
    def said(k: int, r) -> str:
        warm = f" (a warm start from run {k - 1}'s weights)" if k > 1 and r.dataset != card.runs[k - 2].dataset else ""
        time = "time not recorded" if r.seconds is None else f"{r.seconds / 3600:.1f} h"
        return (f"- **Run {k}**{warm}: {zoo.DATASET_NAMES.get(r.dataset, r.dataset)}, "
                f"{'?' if r.epochs is None else r.epochs} epochs, {time} on {r.hardware or 'unrecorded hardware'}, "
                f"{r.precision or 'precision not recorded'}; recipe: {r.recipe_text or 'not recorded'}")

    st.markdown("**How it was trained**, run by run (each run after the first started from the weights of the one "
                "before):\n" + "\n".join(said(k, r) for k, r in enumerate(card.runs, start=1)))
    commands = [f"# run {k}" + "".join(f"\n{c}" for c in r.commands) for k, r in enumerate(card.runs, start=1)]
    if card.ship_command:
        which = "the moving average of the weights" if card.weights_average else "the last epoch"
        commands.append(f"# shipped ({which})\n{card.ship_command}")
    st.markdown("**The commands that made it**, as its JSON records them (the first of each run started it, the "
                "others resumed it):")
    st.code("\n\n".join(commands), language="bash", wrap_lines=True)


def show_curve(card: ModelCard) -> None:
    if not card.curve:
        st.info(f"`{card.model.name}` has no learning curve: its JSON was written before the training kept one "
                "(`learning_curve`, the per-epoch accuracy, loss and learning rate, in every checkpoint trained "
                "since). Its test score is the one figure recorded.")
        return
    curves = {k: card.series(k) for k in CURVE_KEYS}
    held = card.held_out or "test"
    title = f"Learning curve of {card.model.name}" + (f" (its last run, from epoch {card.first_epoch + 1})"
                                                      if card.first_epoch else "")
    chart(figure(learning_curve_figure, curves, held, card.test_point, title=title), "fig_curve")
    said = ("the validation split the run held out of training" if held == "val"
            else "the test set (the run had no validation split)")
    st.caption(f"Each epoch: the accuracy and loss over its training batches (augmented, in training mode) and on "
               f"{said}; the star is the shipped weights on the full test set.")


def show_card(card: ModelCard) -> None:
    m = card.model
    st.markdown(f"#### `{m.name}`: {m.recipe}, {zoo.DATASET_NAMES.get(m.dataset, m.dataset)}")
    c1, c2, c3, c4 = st.columns(4)
    if m.error is not None:
        lo, hi = m.error_interval
        c1.metric("Test error", f"{m.error:.2f}%", help=f"95% interval [{lo:.2f}, {hi:.2f}]: {m.errors} of "
                                                        f"{m.total:,} test examples wrong")
    c2.metric("Parameters", "?" if card.parameters is None else f"{card.parameters / 1e6:.2f} M")
    c3.metric("Epochs", m.epochs_text)
    c4.metric("Training time", "?" if m.train_seconds is None else f"{m.train_seconds / 3600:.1f} h",
              help=m.training_text)
    st.markdown(f"**Architecture:** {card.architecture}. **Weights** stored as {m.weights_dtype}"
                + (", the moving average of the last run's weights." if card.weights_average else "."))
    show_runs(card)
    show_curve(card)


def main() -> None:
    st.title("The shipped models")
    st.caption("Every model in `checkpoints/`: how it compares with the paper, then one model's story, from the "
               "JSON beside its weights. Nothing here is evaluated.")
    show_table1()
    st.divider()
    folder = zoo.checkpoints_dir()
    found = {c.model.name: c for c in cards(str(folder), folder.stat().st_mtime if folder.is_dir() else 0.0)}
    if not found:
        st.info(f"No shipped model in `{folder}` yet.")
        return
    picked = Path(st.session_state.get(MODEL_PICKER) or "").stem  # the sidebar's model, when it is one of them
    default = picked if picked in found else next(iter(found))
    st.session_state.setdefault("card", default)
    url_state.restore("card", "card", url_state.one_of({n: n for n in found}, "shipped model"), "model")
    name = st.selectbox("The story of", list(found), key="card", format_func=lambda n: found[n].model.label)
    url_state.remember("card", None if name == default else name)
    show_card(found[name])


if __name__ == "__main__":  # run as a page by st.navigation (dashboard/app.py)
    main()
