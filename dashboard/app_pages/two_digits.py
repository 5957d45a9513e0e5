"""Two overlapping digits: the MultiMNIST CapsNet reads both at once (the paper's section 6).

A page of ``streamlit run dashboard/app.py`` (``/two-digits``). The input is a drawing with two
pens, one per digit (:func:`dashboard.widgets.read_two_pens`: two colours on the pad, one grey
image for the model, :func:`capsules.data.strokes.convert_pair`), or a pair from the fixed, seeded
MultiMNIST test set (:func:`capsules.data.load_multimnist_test`; without MNIST, pairs of the
built-in sample digits made by the same generator). The page shows the two longest
capsules, the paper's Fig. 5 (each digit decoded from its own capsule in its own colour over the
input, and a capsule the model rejects), and, for each of the two, where on the input its votes
come from at every routing iteration: the explorer's evidence maps
(:meth:`capsules.analysis.Analysis.evidence_for`) as small multiples, with the share of each
capsule's votes that lands on each digit's ink (:func:`capsules.analysis.source_shares`).

The model is the sidebar's MultiMNIST CapsNet (:data:`dashboard.models.MULTIMNIST_MODELS`:
``checkpoints/capsnet-multimnist.safetensors``, or ``$CAPSULES_MULTIMNIST_CHECKPOINT``). When
none ships yet the page says how to train and ship one, and runs on an untrained 36x36 CapsNet,
labelled as such. As on the explorer, every number comes from :mod:`capsules.analysis`, every
figure from :mod:`dashboard.figures`, and each view is a fragment (:func:`dashboard.views.view`).
The address keeps the model, r, the open tab, the test pair (``pair``) and a drawing (``draw``,
both pens), so that a link reopens the view (:mod:`dashboard.url_state`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from capsules import analysis
from capsules.data import DatasetError
from capsules.data.strokes import PAIR_SHIFT, ConvertedPair
from dashboard import url_state
from dashboard.figures.base import PAIR_COLORS, digit_thumbnail, lengths_figure, lengths_per_iteration_figure
from dashboard.figures.routing import evidence_grid_figure
from dashboard.figures.two_digits import overlay, pair_figure
from dashboard.models import (
    MULTIMNIST_MODELS, LoadedModel, cached_analysis, checkpoint_path, get_model, get_sample_pairs, get_test_pairs,
    model_panel,
)
from dashboard.views import Clock, chart, end_run, figure, show_views, view
from dashboard.widgets import EVIDENCE_BARS, PENS, evidence_controls, evidence_notes, read_two_pens, routing_iterations

# How to get the model this page is for (docs/training.md, "MultiMNIST").
TRAIN_COMMANDS = ("python -m capsules.train --dataset multimnist --lr 1e-4 --out runs/multimnist\n"
                  "python -m capsules.ship runs/multimnist/last.safetensors")
THIRD = None  # the rejected-capsule picker's default: the third-longest capsule


@dataclass
class PairInput:
    """What the model reads this run, where it came from and, apart, its two digits."""

    image: np.ndarray  # (36, 36) float32 in [0, 1]: what the model sees, the clipped sum of the two
    sources: np.ndarray  # (2, 36, 36) float32: each digit alone, in the frame of ``image``
    names: tuple[str, str]  # the two digits in words: "digit 3", "digit 5"; "pen A", "pen B"
    source: str  # for the page: "test pair #12 (digits 3 and 5)", "your drawing"
    labels: tuple[int, int] | None  # the true digits of a test pair

    @property
    def key(self) -> int:
        return hash(self.image.tobytes())


# ------------------------------------------------------------------------------ cached work


@st.cache_data(max_entries=64, show_spinner=False)
def cached_pair(_model, model_key: str, _res: analysis.Analysis, image: np.ndarray, iterations: int,
                absent: int | None) -> analysis.PairReading:
    """:func:`capsules.analysis.read_pair` of ``image``'s analysis (``_res``, the one
    :func:`dashboard.models.cached_analysis` gives for the same model, image and r)."""
    return analysis.read_pair(_model, _res, absent)


# ------------------------------------------------------------------------------ input


def another_pair(count: int) -> None:
    st.session_state["pair"] = int(np.random.default_rng().integers(count))


def pick_pair() -> PairInput:
    """The test-pair picker: the fixed MultiMNIST test set, or without MNIST the pairs of the
    built-in samples (with a note on how to get MNIST)."""
    try:
        pairs, digit = get_test_pairs(), "MNIST test digit"
    except DatasetError as exc:
        pairs, digit = get_sample_pairs(), "built-in sample digit"
        st.info(f"The MultiMNIST test pairs are made from the MNIST test set, which could not be read: {exc} "
                f"Meanwhile the pairs here are made of the {len(pairs)} built-in sample digits by the same "
                "generator, with the same seed.")
    count = len(pairs)
    url_state.restore("pair", "pair", lambda t: url_state.decode_index(t, count), "test pair")
    k = int(st.number_input(f"Test pair (0 … {count - 1:,})", 0, count - 1, 0, 1, key="pair",
                            help="The fixed, seeded MultiMNIST test set the model is scored on: pair k has "
                                 "test digit k as its first digit and a digit of another class as its second, "
                                 "each shifted by up to 4 pixels per axis in the 36×36 frame."))
    st.button("Another pair", key="pair_random", on_click=another_pair, args=(count,),
              help="A test pair drawn at random.")
    url_state.remember("pair", str(k) if k else None)
    p = pairs[k]
    a, b = (int(d) for d in p.labels)
    first, second = (int(i) for i in p.index)
    shifts = p.shifts.tolist()
    st.caption(f"Pair #{k}: **{a}** (red) is {digit} #{first}, shifted by {tuple(shifts[0])}; "
               f"**{b}** (green) is #{second}, shifted by {tuple(shifts[1])} (rows, columns).")
    sources = np.stack([p.first.numpy(), p.second.numpy()]).astype(np.float32) / 255.0
    return PairInput(image=analysis.as_image(p.merged.numpy()), sources=sources, names=(f"digit {a}", f"digit {b}"),
                     source=f"test pair #{k} (digits {a} and {b})", labels=(a, b))


def drawing_notes(drawn: ConvertedPair) -> None:
    """What the model will make of the drawing's layout: a pen left out, digits further apart
    than in training."""
    if drawn.missing:
        have, lack = PENS[1 - drawn.missing[0]], PENS[drawn.missing[0]]
        st.info(f"Only {have} has ink: draw the second digit with {lack} over it. (The model reads the one "
                "digit as it would a pair.)")
    elif drawn.apart:
        st.info(f"Your digits' centres are {drawn.distance:.0f} pixels apart in the 36×36 frame, a MultiMNIST "
                f"pair's about {2 * PAIR_SHIFT} at most (each digit is shifted by up to {PAIR_SHIFT} per axis): the "
                "model never saw a pair this far apart. Draw them over each other.")


def choose_input(draw_col, pick_col) -> PairInput:
    """The input row's widgets: a drawing replaces the test pair."""
    with draw_col:
        st.subheader("Draw two digits")
        drawn = read_two_pens(param="draw")
        st.caption("One digit with each pen, over each other: the pad shows them in two colours, the model "
                   "sees one grey image (their clipped sum, as MultiMNIST merges its pairs). Both keep their "
                   "sizes and places; the larger is fitted to MNIST's 20-pixel box. Clear the pad to go back "
                   "to the test pair.")
        if drawn is not None:
            drawing_notes(drawn)
    with pick_col:
        st.subheader("Or pick a test pair")
        picked = pick_pair()
        inp = picked if drawn is None else PairInput(
            image=drawn.image, sources=drawn.sources, names=PENS, source="your drawing", labels=None)
        st.image(digit_thumbnail(overlay(inp.image, inp.sources, PAIR_COLORS, base=0.0), 5),
                 caption=f"Input now: {inp.source}, its two digits apart in their colours; the model sees only "
                         "their grey, clipped sum.")
    return inp


