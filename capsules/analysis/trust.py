"""Can it be fooled? The ``ood`` and ``adversarial`` sections of a model's experiments results
(``python -m capsules.experiments --sections ood,adversarial``), and their table in docs/experiments.md.

- :func:`ood_results`: the outlier scores of :mod:`.outliers` on a seeded subset of the MNIST test
  digits against each outlier set (Fashion-MNIST's test images, noise, blank), each score's AUROC
  with its bootstrap interval, its 5%-false-positive threshold and histograms for the page; fp32.
- :func:`adversarial_results`: FGSM, PGD and the adaptive PGD of :mod:`.attacks` on the first test
  images at each radius: accuracy, and for a CapsNet with a trained decoder what the
  reconstruction-distance detector flags, at the threshold that flags 5% of the clean digits of
  the same subset, computed in the attacks' own precision (bf16 by default, for speed).
- :func:`trust_sections`: both, on the data they are defined on, as the results file stores them.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from .. import __version__
from ..data import to_float
from .attacks import (ADAPTIVE_LAMBDA, ALPHA_FACTOR, EPSILONS, STEPS, Attack, Progress, _evaluate, fgsm_many, frozen,
                      pgd, pgd_pair, start)
from .outliers import (DIGITS, FALSE_POSITIVE, SCORES, auroc, bootstrap_interval, check_decoder, flagged, has_decoder,
                       histogram, outlier_sets, score_names, scores, subset, threshold)

SECTIONS = ("ood", "adversarial")
OOD_SIZE = 2000  # MNIST test digits and Fashion-MNIST test images scored, each a seeded subset
NOISE, BLANK = 1000, 100  # noise and blank images
ATTACK_IMAGES = 1000  # the first test images attacked
RESAMPLES = 1000  # bootstrap resamples of each AUROC


def _part(progress: Progress | None, lo: float, hi: float, what: str) -> Progress | None:
    """A callback mapping [0, 1] onto [lo, hi] of ``progress``, its message naming ``what``."""
    if progress is None:
        return None
    return lambda f, message: progress(lo + (hi - lo) * f, f"{what}: {message}")


def ood_results(model, digits: Tensor, others: dict[str, Tensor], *, resamples: int = RESAMPLES, seed: int = 0,
                bins: int = 40, batch_size: int = 250, progress: Progress | None = None) -> dict:
    """The ``ood`` section: for each outlier set and score, ``{"auroc", "interval"}`` of MNIST test
    digits ``digits`` against the set, plus each score's 5%-false-positive threshold with the share
    of every set it flags, and histograms of every set's scores (shared bins) for the page."""
    t0 = time.perf_counter()
    names = score_names(model)
    sets = {DIGITS: digits, **others}
    total = max(sum(v.shape[0] for v in sets.values()), 1)
    done, values = 0, {}
    for key, images in sets.items():
        values[key] = scores(model, images, names, batch_size=batch_size,
                             progress=_part(progress, done / total, (done + images.shape[0]) / total, key))
        done += images.shape[0]
    out: dict = {}
    for key in others:
        out[key] = {}
        for name in names:
            up, a, b = SCORES[name].higher_is_digit, values[DIGITS][name], values[key][name]
            lo, hi = bootstrap_interval(a, b, higher_is_digit=up, resamples=resamples, seed=seed)
            out[key][name] = {"auroc": auroc(a, b, higher_is_digit=up), "interval": [lo, hi]}
    limits = {name: threshold(values[DIGITS][name], name) for name in names}
    out.update(
        thresholds={name: {"value": limits[name], "false_positive": FALSE_POSITIVE,
                           "flagged": {k: 100.0 * float(flagged(v[name], name, limits[name]).mean())
                                       for k, v in values.items()}} for name in names},
        histograms={name: histogram({k: v[name] for k, v in values.items()}, bins) for name in names},
        scores={name: {"description": SCORES[name].description,
                       "digit_side": "higher" if SCORES[name].higher_is_digit else "lower"} for name in names},
        sets={k: int(v.shape[0]) for k, v in sets.items()},
        auroc="P(an MNIST test digit scores more digit-like than an image of the set) + P(tie) / 2",
        interval=f"percentile bootstrap, 95%, {resamples} resamples of both sets, seed {seed}",
        resamples=resamples, seed=seed, precision="fp32", seconds=time.perf_counter() - t0)
    if progress is not None:
        progress(1.0, "outlier scores: done")
    return out


