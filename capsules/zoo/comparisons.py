"""Comparisons across the shipped models, from the experiments results beside each (nothing is
evaluated): routing at inference per model (:func:`routing_at_inference`) and the main CapsNet's
robustness against the baseline CNN's (:func:`robustness_against_cnn`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..checkpoint import SHIPPED
from ..analysis.transforms import TRANSFORMS
from ..experiments import (ROBUST_LEVEL, SIGNIFICANCE, changed_from_k1, compare_robustness,
                           intervals_overlap, load_results, mcnemar_verdict, number_text, robust_range, same_subset,
                           untransformed, wilson_interval)
from .shipped import Shipped, list_shipped


# ------------------------------------------------------------------- routing at inference, per model

ROUTING_KS = (1, 3, 10)  # routing iterations at inference shown per model (k = 1: uniform coupling)
ROUTING_COLUMNS = ("model", "trained with", "epochs", *(f"k = {k}" + (" (uniform c)" if k == 1 else "")
                                                         for k in ROUTING_KS), "random c", "class-mean c")


@dataclass(frozen=True)
class RoutingAtInference:
    """Each shipped MNIST CapsNet with its test-set experiments (``results``, as
    :func:`capsules.experiments.load_results` reads them), in the order of :func:`routing_at_inference`."""

    models: tuple[tuple[Shipped, dict], ...]

    @staticmethod
    def correct(results: dict, k: int) -> int:
        """Test images right when routing with ``k`` iterations at inference."""
        return int(results["iterations_correct"][str(k)])

    def records(self) -> list[dict[str, str]]:
        """Accuracy in percent per column (:data:`ROUTING_COLUMNS`); the model's own r is marked "(own)"."""
        rows = []
        for m, res in self.models:
            n = res["test_images"]
            row = {"model": m.name, "trained with": m.recipe, "epochs": "–" if m.epochs is None else m.epochs_text}
            for k, column in zip(ROUTING_KS, ROUTING_COLUMNS[3:]):
                row[column] = f"{100 * self.correct(res, k) / n:.2f}%" + (" (own)" if k == m.iterations else "")
            row["random c"] = f"{res['ablations']['random']['accuracy']:.2f}%"
            row["class-mean c"] = f"{res['ablations']['class_mean']['accuracy']:.2f}%"
            rows.append(row)
        return rows

    def markdown(self) -> str:
        lines = ["| " + " | ".join(ROUTING_COLUMNS) + " |", "|" + "---|" * len(ROUTING_COLUMNS)]
        lines += ["| " + " | ".join(rec[c] for c in ROUTING_COLUMNS) + " |" for rec in self.records()]
        return "\n".join(lines)

    def against_uniform(self, group: list[tuple[Shipped, dict]], k: int) -> str:
        """For ``group``: routing with ``k`` iterations against uniform coupling (k = 1), per model
        in points, how often routing got more test images right, and the noise. Both are scored on
        the same images, so the noise is judged on the predictions that changed, by an exact
        McNemar test (beyond it when p < 0.05); for results that lack them (computed before they
        were recorded), by the 95% Wilson intervals of the two figures (apart or overlapping)."""
        gains = [100 * (self.correct(res, k) - self.correct(res, 1)) / res["test_images"] for _, res in group]
        points = ", ".join(f"{g:+.2f}".replace("-", "\u2212") for g in gains)
        head = f"{points} points (routing ahead in {sum(g > 0 for g in gains)} of {len(group)})"
        pairs = [changed_from_k1(res, k) for _, res in group]
        if all(p is not None for p in pairs):
            ps, beyond = zip(*(mcnemar_verdict(*p) for p in pairs))
            apart = [m.name for (m, _), b in zip(group, beyond) if b]
            head += ("; changed predictions, right \u2192 wrong / wrong \u2192 right: "
                     + ", ".join(f"{a}/{b}" for a, b in pairs)
                     + " (exact McNemar p = " + ", ".join(f"{p:.2g}" for p in ps) + ")")
            test = f"p < {SIGNIFICANCE:g}", f"p \u2265 {SIGNIFICANCE:g}"
        else:
            apart = [m.name for m, res in group
                     if not intervals_overlap(*(wilson_interval(self.correct(res, kk), res["test_images"])
                                                for kk in (k, 1)))]
            test = "95% intervals apart", "95% intervals overlap"
        within = [m.name for m, _ in group if m.name not in apart]
        if not apart:
            noise = f"{'the difference is' if len(group) == 1 else 'every difference is'} within the noise ({test[1]})"
        else:
            noise = f"beyond the noise ({test[0]}) for {', '.join(apart)}" + \
                (f", within it for {', '.join(within)}" if within else "")
        return f"{head}; {noise}"

    @property
    def summary(self) -> str:
        """:attr:`findings` in one paragraph."""
        return " ".join(self.findings)

    @property
    def findings(self) -> list[str]:
        """Per training r, two sentences: each model's own routing against uniform coupling
        (:meth:`against_uniform`; for r = 1, where its own routing is uniform coupling, k = 3
        instead), then k = 10 against k = 1."""
        if not self.models:
            return ["No shipped MNIST CapsNet has its test-set experiments yet."]
        sentences = []
        for r in sorted({m.iterations for m, _ in self.models if m.iterations is not None}):
            group = [(m, res) for m, res in self.models if m.iterations == r]
            first = (f"own routing (k = {r}) against uniform coupling (k = 1): {self.against_uniform(group, r)}"
                     if r > 1 else f"k = 3 at inference, more than trained with, against their own k = 1: "
                                   f"{self.against_uniform(group, 3)}")
            sentences.append(f"Trained with r = {r} ({', '.join(m.name for m, _ in group)}): {first}. "
                             f"k = 10 against k = 1: {self.against_uniform(group, max(ROUTING_KS))}.")
        return sentences