# ------------------------------------------------------------------------------ top row


def source_colors(pair: analysis.PairReading, inp: PairInput) -> tuple[list[str], list[int]]:
    """The colour of each of the two capsules (that of the digit its reconstruction redraws,
    :func:`capsules.analysis.match_sources`) and that digit's index in ``inp.sources``."""
    order = list(analysis.match_sources(pair.reconstructions, inp.sources))
    return [PAIR_COLORS[o] for o in order], order


def prediction_panel(res: analysis.Analysis, pair: analysis.PairReading, inp: PairInput, order: list[int],
                     untrained: bool) -> None:
    st.subheader("The two longest capsules")
    a, b = pair.digits
    m1, m2 = st.columns(2)
    m1.metric("Longest capsule", f"{a} ({pair.lengths[a]:.2f})",
              help="The longest digit capsule and its length |v|, the model's probability that the digit is present.")
    m2.metric("Second longest", f"{b} ({pair.lengths[b]:.2f})",
              help="The paper reads a MultiMNIST image as the digits of its two longest capsules.")
    third = analysis.longest(pair.lengths, 3)[2]
    said = " · ".join(f"Capsule {d} redraws {inp.names[o]} ({'red' if o == 0 else 'green'})"
                      for d, o in zip(pair.digits, order))
    said += f". The third longest, the strongest the model rejects: {third} ({pair.lengths[third]:.2f})"
    if inp.labels is not None:
        right = pair.correct(inp.labels)
        st.caption(f"True digits: **{inp.labels[0]}** and **{inp.labels[1]}** "
                   + ("✓ both read (the paper's criterion: the two longest capsules are exactly the two digits)"
                      if right else "✗ not both read (the two longest capsules must be exactly the two digits)")
                   + f". {said}.")
    else:
        st.caption(said + ".")
    if untrained:
        st.caption("⚠️ An **untrained** CapsNet: these lengths are noise, not a reading.")
    chart(figure(lengths_figure, res.lengths, pair.digits, height=300,
                 title="All ten lengths |v<sub>j</sub>| (the two longest outlined)"), "fig_pair_lengths")


