"""What every page of the dashboard shares: the model picker and the models (each loaded once per
process), the sample digits, the MNIST test set and the MultiMNIST test pairs, the input widgets,
the routing-iterations slider, the traced analysis of an image, the sidebar's model panel and a
clock for the compute figure.

The model picker (:func:`pick_model`, drawn by the entry ``dashboard/app.py`` so that the choice
holds on every page) offers the CapsNets of the page's data set (:class:`Models`): for the MNIST
pages ``$CAPSULES_CHECKPOINT`` when it is set and every shipped MNIST CapsNet
(:func:`capsules.zoo.list_shipped`: ``checkpoints/``, or ``$CAPSULES_CHECKPOINT_DIR``), for the
two-digit page ``$CAPSULES_MULTIMNIST_CHECKPOINT`` and the shipped MultiMNIST CapsNets; a newly
shipped model appears by itself. Each data set's choice is kept while a page of the other is
open. A shipped baseline CNN is no CapsNet and is not offered: pages compare with it
(:func:`get_baselines`) where that makes sense.

Pages import these instead of copying them. Nothing here computes: the arithmetic is in
:mod:`capsules.analysis` and :mod:`capsules.data.drawing`, the drawing in :mod:`dashboard.figures`.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from capsules import CapsNet, CapsNetConfig, Model
from capsules import analysis as A
from capsules import zoo as Z
from capsules.checkpoint import SHIPPED, CheckpointError, load_model
from capsules.data import MultiMNIST, MultiMNISTBatch, load_mnist, load_multimnist_test, resolve_data_dir
from capsules.device import describe, pick_device
from capsules.data.drawing import (
    Converted, ConvertedPair, ImageError, convert, convert_pair, convert_upload, rasterise_strokes,
)
from dashboard import figures as F
from dashboard.pad import drawing_pad

SAMPLES = Path(__file__).with_name("samples.npz")
CANVAS_SIDE = 240  # pixels; fits the input column of a 1280-pixel window
STROKE_WIDTH = 18  # pixels of the pad: about MNIST's 2 to 3 once a digit is fitted to its 20-pixel box
INK = "#FFFFFF"  # the pad's one pen: white on black, as MNIST
PLOTLY_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}
# The pages, as files beside the entry (``st.navigation`` runs each as a script; ``st.switch_page``
# takes these paths), and the query parameter that opens a test digit in the explorer:
# ``/explorer?test_digit=247`` shows MNIST test image 247.
EXPLORER_PAGE = "explorer.py"
EXPERIMENTS_PAGE = "experiments.py"
TWO_DIGITS_PAGE = "two_digits.py"
TWO_DIGITS_URL = "two-digits"  # the two-digit page's address: /two-digits
TEST_DIGIT = "test_digit"
MAX_ITERATIONS = 10  # the routing-iterations slider's top, and the iterations every analysis traces


# ------------------------------------------------------------------------------ the model


@dataclass
class Loaded:
    """A model a page works with. ``key`` names it in the caches of results (path, file
    time and device): a replaced checkpoint gives new results."""

    model: Model
    device: torch.device
    key: str

    @property
    def name(self) -> str:
        """The checkpoint's name (``capsnet-mnist-r1``), or "untrained"."""
        path = self.model.checkpoint_path
        return path.stem if path is not None else "untrained"


@dataclass(frozen=True)
class Models:
    """The CapsNets a page shows: those of one data set, for images ``side`` pixels square; the
    picker's choices (``$<env>`` first, then the shipped ones, ``shipped`` first) and its
    session-state key. When none is there, ``checkpoints/<shipped>`` is offered and loads as an
    untrained, seeded CapsNet."""

    dataset: str  # as capsules.zoo names it: "mnist", "multimnist"
    side: int  # input side, pixels
    env: str  # the environment variable that names a checkpoint to offer first
    shipped: str  # the file name of the data set's shipped CapsNet in checkpoints/
    picker: str  # session-state key of its picker
    what: str  # the model in words, for messages

    @property
    def default(self) -> Path:
        return SHIPPED.parent / self.shipped


