"""What a CapsNet's test-set experiments show, in words: the sentences under the figures of the
dashboard's experiments page.

The results are those of :mod:`capsules.experiments` (``run_experiments``, or a results file read
by ``load_results``). Each ``*_notes`` function turns them into :class:`Notes`: what the paper
claimed, what later papers found and what this checkpoint shows, every number computed from the
results and every verdict (within the noise or beyond it) decided by them, never typed in; change
a number and the sentence follows. Plain functions: nothing here needs
Streamlit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from capsules import experiments
from capsules.analysis.transforms import TRANSFORMS
from capsules.zoo import PAPER

__all__ = ["Notes", "PAPER_ERROR", "RULE_NAMES", "ablation_notes", "accuracy_text", "changed_clause", "confusion_note",
           "dynamics_notes", "iteration_intervals", "iterations_notes", "model_r", "robustness_notes", "signed"]

# What the papers report, as they report it (the numbers for a model are computed).
PAPER_ROWS = {row.iterations: row for row in PAPER  # Sabour et al. 2017, Table 1, with reconstruction,
              if row.kind == "capsnet" and row.reconstruction}  # by routing iterations
PAPER_ERROR = {r: row.mnist for r, row in PAPER_ROWS.items()}  # their MNIST test error (%)
PAPER_AFFNIST = {"CapsNet": 79, "CNN": 66}  # Sabour et al. 2017, §5.2: affNIST accuracy (%)
GU_TRESP_AFFNIST = 93.2  # Gu & Tresp 2020: affNIST accuracy (%) of their variant without routing
ZHAO_LOSS = 0.5  # Zhao et al. 2019: class-mean coupling loses under this much (%) on MNIST variants
RULE_NAMES = {"uniform": "uniform", "random": "random", "class_mean": "class-mean"}


@dataclass
class Notes:
    """What the paper claimed, what later papers found, what this checkpoint shows (markdown)."""

    paper: str
    later: str
    here: str


def signed(value: float) -> str:
    return f"{value:+.2f}".replace("-", "−")


def accuracy_text(accuracy: float, interval) -> str:
    return f"{accuracy:.2f}% [{interval[0]:.2f}, {interval[1]:.2f}]"


def iteration_intervals(results: dict) -> np.ndarray:
    """(K, 2) 95% Wilson intervals (%) of the accuracy when routing with k = 1 … K iterations."""
    n = results["test_images"]
    return np.array([experiments.wilson_interval(c, n) for c in results["iterations_correct"].values()])


def model_r(results: dict, trained: int | None) -> int:
    """The r the model routes with: the training r when recorded, else the results'."""
    return trained if trained is not None else int(results["model_iterations"])


def changed_clause(results: dict, k: int, changed: int) -> str:
    """What the ``changed`` predictions between k = 1 and ``k`` did, to follow "N of n predictions
    differ": image by image with McNemar's exact test where the results record it; else, when the
    correct counts show it, that they all went one way (a changed prediction moves the count by at
    most one); else nothing."""
    paired = experiments.changed_from_k1(results, k)
    if paired is not None and changed:
        broke, fixed = paired
        p, beyond = experiments.mcnemar_verdict(broke, fixed)
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
    if experiments.intervals_overlap(*iv):
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
        here = (f"k = 1 (uniform coupling), as trained: {accuracy_text(acc[0], iv[0])}; best {acc[best - 1]:.2f}% at "
                f"k = {best}, worst {acc[worst - 1]:.2f}% at k = {worst}. {noise}. This model never routed in "
                f"training, so more iterations at inference are a change it never saw: {changed_last} of {n:,} "
                f"predictions differ between k = 1 and k = {last}{changed_clause(results, last, changed_last)}. "
                f"The mean margin is {margins[0]:.2f} at "
                f"k = 1{peaks} and {margins[-1]:.2f} at k = {last}.")
    else:
        here = (f"k = 1 (uniform coupling): {accuracy_text(acc[0], iv[0])}; "
                f"k = {r}, as trained: {accuracy_text(acc[r - 1], iv[r - 1])}; "
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
    diffs = ", ".join(f"{RULE_NAMES[k]} {signed(ab[k]['accuracy'] - own['accuracy'])}" for k in rules)
    within = [RULE_NAMES[k] for k in rules if experiments.intervals_overlap(ab[k]["interval"], own["interval"])]
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
        here = (f"Own routing (r = 1) {accuracy_text(own['accuracy'], own['interval'])}, and against it, "
                f"in points: {diffs}. "
                "With one iteration the model's coupling is uniform (c = softmax(0) = 1/10): its final logits are "
                "all zero, so the random coupling (σ of those logits, 0) and the class-mean one are uniform too. "
                "The three rules are the model's own routing here, and this comparison says nothing about routing: "
                "pick a model trained with r = 3 for it.")
    else:
        here = (f"Own routing (r = {r}) {accuracy_text(own['accuracy'], own['interval'])}; against it, "
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


def _kept(curves: dict) -> tuple[list[str], list[str]]:
    """In words, for each curve: the range kept at :data:`capsules.experiments.ROBUST_LEVEL` or
    more, its lowest point."""
    ranges, lows = [], []
    for kind, curve in curves.items():
        found = experiments.robust_range(curve, TRANSFORMS[kind].identity)
        unit = TRANSFORMS[kind].suffix
        if found is not None:
            lo, hi = (experiments.number_text(v) for v in found)
            ranges.append(f"{TRANSFORMS[kind].plural} {lo}…{hi}{unit}")
        worst = min(curve, key=lambda p: p[1])
        lows.append(f"{worst[1]:.1f}% at {experiments.number_text(worst[0])}{unit}")
    return ranges, lows


def _against(d: experiments.RobustnessDiff) -> str:
    """One transform of :func:`capsules.experiments.compare_robustness` in words: both means and,
    where the per-image counts are recorded, the digits each model does better on and the paired test of
    the means."""
    text = f"{TRANSFORMS[d.kind].plural} {d.mean_a:.1f}% against {d.mean_b:.1f}%"
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
    here = (f"On {subset:,} test images{drawn}, accuracy stays at {experiments.ROBUST_LEVEL:g}% or more for "
            + (", ".join(ranges) or "no transform") + "; the lowest points of each curve: " + "; ".join(lows) + ".")
    for name, other in (baselines or {}).items():
        theirs, _ = _kept(other["robustness"])
        diffs = experiments.compare_robustness(results, other)
        here += (f" The baseline CNN `{name}` on the same digits: {experiments.ROBUST_LEVEL:g}% or more for "
                 f"{', '.join(theirs) or 'no transform'}; mean accuracy over each curve, this CapsNet against the "
                 f"CNN: {'; '.join(_against(d) for d in diffs)}.")
        mine, cnn = experiments.untransformed(results, other) or (None, None)  # where both models' curves start
        if mine is not None and mine != cnn:
            here += (f" Untransformed, these digits score {mine:.1f}% for this CapsNet and {cnn:.1f}% for the CNN: "
                     "part of any gap under the transforms is the gap the two models start from.")
        if any(d.paired is None for d in diffs):
            here += (" One of the two results files predates the per-image counts, so the difference is not "
                     "tested: recompute its experiments to test it.")
    alone = "" if baselines else "; no baseline CNN's curves are at hand to compare with on the same digits"
    here += (f" {'These models were' if baselines else 'This model was'} trained on 28×28 MNIST, not on affNIST's "
             f"40×40 canvas, so these numbers do not compare with the papers'{alone}. The bars are 95% intervals "
             f"for {subset:,} images.")
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
