"""Links under Streamlit's AppTest: each page's state goes into its address as the widgets change,
a link opened in a new session restores the view (model, r, input, tab, the views' own choices),
and a bad or stale parameter falls back to the default with a short notice, never an exception.
The codecs themselves are tested in tests/dashboard/test_url_state.py; a link copied in a real browser and
opened in a fresh one in tests/dashboard/test_browser.py."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.dashboard.helpers import APP, metric, texts  # noqa: E402

MODELS = "app_pages/model_cards.py"
TWO_DIGITS = "app_pages/two_digits.py"


@pytest.fixture()
def env(monkeypatch, tmp_path):
    import torch

    monkeypatch.setenv("CAPSULES_DEVICE", "cpu")
    monkeypatch.setenv("CAPSULES_THREADS", str(torch.get_num_threads()))
    monkeypatch.delenv("CAPSULES_CHECKPOINT", raising=False)
    monkeypatch.setenv("CAPSULES_DATA", str(tmp_path / "no-mnist"))  # the built-in samples only


def opened(params: dict, page: str | None = None) -> AppTest:
    """A new session opened on a link with ``params`` (and ``page``). AppTest opens another page
    only after a first run (on the explorer): then the address is emptied, as a browser's is on a
    page switch, before the link's parameters go in."""
    app = AppTest.from_file(str(APP), default_timeout=90)
    if page:
        app.run()
        for k in list(app.query_params):
            del app.query_params[k]
        app.switch_page(page)
    for k, v in params.items():
        app.query_params[k] = v
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def notices(app) -> str:
    return " ".join(w.value for w in app.warning)


def shipped(name: str):
    from capsules.checkpoint import SHIPPED

    return SHIPPED.parent / f"{name}.safetensors"


def test_the_address_follows_the_explorer(env, samples):
    app = opened({})
    assert dict(app.query_params) == {"model": "capsnet-mnist",
                                      "test_digit": str(int(samples["indices"][app.selectbox(key="sample").value]))}
    three = int(np.flatnonzero(samples["labels"] == 3)[0])
    app.selectbox(key="sample").set_value(three).run()
    app.slider(key="iterations").set_value(5).run()
    app.session_state["view"] = "Pose perturbation"
    app.run()
    app.selectbox(key="pose_digit").set_value(4).run()
    app.slider(key="pose_2").set_value(0.1).run()
    app.slider(key="pose_6").set_value(-0.25).run()
    assert not app.exception, [e.value for e in app.exception]
    assert dict(app.query_params) == {"model": "capsnet-mnist", "test_digit": str(int(samples["indices"][three])),
                                      "r": "5", "tab": "pose-perturbation", "capsule": "4", "pose": "3:0.1,7:-0.25"}
    app.button(key="pose_reset").click().run()  # the winning capsule, no offsets: both leave the address
    assert "capsule" not in app.query_params and "pose" not in app.query_params
    app.slider(key="iterations").set_value(3).run()  # the model's own r is the default
    assert "r" not in app.query_params


def test_a_link_restores_the_explorer(env, samples):
    from capsules import analysis, load_model

    three = int(np.flatnonzero(samples["labels"] == 3)[0])
    idx = int(samples["indices"][three])
    app = opened({"model": "capsnet-mnist-r1", "r": "5", "test_digit": str(idx), "tab": "pose-perturbation",
                  "capsule": "4", "pose": "3:0.1,7:-0.25"})
    assert not app.warning, notices(app)
    assert app.selectbox(key="model").value == str(shipped("capsnet-mnist-r1").resolve())
    assert app.slider(key="iterations").value == 5 and app.selectbox(key="sample").value == three
    assert app.session_state["view"] == "Pose perturbation" and app.selectbox(key="pose_digit").value == 4
    assert [app.slider(key=f"pose_{d}").value for d in (2, 6, 0)] == pytest.approx([0.1, -0.25, 0.0])
    model = load_model(shipped("capsnet-mnist-r1"), "cpu")
    res = analysis.analyse(model, samples["images"][three].astype(np.float32) / 255, iterations=5)
    assert metric(app, "Prediction") == f"{res.prediction} ({res.confidence:.2f})"
    assert dict(app.query_params)["pose"] == "3:0.1,7:-0.25"  # kept as it came


