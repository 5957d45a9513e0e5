"""What the ``ood`` and ``adversarial`` sections of a results file show (:mod:`capsules.analysis.trust` writes
them), as curves with 95% intervals and in words: the numbers and sentences of the dashboard's
Attacks & outliers page (the experiments page's are in :mod:`dashboard.figures.experiments_notes`).

Intervals: an accuracy of ``n`` attacked images, or a share of all of them, gets the Wilson
interval of :func:`capsules.experiments.accuracy_interval`; the share of successful attacks the
detector flags gets the Wilson interval over the images the attack turned from right to wrong
(counted from the per-image ``right`` strings); an AUROC keeps its bootstrap interval. Two numbers
whose 95% intervals overlap are called within the noise (:func:`capsules.experiments.intervals_overlap`).
Every verdict (who is ahead, within the noise or not) is decided by the numbers, never typed in.
Plain functions: nothing here needs Streamlit.
"""

from __future__ import annotations

from capsules import experiments

from capsules.analysis.outliers import DIGITS, OUTLIER_SETS, flagged

SET_WORDS = {"fashion-mnist": "Fashion-MNIST", "noise": "uniform noise", "blank": "blank images", DIGITS: "MNIST test"}
SCORE_WORDS = {"max_length": "max length", "reconstruction_distance": "reconstruction distance",
               "max_softmax": "max softmax"}

Curve = dict[str, list]  # {"eps": [...], "value": [...], "lo": [...], "hi": [...]} (percent), and "n" for detection


def method_name(adv: dict, method: str) -> str:
    """"FGSM", "PGD-20", "adaptive PGD-20"."""
    return {"fgsm": "FGSM", "pgd": f"PGD-{adv['steps']}", "pgd_adaptive": f"adaptive PGD-{adv['steps']}"}[method]


def _curve(eps: list[float], values: list[float], intervals: list[tuple[float, float]], **extra) -> Curve:
    return {"eps": [float(e) for e in eps], "value": [float(v) for v in values],
            "lo": [float(lo) for lo, _ in intervals], "hi": [float(hi) for _, hi in intervals], **extra}


def accuracy_curve(adv: dict, method: str) -> Curve:
    """Accuracy (%) of the attacked images at eps 0 (the clean images) and each eps of ``method``,
    with 95% Wilson intervals over the ``adv["images"]`` images."""
    n, row = adv["images"], adv[method]
    values = [adv["clean"]["accuracy"], *row["accuracy"]]
    return _curve([0.0, *row["eps"]], values, [experiments.accuracy_interval(v, n) for v in values])


def fooled_counts(adv: dict, method: str) -> list[int]:
    """Per eps of ``method``: the images it turned from right to wrong (right clean, wrong attacked)."""
    clean = adv["clean"]["right"]
    return [sum(c == "1" and r == "0" for c, r in zip(clean, right)) for right in adv[method]["right"]]


def detection_curve(adv: dict, method: str) -> Curve:
    """The share (%) of ``method``'s successes the detector flags, per eps where it has any, with
    the Wilson interval over those ``n`` images; empty without a detector."""
    row = adv[method]
    if not adv.get("detector") or row.get("detected") is None:
        return _curve([], [], [], n=[])
    eps, values, intervals, ns = [], [], [], []
    for e, share, n in zip(row["eps"], row["detected"], fooled_counts(adv, method)):
        if share is None or n == 0:
            continue
        eps.append(e), values.append(share), ns.append(n)
        intervals.append(experiments.wilson_interval(round(share * n / 100.0), n))
    return _curve(eps, values, intervals, n=ns)


def fooled_both_curve(adv: dict, method: str) -> Curve:
    """The share (%) of all images wrong and not flagged (they fool the classifier and the
    detector) at eps 0 and each eps of ``method``, with Wilson intervals; empty without a detector."""
    if not adv.get("detector") or "undetected_errors" not in adv[method]:
        return _curve([], [], [])
    values = [adv["clean"]["undetected_errors"], *adv[method]["undetected_errors"]]
    return _curve([0.0, *adv[method]["eps"]], values,
                  [experiments.accuracy_interval(v, adv["images"]) for v in values])