MNIST_MODELS = Models("mnist", 28, "CAPSULES_CHECKPOINT", SHIPPED.name, "model", "an MNIST CapsNet")
MULTIMNIST_MODELS = Models("multimnist", 36, "CAPSULES_MULTIMNIST_CHECKPOINT", "capsnet-multimnist.safetensors",
                           "model_multimnist", "a MultiMNIST CapsNet (36×36 input)")
PAGE_MODELS = {TWO_DIGITS_URL: MULTIMNIST_MODELS}  # by page address; every other page: MNIST_MODELS
MODEL_PICKER = MNIST_MODELS.picker  # session-state key of the MNIST pages' model picker
MAX_MODELS = 4  # models held in memory per process (a CapsNet is 33 MB in float32, the CNN 142 MB)


@st.cache_data(show_spinner=False, max_entries=4)
def _listing(folder: str, stamp: float) -> list[Z.Shipped]:
    return Z.list_shipped(folder)


def shipped() -> list[Z.Shipped]:
    """The shipped models (:func:`capsules.zoo.list_shipped`), read again whenever the folder
    changes (shipping a model writes into it)."""
    folder = Z.checkpoints_dir()
    return _listing(str(folder), folder.stat().st_mtime if folder.is_dir() else 0.0)


def _key(path: str | os.PathLike) -> str:
    return str(Path(path).resolve())


def model_choices(models: Models = MNIST_MODELS) -> dict[str, str]:
    """What the model picker offers, path -> short label (the sidebar's width; the model panel
    below it names the checkpoint in full): ``$<models.env>`` first when it is set, then the data
    set's shipped checkpoint and its other shipped CapsNets. With none of them, the
    shipped checkpoint's path: it loads as an untrained CapsNet, with a warning."""
    choices = {}
    env = os.environ.get(models.env)
    if env:
        choices[_key(env)] = f"{Path(env).stem} (${models.env})"
    capsnets = [m for m in shipped() if m.kind == "capsnet" and m.dataset == models.dataset]
    for m in sorted(capsnets, key=lambda m: m.path.name != models.shipped):  # the shipped one first
        choices.setdefault(_key(m.path), m.short_label)
    return choices or {_key(models.default): models.default.stem}


def pick_model(models: Models = MNIST_MODELS) -> Path:
    """The sidebar's model picker of the page's data set; returns the path picked. The entry draws
    it on every page; the other data sets' choices are kept meanwhile (Streamlit forgets the
    state of a widget that a run does not draw, unless it is set again)."""
    for other in (MNIST_MODELS, MULTIMNIST_MODELS):
        if other.picker != models.picker and other.picker in st.session_state:
            st.session_state[other.picker] = st.session_state[other.picker]
    choices = model_choices(models)
    shipped_ones = f"the shipped {Z.DATASET_NAMES[models.dataset]} CapsNets"
    with st.sidebar:
        picked = st.selectbox("Model", list(choices), key=models.picker, format_func=choices.get,
                              help=f"The CapsNet every view of the page shows: {shipped_ones} (Table 1's comparison "
                                   f"models among them) and ${models.env} when it is set.")
    return Path(picked)


def checkpoint_path(models: Models = MNIST_MODELS) -> Path:
    """The picked model: the picker's choice, else its first (``$<models.env>``, else the shipped
    checkpoint)."""
    choices = model_choices(models)
    picked = st.session_state.get(models.picker)
    return Path(picked if picked in choices else next(iter(choices)))


@st.cache_resource(show_spinner="Loading the model…", max_entries=MAX_MODELS)
def _get_model(path: str, stamp: float, device_name: str | None, side: int = 28) -> tuple[Model, torch.device]:
    """One model per checkpoint and process, shared by every session. ``stamp`` (the file's mtime)
    makes a replaced checkpoint reload; a missing file gives an untrained, seeded CapsNet for
    ``side`` x ``side`` images."""
    device = pick_device(device_name)
    if Path(path).is_file():
        return load_model(path, device), device
    torch.manual_seed(0)
    return CapsNet(CapsNetConfig(image_size=side)).to(device).eval(), device