# ------------------------------------------------------------------------------ views


@view
def view_reconstructions(loaded: LoadedModel, res: analysis.Analysis, inp: PairInput, colors: list[str],
                         clock: Clock) -> None:
    default = analysis.longest(res.lengths, 3)[2]
    a, b = analysis.longest(res.lengths, 2)
    rejected = [d for d in range(len(res.lengths)) if d not in (a, b)]
    c1, _ = st.columns([1, 2])
    with c1:
        choice = st.selectbox("Rejected capsule to decode", [THIRD, *rejected], key="absent_digit",
                              format_func=lambda d: f"the third-longest ({default})" if d is None else f"capsule {d}",
                              help="A capsule outside the two longest: the digit the model says is not there.")
    pair = clock("decode (3 capsules)", cached_pair, loaded.model, loaded.key, res, res.image, res.iterations, choice)
    chart(figure(pair_figure, res.image, pair.reconstructions, pair.digits, pair.lengths,
                 pair.absent_reconstruction, pair.absent, colors=tuple(colors)), "fig_pair")
    st.caption(f"As the paper's Fig. 5: the decoder redraws each digit from its own capsule alone, the other nine "
               f"masked to zero (§6), in the colour of the digit it redraws, over the dimmed input; where the two "
               f"overlap they add up to yellow. The last panel decodes capsule {pair.absent} (length "
               f"{pair.lengths[pair.absent]:.2f}), which the model rejects: a trained model draws a digit that does "
               "not fit the ink, or hardly anything, since its short capsule carries little of a pose.")


def shares_table(shares: np.ndarray, digits, names: tuple[str, str]) -> str:
    """Markdown: for each capsule, the share of its votes on each digit's ink, iteration by iteration."""
    head = "| capsule | " + " | ".join(f"iteration {t + 1}" for t in range(shares.shape[1])) + " |"
    rows = [head, "|---" * (shares.shape[1] + 1) + "|"]
    for k, d in enumerate(digits):
        cells = [" · ".join(f"{100 * s[m]:.0f}% {names[m]}" for m in range(len(names))) for s in shares[k]]
        rows.append(f"| **{d}** | " + " | ".join(cells) + " |")
    return "\n".join(rows)