def auroc_bars(ood: dict, names: tuple[str, ...] | None = None) -> dict[str, Curve]:
    """Per score (of ``names``, default every one the section has): the AUROC of MNIST test digits
    against each outlier set, ``{"sets": [...], "value": [...], "lo": [...], "hi": [...]}``."""
    out = {}
    for name in names or tuple(ood.get("scores", {})):
        sets = [k for k in OUTLIER_SETS if name in ood.get(k, {})]
        entries = [ood[k][name] for k in sets]
        out[name] = {"sets": sets, "value": [e["auroc"] for e in entries],
                     "lo": [e["interval"][0] for e in entries], "hi": [e["interval"][1] for e in entries]}
    return out


# --------------------------------------------------------------------------------------------
# sentences


def _pct(curve: Curve, k: int) -> str:
    return f"{curve['value'][k]:.1f}% [{curve['lo'][k]:.1f}, {curve['hi'][k]:.1f}]"


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _eps(values: list[float]) -> str:
    return "eps " + _listed([f"{e:g}" for e in values])


def accuracy_sentence(capsnet: dict, cnn: dict | None, method: str = "pgd") -> str:
    """Accuracy under ``method`` of the CapsNet (its ``adversarial`` section) and the CNN (its own,
    or None) at the smallest and largest eps, and at each eps who is ahead or whether the two are
    within the noise."""
    c, name, n = accuracy_curve(capsnet, method), method_name(capsnet, method), capsnet["images"]
    lo, hi = 1, len(c["eps"]) - 1
    text = (f"Under {name} the CapsNet keeps {_pct(c, lo)} of the first {n:,} test images right at eps "
            f"{c['eps'][lo]:g} and {_pct(c, hi)} at eps {c['eps'][hi]:g}")
    if cnn is None or method not in cnn:
        return text + "; no baseline CNN's results to compare with."
    if cnn["images"] != n:
        return text + f"; the CNN's results are on its first {cnn['images']:,} images, not these: not compared."
    d = accuracy_curve(cnn, method)
    at = {e: k for k, e in enumerate(d["eps"])}  # the CNN's point at each eps
    if c["eps"][lo] in at and c["eps"][hi] in at:
        text += f", the CNN {_pct(d, at[c['eps'][lo]])} and {_pct(d, at[c['eps'][hi]])}"
    ahead = {"the CNN": [], "the CapsNet": [], None: []}
    for k, e in enumerate(c["eps"][1:], start=1):
        if e not in at:
            continue
        j = at[e]
        if experiments.intervals_overlap((c["lo"][k], c["hi"][k]), (d["lo"][j], d["hi"][j])):
            ahead[None].append(e)
        else:
            ahead["the CNN" if d["value"][j] > c["value"][k] else "the CapsNet"].append(e)
    parts = [f"{who} is ahead at {_eps(es)}" for who, es in ahead.items() if who and es]
    if ahead[None]:
        parts.append(f"at {_eps(ahead[None])} the two are within the noise (their 95% intervals overlap)")
    return text + (": " + _listed(parts) if parts else "") + "."


def detection_sentence(adv: dict) -> str:
    """What the reconstruction-distance detector catches at the largest eps: PGD's successes, the
    adaptive PGD's, and the share of all images that fool both classifier and detector."""
    det = adv.get("detector")
    if not det:
        return ("This model has no trained decoder, so no reconstruction-distance detector: nothing it "
                "is shown is flagged, attacked or not.")
    fp, eps, clauses = 100.0 * det["false_positive"], adv["eps"][-1], []
    for method in ("pgd", "pgd_adaptive"):
        if method not in adv:
            continue
        d, name = detection_curve(adv, method), method_name(adv, method)
        if eps not in d["eps"]:
            clauses.append(f"nothing of {name}, which turns no image wrong")
            continue
        k = d["eps"].index(eps)
        noise = " (within the noise of its false alarms)" if d["lo"][k] <= fp <= d["hi"][k] else ""
        clauses.append(f"{_pct(d, k)} of the {d['n'][k]:,} images {name} turns wrong{noise}")
    text = (f"The detector flags an image whose reconstruction distance exceeds {det['threshold']:.2f}, as {fp:g}% "
            f"of clean test digits do" + (f"; at eps {eps:g} it flags " + _listed(clauses) if clauses else ""))
    if "pgd_adaptive" in adv:
        both = fooled_both_curve(adv, "pgd_adaptive")
        text += (f"; the adaptive attack knows the detector, and {_pct(both, len(both['eps']) - 1)} of all "
                 f"{adv['images']:,} images fool both classifier and detector")
    return text + "."


