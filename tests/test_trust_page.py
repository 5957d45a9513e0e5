"""The Attacks & outliers page (dashboard/app_pages/trust.py, /trust): its curves and sentences
(capsules.analysis.trust_notes) and figures (dashboard.figures.trust) without Streamlit, the page
under AppTest (a folder of copied checkpoints whose results hold sections built here, so that every
number on the page is known), and in chromium a drawn digit attacked at eps 0.3."""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest
import torch

from capsules import experiments
from capsules.analysis import attacks, outliers
from capsules.analysis import trust_notes as N
from dashboard.figures import trust as F

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
    curve = N.accuracy_curve(CAPSNET_ADV, "pgd")
    assert curve["eps"] == [0.0, *EPS] and curve["value"] == [99.0, 90.0, 50.0, 10.0, 1.0]
    for v, lo, hi in zip(curve["value"], curve["lo"], curve["hi"]):
        assert (lo, hi) == pytest.approx(wilson(round(v * 10), 1000))


def test_detection_counts_the_successes_from_the_per_image_strings():
    adv = {"images": 4, "eps": [0.1, 0.3], "steps": 20, "detector": {"threshold": 6.0, "false_positive": 0.05},
           "clean": {"accuracy": 75.0, "right": "1101", "undetected_errors": 0.0},
           "pgd": {"eps": [0.1, 0.3], "right": ["1100", "0000"], "detected": [None, 50.0],
                   "undetected_errors": [25.0, 50.0]}}
    assert N.fooled_counts(adv, "pgd") == [1, 3]  # image 4 at eps 0.1; images 1, 2, 4 at 0.3 (image 3 was wrong)
    curve = N.detection_curve(adv, "pgd")  # eps 0.1 has a success but no share recorded: left out
    assert curve["eps"] == [0.3] and curve["n"] == [3] and curve["value"] == [50.0]
    assert (curve["lo"][0], curve["hi"][0]) == pytest.approx(wilson(2, 3))  # 50% of 3 rounds to 2 images
    both = N.fooled_both_curve(adv, "pgd")
    assert both["eps"] == [0.0, 0.1, 0.3] and both["value"] == [0.0, 25.0, 50.0]
    assert N.detection_curve({**adv, "detector": None}, "pgd")["eps"] == []


def test_the_accuracy_sentence_says_who_is_ahead_and_what_is_within_the_noise():
    assert N.accuracy_sentence(CAPSNET_ADV, CNN_ADV) == (
        "Under PGD-20 the CapsNet keeps 90.0% [88.0, 91.7] of the first 1,000 test images right at eps 0.05 and "
        "1.0% [0.5, 1.8] at eps 0.3, the CNN 95.0% [93.5, 96.2] and 0.5% [0.2, 1.2]: the CNN is ahead at eps 0.05, "
        "the CapsNet is ahead at eps 0.1 and at eps 0.2 and 0.3 the two are within the noise (their 95% intervals "
        "overlap).")
    assert N.accuracy_sentence(CAPSNET_ADV, None, "fgsm").endswith("at eps 0.3; no baseline CNN's results to compare "
                                                                  "with.")
    other = {**CNN_ADV, "images": 500}
    assert "not compared" in N.accuracy_sentence(CAPSNET_ADV, other)


def test_the_detection_sentence():
    said = N.detection_sentence(CAPSNET_ADV)
    pgd, adaptive = N.detection_curve(CAPSNET_ADV, "pgd"), N.detection_curve(CAPSNET_ADV, "pgd_adaptive")
    assert pgd["n"][-1] == 990 - 10 and adaptive["n"][-1] == 990 - 20
    assert said == (
        "The detector flags an image whose reconstruction distance exceeds 6.00, as 5% of clean test digits do; at "
        f"eps 0.3 it flags 92.0% [{pgd['lo'][-1]:.1f}, {pgd['hi'][-1]:.1f}] of the 980 images PGD-20 turns wrong and "
        f"6.0% [{adaptive['lo'][-1]:.1f}, {adaptive['hi'][-1]:.1f}] of the 970 images adaptive PGD-20 turns wrong "
        "(within the noise of its false alarms); the adaptive attack knows the detector, and 92.0% [90.2, 93.5] of "
        "all 1,000 images fool both classifier and detector.")
    assert adaptive["lo"][-1] < 5 < adaptive["hi"][-1] and not pgd["lo"][-1] < 5 < pgd["hi"][-1]
    assert "no trained decoder" in N.detection_sentence(CNN_ADV)


