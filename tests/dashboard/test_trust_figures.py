"""What the Attacks & outliers page draws and says, without Streamlit: the curves and sentences of
dashboard.figures.trust_notes and the figures of dashboard.figures.trust, on ood and adversarial
sections built here (so that every number is known) and on sections the library computes. The page
itself is tested in tests/dashboard/test_trust_page.py, which builds its results from the sections here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from capsules import experiments
from capsules.analysis import attacks, outliers
from dashboard.figures import trust_notes as notes
from dashboard.figures import trust as figures

EPS = [0.05, 0.1, 0.2, 0.3]


def wilson(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval in percent, written out (the reference for the page's)."""
    z, p = 1.959963984540054, k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return 100 * (centre - half) / (1 + z * z / n), 100 * (centre + half) / (1 + z * z / n)


def bits(right: int, n: int) -> str:
    return "1" * right + "0" * (n - right)


def adversarial(acc: dict[str, list[float]], *, detected: dict | None = None, both: dict | None = None,
                n: int = 1000, clean: float = 99.0) -> dict:
    """An ``adversarial`` section as capsules.analysis.trust writes it: the first images right (so
    that an attack's successes are the clean-right images it turned wrong); with ``detected`` (the
    share of successes flagged per method) a detector at threshold 6.0 and 5% false positives."""
    out = {"images": n, "eps": EPS, "steps": 20, "precision": "bf16",
           "clean": {"accuracy": clean, "right": bits(round(clean * n / 100), n)}, "detector": None}
    if detected is not None:
        out["clean"].update(flagged=5.0, undetected_errors=0.5)
        out["detector"] = {"score": "reconstruction_distance", "threshold": 6.0, "false_positive": 0.05,
                           "reference_images": 2000}
    for method, values in acc.items():
        row = {"eps": EPS, "accuracy": values, "right": [bits(round(v * n / 100), n) for v in values],
               "steps": [1.0] * len(EPS)}
        if detected is not None:
            row.update(detected=detected[method], undetected_errors=both[method], flagged=[50.0] * len(EPS))
        out[method] = row
    return out


def ood(aurocs: dict[str, dict[str, tuple[float, float, float]]], limits: dict[str, float]) -> dict:
    """An ``ood`` section: per score its AUROC (and interval) against each set, its threshold, and
    histograms over 10 bins of [0, 1] (a distance: [0, 20]), MNIST high and Fashion-MNIST low."""
    names = list(limits)
    out = {key: {name: {"auroc": aurocs[name][key][0], "interval": list(aurocs[name][key][1:])} for name in names}
           for key in outliers.OUTLIER_SETS}
    digit, other = [0, 0, 0, 0, 0, 0, 0, 100, 400, 1500], [300, 500, 400, 300, 200, 100, 100, 50, 30, 20]
    hist = {}
    for name in names:
        up = outliers.SCORES[name].higher_is_digit
        hist[name] = {"edges": np.linspace(0, 1 if up else 20, 11).tolist(),
                      "counts": {"mnist-test": digit if up else digit[::-1], "fashion-mnist": other if up else other[::-1],
                                 "noise": [0] * 9 + [1000], "blank": [100] + [0] * 9}}
    out.update(thresholds={name: {"value": limits[name], "false_positive": 0.05,
                                  "flagged": {"mnist-test": 5.0, "fashion-mnist": 71.0, "noise": 3.0, "blank": 100.0}}
                           for name in names},
               histograms=hist, scores={name: {"description": outliers.SCORES[name].description} for name in names},
               sets={"mnist-test": 2000, "fashion-mnist": 2000, "noise": 1000, "blank": 100},
               auroc="P(digit more digit-like) + P(tie) / 2", interval="percentile bootstrap, 95%, 1000 resamples",
               subsets={"mnist-test": "2000 of 10000 test images drawn with seed 0"})
    return out


CAPSNET_ADV = adversarial({"fgsm": [95.0, 80.0, 40.0, 20.0], "pgd": [90.0, 50.0, 10.0, 1.0],
                           "pgd_adaptive": [91.0, 55.0, 12.0, 2.0]},
                          detected={"fgsm": [60.0, 70.0, 80.0, 90.0], "pgd": [40.0, 60.0, 80.0, 92.0],
                                    "pgd_adaptive": [3.0, 4.0, 5.0, 6.0]},
                          both={"fgsm": [1.0, 5.0, 10.0, 8.0], "pgd": [5.0, 20.0, 18.0, 8.0],
                                "pgd_adaptive": [8.0, 42.0, 83.0, 92.0]})