def get_model(models: Models = MNIST_MODELS) -> Loaded:
    """The page's CapsNet, the one picked; a checkpoint that cannot be loaded, or that holds no
    CapsNet of the page's kind (``models``), stops the page with its one line."""
    path = checkpoint_path(models)
    stamp = path.stat().st_mtime if path.is_file() else 0.0
    try:
        model, device = _get_model(str(path), stamp, os.environ.get("CAPSULES_DEVICE"), models.side)
    except (CheckpointError, ValueError) as exc:
        st.error(f"The model could not be loaded: {exc}")
        st.stop()
    if not isinstance(model, CapsNet) or model.config.image_size != models.side:
        side = model.config.image_size
        st.error(f"`{path.name}` holds a {model.config.NAME} for {side}×{side} images: this page shows "
                 f"{models.what}. Pick one in the sidebar.")
        st.stop()
    key = f"{path}:{stamp if model.checkpoint_path else 'untrained'}:{device}"
    if model.checkpoint_path is None:
        st.warning(f"No checkpoint at `{path}`: this is an **untrained** CapsNet.", icon="⚠️")
    return Loaded(model=model, device=device, key=key)


def get_baselines() -> list[Loaded]:
    """The shipped MNIST baseline CNNs, to compare with the CapsNet; each loaded once per process.
    One that cannot be loaded is left out with a warning."""
    found = []
    for m in shipped():
        if m.kind != "cnn" or m.dataset != "mnist":
            continue
        stamp = m.path.stat().st_mtime if m.path.is_file() else 0.0
        try:
            model, device = _get_model(str(m.path), stamp, os.environ.get("CAPSULES_DEVICE"))
        except (CheckpointError, ValueError) as exc:
            st.warning(f"The baseline CNN `{m.name}` could not be loaded: {exc}")
            continue
        found.append(Loaded(model=model, device=device, key=f"{m.path}:{stamp}:{device}"))
    return found


@st.cache_data(show_spinner=False)
def _get_samples(path: str, stamp: float) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def get_samples() -> dict[str, np.ndarray]:
    """The built-in MNIST test digits (``dashboard/samples.npz``); stops the page with the
    command that makes them when the file is missing."""
    if not SAMPLES.is_file():
        st.info(f"No sample digits found at `{SAMPLES}`: run `python scripts/make_samples.py`.")
        st.stop()
    return _get_samples(str(SAMPLES), SAMPLES.stat().st_mtime)


@st.cache_resource(show_spinner="Reading the MNIST test set…", max_entries=1)
def _test_set(data_dir: str) -> tuple[torch.Tensor, torch.Tensor]:
    return load_mnist("test", data_dir)


def get_test_set() -> tuple[torch.Tensor, torch.Tensor]:
    """The MNIST test set (uint8 images (N, 28, 28), labels (N,)) from the usual data folder
    (:func:`capsules.data.resolve_data_dir`), read once per process and shared by every session.
    Raises :class:`capsules.data.DatasetError`, whose message says how to get it, when the
    files are missing or corrupt (a failure is not cached: the next call looks again)."""
    return _test_set(str(resolve_data_dir()))


@st.cache_resource(show_spinner="Making the MultiMNIST test pairs…", max_entries=1)
def _test_pairs(data_dir: str) -> MultiMNISTBatch:
    return load_multimnist_test(data_dir)


def get_test_pairs() -> MultiMNISTBatch:
    """The fixed, seeded MultiMNIST test set (:func:`capsules.data.load_multimnist_test`: 10,000
    pairs of the MNIST test digits, the pairs the MultiMNIST model is scored on), made once per
    process. Raises :class:`capsules.data.DatasetError` as :func:`get_test_set` does."""
    return _test_pairs(str(resolve_data_dir()))