def reference_threshold(model, images: Tensor, *, precision: str = "fp32", batch_size: int = 250) -> float:
    """The detector's threshold in ``precision``: the 95th percentile (:data:`FALSE_POSITIVE`) of the
    reconstruction distances of clean uint8 test ``images``, computed as the attacks compute them."""
    check_decoder(model)
    parts = []
    with frozen(model):
        for lo in range(0, images.shape[0], batch_size):
            x = to_float(images[lo:lo + batch_size].to(model.device))
            y = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
            parts.append(_evaluate(model, x, y, precision, grad=False, want_distance=True)[2].double().cpu())
    return threshold(torch.cat(parts).numpy(), "reconstruction_distance")


def _bits(mask: Tensor) -> str:
    return "".join("1" if b else "0" for b in mask.tolist())


def _verdicts(y: Tensor, clean_right: Tensor, a: Attack, limit: float | None) -> dict:
    """One attack at one radius: accuracy and, with a detector, what it flags (percent)."""
    right = (a.predictions == y).cpu()
    row = {"accuracy": 100.0 * float(right.double().mean()), "steps": float(a.steps.double().mean()),
           "right": _bits(right)}
    if limit is not None:
        flag = (a.distances > limit).cpu()
        fooled = clean_right & ~right  # the attack's successes
        row.update(flagged=100.0 * float(flag.double().mean()),
                   detected=100.0 * float((flag & fooled).sum()) / int(fooled.sum()) if fooled.any() else None,
                   undetected_errors=100.0 * float((~right & ~flag).double().mean()), flagged_images=_bits(flag))
    return row