CNN_ADV = adversarial({"fgsm": [97.0, 85.0, 30.0, 10.0], "pgd": [95.0, 40.0, 10.5, 0.5]}, clean=99.2)
CAPSNET_AUROCS = {"max_length": {"fashion-mnist": (0.95, 0.94, 0.96), "noise": (0.999, 0.998, 1.0),
                                  "blank": (0.97, 0.96, 0.98)},
                  "reconstruction_distance": {"fashion-mnist": (0.97, 0.965, 0.975), "noise": (1.0, 1.0, 1.0),
                                              "blank": (0.90, 0.88, 0.92)}}
CAPSNET_OOD = ood(CAPSNET_AUROCS, {"max_length": 0.6, "reconstruction_distance": 9.0})
CNN_OOD = ood({"max_softmax": {"fashion-mnist": (0.99, 0.985, 0.995), "noise": (0.6, 0.55, 0.65),
                               "blank": (0.8, 0.78, 0.82)}}, {"max_softmax": 0.9})


# ------------------------------------------------------------------------------ curves and sentences


def test_accuracy_curves_carry_wilson_intervals():
    curve = notes.accuracy_curve(CAPSNET_ADV, "pgd")
    assert curve["eps"] == [0.0, *EPS] and curve["value"] == [99.0, 90.0, 50.0, 10.0, 1.0]
    for v, lo, hi in zip(curve["value"], curve["lo"], curve["hi"]):
        assert (lo, hi) == pytest.approx(wilson(round(v * 10), 1000))


def test_detection_counts_the_successes_from_the_per_image_strings():
    adv = {"images": 4, "eps": [0.1, 0.3], "steps": 20, "detector": {"threshold": 6.0, "false_positive": 0.05},
           "clean": {"accuracy": 75.0, "right": "1101", "undetected_errors": 0.0},
           "pgd": {"eps": [0.1, 0.3], "right": ["1100", "0000"], "detected": [None, 50.0],
                   "undetected_errors": [25.0, 50.0]}}
    assert notes.fooled_counts(adv, "pgd") == [1, 3]  # image 4 at eps 0.1; images 1, 2, 4 at 0.3 (image 3 was wrong)
    curve = notes.detection_curve(adv, "pgd")  # eps 0.1 has a success but no share recorded: left out
    assert curve["eps"] == [0.3] and curve["n"] == [3] and curve["value"] == [50.0]
    assert (curve["lo"][0], curve["hi"][0]) == pytest.approx(wilson(2, 3))  # 50% of 3 rounds to 2 images
    both = notes.fooled_both_curve(adv, "pgd")
    assert both["eps"] == [0.0, 0.1, 0.3] and both["value"] == [0.0, 25.0, 50.0]
    assert notes.detection_curve({**adv, "detector": None}, "pgd")["eps"] == []


def test_the_accuracy_sentence_says_who_is_ahead_and_what_is_within_the_noise():
    assert notes.accuracy_sentence(CAPSNET_ADV, CNN_ADV) == (
        "Under PGD-20 the CapsNet keeps 90.0% [88.0, 91.7] of the first 1,000 test images right at eps 0.05 and "
        "1.0% [0.5, 1.8] at eps 0.3, the CNN 95.0% [93.5, 96.2] and 0.5% [0.2, 1.2]: the CNN is ahead at eps 0.05, "
        "the CapsNet is ahead at eps 0.1 and at eps 0.2 and 0.3 the two are within the noise (their 95% intervals "
        "overlap).")
    assert notes.accuracy_sentence(CAPSNET_ADV, None, "fgsm").endswith(
        "at eps 0.3; no baseline CNN's results to compare with.")
    other = {**CNN_ADV, "images": 500}
    assert "not compared" in notes.accuracy_sentence(CAPSNET_ADV, other)


