"""The input widgets the pages share: the drawing pad (one pen, or two for two digits), the
upload, the sample labels, one digit's input row (:func:`choose_input`: draw, pick or upload; the
explorer's and the Attacks & outliers page's), the routing-iterations slider, the digit-capsule
picker and the evidence maps' controls. Each reads its widget and returns what it read; nothing here computes (the
arithmetic is in :mod:`capsules.analysis` and :mod:`capsules.data.drawing`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from capsules import analysis
from capsules.data import DatasetError
from capsules.data.drawing import Converted, ImageError, convert
from capsules.data.strokes import ConvertedPair, convert_pair, rasterise_strokes
from capsules.data.uploads import convert_upload
from dashboard import url_state
from dashboard.app_pages import TEST_DIGIT
from dashboard.figures.base import PAIR_COLORS
from dashboard.models import MAX_ITERATIONS, LoadedModel, get_test_set
from dashboard.pad import drawing_pad

CANVAS_SIDE = 240  # pixels; fits the input column of a 1280-pixel window
STROKE_WIDTH = 18  # pixels of the pad: about MNIST's 2 to 3 once a digit is fitted to its 20-pixel box
INK = "#FFFFFF"  # the pad's one pen: white on black, as MNIST


def routing_iterations(loaded: LoadedModel, trained: int | None) -> int:
    """The sidebar's r, used by every view; another model picked starts from its own r. In the
    address as ``r`` when it is not the model's own."""
    default_r = int(loaded.model.config.routing_iterations)
    said = f"training used r = {trained}" if trained else f"the model's default is r = {default_r}"
    if st.session_state.get("iterations_model") != loaded.key or "iterations" not in st.session_state:
        st.session_state["iterations_model"] = loaded.key
        st.session_state["iterations"] = default_r  # the slider's value (it has no default of its own)
    url_state.restore("r", "iterations", lambda t: url_state.decode_index(t, MAX_ITERATIONS + 1, 1),
                      "routing iterations")
    with st.sidebar:
        st.header("Routing")
        r = st.slider("Routing iterations r", 1, MAX_ITERATIONS, key="iterations",
                      help=f"Procedure 1 runs r iterations; the paper uses 3 and {said}. "
                           "Every view uses this r.")
    url_state.remember("r", None if r == default_r else str(r))
    return r


# The evidence maps' controls (:meth:`capsules.analysis.Analysis.evidence_for`): what a map shows,
# how each vote is spread over the input, and the colour bar's title of each.
EVIDENCE_MODES = {"votes c·|û|": "votes", "contribution to |sⱼ|": "projected",
                  "change since iteration 1": "change"}
EVIDENCE_SPREADS = {"the ink it sees": "ink", "its whole field (mean)": "mean"}
EVIDENCE_BARS = {"votes": "c·|û|", "projected": "c û·v̂", "change": "Δ c·|û|"}
SPREAD_HELP = ("The ink it sees: each primary capsule's vote is divided among the inked pixels of its "
               "receptive field, in proportion to their ink, so the map shows which strokes voted and adds "
               "up to the votes. Its whole field: each pixel shows the mean vote of the fields that "
               "contain it (one at the corners, every one in the middle).")


def evidence_controls(prefix: str = "evidence") -> tuple[str, str]:
    """The evidence maps' two radios, keys ``<prefix>_mode`` and ``<prefix>_spread``, each in a
    column of its own: (mode, spread) as :meth:`capsules.analysis.Analysis.evidence_for` takes them.
    Their choices are kept in the address under the same names (``evidence_mode=projected``)."""
    c1, c2 = st.columns([1.6, 1.2])
    with c1:
        mode = EVIDENCE_MODES[url_state.kept(
            f"{prefix}_mode", f"{prefix}_mode", {v: k for k, v in EVIDENCE_MODES.items()}, "evidence map",
            lambda: st.radio("Show", list(EVIDENCE_MODES), key=f"{prefix}_mode", horizontal=True))]
    with c2:
        spread = EVIDENCE_SPREADS[url_state.kept(
            f"{prefix}_spread", f"{prefix}_spread", {v: k for k, v in EVIDENCE_SPREADS.items()}, "evidence spread",
            lambda: st.radio("Share each vote over", list(EVIDENCE_SPREADS), key=f"{prefix}_spread", help=SPREAD_HELP))]
    return mode, spread