@st.cache_resource(show_spinner=False, max_entries=1)
def _sample_pairs(path: str, stamp: float) -> MultiMNISTBatch:
    samples = _get_samples(path, stamp)
    return MultiMNIST(torch.from_numpy(samples["images"]), torch.from_numpy(samples["labels"])).test_set()


def get_sample_pairs() -> MultiMNISTBatch:
    """Pairs of the built-in sample digits, made by the same generator with the same seed as the
    test set (:meth:`capsules.data.MultiMNIST.test_set`): what the two-digit page offers without
    MNIST. ``index`` holds positions in the samples, not in the MNIST test set."""
    get_samples()  # stops the page with the command that makes them when they are missing
    return _sample_pairs(str(SAMPLES), SAMPLES.stat().st_mtime)


# ------------------------------------------------------------------------------ analysis


@st.cache_data(max_entries=64, show_spinner=False)
def cached_analysis(_model, model_key: str, image: np.ndarray, iterations: int) -> A.Analysis:
    """:func:`capsules.analysis.analyse` of ``image`` with r = ``iterations`` (and the sweep over
    1 … :data:`MAX_ITERATIONS`), once per model (``model_key``, :attr:`Loaded.key`), image and r."""
    return A.analyse(_model, image, iterations=iterations, sweep_iterations=MAX_ITERATIONS)


def routing_iterations(loaded: Loaded, trained: int | None) -> int:
    """The sidebar's r, used by every view; another model picked starts from its own r."""
    default_r = int(loaded.model.config.routing_iterations)
    said = f"training used r = {trained}" if trained else f"the model's default is r = {default_r}"
    if st.session_state.get("iterations_model") != loaded.key or "iterations" not in st.session_state:
        st.session_state["iterations_model"] = loaded.key
        st.session_state["iterations"] = default_r  # the slider's value (it has no default of its own)
    with st.sidebar:
        st.header("Routing")
        return st.slider("Routing iterations r", 1, MAX_ITERATIONS, key="iterations",
                         help=f"Procedure 1 runs r iterations; the paper uses 3 and {said}. "
                              "Every view uses this r.")


# ------------------------------------------------------------------------------ timing