def test_the_detection_sentence():
    said = notes.detection_sentence(CAPSNET_ADV)
    pgd, adaptive = notes.detection_curve(CAPSNET_ADV, "pgd"), notes.detection_curve(CAPSNET_ADV, "pgd_adaptive")
    assert pgd["n"][-1] == 990 - 10 and adaptive["n"][-1] == 990 - 20
    assert said == (
        "The detector flags an image whose reconstruction distance exceeds 6.00, as 5% of clean test digits do; at "
        f"eps 0.3 it flags 92.0% [{pgd['lo'][-1]:.1f}, {pgd['hi'][-1]:.1f}] of the 980 images PGD-20 turns wrong and "
        f"6.0% [{adaptive['lo'][-1]:.1f}, {adaptive['hi'][-1]:.1f}] of the 970 images adaptive PGD-20 turns wrong "
        "(within the noise of its false alarms); the adaptive attack knows the detector, and 92.0% [90.2, 93.5] of "
        "all 1,000 images fool both classifier and detector.")
    assert adaptive["lo"][-1] < 5 < adaptive["hi"][-1] and not pgd["lo"][-1] < 5 < pgd["hi"][-1]
    assert "no trained decoder" in notes.detection_sentence(CNN_ADV)


def test_the_auroc_sentence_names_the_cnn_when_it_is_ahead():
    assert notes.auroc_sentence(CAPSNET_OOD, CNN_OOD) == (
        "Telling MNIST test digits apart from Fashion-MNIST, the CNN is ahead with its max softmax (AUROC 0.990 "
        "[0.985, 0.995]), beyond the noise of the others; from uniform noise, the CapsNet's reconstruction distance "
        "is best (AUROC 1.000 [1.000, 1.000]), within the noise of the CapsNet's max length; from blank images, the "
        "CapsNet's max length is best (AUROC 0.970 [0.960, 0.980]), beyond the noise of the others.")
    assert notes.auroc_sentence(CAPSNET_OOD, None).startswith("Telling MNIST test digits apart from Fashion-MNIST, the "
                                                          "CapsNet's reconstruction distance is best (AUROC 0.970")


def test_where_one_score_falls():
    assert notes.score_sentence("max_length", 0.3, CAPSNET_OOD) == (
        "This input: max length 0.300, on the outlier side of the threshold 0.600: flagged. The threshold flags 5% "
        "of MNIST test digits and 71% of Fashion-MNIST images.")
    assert "0.950, on the digit side of the threshold 0.600: not flagged" in notes.score_sentence("max_length", 0.95,
                                                                                            CAPSNET_OOD)
    assert "on the digit side" in notes.score_sentence("reconstruction_distance", 3.0, CAPSNET_OOD)  # lower: a digit
    assert "on the outlier side" in notes.score_sentence("reconstruction_distance", 12.0, CAPSNET_OOD)


def test_the_command_computes_what_is_missing():
    assert notes.missing_sections({"ood": {}}) == ["adversarial"]
    assert notes.missing_sections(None) == ["ood", "adversarial"]
    assert notes.command("c.safetensors", {"iterations": {}}) == ("python -m capsules.experiments --checkpoint "
                                                              "c.safetensors --sections ood,adversarial")
    assert notes.command("c.safetensors", None).endswith("--sections all")  # a merge needs results of these weights
    assert experiments.parse_sections("ood,adversarial") == ["ood", "adversarial"]  # the command takes them


def test_the_functions_take_what_the_library_writes():
    """The sections of a tiny CapsNet and CNN, as capsules.analysis.trust computes them, go through
    every curve, sentence and figure."""
    from capsules import BaselineCNN, BaselineCNNConfig, CapsNet, CapsNetConfig
    from capsules.analysis.trust import trust_sections

    torch.manual_seed(0)
    capsnet = CapsNet(CapsNetConfig(conv1_channels=16, primary_types=4, decoder_hidden=(16, 16))).eval()
    cnn = BaselineCNN(BaselineCNNConfig(conv_channels=(4, 4, 2), fc_hidden=(8, 8))).eval()
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 28, 28), generator=g, dtype=torch.uint8)
    labels, clothes = torch.randint(0, 10, (40,), generator=g), torch.randint(0, 256, (30, 28, 28), generator=g,
                                                                              dtype=torch.uint8)
    mine, theirs = (trust_sections(m, images, labels, clothes, ood_size=30, attack_images=6, resamples=20,
                                   precision="fp32") for m in (capsnet, cnn))
    json.loads(json.dumps(mine))  # as a results file holds them
    for adv in (mine["adversarial"], theirs["adversarial"]):
        for m in attacks.METHODS:
            if m in adv:
                assert len(notes.accuracy_curve(adv, m)["eps"]) == len(adv["eps"]) + 1
                notes.detection_curve(adv, m), notes.fooled_both_curve(adv, m)
    sentence = notes.accuracy_sentence(mine["adversarial"], theirs["adversarial"])
    assert sentence.startswith("Under PGD-20 the CapsNet keeps")
    assert notes.detection_sentence(mine["adversarial"]).startswith("The detector flags an image")
    assert notes.auroc_sentence(mine["ood"], theirs["ood"]).startswith(
        "Telling MNIST test digits apart from Fashion-MNIST")
    assert set(notes.auroc_bars(mine["ood"])) == {"max_length", "reconstruction_distance"}
    h = mine["ood"]["histograms"]["max_length"]
    figures.histogram_figure(h["edges"], h["counts"], mine["ood"]["thresholds"]["max_length"]["value"], {"x": 0.5},
                             "t", "a")