def adversarial_results(model, images: Tensor, labels: Tensor, *, reference: Tensor | None = None,
                        epsilons=EPSILONS, steps: int = STEPS, precision: str = "bf16", batch_size: int = 250,
                        progress: Progress | None = None) -> dict:
    """The ``adversarial`` section: FGSM, PGD and (with a trained decoder) the adaptive PGD on uint8
    ``images`` (N, 28, 28) with true ``labels``, at each radius of ``epsilons``.

    Per method, lists over ``eps`` (percent of the N images): ``accuracy``, ``steps`` (mean gradient
    steps), ``right`` (per image, "1"/"0"); with a detector ``detected`` (of the images the attack
    turned from right to wrong, the share flagged; None when there are none), ``flagged`` (of all),
    ``undetected_errors`` (wrong and not flagged: what fools both) and ``flagged_images``. The
    threshold is :func:`reference_threshold` of the clean ``reference`` images (default ``images``)
    in ``precision``, the precision of every forward and backward pass here.
    """
    detector, times = has_decoder(model), {}
    t = time.perf_counter()
    ref = images if reference is None else reference
    limit = reference_threshold(model, ref, precision=precision, batch_size=batch_size) if detector else None
    times["threshold"] = time.perf_counter() - t
    x, y = to_float(images.to(model.device)), labels.to(model.device)
    methods = ["fgsm", "pgd"] + (["pgd_adaptive"] if detector else [])
    weight = 60.0 if detector else 30.0  # gradient steps an image costs at one radius, measured
    total = 2.0 * len(epsilons) + weight * len(epsilons)

    t = time.perf_counter()
    begin = start(model, x, y, precision=precision, batch_size=batch_size)
    clean = Attack(x, begin.predictions, torch.zeros_like(y), begin.distances, begin.loss)
    clean_right = (clean.predictions == y).cpu()
    rows = {"fgsm": fgsm_many(model, x, y, epsilons, precision=precision, batch_size=batch_size, begin=begin),
            "pgd": [], "pgd_adaptive": []}
    times["fgsm"] = time.perf_counter() - t
    t, shared = time.perf_counter(), []  # images whose adaptive attack is their PGD's
    for k, eps in enumerate(epsilons):
        done = 2.0 * len(epsilons) + weight * k
        part = _part(progress, done / total, (done + weight) / total, f"pgd eps {eps:g}")
        if detector:
            plain, adaptive = pgd_pair(model, x, y, eps, limit, steps=steps, precision=precision,
                                       batch_size=batch_size, begin=begin, progress=part)
            rows["pgd_adaptive"].append(adaptive)
            shared.append(int((plain.fork[1] < 0).sum()))
        else:
            plain = pgd(model, x, y, eps, steps=steps, precision=precision, batch_size=batch_size, begin=begin,
                        progress=part)
        rows["pgd"].append(plain)
    times["pgd" + ("_and_adaptive" if detector else "")] = time.perf_counter() - t
    out: dict = {"images": int(y.shape[0]), "eps": [float(e) for e in epsilons], "steps": steps,
                 "clean": {k: v for k, v in _verdicts(y, clean_right, clean, limit).items()
                           if k not in ("detected", "steps")}}
    for method in methods:
        verdicts = [_verdicts(y, clean_right, a, limit) for a in rows[method]]
        out[method] = {"eps": out["eps"], **{k: [v[k] for v in verdicts] for k in verdicts[0]}}
    if detector:
        out["pgd_adaptive"]["shared_with_pgd"] = shared
    capsnet = hasattr(model, "digits")
    out.update(
        detector=None if limit is None else {"score": "reconstruction_distance", "threshold": limit,
                                             "false_positive": FALSE_POSITIVE, "reference_images": int(ref.shape[0])},
        loss="margin loss on the capsule lengths (eq. 4 with m+ = 1, m- = 0, lambda = 0.5)" if capsnet
        else "cross-entropy on the logits",
        alpha=f"{ALPHA_FACTOR:g} * eps / steps", random_start=False, early_stop="first misclassified iterate",
        adaptive_objective=None if limit is None else (
            f"loss - {ADAPTIVE_LAMBDA:g} * max(0, distance - threshold); stops at the first iterate misclassified "
            "and not flagged"),
        precision=precision, library={"name": "capsules.analysis.attacks (own FGSM and PGD)", "version": __version__,
                                      "torch": torch.__version__},
        phase_seconds=times, seconds=sum(times.values()))
    if progress is not None:
        progress(1.0, "attacks: done")
    return out


def trust_sections(model, images: Tensor, labels: Tensor, fashion: Tensor | None, *, sections=SECTIONS,
                   ood_size: int = OOD_SIZE, noise: int = NOISE, blank: int = BLANK, attack_images: int = ATTACK_IMAGES,
                   seed: int = 0,
                   resamples: int = RESAMPLES, precision: str = "bf16", batch_size: int = 250,
                   progress: Progress | None = None) -> dict:
    """The ``sections`` (of :data:`SECTIONS`) of a model's results, ``{"ood": ..., "adversarial": ...}``,
    from uint8 MNIST test ``images``/``labels`` and Fashion-MNIST test images ``fashion``.

    The digits scored are ``ood_size`` test images drawn with ``seed`` (:func:`.outliers.subset`),
    which also give the detector's threshold for the attacks; ``ood_size`` Fashion-MNIST images are
    drawn likewise, ``noise`` noise images seeded the same and ``blank`` blank ones; the attacks take the
    first ``attack_images``."""
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown sections {', '.join(unknown)}; of {', '.join(SECTIONS)}")
    digits = images[subset(images.shape[0], ood_size, seed)]
    n = min(attack_images, images.shape[0])
    cost = {"ood": 0.4 * (2 * ood_size + noise + blank), "adversarial": 60.0 * n}  # rough forward passes
    total, done, out = sum(cost[s] for s in sections), 0.0, {}
    for section in SECTIONS:
        if section not in sections:
            continue
        part = _part(progress, done / total, (done + cost[section]) / total, section)
        if section == "ood":
            if fashion is None:
                raise ValueError("the ood section needs the Fashion-MNIST test images")
            others = outlier_sets(fashion[subset(fashion.shape[0], ood_size, seed)], noise=noise, blank=blank,
                                  seed=seed)
            out["ood"] = ood_results(model, digits, others, resamples=resamples, seed=seed, batch_size=batch_size,
                                     progress=part)
            out["ood"]["subsets"] = {DIGITS: f"{digits.shape[0]} of {images.shape[0]} test images drawn with seed {seed}",
                                     "fashion-mnist": f"{others['fashion-mnist'].shape[0]} of {fashion.shape[0]} "
                                                      f"test images drawn with seed {seed}",
                                     "noise": f"uniform grey levels 0..255, seed {seed}",
                                     "blank": "constant images, grey levels evenly from 0 to 255"}
        else:
            out["adversarial"] = adversarial_results(model, images[:n], labels[:n], reference=digits,
                                                     precision=precision, batch_size=batch_size, progress=part)
            out["adversarial"].update(first=True, reference=f"the {digits.shape[0]} test digits of the ood section "
                                                            f"(seed {seed})")
        done += cost[section]
    return out