def test_the_auroc_sentence_names_the_cnn_when_it_is_ahead():
    assert N.auroc_sentence(CAPSNET_OOD, CNN_OOD) == (
        "Telling MNIST test digits apart from Fashion-MNIST, the CNN is ahead with its max softmax (AUROC 0.990 "
        "[0.985, 0.995]), beyond the noise of the others; from uniform noise, the CapsNet's reconstruction distance "
        "is best (AUROC 1.000 [1.000, 1.000]), within the noise of the CapsNet's max length; from blank images, the "
        "CapsNet's max length is best (AUROC 0.970 [0.960, 0.980]), beyond the noise of the others.")
    assert N.auroc_sentence(CAPSNET_OOD, None).startswith("Telling MNIST test digits apart from Fashion-MNIST, the "
                                                          "CapsNet's reconstruction distance is best (AUROC 0.970")


def test_where_one_score_falls():
    assert N.score_sentence("max_length", 0.3, CAPSNET_OOD) == (
        "This input: max length 0.300, on the outlier side of the threshold 0.600: flagged. The threshold flags 5% "
        "of MNIST test digits and 71% of Fashion-MNIST images.")
    assert "0.950, on the digit side of the threshold 0.600: not flagged" in N.score_sentence("max_length", 0.95,
                                                                                            CAPSNET_OOD)
    assert "on the digit side" in N.score_sentence("reconstruction_distance", 3.0, CAPSNET_OOD)  # lower: a digit
    assert "on the outlier side" in N.score_sentence("reconstruction_distance", 12.0, CAPSNET_OOD)


def test_the_command_computes_what_is_missing():
    assert N.missing_sections({"ood": {}}) == ["adversarial"] and N.missing_sections(None) == ["ood", "adversarial"]
    assert N.command("c.safetensors", {"iterations": {}}) == ("python -m capsules.experiments --checkpoint "
                                                              "c.safetensors --sections ood,adversarial")
    assert N.command("c.safetensors", None).endswith("--sections all")  # a merge needs results of these weights
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
                assert len(N.accuracy_curve(adv, m)["eps"]) == len(adv["eps"]) + 1
                N.detection_curve(adv, m), N.fooled_both_curve(adv, m)
    assert N.accuracy_sentence(mine["adversarial"], theirs["adversarial"]).startswith("Under PGD-20 the CapsNet keeps")
    assert N.detection_sentence(mine["adversarial"]).startswith("The detector flags an image")
    assert N.auroc_sentence(mine["ood"], theirs["ood"]).startswith("Telling MNIST test digits apart from Fashion-MNIST")
    assert set(N.auroc_bars(mine["ood"])) == {"max_length", "reconstruction_distance"}
    h = mine["ood"]["histograms"]["max_length"]
    F.histogram_figure(h["edges"], h["counts"], mine["ood"]["thresholds"]["max_length"]["value"], {"x": 0.5}, "t", "a")


# ------------------------------------------------------------------------------ figures


def test_the_attack_figure():
    clean = np.zeros((28, 28), np.float32)
    adv = clean.copy()
    adv[3, 4], adv[5, 6] = 0.3, 0.1
    fig = F.attack_figure(clean, adv, 0.3, np.full((28, 28), 0.5, np.float32), 7)
    assert [a.text for a in fig.layout.annotations] == ["Input", "Change (±0.3)", "Attacked", "Reconstruction (7)"]
    change = fig.data[1]
    np.testing.assert_allclose(np.asarray(change.z), adv - clean)
    assert (change.zmin, change.zmax) == (-0.3, 0.3)
    np.testing.assert_allclose(np.asarray(fig.data[2].z), adv)
    assert len(F.attack_figure(clean, adv, 0.3).data) == 3  # no decoder: no reconstruction


def test_before_and_after_bars():
    before, after = np.linspace(0, 0.9, 10), np.linspace(0.9, 0, 10)
    fig = F.before_after_figure(before, after, "Capsule lengths", "length")
    assert [t.name for t in fig.data] == ["input", "attacked"]
    np.testing.assert_allclose(fig.data[1].y, after)
    assert {s.y0 for s in fig.layout.shapes} == {0.9, 0.1}  # m+ and m-
    assert not F.before_after_figure(before, after, "Softmax", "p", lengths=False).layout.shapes