@view
def view_routing(res: analysis.Analysis, pair: analysis.PairReading, inp: PairInput, colors: list[str],
                 clock: Clock) -> None:
    mode, spread = evidence_controls("pair_evidence")
    maps = np.stack([clock(f"evidence map {d}", res.evidence_for, d, mode, spread) for d in pair.digits])
    title = {"votes": "Votes c·|û| of each winning capsule, iteration by iteration",
             "projected": "Contribution to |s<sub>j</sub>| of each winning capsule, iteration by iteration",
             "change": "Change of the votes c·|û| since iteration 1, for each winning capsule"}[mode]
    chart(figure(evidence_grid_figure, res.image, maps, pair.digits, title=title, diverging=mode != "votes",
                 outline=spread != "ink", colorbar_title=EVIDENCE_BARS[mode], colors=tuple(colors)),
          "fig_pair_evidence")
    left, right = st.columns([1.2, 1], gap="large")
    with left:
        st.markdown("**Whose ink the votes land on**")
        if mode == "votes" and spread == "ink":
            shares = analysis.source_shares(maps, inp.sources)  # (2, r, 2)
            st.markdown(shares_table(shares, pair.digits, inp.names))
            st.caption("Each vote shared among the ink it sees, as in the maps; where the two digits overlap a "
                       "pixel's part goes to each in proportion to its ink. Routing at work raises, iteration by "
                       "iteration, each capsule's share on its own digit: it hands each stroke to one digit.")
        else:
            st.caption("Shown for the votes shared over the ink (the first choices above): the shares of a "
                       "signed map, or of one spread over whole fields, say nothing about whose ink it is.")
    with right:
        evidence_notes(res.geometry, "Each column is one routing iteration, each row one of the two longest "
                                     "capsules (its label in its digit's colour), all on one colour scale.")


@view
def view_lengths(res: analysis.Analysis, clock: Clock) -> None:
    sweep = res.sweep
    chart(figure(lengths_per_iteration_figure, sweep.lengths, highlight=res.iterations,
                 title=f"Capsule lengths when routing with k = 1 … {len(sweep.predictions)} iterations"),
          "fig_pair_sweep")
    st.caption("Both digits' capsules should rise above the rest as routing proceeds; the dotted line is the "
               "sidebar's r, used by every view.")


# ------------------------------------------------------------------------------ page


def untrained_note() -> None:
    path = checkpoint_path(MULTIMNIST_MODELS)
    st.info(f"No MultiMNIST CapsNet here yet (`{path.name}` is missing), so this page runs on an **untrained** "
            "36×36 CapsNet: try the page, but read nothing into "
            "its lengths, reconstructions or maps. Train one and ship it to "
            f"`checkpoints/{MULTIMNIST_MODELS.shipped}` (docs/training.md, MultiMNIST; "
            "`--help` lists every option, `--resume` continues a stopped run):\n\n"
            f"```bash\n{TRAIN_COMMANDS}\n```")


def main() -> None:
    clock = Clock()
    loaded = get_model(MULTIMNIST_MODELS)
    untrained = loaded.model.checkpoint_path is None
    trained = analysis.training_iterations(loaded.model.metadata)
    g = analysis.Geometry.of(loaded.model.config)
    st.title("Two overlapping digits")
    st.caption(f"The paper's §6: a CapsNet trained on MultiMNIST (two digits of different classes overlaid in a "
               f"{g.side}×{g.side} frame, each shifted by up to 4 pixels; {g.caps} primary capsules, {g.types} types × "
               f"{g.grid}×{g.grid}) reads both at once: its two longest capsules are the two digits, and the decoder "
               "redraws each from its own capsule. Pick a pair of test digits, then explore the tabs.")
    if untrained:
        untrained_note()
    iterations = routing_iterations(loaded, trained)
    time_slot = model_panel(loaded)
    draw_col, pick_col, pred_col = st.columns([1.1, 1.0, 1.4], gap="medium")
    inp = choose_input(draw_col, pick_col)
    res = clock("analysis (traced forward)", cached_analysis, loaded.model, loaded.key, inp.image, iterations)
    pair = clock("decode (3 capsules)", cached_pair, loaded.model, loaded.key, res, inp.image, iterations, THIRD)
    colors, order = source_colors(pair, inp)
    with pred_col:
        prediction_panel(res, pair, inp, order, untrained)
    views = {  # each a fragment: its controls rerun only the view
        "Reconstructions (Fig. 5)": lambda: view_reconstructions(loaded, res, inp, colors),
        "Routing for the pair": lambda: view_routing(res, pair, inp, colors),
        "Routing iterations": lambda: view_lengths(res),
    }
    show_views(views, "pair_view")
    end_run(time_slot, clock, ("two digits", inp.key, iterations))  # last: the whole run


if __name__ == "__main__":  # run as a page by st.navigation (dashboard/app.py)
    main()