def routing_at_inference(models: list[Shipped] | None = None) -> RoutingAtInference:
    """The shipped MNIST CapsNets (default: :func:`list_shipped`) whose experiments results are
    beside them and belong to their weights, ordered as Table 1 (r, then reconstruction, then
    fewer epochs first, then name); a model without results is left out."""
    models = list_shipped() if models is None else models
    found = []
    for m in models:
        if m.kind == "capsnet" and m.dataset == "mnist":
            results = load_results(m.path)
            if results is not None and "iterations_correct" in results:  # a CapsNet's, not robustness only
                found.append((m, results))
    found.sort(key=lambda p: (p[0].iterations or 0, bool(p[0].reconstruction), p[0].epochs or 0, p[0].name))
    return RoutingAtInference(tuple(found))


# ------------------------------------------------------------------- robustness against the CNN



@dataclass(frozen=True)
class RobustnessAgainstCNN:
    """The main CapsNet's robustness results and, when one is shipped with curves on the same
    digits, the baseline CNN's (:func:`robustness_against_cnn`)."""

    capsnet: tuple[Shipped, dict]
    cnn: tuple[Shipped, dict] | None

    def _kept(self, curve: list, kind: str) -> str:
        found = robust_range(curve, TRANSFORMS[kind].identity)
        return "none" if found is None else f"{number_text(found[0])} \u2026 {number_text(found[1])}"

    @staticmethod
    def _ends(curve: list) -> str:
        (v0, a0), (v1, a1) = curve[0], curve[-1]
        return f"{a0:.1f}% at {number_text(v0)}, {a1:.1f}% at {number_text(v1)}"

    def markdown(self) -> str:
        """One row per transform: its range, then per model the values kept at 95% or more and the
        accuracy at both ends, then (with the CNN) the mean over the curve of each, the digits each
        gets right at more of the points, and the p of the paired test of the means."""
        (_, res), runs = self.capsnet, [self.capsnet] + ([self.cnn] if self.cnn else [])
        columns = ["transform", "range",
                   *(f"{n.name}: \u2265 {ROBUST_LEVEL:g}% for" for n, _ in runs),
                   *(f"{n.name}: at the ends" for n, _ in runs)]
        if self.cnn:
            columns += ["mean over the curve", "digits right at more points: CapsNet / CNN (paired test)"]
        diffs = {d.kind: d for d in compare_robustness(res, self.cnn[1])} if self.cnn else {}
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for kind, curve in res["robustness"].items():
            cells = [f"{TRANSFORMS[kind].title.lower()} ({TRANSFORMS[kind].unit})",
                     f"{number_text(curve[0][0])} \u2026 {number_text(curve[-1][0])}"]
            cells += [self._kept(r["robustness"][kind], kind) for _, r in runs]
            cells += [self._ends(r["robustness"][kind]) for _, r in runs]
            if self.cnn:
                d = diffs.get(kind)
                cells += ["\u2013", "\u2013"] if d is None else [
                    f"{d.mean_a:.1f}% / {d.mean_b:.1f}%",
                    "not recorded" if d.paired is None else
                    f"{d.paired[0]} / {d.paired[1]} (p = {d.p:.2g})"]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    @property
    def summary(self) -> str:
        """The comparison in one paragraph: which transforms differ beyond the noise."""
        m, res = self.capsnet
        n, seed = res.get("robustness_subset"), res.get("robustness_seed")
        if self.cnn is None:
            return (f"{m.name} alone, on {n:,} test digits drawn with seed {seed}: no baseline CNN is shipped "
                    "with robustness curves on the same digits yet.")
        cnn, theirs = self.cnn
        diffs = compare_robustness(res, theirs)
        head = (f"{m.name} against {cnn.name} on the same {n:,} test digits (seed {seed}). Each digit is right at "
                "some of a curve's points for each model; a paired z-test on those per-digit counts judges the "
                f"difference of the mean accuracies over the curve (beyond the noise when p < {SIGNIFICANCE:g}). ")
        if any(d.paired is None for d in diffs):
            return head + "The per-image counts of one of them are not recorded: the difference is not tested."
        ahead = [d for d in diffs if d.beyond and d.mean_a > d.mean_b]
        behind = [d for d in diffs if d.beyond and d.mean_a < d.mean_b]
        within = [d for d in diffs if not d.beyond]

        def names(ds):
            return ", ".join(f"{TRANSFORMS[d.kind].title.lower()} ({d.mean_a:.1f}% against {d.mean_b:.1f}%, "
                             f"p = {d.p:.2g})" for d in ds)

        parts = []
        if ahead:
            parts.append(f"the CapsNet is ahead beyond the noise under {names(ahead)}")
        if behind:
            parts.append(f"the CNN is ahead beyond the noise under {names(behind)}")
        if within:
            parts.append(f"the difference is within the noise under {names(within)}")
        text = "; ".join(parts)
        start = untransformed(res, theirs)
        level = "" if start is None else (
            f" Untransformed, these digits score {start[0]:.1f}% for {m.name} and {start[1]:.1f}% for {cnn.name}: "
            "part of any gap under the transforms is the gap the two models start from.")
        return head + text[0].upper() + text[1:] + "." + level


