"""What every page of the dashboard shares: the model picker and the models (each loaded once per
process), the sample digits, the MNIST test set, the input widgets, the sidebar's model panel and
a clock for the compute figure.

The model picker (:func:`pick_model`, drawn by the entry ``dashboard/app.py`` so that the choice
holds on every page) offers ``$CAPSULES_CHECKPOINT`` when it is set and every shipped MNIST
CapsNet (:func:`capsules.zoo.list_shipped`: ``checkpoints/``, or ``$CAPSULES_CHECKPOINT_DIR``); a
newly shipped model appears by itself. A shipped baseline CNN is no CapsNet and is not offered:
pages compare with it (:func:`get_baselines`) where that makes sense.

Pages import these instead of copying them. Nothing here computes: the arithmetic is in
:mod:`capsules.analysis` and :mod:`capsules.preprocess`, the drawing in :mod:`dashboard.figures`.
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

from capsules import CapsNet, Model
from capsules import zoo as Z
from capsules.checkpoint import SHIPPED, CheckpointError, load_model
from capsules.data import load_mnist, resolve_data_dir
from capsules.device import describe, pick_device
from capsules.preprocess import Converted, ImageError, convert, convert_upload, rasterise_strokes
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
TEST_DIGIT = "test_digit"


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


MODEL_PICKER = "model"  # session-state key of the sidebar's model picker
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


def model_choices() -> dict[str, str]:
    """What the model picker offers, path -> short label (the sidebar's width; the model panel
    below it names the checkpoint in full): ``$CAPSULES_CHECKPOINT`` first when it is set,
    then the shipped checkpoint and the other shipped MNIST CapsNets. With none of them, the
    shipped checkpoint's path: it loads as an untrained CapsNet, with a warning."""
    choices = {}
    env = os.environ.get("CAPSULES_CHECKPOINT")
    if env:
        choices[_key(env)] = f"{Path(env).stem} ($CAPSULES_CHECKPOINT)"
    capsnets = [m for m in shipped() if m.kind == "capsnet" and m.dataset == "mnist"]
    for m in sorted(capsnets, key=lambda m: m.path.resolve() != SHIPPED.resolve()):  # the shipped one first
        choices.setdefault(_key(m.path), m.short_label)
    return choices or {_key(SHIPPED): SHIPPED.stem}


def pick_model() -> Path:
    """The sidebar's model picker; returns the path picked. The entry draws it on every page."""
    choices = model_choices()
    with st.sidebar:
        picked = st.selectbox("Model", list(choices), key=MODEL_PICKER, format_func=choices.get,
                              help="The CapsNet every view of every page shows: the shipped models (Table 1's "
                                   "comparison models among them) and $CAPSULES_CHECKPOINT when it is set.")
    return Path(picked)


def checkpoint_path() -> Path:
    """The picked model: the picker's choice, else its first (``$CAPSULES_CHECKPOINT``, else the
    shipped checkpoint)."""
    choices = model_choices()
    picked = st.session_state.get(MODEL_PICKER)
    return Path(picked if picked in choices else next(iter(choices)))


@st.cache_resource(show_spinner="Loading the model…", max_entries=MAX_MODELS)
def _get_model(path: str, stamp: float, device_name: str | None) -> tuple[Model, torch.device]:
    """One model per checkpoint and process, shared by every session. ``stamp`` (the file's mtime)
    makes a replaced checkpoint reload; a missing file gives an untrained, seeded CapsNet."""
    device = pick_device(device_name)
    if Path(path).is_file():
        return load_model(path, device), device
    torch.manual_seed(0)
    return CapsNet().to(device).eval(), device


def get_model() -> Loaded:
    """The page's CapsNet, the one picked; a checkpoint that cannot be loaded, or that holds no
    MNIST CapsNet, stops the page with its one line."""
    path = checkpoint_path()
    stamp = path.stat().st_mtime if path.is_file() else 0.0
    try:
        model, device = _get_model(str(path), stamp, os.environ.get("CAPSULES_DEVICE"))
    except (CheckpointError, ValueError) as exc:
        st.error(f"The model could not be loaded: {exc}")
        st.stop()
    if not isinstance(model, CapsNet) or model.config.image_size != 28:
        side = model.config.image_size
        st.error(f"`{path.name}` holds a {model.config.NAME} for {side}×{side} images: the pages show an MNIST "
                 "CapsNet. Pick one in the sidebar.")
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
        if meta.get("format") in Z.KIND_NAMES:
            rows.append(f"- trained with {Z.Shipped.of(model.checkpoint_path, meta).recipe}")
        if meta.get("test_accuracy") is not None:  # training writes a percentage
            rows.append(f"- test accuracy **{float(meta['test_accuracy']):.2f} %**")
        if meta.get("epoch") is not None:
            rows.append(f"- epochs: {meta['epoch']} of {meta.get('epochs', '?')}")
        if meta.get("date"):
            rows.append(f"- trained: {str(meta['date'])[:16].replace('T', ' ')} UTC")
        if meta.get("hardware"):
            rows.append(f"- on: {meta['hardware']}")
        if meta.get("train_seconds"):
            rows.append(f"- training time: {float(meta['train_seconds']) / 60:.0f} min")
        if rows:
            st.markdown("\n".join(rows))
        else:
            st.caption("untrained weights (no checkpoint yet)")
        return st.empty()


def report_time(slot, clock: Clock) -> None:
    """The time of this whole script run, in the slot :func:`model_panel` left. Call it last."""
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


def view(draw):
    """A view of a page as a fragment: its own controls rerun only it, not the page. ``draw``
    takes its arguments and a :class:`Clock` (last); the view's time goes to the sidebar."""

    @functools.wraps(draw)
    def run(*args):
        clock = Clock()
        draw(*args, clock)
        with st.sidebar:
            work = " · ".join(f"{k_} {v_:.1f} ms" for k_, v_ in clock.steps.items())
            st.caption(f"Open view, last rerun: **{clock.total:.0f} ms**" + (f" (model work: {work})" if work else ""))

    return st.fragment(run)