def test_a_link_restores_a_drawing(env, samples):
    from capsules import analysis, load_model
    from capsules.data.drawing import convert
    from capsules.data.strokes import rasterise_strokes
    from dashboard.url_state import decode_strokes, encode_strokes
    from dashboard.widgets import CANVAS_SIDE, STROKE_WIDTH

    one = [{"pen": 0, "xy": [120, 40, 121, 120, 120, 200]}]
    code = encode_strokes(one, CANVAS_SIDE)
    app = opened({"draw": code, "tab": "evidence-map", "evidence_capsule": "7"})
    assert not app.warning, notices(app)
    assert "**Input now:** your drawing" in texts(app)
    strokes = decode_strokes(code, CANVAS_SIDE)
    assert app.session_state["canvas"] == {"strokes": strokes}  # the pad gets them back
    image = convert(rasterise_strokes(strokes, CANVAS_SIDE, STROKE_WIDTH)[0]).image
    res = analysis.analyse(load_model(None, "cpu"), image)
    assert metric(app, "Prediction") == f"{res.prediction} ({res.confidence:.2f})"
    assert app.selectbox(key="evidence_digit").value == 7
    app.session_state["canvas"] = {"strokes": []}  # Clear: back to the sample, the drawing leaves the address
    app.run()
    assert "draw" not in app.query_params and "**Input now:** test digit" in texts(app)


def test_a_link_restores_each_view_s_own_controls(env):
    app = opened({"tab": "transform-explorer", "tf": "rotate:15,scale:1.1", "sweep": "scale"})
    assert not app.warning, notices(app)
    assert [app.slider(key=f"tf_{k}").value for k in ("rotate", "scale", "shear")] == pytest.approx([15, 1.1, 0])
    assert app.selectbox(key="tf_sweep").value == "scale"
    app.slider(key="tf_shear").set_value(-12.0).run()
    assert app.query_params["tf"] == "rotate:15,scale:1.1,shear:-12"
    app.button(key="tf_reset").click().run()  # the identity: out of the address
    assert "tf" not in app.query_params and app.query_params["sweep"] == "scale"

    app = opened({"tab": "routing-step-by-step", "t": "2", "coupling": "raw", "routing_capsule": "3"})
    assert not app.warning, notices(app)
    assert app.slider(key="routing_iteration").value == 2 and app.selectbox(key="routing_digit").value == 3
    assert app.radio(key="routing_view").value == "c itself (white = 1/10)"
    app = opened({"tab": "evidence-map", "evidence_mode": "projected", "evidence_spread": "mean"})
    assert not app.warning, notices(app)
    assert app.radio(key="evidence_mode").value == "contribution to |sⱼ|"
    assert app.radio(key="evidence_spread").value == "its whole field (mean)"
    app.radio(key="evidence_mode").set_value("votes c·|û|").run()  # the default: out of the address
    assert "evidence_mode" not in app.query_params and app.query_params["evidence_spread"] == "mean"