class Clock:
    """Wall time of one script run: ``total`` from the clock's creation (the whole rerun so
    far), ``steps`` the model work by label."""

    def __init__(self):
        self.start = time.perf_counter()
        self.steps: dict[str, float] = {}

    def __call__(self, label: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.steps[label] = self.steps.get(label, 0.0) + (time.perf_counter() - t0) * 1e3
        return out

    @property
    def total(self) -> float:
        """Milliseconds since the run began."""
        return (time.perf_counter() - self.start) * 1e3

    @property
    def model_work(self) -> float:
        return sum(self.steps.values())


# ------------------------------------------------------------------------------ widgets


def chart(fig, key: str) -> None:
    st.plotly_chart(fig, key=key, config=PLOTLY_CONFIG)


@st.cache_resource(max_entries=256, show_spinner=False)
def _figure(name: str, args: tuple, kwargs: tuple):
    return getattr(F, name)(*args, **dict(kwargs))


def figure(name: str, *args, **kwargs):
    """``dashboard.figures.<name>(*args, **kwargs)``, built once per distinct arguments (hashed by
    content) and shared by all sessions: a rerun that shows the same numbers again does not
    rebuild the figure. Figures are only read afterwards (``st.plotly_chart`` copies them)."""
    return _figure(name, args, tuple(sorted(kwargs.items())))


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
    column of its own: (mode, spread) as :meth:`capsules.analysis.Analysis.evidence_for` takes them."""
    c1, c2 = st.columns([1.6, 1.2])
    with c1:
        mode = EVIDENCE_MODES[st.radio("Show", list(EVIDENCE_MODES), key=f"{prefix}_mode", horizontal=True)]
    with c2:
        spread = EVIDENCE_SPREADS[st.radio("Share each vote over", list(EVIDENCE_SPREADS), key=f"{prefix}_spread",
                                           help=SPREAD_HELP)]
    return mode, spread


def evidence_title(mode: str, j: int) -> str:
    """The title of capsule ``j``'s evidence map in ``mode``."""
    return {
        "votes": f"Evidence for digit {j}: votes c<sub>i{j}</sub>·|û<sub>{j}|i</sub>|",
        "projected": f"Contribution to |s<sub>{j}</sub>|: c<sub>i{j}</sub> û<sub>{j}|i</sub> · v̂<sub>{j}</sub>",
        "change": f"Evidence for digit {j}: change of c·|û| since iteration 1",
    }[mode]


def evidence_notes(g: A.Geometry, iterations: str) -> None:
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


def digit_picker(label: str, key: str, prediction: int) -> int:
    """A digit-capsule selectbox whose default follows the prediction."""
    choice = st.selectbox(label, [None, *range(10)], key=key,
                          format_func=lambda d: f"winning capsule ({prediction})" if d is None else f"capsule {d}")
    return prediction if choice is None else int(choice)


def read_drawing(key: str = "canvas") -> Converted | None:
    """The drawing pad (:mod:`dashboard.pad`: white ink on black, sent on pen-up) as the model's
    input, or None when it has no ink. Strokes that are no drawing show their reason and give
    None."""
    strokes = drawing_pad(key, side=CANVAS_SIDE, width=STROKE_WIDTH, pens=[INK])
    if not strokes:
        return None
    try:
        return convert(rasterise_strokes(strokes, CANVAS_SIDE, STROKE_WIDTH)[0])
    except ImageError as exc:  # what the browser sent is no drawing: say so, use the sample
        st.warning(f"The drawing could not be read: {exc}")
        return None


PENS = ("pen A", "pen B")  # the two-digit pad's pens, in the colours of dashboard.figures.PAIR_COLORS


def read_two_pens(key: str = "pair_pad") -> ConvertedPair | None:
    """The drawing pad with two pens, one per digit, in the colours of
    :data:`dashboard.figures.PAIR_COLORS` (a radio above it picks the pen that draws), as the
    MultiMNIST model's input (:func:`capsules.data.drawing.convert_pair`: one grey image, the
    clipped sum, and each pen's digit apart), or None when it has no ink. Strokes that are no
    drawing show their reason and give None."""
    colours = ("red", "green")
    pen = st.radio("Pen", range(len(PENS)), key=f"{key}_pen", horizontal=True,
                   format_func=lambda k: f"{PENS[k]} ({colours[k]})",
                   help="Draw one digit with each pen: the strokes keep their pen's colour on the pad; the "
                        "model sees both as one grey image.")
    strokes = drawing_pad(key, side=CANVAS_SIDE, width=STROKE_WIDTH, pens=list(F.PAIR_COLORS), pen=pen)
    if not strokes:
        return None
    try:
        return convert_pair(rasterise_strokes(strokes, CANVAS_SIDE, STROKE_WIDTH, pens=len(PENS)))
    except ImageError as exc:  # what the browser sent is no drawing: say so, use the test pair
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


# ------------------------------------------------------------------------------ sidebar


def model_panel(loaded: Loaded):
    """Device and checkpoint metadata in the sidebar; returns the slot where :func:`report_time`
    puts the time of the run, once the run is over."""
    model, meta = loaded.model, loaded.model.metadata
    with st.sidebar:
        st.header("Model")
        st.markdown(f"**Device:** {describe(loaded.device)}")
        if model.checkpoint_path is not None:
            st.markdown(f"**Checkpoint:** `{model.checkpoint_path.name}`")
        rows = []
        shipped = Z.Shipped.of(model.checkpoint_path, meta) if meta.get("format") in Z.KIND_NAMES else None
        if shipped is not None:
            rows.append(f"- trained with {shipped.recipe}")
        if Z.dataset_of(meta) == "multimnist" and meta.get("test_error") is not None:
            interval = ""
            if shipped is not None and shipped.error_interval is not None:
                lo, hi = shipped.error_interval
                interval = f" [{lo:.2f}, {hi:.2f}] (95% interval, {shipped.total:,} pairs)"
            paper = [r.error("multimnist") for r in Z.PAPER
                     if shipped is not None and r.matches(shipped) and r.error("multimnist")]
            said = f"; the paper, same recipe: {paper[0]}%" if paper else ""
            rows.append(f"- MultiMNIST test error **{float(meta['test_error']):.2f} %**{interval}{said} (a pair is "
                        "right when its two longest capsules are its two digits)")
        elif meta.get("test_accuracy") is not None:  # training writes a percentage
            rows.append(f"- test accuracy **{float(meta['test_accuracy']):.2f} %**")
        if shipped is not None and len(shipped.stages) > 1:  # trained further from another run's weights
            rows.append(f"- epochs: {shipped.epochs_text}, in {len(shipped.stages)} runs")
        elif meta.get("epoch") is not None:
            rows.append(f"- epochs: {meta['epoch']} of {meta.get('epochs', '?')}")
        if meta.get("date"):
            rows.append(f"- trained: {str(meta['date'])[:16].replace('T', ' ')} UTC")
        if meta.get("hardware"):
            rows.append(f"- on: {meta['hardware']}")
        if shipped is not None and len(shipped.stages) > 1 and shipped.train_seconds is not None:
            rows.append(f"- training time: {shipped.train_seconds / 60:.0f} min ({shipped.training_text})")
        elif meta.get("train_seconds"):
            rows.append(f"- training time: {float(meta['train_seconds']) / 60:.0f} min")
        if rows:
            st.markdown("\n".join(rows))
        else:
            st.caption("untrained weights (no checkpoint yet)")
        return st.empty()


def debug_mode() -> bool:
    """Diagnostics (the rerun timings in the sidebar) show only with ``?debug=1`` in the URL."""
    return st.query_params.get("debug") == "1"


def report_time(slot, clock: Clock) -> None:
    """With ``?debug=1``: the time of this whole script run, in the slot :func:`model_panel` left.
    Call it last."""
    if not debug_mode():
        return
    with slot.container():
        st.metric("Compute, this rerun", f"{clock.total:.0f} ms",
                  help="Wall time of this whole script run on the server: reading the widgets, the "
                       "model work, building the figures and sending them (the browser's drawing "
                       "is not included). Results and figures already made for these numbers come "
                       "from a cache. A control inside a view reruns only that view (below).")
        if clock.steps:
            st.caption("model work: " + " · ".join(f"{k_} {v_:.1f} ms" for k_, v_ in clock.steps.items()))
        last = st.session_state.get("new_input_ms")
        if last is not None:
            st.caption(f"Last new input: **{last:.0f} ms** for the whole rerun.")


def show_views(views: dict, key: str) -> None:
    """A page's views as tabs (session-state key ``key``); only the open tab's ``draw()`` runs:
    a closed tab computes and draws nothing."""
    tabs = st.tabs(list(views), key=key, on_change="rerun")
    for tab, draw in zip(tabs, views.values()):
        if tab.open:
            with tab:
                draw()


def end_run(slot, clock: Clock, input_key) -> None:
    """Last on a page: the cost of this run is remembered as that of a new input when
    ``input_key`` (what the page reads, and r) changed, and the time goes to the sidebar's
    ``slot`` (:func:`report_time`)."""
    if st.session_state.get("input_key") != input_key:
        st.session_state["input_key"] = input_key
        st.session_state["new_input_ms"] = clock.total
    report_time(slot, clock)


def view(draw):
    """A view of a page as a fragment: its own controls rerun only it, not the page. ``draw``
    takes its arguments and a :class:`Clock` (last); with ``?debug=1`` the view's time goes to the
    sidebar."""

    @functools.wraps(draw)
    def run(*args):
        clock = Clock()
        draw(*args, clock)
        if not debug_mode():
            return
        with st.sidebar:
            work = " · ".join(f"{k_} {v_:.1f} ms" for k_, v_ in clock.steps.items())
            st.caption(f"Open view, last rerun: **{clock.total:.0f} ms**" + (f" (model work: {work})" if work else ""))

    return st.fragment(run)