def main_model(models: list[Shipped] | None = None) -> tuple[Shipped, dict] | None:
    """The main shipped CapsNet (``checkpoints/capsnet-mnist``) with its test-set experiments;
    None when it is not shipped or has no results."""
    models = list_shipped() if models is None else models
    main = next((m for m in models if m.path.name == SHIPPED.name and m.kind == "capsnet"), None)
    results = load_results(main.path) if main is not None else None
    return None if results is None else (main, results)


def robustness_against_cnn(models: list[Shipped] | None = None,
                           main: tuple[Shipped, dict] | None = None) -> RobustnessAgainstCNN | None:
    """The main shipped CapsNet (``main``, else :func:`main_model`) with its results, beside the
    first shipped MNIST baseline CNN (by name) whose robustness curves were drawn on the same
    digits; None when the main CapsNet has no results."""
    models = list_shipped() if models is None else models
    found = main if main is not None else main_model(models)
    if found is None or "robustness" not in found[1]:
        return None
    main, results = found
    cnn = None
    for m in sorted(models, key=lambda m: m.name):
        if m.kind == "cnn" and m.dataset == "mnist":
            theirs = load_results(m.path)
            if theirs is not None and same_subset(results, theirs):
                cnn = (m, theirs)
                break
    return RobustnessAgainstCNN((main, results), cnn)
