"""The Attacks & outliers page (dashboard/app_pages/trust.py, /trust) under AppTest, on a folder of
copied checkpoints whose results hold the sections of tests/dashboard/test_trust_figures.py (so that every
number on the page is known), and in chromium: a drawn digit attacked at eps 0.3. Its curves,
sentences and figures are tested without Streamlit in tests/dashboard/test_trust_figures.py."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from capsules import experiments
from capsules.analysis import attacks, outliers
from dashboard.figures import trust_notes as notes

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.dashboard.helpers import APP, SAMPLES, array, charts, metric, texts  # noqa: E402
from tests.dashboard.test_trust_figures import CAPSNET_ADV, CAPSNET_AUROCS, CAPSNET_OOD, CNN_ADV, CNN_OOD, ood  # noqa: E402


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
    for sentence in (notes.accuracy_sentence(CAPSNET_ADV, CNN_ADV), notes.detection_sentence(CAPSNET_ADV),
                     notes.auroc_sentence(CAPSNET_OOD, CNN_OOD)):
        assert sentence in said
    assert "the CNN is ahead at eps 0.05" in said and "the CNN is ahead with its max softmax" in said
    model = load_model(env / "capsnet-mnist.safetensors", "cpu")
    a, shown = answer(model, the_input(app), "pgd", 0.1)  # the defaults: PGD-20 at eps 0.1
    assert metric(app, "CapsNet attacked") == shown and metric(app, "Distance") == f"{a.distance_after:.2f}"
    scores = outliers.image_scores(model, the_input(app))
    assert notes.score_sentence("max_length", scores["max_length"], CAPSNET_OOD) in said


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
    from benchmarks.browser import (
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