def evidence_title(mode: str, j: int) -> str:
    """The title of capsule ``j``'s evidence map in ``mode``."""
    return {
        "votes": f"Evidence for digit {j}: votes c<sub>i{j}</sub>·|û<sub>{j}|i</sub>|",
        "projected": f"Contribution to |s<sub>{j}</sub>|: c<sub>i{j}</sub> û<sub>{j}|i</sub> · v̂<sub>{j}</sub>",
        "change": f"Evidence for digit {j}: change of c·|û| since iteration 1",
    }[mode]


def evidence_notes(g: analysis.Geometry, iterations: str) -> None:
    """How to read an evidence map, under the heading "How to read it"; ``iterations`` says where
    the map's iterations are (a slider, or one column each)."""
    st.markdown("**How to read it**")
    st.caption(f"Every primary capsule i sends digit j the vote cᵢⱼ ûⱼ|ᵢ (eq. 2). Its size cᵢⱼ|ûⱼ|ᵢ| "
               f"belongs to the {g.field}×{g.field} input window the capsule sees (conv1, then PrimaryCaps "
               f"with stride {g.stride}), summed over the {g.types} types at each position. {iterations}")
    st.caption("**The ink it sees** divides each vote among the inked pixels of its window, so bright "
               "strokes are where the votes come from. One edge effect remains: a window that holds "
               "only the tip of a stroke gives its whole vote to that tip, so stroke ends near the "
               "image border can look strong. **Its whole field** averages the windows covering each "
               "pixel: primary capsules are long almost everywhere, background included, so it varies "
               "little, and the border (seen by few windows) shows single windows' votes. The last "
               "row and column are in no window and are left blank.")
    st.caption("**Contribution to |sⱼ|** projects each vote on the direction of vⱼ: these add up "
               "to |sⱼ|, so red makes capsule j long and blue shortens it. **Change since "
               "iteration 1** shows where routing moved votes towards (red) or away from (blue) digit j.")


def digit_picker(label: str, key: str, prediction: int, param: str | None = None) -> int:
    """A digit-capsule selectbox whose default follows the prediction; with ``param``, the
    choice is kept in the address under that name (the default, the winning capsule, is not)."""
    if param:
        url_state.restore(param, key, lambda t: url_state.decode_index(t, 10), "digit capsule")
    choice = st.selectbox(label, [None, *range(10)], key=key,
                          format_func=lambda d: f"winning capsule ({prediction})" if d is None else f"capsule {d}")
    if param:
        url_state.remember(param, None if choice is None else str(choice))
    return prediction if choice is None else int(choice)


def _drawn(key: str, param: str | None, pens: list[str], pen: int = 0) -> list[dict] | None:
    """The pad's strokes, checked and snapped to the address's grid
    (:func:`dashboard.url_state.snap_strokes`: the input a link to the view restores), or None
    when it has no ink. With ``param`` the drawing is kept in the address under that name, and a
    drawing named there is put on the pad when the session opens it. Strokes that are no drawing
    show their reason and give None."""
    if param:
        url_state.restore(param, lambda strokes: st.session_state.__setitem__(key, {"strokes": strokes}),
                          lambda t: url_state.decode_strokes(t, CANVAS_SIDE, len(pens)), "drawing")
    strokes = drawing_pad(key, side=CANVAS_SIDE, width=STROKE_WIDTH, pens=pens, pen=pen)
    if not strokes:
        if param and strokes is not None:  # cleared
            url_state.forget(param)
        return None
    try:
        rasterise_strokes(strokes, CANVAS_SIDE, STROKE_WIDTH, pens=len(pens))  # checks what the browser sent
    except ImageError as exc:  # what the browser sent is no drawing: say so, use the sample
        st.warning(f"The drawing could not be read: {exc}")
        return None
    text = url_state.encode_strokes(strokes, CANVAS_SIDE)
    if len(text) > url_state.MAX_DRAWING:  # read as drawn; no link holds it
        if param:
            url_state.forget(param)
            st.caption("This drawing is too long to go in a link: a link to this view opens without it.")
        return strokes
    if param:
        url_state.remember(param, text)
    return url_state.decode_strokes(text, CANVAS_SIDE, len(pens))