def _score_label(model: str, name: str) -> str:
    return f"the {model}'s {SCORE_WORDS.get(name, name)}"


def auroc_sentence(capsnet: dict, cnn: dict | None) -> str:
    """For each outlier set, the score that best tells MNIST test digits from it (the CapsNet's or
    the CNN's, with its AUROC and interval) and whether the others are within its noise."""
    parts = []
    for key in OUTLIER_SETS:
        entries = [(_score_label(model, name), ood[key][name], model, name)
                   for model, ood in (("CapsNet", capsnet), ("CNN", cnn)) if ood is not None and key in ood
                   for name in ood[key]]
        if not entries:
            continue
        entries.sort(key=lambda e: -e[1]["auroc"])
        label, best, model, name = entries[0]
        lo, hi = best["interval"]
        said = f"AUROC {best['auroc']:.3f} [{lo:.3f}, {hi:.3f}]"
        lead = (f"the CNN is ahead with its {SCORE_WORDS.get(name, name)} ({said})" if model == "CNN"
                else f"{label} is best ({said})")
        within = [e[0] for e in entries[1:] if experiments.intervals_overlap(best["interval"], e[1]["interval"])]
        if within:
            lead += f", within the noise of {_listed(within)}"
        elif len(entries) > 1:
            lead += ", beyond the noise of the others"
        parts.append(f"from {SET_WORDS[key]}, {lead}")
    return ("Telling MNIST test digits apart " + "; ".join(parts) + ".") if parts else "No AUROC in these results."


def score_sentence(name: str, value: float, ood: dict, what: str = "This input") -> str:
    """Where one image's score ``value`` falls against the section's threshold for score ``name``."""
    limit = ood["thresholds"][name]
    is_flagged = bool(flagged([value], name, limit["value"])[0])
    share = limit["flagged"]
    others = f" and {share['fashion-mnist']:.0f}% of Fashion-MNIST images" if "fashion-mnist" in share else ""
    return (f"{what}: {SCORE_WORDS.get(name, name)} {value:.3f}, on the {'outlier' if is_flagged else 'digit'} side "
            f"of the threshold {limit['value']:.3f}: {'flagged' if is_flagged else 'not flagged'}. The threshold "
            f"flags {100 * limit['false_positive']:g}% of MNIST test digits{others}.")


def missing_sections(results: dict | None, wanted: tuple[str, ...] = ("ood", "adversarial")) -> list[str]:
    """The sections of ``wanted`` that ``results`` lacks (all of them when there are no results)."""
    return list(wanted) if results is None else [s for s in wanted if s not in results]


def command(checkpoint, results: dict | None, wanted: tuple[str, ...] = ("ood", "adversarial")) -> str:
    """The command that computes the missing sections: merged into the results of these weights,
    or, with none, together with the core experiments the merge needs."""
    missing = missing_sections(results, wanted)
    sections = "all" if results is None else ",".join(missing)
    return f"python -m capsules.experiments --checkpoint {checkpoint} --sections {sections}"


__all__ = ["accuracy_curve", "accuracy_sentence", "auroc_bars", "auroc_sentence", "command",
           "detection_curve", "detection_sentence", "fooled_both_curve", "fooled_counts", "method_name",
           "missing_sections", "score_sentence"]