@pytest.mark.parametrize("params, said", [
    ({"model": "capsnet-imagenet"}, "there is no model 'capsnet-imagenet' here"),
    ({"r": "42"}, "42 is not in 1 … 10"),
    ({"tab": "confusion"}, "there is no tab 'confusion'"),
    ({"test_digit": "seven"}, "is not an index of the MNIST test set"),
    ({"test_digit": "99999"}, "not among the built-in samples"),  # no MNIST here: its range is not known
    ({"draw": "AAA!!"}, "does not belong in a drawing"),
    ({"draw": "B" + "A" * 20}, "uses pen 2; this pad has 1"),
    ({"tab": "pose-perturbation", "capsule": "12"}, "12 is not in 0 … 9"),
    ({"tab": "pose-perturbation", "pose": "3:0.7"}, "0.7 is not a value of pose dimension 3"),
    ({"tab": "pose-perturbation", "pose": "17:0.1"}, "no pose dimension 17"),
    ({"tab": "transform-explorer", "tf": "rotate:100"}, "100 is not a value of transform rotate"),
    ({"tab": "transform-explorer", "sweep": "warp"}, "there is no swept transform 'warp'"),
    ({"tab": "routing-step-by-step", "t": "4"}, "4 is not in 1 … 3"),
    ({"tab": "evidence-map", "evidence_mode": "loud"}, "there is no evidence map 'loud'"),
    ({"tab": "![x](http://example.com/a.png)"}, "there is no tab '\\!\\[x\\]\\(http\\://"),  # no image drawn
])
def test_a_bad_parameter_falls_back_with_a_notice(env, samples, params, said):
    app = opened(params)
    assert said in notices(app), notices(app)
    assert len(app.warning) == 1 and metric(app, "Prediction")
    assert "Input now:** test digit #" in texts(app)  # a sample, the default input
    name, bad = list(params.items())[-1]
    assert app.query_params.get(name) != bad  # the bad value left the address (model, test_digit: the defaults took it)
    assert app.query_params.get("model") == "capsnet-mnist"
    app.run()  # said once
    assert not app.warning


def test_the_two_digit_page_keeps_its_pair_and_tab(env):
    app = opened({"pair": "17", "tab": "routing-iterations"}, TWO_DIGITS)
    assert not app.warning, notices(app)
    assert app.number_input(key="pair").value == 17 and app.session_state["pair_view"] == "Routing iterations"
    assert "Pair #17:" in texts(app)
    app.number_input(key="pair").set_value(3).run()
    assert app.query_params["pair"] == "3"
    bad = opened({"pair": "100000"}, TWO_DIGITS)
    assert "test pair" in notices(bad) and bad.number_input(key="pair").value == 0 and "pair" not in bad.query_params


def test_the_models_page_tells_a_models_story_and_keeps_it(env):
    app = opened({"card": "capsnet-mnist-r1"}, MODELS)
    assert not app.warning, notices(app)
    assert app.selectbox(key="card").value == "capsnet-mnist-r1"
    said = texts(app)
    assert "#### `capsnet-mnist-r1`: r = 1, with reconstruction, MNIST" in said
    assert "Within the noise?" in said and "PrimaryCaps 32 types × 6×6 (1,152 capsules" in said
    code = " ".join(c.value for c in app.code)
    assert "python -m capsules.train --out ~/capsules-runs/r1-recon --epochs 10 --iterations 1" in code
    assert "python -m capsules.ship ~/capsules-runs/r1-recon/last.safetensors --name capsnet-mnist-r1" in code
    assert "has no learning curve" in " ".join(i.value for i in app.info)
    assert metric(app, "Parameters") == "8.22 M"
    bad = opened({"card": "capsnet-imagenet"}, MODELS)
    assert "there is no shipped model 'capsnet-imagenet'" in notices(bad)
    assert bad.selectbox(key="card").value == "capsnet-mnist" and not bad.exception


def test_an_upload_cannot_be_shared_and_the_page_says_so(env, samples):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(255 - samples["images"][0]).save(buf, format="PNG")  # dark ink on light paper, as a scan
    app = opened({})
    test_digit = app.query_params["test_digit"]
    app.get("file_uploader")[0].upload("scan.png", buf.getvalue(), "image/png").run()
    assert not app.exception, [e.value for e in app.exception]
    assert "**Input now:** upload `scan.png`" in texts(app)
    assert (f"An upload cannot be shared: a link to this view opens test digit #{test_digit} in its place."
            in texts(app))
    assert dict(app.query_params) == {"model": "capsnet-mnist", "test_digit": test_digit}  # nothing of the upload


@pytest.mark.data
def test_a_test_digit_beyond_the_test_set_falls_back_with_a_notice(env, monkeypatch, data_dir):
    monkeypatch.setenv("CAPSULES_DATA", str(data_dir))
    app = opened({"test_digit": "10000"})
    assert "The MNIST test set has no digit #10000 (it has 10,000)" in notices(app) and len(app.warning) == 1
    assert "Input now:** test digit #" in texts(app) and app.query_params["test_digit"] != "10000"