def read_drawing(key: str = "canvas", param: str | None = None) -> Converted | None:
    """The drawing pad (:mod:`dashboard.pad`: white ink on black, sent on pen-up) as the model's
    input, or None when it has no ink; ``param`` as :func:`_drawn` takes it."""
    strokes = _drawn(key, param, [INK])
    if strokes is None:
        return None
    try:
        return convert(rasterise_strokes(strokes, CANVAS_SIDE, STROKE_WIDTH)[0])
    except ImageError as exc:
        st.warning(f"The drawing could not be read: {exc}")
        return None


PENS = ("pen A", "pen B")  # the two-digit pad's pens, in the colours of dashboard.figures.base.PAIR_COLORS


def read_two_pens(key: str = "pair_pad", param: str | None = None) -> ConvertedPair | None:
    """The drawing pad with two pens, one per digit, in the colours of
    :data:`dashboard.figures.base.PAIR_COLORS` (a radio above it picks the pen that draws), as the
    MultiMNIST model's input (:func:`capsules.data.strokes.convert_pair`: one grey image, the
    clipped sum, and each pen's digit apart), or None when it has no ink; ``param`` as
    :func:`_drawn` takes it."""
    colours = ("red", "green")
    pen = st.radio("Pen", range(len(PENS)), key=f"{key}_pen", horizontal=True,
                   format_func=lambda k: f"{PENS[k]} ({colours[k]})",
                   help="Draw one digit with each pen: the strokes keep their pen's colour on the pad; the "
                        "model sees both as one grey image.")
    strokes = _drawn(key, param, list(PAIR_COLORS), pen)
    if strokes is None:
        return None
    try:
        return convert_pair(rasterise_strokes(strokes, CANVAS_SIDE, STROKE_WIDTH, pens=len(PENS)))
    except ImageError as exc:
        st.warning(f"The drawing could not be read: {exc}")
        return None


def read_upload(key: str = "upload") -> tuple[Converted | None, str | None]:
    """An uploaded photo or scan: (the model's input or None, the file's name or None). An
    unreadable file shows its one-sentence reason."""
    upload = st.file_uploader("Upload a photo or scan (PNG/JPEG)", type=["png", "jpg", "jpeg"], key=key)
    if upload is None:
        return None, None
    converted, message = convert_upload(upload.getvalue(), upload.name)
    if message:
        st.info(message)
    return converted, upload.name


def sample_label(samples: dict[str, np.ndarray], k: int) -> str:
    """Short enough for a narrow column: "7 · #229", "6 · #1014 · read as 5 ✗" (label, index in
    the MNIST test set, and the shipped model's answer when it is wrong)."""
    idx, label, pred = int(samples["indices"][k]), int(samples["labels"][k]), int(samples["predictions"][k])
    return f"{label} · #{idx}" + (f" · read as {pred} ✗" if pred != label else "")


# ------------------------------------------------------------------------------ one digit's input row


@dataclass
class Input:
    """What the model reads this run and where it came from."""

    image: np.ndarray  # (28, 28) float32 in [0, 1]
    source: str  # for the page: "your drawing", "upload `x.png`", "test digit #229 (label 7)"
    label: int | None  # the true label of a sample digit
    converted: Converted | None  # a drawing or upload: how large its ink was
    drawn: bool

    @property
    def key(self) -> int:
        return hash(self.image.tobytes())


