"""Test-set experiments: does routing matter for this checkpoint?

A page of ``streamlit run dashboard/app.py``. It opens on the paper's Table 1 beside the shipped
models (:func:`capsules.zoo.table1`: their test errors with 95% intervals, epochs, hardware, and
which rows are within the noise of each other) and routing at inference across them
(:func:`capsules.zoo.routing_at_inference`), then shows what :mod:`capsules.experiments` computes
over the MNIST test set (accuracy by routing iterations, the routing dynamics, coupling ablations,
affine robustness, the confusion matrix and the misclassified digits), each figure with what the
paper claimed, what later papers found and what this checkpoint shows. The sentences are built by
the plain functions ``*_notes`` below from the results (never typed in), so they follow any
checkpoint (the one picked in the sidebar); a misclassified digit opens in the explorer page with
one click. A shipped baseline CNN joins the robustness curves, from its own results file (the
robustness keys only, :func:`capsules.experiments.robustness_experiments`) on the same test digits.

Where the results come from: the shipped checkpoint's ship beside it and load at once
(:func:`capsules.experiments.load_results`, which checks the checkpoint's sha256). For any other
checkpoint a button starts the computation in a thread of its own (:class:`Jobs`), keyed by the
checkpoint's sha256 and shared by every session of the server process: a rerun, a second session
or a return to the page finds the results (or the computation under way) and never starts it
again. The page follows the progress in a fragment that reruns every second; no session waits on
a lock while it runs (the lock of :class:`Jobs` only guards its dictionary).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from capsules import analysis as A
from capsules import experiments as E
from capsules import zoo as Z
from capsules.data import DatasetError
from dashboard import figures as F
from dashboard.common import (
    EXPLORER_PAGE, TEST_DIGIT, Clock, Loaded, chart, figure, get_baselines, get_model, get_samples, get_test_set,
    model_panel, report_time, shipped,
)

# What the papers report, as they report it (the page's numbers for this model are computed).
PAPER_ERROR = {row.iterations: row.mnist for row in Z.PAPER  # Sabour et al. 2017, Table 1: MNIST test error (%),
               if row.kind == "capsnet" and row.reconstruction}  # with reconstruction, by routing iterations
PAPER_AFFNIST = {"CapsNet": 79, "CNN": 66}  # Sabour et al. 2017, §5.2: affNIST accuracy (%)
GU_TRESP_AFFNIST = 93.2  # Gu & Tresp 2020: affNIST accuracy (%) of their variant without routing
ZHAO_LOSS = 0.5  # Zhao et al. 2019: class-mean coupling loses under this much (%) on MNIST variants

ABLATION_LABELS = {"routing": "own routing", "uniform": "uniform c = 1/10", "random": "random c",
                   "class_mean": "class-mean c"}
RULE_NAMES = {"uniform": "uniform", "random": "random", "class_mean": "class-mean"}
ROBUSTNESS_SIZE = 500  # test images of the robustness curves computed here (the command line's default)
GALLERY_COLUMNS = 8
GALLERY_PAGE = 48  # misclassified digits per page of the gallery (6 rows)
SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


# ------------------------------------------------------------------------------ computing on demand


@dataclass
class Job:
    """One computation of the experiments for one checkpoint. ``compute(progress)`` runs in a
    thread of its own; :meth:`progress` is its callback, the page reads ``fraction`` and ``message``."""

    key: str
    fraction: float = 0.0
    message: str = "starting"
    results: dict | None = None
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.results is None and self.error is None

    def progress(self, fraction: float, message: str) -> None:
        self.fraction, self.message = fraction, message

    def run(self, compute: Callable[[Callable[[float, str], None]], dict]) -> None:
        try:
            self.results = compute(self.progress)
        except Exception as exc:  # noqa: BLE001 - the thread's end: the page shows what went wrong
            self.error = f"{type(exc).__name__}: {exc}"


class Jobs:
    """The computations of this server process by key (a checkpoint's sha256), shared by every
    session. :meth:`start` starts one only when none has been started for the key or the last one
    failed; the lock is held only to read or change the dictionary, never while computing."""

    def __init__(self):
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Job | None:
        with self._lock:
            return self._jobs.get(key)

    def start(self, key: str, compute: Callable[[Callable[[float, str], None]], dict]) -> Job:
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.error is None:  # running or done: never twice
                return job
            job = self._jobs[key] = Job(key)
        threading.Thread(target=job.run, args=(compute,), name=f"experiments-{key[:12]}", daemon=True).start()
        return job


@st.cache_resource
def jobs() -> Jobs:
    """The one :class:`Jobs` of the server process."""
    return Jobs()


@st.cache_data(show_spinner=False, max_entries=8)
def shipped_results(path: str, stamp: tuple[float, float]) -> dict | None:
    """:func:`capsules.experiments.load_results` of a checkpoint, once per (checkpoint, results file) mtime."""
    return E.load_results(path)


@st.cache_data(show_spinner=False, max_entries=8)
def file_sha256(path: str, stamp: float) -> str:
    return E.checkpoint_sha256(path)


def _stamp(path: Path) -> float:
    return path.stat().st_mtime if path.is_file() else 0.0


@st.fragment(run_every=1.0)
def follow(job: Job, what: str = "the experiments") -> None:
    """The progress of a computation under way, redrawn every second; the whole page reruns
    when it is over."""
    if not job.running:
        st.rerun()
    st.progress(job.fraction, text=f"Computing {what}: {job.message}")
    st.caption("The computation runs on the server in a thread of its own: other sessions carry on, and "
               "you can leave this page (or open it in another tab) and come back. It runs once per "
               "checkpoint; every session then reads its results.")


Compute = Callable[..., dict]  # (model, images, labels, progress) -> the results file's JSON object


def stored_or_offered(loaded: Loaded, compute: Compute, *, offer: str, what: str, button: str,
                      button_key: str) -> dict | None:
    """The results for ``loaded``'s checkpoint: those shipped beside it, else those computed in this
    server process. Without either it says ``offer`` and offers the computation (a button), or
    follows it while it runs, and returns None."""
    model, path = loaded.model, loaded.model.checkpoint_path
    if path is not None:
        found = shipped_results(str(path), (_stamp(path), _stamp(E.results_path(path))))
        if found is not None:
            return found
        key = file_sha256(str(path), _stamp(path))
    else:
        key = f"untrained {loaded.key}"
    job = jobs().get(key)
    if job is not None and job.results is not None:
        return job.results
    if job is not None and job.running:
        follow(job, what)
        return None
    st.info(offer)
    try:
        images, labels = get_test_set()
    except DatasetError as exc:
        st.error(f"The experiments need the MNIST test set. {exc}")
        return None
    if job is not None:
        st.error(f"The last computation failed: {job.error}")
    if st.button(button, type="primary", key=button_key):
        jobs().start(key, lambda progress: compute(model, images, labels, progress))
        st.rerun()
    return None


def results_for(loaded: Loaded) -> dict | None:
    """The results for the page's checkpoint (:func:`stored_or_offered`): all the experiments."""
    path = loaded.model.checkpoint_path
    name = f"`{path.name}`" if path is not None else "this untrained model"
    offer = (f"No experiment results ship with {name}. They can be computed here: a traced routing pass "
             f"over the 10,000 test images, the coupling ablations and the robustness curves on "
             f"{ROBUSTNESS_SIZE} of them (`python -m capsules.experiments --checkpoint PATH` does the same "
             "and writes them beside the checkpoint).")
    return stored_or_offered(
        loaded, lambda model, images, labels, progress: E.run_experiments(
            model, images, labels, robustness_size=ROBUSTNESS_SIZE, progress=progress),
        offer=offer, what="the experiments", button="Compute the experiments", button_key="compute")


def baseline_results(baselines: list[Loaded], results: dict) -> dict[str, dict]:
    """The robustness results of each shipped baseline CNN drawn on the same test digits as
    ``results``, by name; one without them offers their computation (or follows it), one on other
    digits is named in a caption."""
    found = {}
    for b in baselines:
        offer = (f"No robustness curves ship with the baseline CNN `{b.name}`. They can be computed here, on the "
                 f"same {ROBUSTNESS_SIZE} test digits as the CapsNet's (several minutes on a CPU: the CNN costs "
                 f"about ten times the CapsNet's arithmetic per image; `python -m capsules.experiments "
                 f"--checkpoint {b.model.checkpoint_path.name if b.model.checkpoint_path else 'PATH'}` does the "
                 "same and writes them beside the checkpoint).")
        other = stored_or_offered(
            b, lambda model, images, labels, progress: E.robustness_experiments(
                model, images, labels, robustness_size=ROBUSTNESS_SIZE, progress=progress),
            offer=offer, what=f"the robustness curves of `{b.name}`", button=f"Compute the curves of {b.name}",
            button_key=f"compute_{b.name}")
        if other is None:
            continue
        if E.same_subset(results, other):
            found[b.name] = other
        else:
            st.caption(f"The robustness curves of `{b.name}` were drawn on other test digits "
                       f"({other.get('robustness_subset')} of {other.get('test_images')}, seed "
                       f"{other.get('robustness_seed')}) than the CapsNet's: not compared.")
    return found


# ------------------------------------------------------------------------------ the sentences


@dataclass
class Notes:
    """What the paper claimed, what later papers found, what this checkpoint shows (markdown)."""

    paper: str
    later: str
    here: str


def _signed(value: float) -> str:
    return f"{value:+.2f}".replace("-", "−")


def _acc(accuracy: float, interval) -> str:
    return f"{accuracy:.2f}% [{interval[0]:.2f}, {interval[1]:.2f}]"


def iteration_intervals(results: dict) -> np.ndarray:
    """(K, 2) 95% Wilson intervals (%) of the accuracy when routing with k = 1 … K iterations."""
    n = results["test_images"]
    return np.array([E.wilson_interval(c, n) for c in results["iterations_correct"].values()])


def model_r(results: dict, trained: int | None) -> int:
    """The r the model routes with: the training r when recorded, else the results'."""
    return trained if trained is not None else int(results["model_iterations"])


def changed_clause(results: dict, k: int, changed: int) -> str:
    """What the ``changed`` predictions between k = 1 and ``k`` did, to follow "N of n predictions
    differ": image by image with McNemar's exact test where the results record it; else, when the
    correct counts show it, that they all went one way (a changed prediction moves the count by at
    most one); else nothing."""
    paired = E.changed_from_k1(results, k)
    if paired is not None and changed:
        broke, fixed = paired
        p, beyond = E.mcnemar_verdict(broke, fixed)
        return (f": {broke} turn a right answer into a wrong one, {fixed} a wrong answer into a right one"
                + (f" ({changed - broke - fixed} one wrong answer into another)" if changed > broke + fixed else "")
                + f"; McNemar's exact test on them, p = {p:.2g}: "
                + ("beyond the noise" if beyond else "within the noise"))
    net = results["iterations_correct"][str(k)] - results["iterations_correct"]["1"]
    if changed and abs(net) == changed:
        return f", and all {changed} turn " + ("a right answer into a wrong one" if net < 0 else
                                              "a wrong answer into a right one")
    return ""


def iterations_notes(results: dict, trained: int | None) -> Notes:
    acc = np.array(list(results["iterations"].values()), dtype=float)
    margins = np.array(list(results["margins"].values()), dtype=float)
    iv, n, last, r = iteration_intervals(results), results["test_images"], len(acc), model_r(results, trained)
    best, worst = int(np.argmax(acc)) + 1, int(np.argmin(acc)) + 1
    changed = round(results["dynamics"]["changed_from_k1"][r - 1] * n / 100)
    one_way = changed_clause(results, r, changed)
    if E.intervals_overlap(*iv):
        noise = (f"The 95% intervals of k = 1 … {last} all overlap: the number of iterations moves the accuracy "
                 f"by no more than the noise of {n:,} test images")
    else:
        hi, lo = int(np.argmax(iv[:, 0])) + 1, int(np.argmin(iv[:, 1])) + 1
        noise = f"The 95% intervals of k = {hi} and k = {lo} do not overlap: that difference is beyond the noise"
    peak = int(np.argmax(margins)) + 1
    trend = "grows" if margins[r - 1] > margins[0] else "shrinks"
    peaks = f", peaks at {margins[peak - 1]:.2f} (k = {peak})" if peak != r else " (its peak)"
    if r == 1:  # trained with uniform coupling: k = 1 is the model as trained, nothing to compare it with
        changed_last = round(results["dynamics"]["changed_from_k1"][-1] * n / 100)
        here = (f"k = 1 (uniform coupling), as trained: {_acc(acc[0], iv[0])}; best {acc[best - 1]:.2f}% at "
                f"k = {best}, worst {acc[worst - 1]:.2f}% at k = {worst}. {noise}. This model never routed in "
                f"training, so more iterations at inference are a change it never saw: {changed_last} of {n:,} "
                f"predictions differ between k = 1 and k = {last}{changed_clause(results, last, changed_last)}. "
                f"The mean margin is {margins[0]:.2f} at "
                f"k = 1{peaks} and {margins[-1]:.2f} at k = {last}.")
    else:
        here = (f"k = 1 (uniform coupling): {_acc(acc[0], iv[0])}; k = {r}, as trained: {_acc(acc[r - 1], iv[r - 1])}; "
                f"best {acc[best - 1]:.2f}% at k = {best}, worst {acc[worst - 1]:.2f}% at k = {worst}. {noise}; "
                f"{changed} of {n:,} predictions differ between k = 1 and k = {r}{one_way}. Routing does change the "
                f"lengths: the mean margin {trend} from {margins[0]:.2f} (k = 1) to {margins[r - 1]:.2f} (k = {r})"
                f"{peaks} and is {margins[-1]:.2f} at k = {last}.")
    return Notes(
        paper=(f"Table 1: with 3 routing iterations the test error was {PAPER_ERROR[3]}%, with 1 (uniform "
               f"coupling) {PAPER_ERROR[1]}% (both with the reconstruction loss): routing helps."),
        later=("Paik et al. (2019): routing rarely changes the predicted class; uniform coupling often "
               "does as well."),
        here=here)


def dynamics_notes(results: dict, trained: int | None) -> Notes:
    dyn = results["dynamics"]
    change, entropy, changed = (np.array(dyn[k], dtype=float) for k in ("logit_change", "entropy", "changed_from_k1"))
    last, r = len(change), model_r(results, trained)
    steps = np.diff(change)
    rises = change[-1] > change[0]
    every = " at every iteration" if (steps > 0).all() or (steps < 0).all() else ""
    ratio = change[-1] / change[0] if rises else change[0] / change[-1]
    converge = (": routing does not settle, each iteration changes the logits more than the one before"
                if rises and every else "")
    uniform = math.log(len(results["confusion"]))  # ln J: uniform coupling over J classes
    if r == 1:  # the coupling of the first iteration is uniform: its entropy is ln 10, nothing differs from k = 1
        as_trained = (f"The routing entropy is ln 10 (uniform) at t = 1, the model's only iteration in training, and "
                      f"{uniform - entropy[-1]:.3f} nats below it at t = {last}; {changed[-1]:.2f}% of the predictions "
                      f"differ from k = 1 at k = {last}.")
    else:
        as_trained = (f"The routing entropy is {uniform - entropy[r - 1]:.1e} nats below uniform (ln 10) at t = {r} "
                      f"and {uniform - entropy[-1]:.3f} below at t = {last}; {changed[r - 1]:.2f}% of the predictions "
                      f"differ from k = 1 at k = {r}, {changed[-1]:.2f}% at k = {last}.")
    here = (f"The mean |b(t+1) − b(t)| {'rises' if rises else 'falls'}{every}, from {change[0]:.1e} at t = 1 to "
            f"{change[-1]:.1e} at t = {last} ({ratio:.1f}× {'larger' if rises else 'smaller'}){converge}. "
            + as_trained)
    return Notes(
        paper=("Appendix A: the mean change of the routing logits falls roughly log-linearly with each "
               "iteration; 3 iterations are recommended."),
        later=("Paik et al. (2019): more iterations polarise the coupling (the entropy falls) while the "
               "predicted class rarely changes."),
        here=here)


def ablation_notes(results: dict, trained: int | None) -> Notes:
    ab, details = results["ablations"], results.get("ablation_details", {})
    own = ab["routing"]
    rules = ("uniform", "random", "class_mean")
    diffs = ", ".join(f"{RULE_NAMES[k]} {_signed(ab[k]['accuracy'] - own['accuracy'])}" for k in rules)
    within = [RULE_NAMES[k] for k in rules if E.intervals_overlap(ab[k]["interval"], own["interval"])]
    beyond = [RULE_NAMES[k] for k in rules if RULE_NAMES[k] not in within]
    if not beyond:
        verdict = "all three 95% intervals overlap the routing's: every difference is within the noise"
    elif not within:
        verdict = "none of the three 95% intervals overlaps the routing's: every difference is beyond the noise"
    else:
        verdict = (f"{' and '.join(within)} within the noise (95% intervals overlapping the routing's), "
                   f"{' and '.join(beyond)} beyond it (no overlap)")
    sigma = details.get("random_logit_std")
    random = f" The random logits have σ = {sigma:.3f}, the spread of the model's own final logits." if sigma else ""
    r = model_r(results, trained)
    if r == 1:  # one iteration routes with c = softmax(0): uniform, and so are the others
        here = (f"Own routing (r = 1) {_acc(own['accuracy'], own['interval'])}, and against it, in points: {diffs}. "
                "With one iteration the model's coupling is uniform (c = softmax(0) = 1/10): its final logits are "
                "all zero, so the random coupling (σ of those logits, 0) and the class-mean one are uniform too. "
                "The three rules are the model's own routing here, and this comparison says nothing about routing: "
                "pick a model trained with r = 3 for it.")
    else:
        here = (f"Own routing (r = {r}) {_acc(own['accuracy'], own['interval'])}; against it, "
                f"in points: {diffs}; {verdict}. The class-mean coupling is the mean final c over the test images "
                "predicted as each class, taken from the very images it is scored on (Zhao et al. used the training "
                "set)." + random)
    return Notes(
        paper=(f"Routing by agreement is the paper's contribution; Table 1 puts 3 iterations ({PAPER_ERROR[3]}% "
               f"error) ahead of uniform coupling, 1 iteration ({PAPER_ERROR[1]}%)."),
        later=("Paik et al. (2019): uniform or random coupling often does as well as routing. Zhao et al. "
               f"(2019): one mean (\"master\") coupling per class, from the training set, loses under {ZHAO_LOSS}% "
               "on MNIST variants."),
        here=here)


UNIT_SUFFIX = {"rotate": "°", "scale": "×", "shear": "°", "shift_x": " px"}
KIND_WORDS = {"rotate": "rotations", "scale": "scales", "shear": "shears", "shift_x": "horizontal shifts"}


def _kept(curves: dict) -> tuple[list[str], list[str]]:
    """In words, for each curve: the range kept at :data:`capsules.experiments.ROBUST_LEVEL` or
    more, its lowest point."""
    ranges, lows = [], []
    for kind, curve in curves.items():
        found = E.robust_range(curve, E.IDENTITY[kind])
        unit = UNIT_SUFFIX.get(kind, "")
        if found is not None:
            lo, hi = (E.number_text(v) for v in found)
            ranges.append(f"{KIND_WORDS.get(kind, kind)} {lo}…{hi}{unit}")
        worst = min(curve, key=lambda p: p[1])
        lows.append(f"{worst[1]:.1f}% at {E.number_text(worst[0])}{unit}")
    return ranges, lows


def _against(d: E.RobustnessDiff) -> str:
    """One transform of :func:`capsules.experiments.compare_robustness` in words: both means and,
    where the per-image counts are recorded, the digits each model does better on and the paired test of
    the means."""
    text = f"{KIND_WORDS.get(d.kind, d.kind)} {d.mean_a:.1f}% against {d.mean_b:.1f}%"
    if d.paired is None:
        return text
    better, worse = d.paired
    return (text + f" (the CapsNet right at more of the curve's points for {better} digits, the CNN for {worse}; "
            f"paired test of the means, p = {d.p:.2g}: {'beyond' if d.beyond else 'within'} the noise)")


def robustness_notes(results: dict, baselines: dict[str, dict] | None = None) -> Notes:
    """``baselines``: the results of baseline CNNs on the same test digits, by name."""
    curves, subset = results["robustness"], results.get("robustness_subset", results["test_images"])
    ranges, lows = _kept(curves)
    seed = results.get("robustness_seed")
    drawn = f" drawn with seed {seed}" if seed is not None else ""
    here = (f"On {subset:,} test images{drawn}, accuracy stays at {E.ROBUST_LEVEL:g}% or more for "
            + (", ".join(ranges) or "no transform") + "; the lowest points of each curve: " + "; ".join(lows) + ".")
    for name, other in (baselines or {}).items():
        theirs, _ = _kept(other["robustness"])
        diffs = E.compare_robustness(results, other)
        here += (f" The baseline CNN `{name}` on the same digits: {E.ROBUST_LEVEL:g}% or more for "
                 f"{', '.join(theirs) or 'no transform'}; mean accuracy over each curve, this CapsNet against the "
                 f"CNN: {'; '.join(_against(d) for d in diffs)}.")
        start = [(dict(curves[k]).get(E.IDENTITY[k]), dict(other["robustness"][k]).get(E.IDENTITY[k]))
                 for k in curves if k in other["robustness"]]  # each curve's untransformed point
        mine, cnn = next(((a, b) for a, b in start if a is not None and b is not None), (None, None))
        if mine is not None and mine != cnn:
            here += (f" Untransformed, these digits score {mine:.1f}% for this CapsNet and {cnn:.1f}% for the CNN: "
                     "part of any gap under the transforms is the gap the two models start from.")
        if any(d.paired is None for d in diffs):
            here += (" One of the two results files predates the per-image counts, so the difference is not "
                     "tested: recompute its experiments to test it.")
    here += (f" {'These models were' if baselines else 'This model was'} trained on 28×28 MNIST, not on affNIST's "
             "40×40 canvas, so these numbers do not compare with the papers'" + ("" if baselines else "; no baseline CNN's curves are at hand to "
                                           "compare with on the same digits") +
             f". The bars are 95% intervals for {subset:,} images.")
    return Notes(
        paper=(f"On affNIST, a CapsNet trained on MNIST placed at random on a 40×40 canvas classified "
               f"{PAPER_AFFNIST['CapsNet']}% of affine-transformed digits, a CNN {PAPER_AFFNIST['CNN']}%."),
        later=("Gu & Tresp (2020): routing helps neither accuracy nor affine robustness; their variant "
               f"without routing reaches {GU_TRESP_AFFNIST}% on affNIST."),
        here=here)


def confusion_note(results: dict, top: int = 4) -> str:
    m = np.array(results["confusion"])
    n, wrong = int(m.sum()), int(m.sum() - np.trace(m))
    off = [(int(m[t, p]), t, p) for t in range(m.shape[0]) for p in range(m.shape[1]) if t != p and m[t, p]]
    off.sort(key=lambda x: (-x[0], x[1], x[2]))
    common = ", ".join(f"{t} read as {p} ({c}×)" for c, t, p in off[:top])
    return (f"{wrong} of {n:,} test digits are wrong ({100 * wrong / n:.2f}%)" +
            (f"; the most frequent confusions: {common}." if common else "."))


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
                    st.image(F.digit_thumbnail(images[idx], 3), width=84)
                st.markdown(f"**{t} → {p}**")
                st.caption(f"|v{str(p).translate(SUBSCRIPTS)}| = {e['lengths'][p]:.2f}  \n"
                           f"|v{str(t).translate(SUBSCRIPTS)}| = {e['lengths'][t]:.2f}")
                if st.button(f"#{idx}", key=f"open_{idx}", help=f"Open test digit #{idx} in the one-digit explorer"):
                    st.switch_page(EXPLORER_PAGE, query_params={TEST_DIGIT: str(idx)})


def show_table1() -> None:
    """The paper's Table 1 beside the shipped models (:func:`capsules.zoo.table1`)."""
    st.subheader("Table 1: the paper's models and the shipped ones")
    table = Z.table1(shipped())
    st.dataframe(pd.DataFrame(table.records(), columns=list(Z.COLUMNS)), hide_index=True)
    st.markdown(f"**Within the noise?** {table.noise}")
    st.caption(f"Test error in percent on the full test set. The paper's ± is the standard deviation over three "
               f"trials; this project's brackets are the 95% Wilson interval of one model (on MNIST's 10,000 test "
               f"images 0.05 points is five images). “{Z.PENDING}”: no such model shipped yet. Rows compare fairly "
               "only at the same epochs; the paper trained far longer, on a GPU. Pick a CapsNet in the sidebar "
               "for its experiments below.")


@st.cache_data(show_spinner=False, max_entries=4)
def zoo_routing(folder: str, stamp: float) -> tuple[list[dict[str, str]], list[str]]:
    """:func:`capsules.zoo.routing_at_inference` of the shipped models: its rows and findings, read
    again when the folder changes (shipping a model or its results writes into it)."""
    table = Z.routing_at_inference(shipped())
    return table.records(), table.findings


def show_zoo_routing() -> None:
    """Routing at inference across the shipped MNIST CapsNets, from their experiments files."""
    folder = Z.checkpoints_dir()
    records, findings = zoo_routing(str(folder), folder.stat().st_mtime if folder.is_dir() else 0.0)
    st.subheader("Routing at inference, across the zoo")
    if records:
        st.dataframe(pd.DataFrame(records, columns=list(Z.ROUTING_COLUMNS)), hide_index=True)
    st.markdown("**Does routing help at inference?**\n" + "".join(f"\n- {line}" for line in findings))
    st.caption("Test accuracy on MNIST's 10,000 test images with k routing iterations at inference (k = 1: "
               "uniform coupling; “own”: as the model was trained), and with random and class-mean coupling, "
               "from each model's shipped experiments (the sections below show them one model at a time). "
               "The figures of one model are scored on the same images, so the noise is judged on the "
               "predictions that change between them, image by image: McNemar's exact test, beyond the noise "
               f"when p < {E.SIGNIFICANCE:g}.")


def show(results: dict, loaded: Loaded, clock: Clock) -> None:
    trained = A.training_iterations(loaded.model.metadata)
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
    chart(figure("iterations_figure", acc, iteration_intervals(results), margins, trained=r), "fig_iterations")
    show_notes(iterations_notes(results, trained))

    st.subheader("Routing dynamics")
    dyn = results["dynamics"]
    chart(figure("dynamics_figure", np.array(dyn["logit_change"]), np.array(dyn["entropy"]),
                 np.array(dyn["changed_from_k1"]), trained=r), "fig_dynamics")
    show_notes(dynamics_notes(results, trained))

    st.subheader("Coupling ablations")
    names = list(ABLATION_LABELS)
    ab = results["ablations"]
    labels = [ABLATION_LABELS[k] + (f" (r = {r})" if k == "routing" else "") for k in names]
    chart(figure("ablation_figure", labels, np.array([ab[k]["accuracy"] for k in names]),
                 np.array([ab[k]["interval"] for k in names]), reference=0), "fig_ablations")
    show_notes(ablation_notes(results, trained))

    st.subheader("Robustness to affine transforms")
    subset = results.get("robustness_subset", n)
    others = baseline_results(get_baselines(), results)
    runs = {f"CapsNet ({loaded.name})": results, **{f"baseline CNN ({name})": r for name, r in others.items()}}
    curves = {label: r["robustness"] for label, r in runs.items()}
    intervals = {label: {kind: [list(E.accuracy_interval(a, subset)) for _, a in curve] for kind, curve in c.items()}
                 for label, c in curves.items()}
    chart(figure("robustness_figure", curves, intervals, subset=subset, units=results.get("robustness_units")),
          "fig_robustness")
    show_notes(robustness_notes(results, others))

    st.subheader("Errors")
    left, right = st.columns([1, 1], gap="large")
    with left:
        chart(figure("confusion_figure", np.array(results["confusion"])), "fig_confusion")
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
    results = results_for(loaded)
    if results is not None:
        show(results, loaded, clock)
    report_time(time_slot, clock)


if __name__ == "__main__":  # run as a page by st.navigation (dashboard/app.py)
    main()