def test_the_histogram_shows_each_set_the_threshold_and_the_input():
    h = CAPSNET_OOD["histograms"]["reconstruction_distance"]
    fig = F.histogram_figure(h["edges"], {"MNIST test": h["counts"]["mnist-test"]}, 9.0, {"this input": 25.0}, "t", "d")
    assert sum(fig.data[0].y) == pytest.approx(100.0)  # a share of the set
    assert fig.data[0].y[0] == pytest.approx(75.0)  # 1,500 of 2,000 digits in the first bin
    assert sorted(s.x0 for s in fig.layout.shapes) == [9.0, 25.0]
    lo, hi = fig.layout.xaxis.range
    assert lo < 0 and hi > 25.0  # the axis reaches the input, beyond the bins


def test_the_curves_figures_draw_the_intervals():
    curve = N.accuracy_curve(CAPSNET_ADV, "pgd")
    fig = F.accuracy_figure({"CapsNet · PGD-20": curve, "CNN · PGD-20": N.accuracy_curve(CNN_ADV, "pgd")})
    caps, cnn = fig.data
    assert caps.line.dash == "solid" and cnn.line.dash == "dash" and caps.line.color == cnn.line.color
    np.testing.assert_allclose(np.asarray(caps.y) + np.asarray(caps.error_y.array), curve["hi"])
    np.testing.assert_allclose(np.asarray(caps.y) - np.asarray(caps.error_y.arrayminus), curve["lo"])
    det = F.detection_figure({"PGD-20": N.detection_curve(CAPSNET_ADV, "pgd")},
                             {"PGD-20": N.fooled_both_curve(CAPSNET_ADV, "pgd")}, 5.0)
    assert len(det.data) == 2 and [s.y0 for s in det.layout.shapes] == [5.0]
    bars = N.auroc_bars(CNN_OOD)
    fig = F.auroc_figure({"CNN · max softmax": bars["max_softmax"]})
    assert list(fig.data[0].x) == ["fashion-mnist", "noise", "blank"]
    np.testing.assert_allclose(np.asarray(fig.data[0].y) + np.asarray(fig.data[0].error_y.array), [0.995, 0.65, 0.82])


# ------------------------------------------------------------------------------ the page under AppTest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from test_app import APP, SAMPLES, array, charts, metric, texts  # noqa: E402