def sample_picked(samples: dict[str, np.ndarray]) -> None:
    """A sample picked: the address names it as the test digit it is."""
    st.query_params[TEST_DIGIT] = str(int(samples["indices"][st.session_state["sample"]]))


def opened_test_digit(samples: dict[str, np.ndarray]) -> Input | None:
    """The MNIST test digit the address names, ``?test_digit=N`` (another page opens a digit here
    so; a sample picked is named so). When it is one of the built-in samples, the sample picker is
    set to it (call this before the picker is drawn) and None returned: the sample is the input.
    Otherwise it comes from the MNIST test set; when that is not available either, or N is no
    index, a note says why, N leaves the address and None is returned (the sample stays)."""
    raw = st.query_params.get(TEST_DIGIT)
    if raw is None:
        return None
    try:
        index = int(raw)
    except ValueError:
        return _not_opened(f"`{TEST_DIGIT}={raw[:20]}` is not an index of the MNIST test set: showing a sample "
                           "instead.")
    found = np.flatnonzero(samples["indices"] == index)
    if found.size:
        st.session_state["sample"] = int(found[0])
        return None
    try:
        images, labels = get_test_set()
    except DatasetError as exc:
        return _not_opened(f"Test digit #{index} is not among the built-in samples and the MNIST test set could not "
                           f"be read, so a sample is shown instead. {exc}")
    if not 0 <= index < labels.shape[0]:
        return _not_opened(f"The MNIST test set has no digit #{index} (it has {labels.shape[0]:,}): showing a "
                           "sample instead.")
    label = int(labels[index])
    return Input(analysis.as_image(images[index].numpy()),
                 f"test digit #{index} (label {label}, from the MNIST test set)",
                 label, None, drawn=False)


def _not_opened(note: str) -> None:
    st.warning(note, icon="🔗")
    st.query_params.pop(TEST_DIGIT, None)  # the sample shown takes its place


def choose_input(samples: dict[str, np.ndarray], draw_col, pick_col) -> Input:
    """The input row's widgets: a drawing replaces an upload, which replaces the test digit the
    address names, which replaces the sample. The address keeps the drawing (``draw``) and the test
    digit (``test_digit``: the sample's, when it is the input); an upload cannot go in it."""
    with draw_col:
        st.subheader("Draw")
        drawn = read_drawing(param="draw")
        st.caption("Draw one digit with the mouse or a finger: it replaces the sample as you lift "
                   "the pen. Undo takes back the last stroke; Clear empties the canvas and returns to "
                   "the sample. The model was trained on single MNIST digits, not on overlapping "
                   "ones: two digits drawn over each other usually give one long capsule.")
    with pick_col:
        st.subheader("Or pick one")
        opened = opened_test_digit(samples)
        sevens = np.flatnonzero(samples["labels"] == 7)
        st.session_state.setdefault("sample", int(sevens[0]) if sevens.size else 0)  # opens on a 7
        k = st.selectbox("Sample MNIST test digit", range(len(samples["labels"])), key="sample",
                         on_change=sample_picked, args=(samples,), format_func=lambda i: sample_label(samples, i),
                         help="20 test digits per class plus digits the shipped model gets wrong "
                              "(predictions as of when the samples were made), as "
                              "“label · #index in the MNIST test set”.")
        if TEST_DIGIT not in st.query_params:
            st.query_params[TEST_DIGIT] = str(int(samples["indices"][k]))
        uploaded, name = read_upload()
    if drawn is not None:
        return Input(drawn.image, "your drawing", None, drawn, drawn=True)
    if uploaded is not None:
        return Input(uploaded.image, f"upload `{name}`", None, uploaded, drawn=False)
    if opened is not None:
        return opened
    label = int(samples["labels"][k])
    return Input(analysis.as_image(samples["images"][k]), f"test digit #{int(samples['indices'][k])} (label {label})",
                 label, None, drawn=False)