# ------------------------------------------------------------------------------ figures


def test_the_attack_figure():
    clean = np.zeros((28, 28), np.float32)
    adv = clean.copy()
    adv[3, 4], adv[5, 6] = 0.3, 0.1
    fig = figures.attack_figure(clean, adv, 0.3, np.full((28, 28), 0.5, np.float32), 7)
    assert [a.text for a in fig.layout.annotations] == ["Input", "Change (±0.3)", "Attacked", "Reconstruction (7)"]
    change = fig.data[1]
    np.testing.assert_allclose(np.asarray(change.z), adv - clean)
    assert (change.zmin, change.zmax) == (-0.3, 0.3)
    np.testing.assert_allclose(np.asarray(fig.data[2].z), adv)
    assert len(figures.attack_figure(clean, adv, 0.3).data) == 3  # no decoder: no reconstruction


def test_before_and_after_bars():
    before, after = np.linspace(0, 0.9, 10), np.linspace(0.9, 0, 10)
    fig = figures.before_after_figure(before, after, "Capsule lengths", "length")
    assert [t.name for t in fig.data] == ["input", "attacked"]
    np.testing.assert_allclose(fig.data[1].y, after)
    assert {s.y0 for s in fig.layout.shapes} == {0.9, 0.1}  # m+ and m-
    assert not figures.before_after_figure(before, after, "Softmax", "p", lengths=False).layout.shapes


def test_the_histogram_shows_each_set_the_threshold_and_the_input():
    h = CAPSNET_OOD["histograms"]["reconstruction_distance"]
    fig = figures.histogram_figure(h["edges"], {"MNIST test": h["counts"]["mnist-test"]}, 9.0, {"this input": 25.0},
                                   "t", "d")
    assert sum(fig.data[0].y) == pytest.approx(100.0)  # a share of the set
    assert fig.data[0].y[0] == pytest.approx(75.0)  # 1,500 of 2,000 digits in the first bin
    assert sorted(s.x0 for s in fig.layout.shapes) == [9.0, 25.0]
    lo, hi = fig.layout.xaxis.range
    assert lo < 0 and hi > 25.0  # the axis reaches the input, beyond the bins


def test_the_curves_figures_draw_the_intervals():
    curve = notes.accuracy_curve(CAPSNET_ADV, "pgd")
    fig = figures.accuracy_figure({"CapsNet · PGD-20": curve, "CNN · PGD-20": notes.accuracy_curve(CNN_ADV, "pgd")})
    caps, cnn = fig.data
    assert caps.line.dash == "solid" and cnn.line.dash == "dash" and caps.line.color == cnn.line.color
    np.testing.assert_allclose(np.asarray(caps.y) + np.asarray(caps.error_y.array), curve["hi"])
    np.testing.assert_allclose(np.asarray(caps.y) - np.asarray(caps.error_y.arrayminus), curve["lo"])
    det = figures.detection_figure({"PGD-20": notes.detection_curve(CAPSNET_ADV, "pgd")},
                             {"PGD-20": notes.fooled_both_curve(CAPSNET_ADV, "pgd")}, 5.0)
    assert len(det.data) == 2 and [s.y0 for s in det.layout.shapes] == [5.0]
    bars = notes.auroc_bars(CNN_OOD)
    fig = figures.auroc_figure({"CNN · max softmax": bars["max_softmax"]})
    assert list(fig.data[0].x) == ["fashion-mnist", "noise", "blank"]
    np.testing.assert_allclose(np.asarray(fig.data[0].y) + np.asarray(fig.data[0].error_y.array), [0.995, 0.65, 0.82])
