"""The models and data the pages share, each loaded once per process: the model picker (drawn by
the entry ``dashboard/app.py`` so that the choice holds on every page), the picked CapsNet, the
shipped baseline CNNs, the sample digits, the MNIST test set and the MultiMNIST test pairs, the
traced analysis of an image and the sidebar's model panel.

The picker (:func:`pick_model`) offers the CapsNets of the page's data set (:class:`DatasetModels`):
for the MNIST pages ``$CAPSULES_CHECKPOINT`` when it is set and every shipped MNIST CapsNet
(:func:`capsules.zoo.list_shipped`: ``checkpoints/``, or ``$CAPSULES_CHECKPOINT_DIR``), for the
two-digit page ``$CAPSULES_MULTIMNIST_CHECKPOINT`` and the shipped MultiMNIST CapsNets; a newly
shipped model appears by itself. Each data set's choice is kept while a page of the other is
open. A shipped baseline CNN is no CapsNet and is not offered: pages compare with it
(:func:`get_baselines`) where that makes sense.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from capsules import CapsNet, CapsNetConfig, Model, analysis, experiments, zoo
from capsules.checkpoint import SHIPPED, CheckpointError, load_model
from capsules.data import (
    MultiMNIST,
    MultiMNISTBatch,
    load_mnist,
    load_multimnist_test,
    resolve_data_dir,
)
from capsules.device import describe, pick_device
from dashboard import url_state

SAMPLES = Path(__file__).with_name("samples.npz")
TWO_DIGITS_URL = "two-digits"  # the two-digit page's address: /two-digits
MAX_ITERATIONS = 10  # the routing-iterations slider's top, and the iterations every analysis traces


@dataclass
class LoadedModel:
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
class DatasetModels:
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


MNIST_MODELS = DatasetModels("mnist", 28, "CAPSULES_CHECKPOINT", SHIPPED.name, "model", "an MNIST CapsNet")
MULTIMNIST_MODELS = DatasetModels("multimnist", 36, "CAPSULES_MULTIMNIST_CHECKPOINT", "capsnet-multimnist.safetensors",
                           "model_multimnist", "a MultiMNIST CapsNet (36×36 input)")
PAGE_MODELS = {TWO_DIGITS_URL: MULTIMNIST_MODELS}  # by page address; every other page: MNIST_MODELS
MODEL_PICKER = MNIST_MODELS.picker  # session-state key of the MNIST pages' model picker
MAX_MODELS = 4  # models held in memory per process (a CapsNet is 33 MB in float32, the CNN 142 MB)


@st.cache_data(show_spinner=False, max_entries=4)
def _listing(folder: str, stamp: float) -> list[zoo.Shipped]:
    return zoo.list_shipped(folder)


def shipped() -> list[zoo.Shipped]:
    """The shipped models (:func:`capsules.zoo.list_shipped`), read again whenever the folder
    changes (shipping a model writes into it)."""
    folder = zoo.checkpoints_dir()
    return _listing(str(folder), folder.stat().st_mtime if folder.is_dir() else 0.0)


def _key(path: str | os.PathLike) -> str:
    return str(Path(path).resolve())


def model_choices(models: DatasetModels = MNIST_MODELS) -> dict[str, str]:
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


def pick_model(models: DatasetModels = MNIST_MODELS) -> Path:
    """The sidebar's model picker of the page's data set; returns the path picked. The entry draws
    it on every page; the other data sets' choices are kept meanwhile (Streamlit forgets the
    state of a widget that a run does not draw, unless it is set again)."""
    for other in (MNIST_MODELS, MULTIMNIST_MODELS):
        if other.picker != models.picker and other.picker in st.session_state:
            st.session_state[other.picker] = st.session_state[other.picker]
    choices = model_choices(models)
    url_state.restore("model", models.picker, url_state.one_of({Path(c).stem: c for c in choices}, "model"), "model")
    shipped_ones = f"the shipped {zoo.DATASET_NAMES[models.dataset]} CapsNets"
    with st.sidebar:
        picked = st.selectbox("Model", list(choices), key=models.picker, format_func=choices.get,
                              help=f"The CapsNet every view of the page shows: {shipped_ones} (Table 1's comparison "
                                   f"models among them) and ${models.env} when it is set.")
    url_state.remember("model", Path(picked).stem)  # always: the default depends on the server's settings
    return Path(picked)


def checkpoint_path(models: DatasetModels = MNIST_MODELS) -> Path:
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


def get_model(models: DatasetModels = MNIST_MODELS) -> LoadedModel:
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
    return LoadedModel(model=model, device=device, key=key)


def get_baselines() -> list[LoadedModel]:
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
        found.append(LoadedModel(model=model, device=device, key=f"{m.path}:{stamp}:{device}"))
    return found


@st.cache_data(show_spinner=False)
def _get_samples(path: str, stamp: float) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def get_samples() -> dict[str, np.ndarray]:
    """The built-in MNIST test digits (``dashboard/samples.npz``); stops the page with the
    command that makes them when the file is missing."""
    if not SAMPLES.is_file():
        st.info(f"No sample digits found at `{SAMPLES}`: run `python -m dashboard.samples`.")
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
def cached_analysis(_model, model_key: str, image: np.ndarray, iterations: int) -> analysis.Analysis:
    """:func:`capsules.analysis.analyse` of ``image`` with r = ``iterations`` (and the sweep over
    1 … :data:`MAX_ITERATIONS`), once per model (``model_key``, :attr:`LoadedModel.key`), image and r."""
    return analysis.analyse(_model, image, iterations=iterations, sweep_iterations=MAX_ITERATIONS)


def pose_spread(loaded: LoadedModel) -> dict | None:
    """How each pose value spreads over the test digits of each class
    (:func:`capsules.analysis.pose_distribution`), from the experiments results shipped beside
    the checkpoint (:func:`results_of`); None when they are not there or hold no such section
    (results computed before it)."""
    results = results_of(loaded)
    return None if results is None else results.get(analysis.POSE_KEY)


# ------------------------------------------------------------------------------ sidebar


def model_panel(loaded: LoadedModel):
    """Device and checkpoint metadata in the sidebar; returns the slot where :func:`report_time`
    puts the time of the run, once the run is over."""
    model, meta = loaded.model, loaded.model.metadata
    with st.sidebar:
        st.header("Model")
        st.markdown(f"**Device:** {describe(loaded.device)}")
        if model.checkpoint_path is not None:
            st.markdown(f"**Checkpoint:** `{model.checkpoint_path.name}`")
        rows = []
        shipped = zoo.Shipped.of(model.checkpoint_path, meta) if meta.get("format") in zoo.KIND_NAMES else None
        if shipped is not None:
            rows.append(f"- trained with {shipped.recipe}")
        if zoo.dataset_of(meta) == "multimnist" and meta.get("test_error") is not None:
            interval = ""
            if shipped is not None and shipped.error_interval is not None:
                lo, hi = shipped.error_interval
                interval = f" [{lo:.2f}, {hi:.2f}] (95% interval, {shipped.total:,} pairs)"
            paper = [r.error("multimnist") for r in zoo.PAPER
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


@st.cache_data(max_entries=64, show_spinner=False)
def cached_classification(_model, model_key: str, image: np.ndarray) -> analysis.Classification:
    return analysis.classify(_model, image)


@st.cache_data(show_spinner=False, max_entries=8)
def _results(path: str, stamp: tuple[float, float]) -> dict | None:
    return experiments.load_results(path)


def _mtime(path: Path) -> float:
    return path.stat().st_mtime if path.is_file() else 0.0


def results_of(loaded: LoadedModel) -> dict | None:
    """The experiments results shipped beside ``loaded``'s checkpoint, of its very weights
    (:func:`capsules.experiments.load_results` checks the sha256), else None; read once per
    (checkpoint, results file) modification time and shared by the pages."""
    path = loaded.model.checkpoint_path
    if path is None:
        return None
    return _results(str(path), (_mtime(path), _mtime(experiments.results_path(path))))