# --------------------------------------------------------------------------------------------
# the table of docs/experiments.md


def _auc(entry: dict | None) -> str:
    if entry is None:
        return "—"
    lo, hi = entry["interval"]
    return f"{entry['auroc']:.3f} [{lo:.3f}, {hi:.3f}]"


def _pct(value) -> str:
    return "—" if value is None else f"{value:.1f}"


def markdown(capsnet: dict, cnn: dict) -> str:
    """The tables of "Can it be fooled?" from two results files (a CapsNet's and the CNN's) that
    hold both sections: AUROCs with their intervals, then accuracy and detection against eps."""
    ood_c, ood_n = capsnet["ood"], cnn["ood"]
    lines = ["| outlier set | CapsNet: max length | CapsNet: reconstruction distance | CNN: max softmax |",
             "|---|---|---|---|"]
    for key in ("fashion-mnist", "noise", "blank"):
        lines.append(f"| {key} ({ood_c['sets'][key]:,} images) | {_auc(ood_c[key].get('max_length'))} | "
                     f"{_auc(ood_c[key].get('reconstruction_distance'))} | {_auc(ood_n[key].get('max_softmax'))} |")
    adv_c, adv_n = capsnet["adversarial"], cnn["adversarial"]
    det = adv_c.get("detector") or {}
    lines += ["", (f"AUROC of MNIST test digits ({ood_c['sets'][DIGITS]:,}) against each set, "
                   f"{ood_c['interval']}."), "",
              "| attack | eps | CapsNet accuracy (%) | detected (%) | flagged (%) | fooled both (%) | CNN accuracy (%) |",
              "|---|---|---|---|---|---|---|",
              (f"| none | 0 | {_pct(adv_c['clean']['accuracy'])} | — | {_pct(adv_c['clean'].get('flagged'))} | — | "
               f"{_pct(adv_n['clean']['accuracy'])} |")]
    names = {"fgsm": "FGSM", "pgd": f"PGD-{adv_c['steps']}", "pgd_adaptive": f"adaptive PGD-{adv_c['steps']}"}
    for method, label in names.items():
        c, n = adv_c.get(method), adv_n.get(method)
        if c is None:
            continue
        for k, eps in enumerate(c["eps"]):
            lines.append(f"| {label} | {eps:g} | {_pct(c['accuracy'][k])} | {_pct(c.get('detected', [None] * 9)[k])} | "
                         f"{_pct(c.get('flagged', [None] * 9)[k])} | {_pct(c.get('undetected_errors', [None] * 9)[k])} | "
                         f"{_pct(n['accuracy'][k]) if n else '—'} |")
    lines += ["", (f"The first {adv_c['images']:,} test images; detector threshold {det.get('threshold', float('nan')):.3f} "
                   f"(reconstruction distance, {100 * det.get('false_positive', FALSE_POSITIVE):g}% of "
                   f"{det.get('reference_images', 0):,} clean test digits above it), attacks in {adv_c['precision']}. "
                   f"Time: CapsNet {ood_c['seconds'] + adv_c['seconds']:.0f} s, CNN "
                   f"{ood_n['seconds'] + adv_n['seconds']:.0f} s.")]
    return "\n".join(lines) + "\n"