TRUST = "app_pages/trust.py"
CHECKPOINTS = ("capsnet-mnist", "capsnet-mnist-r1-norecon", "cnn-mnist")
LIVE_CHARTS = {"fig_attack_capsnet", "fig_attack_lengths", "fig_attack_cnn", "fig_attack_softmax"}
RESULT_CHARTS = {"fig_hist_capsnet_max_length", "fig_hist_capsnet_reconstruction_distance", "fig_hist_cnn_max_softmax",
                 "fig_accuracy_eps", "fig_detection_eps", "fig_auroc"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Copies of the shipped CapsNet, the CapsNet trained without reconstruction and the CNN, with
    their shipped results (copies, not links: a link resolves to checkpoints/ and its results)."""
    from capsules.checkpoint import SHIPPED

    out = tmp_path_factory.mktemp("checkpoints")
    for name in CHECKPOINTS:
        for suffix in (".safetensors", ".json", ".experiments.json"):
            if (SHIPPED.parent / f"{name}{suffix}").is_file():
                shutil.copy(SHIPPED.parent / f"{name}{suffix}", out / f"{name}{suffix}")
    return out


def write_results(folder, name: str, sections: dict | None) -> None:
    """``name``'s shipped results, without any ood or adversarial section, plus ``sections``
    (None: no results file at all)."""
    path = experiments.results_path(folder / f"{name}.safetensors")
    if sections is None:
        path.unlink(missing_ok=True)
        return
    from capsules.checkpoint import SHIPPED

    shipped = experiments.load_results(SHIPPED.parent / f"{name}.safetensors")
    assert shipped is not None, f"the shipped results of {name} are missing or stale"
    core = {k: v for k, v in shipped.items() if k not in ("ood", "adversarial")}
    experiments.save_results({**core, **sections}, path)


@pytest.fixture()
def env(monkeypatch, folder):
    monkeypatch.setenv("CAPSULES_DEVICE", "cpu")
    monkeypatch.setenv("CAPSULES_THREADS", str(torch.get_num_threads()))
    monkeypatch.setenv("CAPSULES_CHECKPOINT_DIR", str(folder))
    monkeypatch.delenv("CAPSULES_CHECKPOINT", raising=False)
    write_results(folder, "capsnet-mnist", {"ood": CAPSNET_OOD, "adversarial": CAPSNET_ADV})
    write_results(folder, "cnn-mnist", {"ood": CNN_OOD, "adversarial": CNN_ADV})
    return folder


def opened(params: dict | None = None) -> AppTest:
    """A session opened on /trust with ``params`` in its address (AppTest opens another page after
    a first run, whose address is emptied as a browser's is on a page switch)."""
    app = AppTest.from_file(str(APP), default_timeout=120)
    app.run()
    for k in list(app.query_params):
        del app.query_params[k]
    app.switch_page(TRUST)
    for k, v in (params or {}).items():
        app.query_params[k] = v
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def the_input(app) -> np.ndarray:
    from capsules import analysis

    with np.load(SAMPLES, allow_pickle=False) as z:
        return analysis.as_image(z["images"][app.selectbox(key="sample").value])


def answer(model, image, method: str, eps: float, **kw) -> tuple[attacks.AttackedImage, str]:
    """The library's attack of ``image`` and the page's metric for it, computed apart from the page."""
    from capsules import analysis

    a = attacks.attack_image(model, image, method, eps, **kw)
    res = analysis.analyse(model, a.adversarial)
    return a, f"{a.prediction_after} ({res.lengths[a.prediction_after]:.2f})"


def notices(app) -> str:
    return " ".join(w.value for w in app.warning)


def test_the_page_opens_with_its_charts_and_sentences(env):
    from capsules import load_model

    app = opened()
    assert not app.warning and not app.info, (notices(app), [i.value for i in app.info])
    assert LIVE_CHARTS | RESULT_CHARTS <= set(charts(app))
    said = texts(app)
    for sentence in (N.accuracy_sentence(CAPSNET_ADV, CNN_ADV), N.detection_sentence(CAPSNET_ADV),
                     N.auroc_sentence(CAPSNET_OOD, CNN_OOD)):
        assert sentence in said
    assert "the CNN is ahead at eps 0.05" in said and "the CNN is ahead with its max softmax" in said
    model = load_model(env / "capsnet-mnist.safetensors", "cpu")
    a, shown = answer(model, the_input(app), "pgd", 0.1)  # the defaults: PGD-20 at eps 0.1
    assert metric(app, "CapsNet attacked") == shown and metric(app, "Distance") == f"{a.distance_after:.2f}"
    scores = outliers.image_scores(model, the_input(app))
    assert N.score_sentence("max_length", scores["max_length"], CAPSNET_OOD) in said


def test_the_detector_uses_the_shipped_threshold(env):
    """The live verdict is the ood section's threshold (fp32, as the live attack) against the
    attacked image's distance: move the threshold across that distance and the verdict turns."""
    from capsules import load_model

    model = load_model(env / "capsnet-mnist.safetensors", "cpu")
    app = opened()
    a, _ = answer(model, the_input(app), "pgd", 0.1)
    for limit, verdict in ((a.distance_after - 0.01, "**flagged**"), (a.distance_after + 0.01, "not flagged")):
        sections = ood(CAPSNET_AUROCS, {"max_length": 0.6, "reconstruction_distance": limit})
        write_results(env, "capsnet-mnist", {"ood": sections, "adversarial": CAPSNET_ADV})
        app = opened()
        assert f"**Detector** (distance above {limit:.2f} flagged): the attacked image is {verdict} " \
               f"({a.distance_after:.2f})" in texts(app)


def test_eps_and_method_change_the_attack(env):
    from capsules import load_model

    model = load_model(env / "capsnet-mnist.safetensors", "cpu")
    app = opened()
    image = the_input(app)
    app.slider(key="attack_eps").set_value(0.0).run()  # eps 0: nothing changes
    assert metric(app, "CapsNet attacked") == metric(app, "CapsNet before")
    assert not array(charts(app)["fig_attack_capsnet"]["data"][1]["z"]).any()
    app.slider(key="attack_eps").set_value(0.3).run()
    a, shown = answer(model, image, "pgd", 0.3)
    assert a.fooled and metric(app, "CapsNet attacked") == shown
    assert app.query_params["eps"] == "0.3" and "attack" not in app.query_params
    app.radio(key="attack_method").set_value("fgsm").run()
    b, shown = answer(model, image, "fgsm", 0.3)
    assert metric(app, "CapsNet attacked") == shown and app.query_params["attack"] == "fgsm"
    np.testing.assert_allclose(array(charts(app)["fig_attack_capsnet"]["data"][2]["z"]), b.adversarial, atol=1e-6)
    assert not np.allclose(a.adversarial, b.adversarial)  # the two attacks differ
    app.radio(key="attack_method").set_value("pgd_adaptive").run()
    c, shown = answer(model, image, "pgd_adaptive", 0.3, threshold=9.0)  # the ood section's threshold
    assert metric(app, "CapsNet attacked") == shown and app.query_params["attack"] == "pgd_adaptive"
    assert "the CNN gets plain PGD-20" in texts(app)
    assert not app.exception


@pytest.mark.parametrize("params, said", [
    ({"eps": "1.5"}, "eps must be in"),
    ({"eps": "-0.1"}, "eps must be in"),
    ({"eps": "lots"}, "is not a number"),
    ({"eps": "0.8"}, "the slider takes 0 … 0.5"),
    ({"eps": "0.123"}, "in steps of 0.01"),
    ({"attack": "cw"}, "there is no attack 'cw'"),
    ({"fashion": "300"}, "300 is not in 0 … 299"),
])
def test_a_bad_value_in_the_address_falls_back_with_a_notice(env, params, said):
    app = opened(params)
    assert said in notices(app), notices(app)
    assert app.slider(key="attack_eps").value == 0.1 and app.radio(key="attack_method").value == "pgd"
    assert set(params).isdisjoint(app.query_params) and LIVE_CHARTS <= set(charts(app))


def test_a_link_restores_the_attack_and_a_fashion_image(env):
    from capsules import analysis, load_model
    from capsules.data.fashion import CLASSES, load_fashion_sample

    app = opened({"eps": "0.25", "attack": "fgsm", "fashion": "4"})
    assert not app.warning, notices(app)
    assert app.slider(key="attack_eps").value == 0.25 and app.radio(key="attack_method").value == "fgsm"
    images, labels = load_fashion_sample()
    assert f"**Input now:** Fashion-MNIST image #4 ({CLASSES[int(labels[4])]})" in texts(app)
    model = load_model(env / "capsnet-mnist.safetensors", "cpu")
    _, shown = answer(model, analysis.as_image(images[4].numpy()), "fgsm", 0.25)
    assert metric(app, "CapsNet attacked") == shown
    app.selectbox(key="fashion").set_value(None).run()  # back to the digit
    assert "fashion" not in app.query_params and "**Input now:** test digit" in texts(app)


def test_a_missing_fashion_sample_is_said_with_the_command(env, monkeypatch, tmp_path):
    from capsules.data import fashion

    monkeypatch.setattr(fashion, "SAMPLE", tmp_path / "nowhere.npz")
    app = opened({"fashion": "4"})
    info = " ".join(i.value for i in app.info)
    assert "No Fashion-MNIST images to pick" in info and "python -m capsules.data.fashion" in info
    assert fashion.INSTALL in info and "**Input now:** test digit" in texts(app) and LIVE_CHARTS <= set(charts(app))
    assert "fashion" not in app.query_params


def test_a_checkpoint_without_a_trained_decoder_says_so(env):
    from capsules import load_model

    model = load_model(env / "capsnet-mnist-r1-norecon.safetensors", "cpu")
    with pytest.raises(ValueError) as exc:
        outliers.check_decoder(model)
    app = opened({"model": "capsnet-mnist-r1-norecon", "attack": "pgd_adaptive"})
    assert "trained without the reconstruction loss" in notices(app)  # the adaptive attack asked for: refused
    assert app.radio(key="attack_method").options == ["FGSM", "PGD-20"]
    assert "Distance" not in [m.label for m in app.metric] and metric(app, "CapsNet attacked")
    info = " ".join(i.value for i in app.info)
    assert f"No reconstruction and no detector: {exc.value}" in info
    assert len(charts(app)["fig_attack_capsnet"]["data"]) == 3  # input, change, attacked: no reconstruction
    path = env / "capsnet-mnist-r1-norecon.safetensors"
    assert f"python -m capsules.experiments --checkpoint {path} --sections ood,adversarial" in info
    assert not app.exception

    app = opened({"attack": "pgd_adaptive"})  # the adaptive attack on the shipped CapsNet, then this model picked
    assert app.radio(key="attack_method").value == "pgd_adaptive"
    app.selectbox(key="model").set_value(str(path.resolve())).run()
    assert not app.exception and app.radio(key="attack_method").value == "pgd"
    assert "trained without the reconstruction loss" in texts(app) and "attack" not in app.query_params


def test_results_without_the_sections_give_the_command(env):
    path = env / "capsnet-mnist.safetensors"
    write_results(env, "capsnet-mnist", {})
    app = opened()
    info = " ".join(i.value for i in app.info)
    assert f"python -m capsules.experiments --checkpoint {path} --sections ood,adversarial" in info
    assert "hold no ood and no adversarial section" in info
    assert LIVE_CHARTS <= set(charts(app)) and not RESULT_CHARTS & {k for k in charts(app) if "capsnet" in k}
    assert "fig_accuracy_eps" not in charts(app) and "fig_hist_cnn_max_softmax" in charts(app)
    assert app.radio(key="attack_method").options == ["FGSM", "PGD-20"]  # no threshold: no adaptive attack
    write_results(env, "capsnet-mnist", {"ood": CAPSNET_OOD})  # the page reads the file on its next run
    app.run()
    info = " ".join(i.value for i in app.info)
    assert "hold no adversarial section" in info and "--sections adversarial" in info
    assert {"fig_hist_capsnet_max_length", "fig_auroc"} <= set(charts(app))
    write_results(env, "capsnet-mnist", None)  # no results at all: the core experiments too
    app.run()
    assert f"--checkpoint {path} --sections all" in " ".join(i.value for i in app.info) and not app.exception


# ------------------------------------------------------------------------------ in chromium


@pytest.mark.slow
@pytest.mark.browser
def test_a_drawn_digit_attacked_at_eps_0_3_changes_the_capsnets_answer():
    """Draw a 7 on /trust, pick FGSM then PGD-20 and move eps to 0.3 with the keyboard: the
    CapsNet's answer after the attack differs from before, and is the library's own attack of the
    very input the address holds (the drawing snapped to its grid); no exception on the page."""
    from urllib.parse import parse_qs, urlparse

    from capsules import load_model
    from capsules.checkpoint import SHIPPED
    from capsules.data.drawing import convert
    from capsules.data.strokes import rasterise_strokes
    from dashboard.browser import (
        CHROMIUM_ARGS, STROKE_SEVEN, draw, find_canvas, find_chromium, metric_value, streamlit_server, wait_idle,
    )
    from dashboard.url_state import decode_strokes
    from dashboard.widgets import CANVAS_SIDE, STROKE_WIDTH

    required = os.environ.get("CAPSULES_REQUIRE_BROWSER", "") not in ("", "0", "false", "no")
    chromium = find_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        if required:
            pytest.fail("the browser test is required here (CAPSULES_REQUIRE_BROWSER=1) but chromium or playwright "
                        "is missing")
        pytest.skip("no chromium executable or no playwright")
    if not SHIPPED.is_file():
        pytest.skip("the shipped checkpoint is missing: an untrained CapsNet is no test of an attack")

    with streamlit_server(env={"CAPSULES_DEVICE": "cpu"}, timeout=120) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url + "/trust", wait_until="domcontentloaded")
            page.wait_for_selector('[data-testid="stMetric"]', timeout=120_000)
            wait_idle(page)
            draw(page, find_canvas(page), STROKE_SEVEN)
            page.wait_for_function("() => document.body.innerText.includes('Input now: your drawing')",
                                   timeout=60_000)
            wait_idle(page)
            page.get_by_role("radio", name="FGSM").check(force=True)
            page.wait_for_function("() => location.search.includes('attack=fgsm')", timeout=60_000)
            wait_idle(page)
            page.get_by_role("radio", name="PGD-20", exact=True).check(force=True)
            page.wait_for_function("() => !location.search.includes('attack=')", timeout=60_000)
            wait_idle(page)
            page.get_by_role("slider", name="eps").focus()
            for _ in range(20):  # 0.1 to 0.3 in steps of 0.01
                page.keyboard.press("ArrowRight")
            page.wait_for_function("() => location.search.includes('eps=0.3')", timeout=60_000)
            wait_idle(page)
            before, after = metric_value(page, "CapsNet before"), metric_value(page, "CapsNet attacked")
            params = parse_qs(urlparse(page.url).query)
            assert page.locator('[data-testid="stException"]').count() == 0
            assert page.locator(".js-plotly-plot").count() >= 4  # the live attack's four figures at least
        finally:
            browser.close()

    assert before and after and before.split()[0] != after.split()[0], (before, after)
    strokes = decode_strokes(params["draw"][0], CANVAS_SIDE)
    image = convert(rasterise_strokes(strokes, CANVAS_SIDE, STROKE_WIDTH)[0]).image
    _, shown = answer(load_model(SHIPPED, "cpu"), image, "pgd", 0.3)
    assert after == shown and before.startswith("7")
