"""dashboard/app.py under Streamlit's AppTest (no browser; the canvas component does not render
here, so the app runs from its built-in sample digits)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboard" / "app.py"
SAMPLES = ROOT / "dashboard" / "samples.npz"


@pytest.fixture(scope="module")
def app_model():
    """The model the app loads: the shipped checkpoint, else the seeded untrained CapsNet."""
    import torch

    from capsules import CapsNet, load_model
    from capsules.checkpoint import SHIPPED

    if SHIPPED.is_file():
        return load_model(SHIPPED, "cpu")
    torch.manual_seed(0)
    return CapsNet().eval()


@pytest.fixture(scope="module")
def samples():
    with np.load(SAMPLES, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture()
def at(monkeypatch):
    monkeypatch.setenv("CAPSULES_DEVICE", "cpu")
    monkeypatch.delenv("CAPSULES_CHECKPOINT", raising=False)
    app = AppTest.from_file(str(APP), default_timeout=60)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def open_view(app, name: str):
    """Select a tab (the app computes only the open one) and rerun."""
    app.session_state["view"] = name
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def metric(app, label: str) -> str:
    values = [m.value for m in app.metric if m.label == label]
    assert values, f"no metric labelled {label!r}"
    return values[0]


def charts(app) -> dict[str, dict]:
    """The plotly charts on the page, by the key suffix of their element id."""
    out = {}
    for el in app.get("plotly_chart"):
        key = el.proto.id.rsplit("-", 1)[-1]
        out[key] = json.loads(el.proto.spec)
    return out


def array(value) -> np.ndarray:
    """A plotly JSON array: a plain list, or plotly's typed-array form {dtype, bdata, shape}."""
    if isinstance(value, dict) and "bdata" in value:
        a = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if shape:
            a = a.reshape([int(n) for n in str(shape).split(",")])
        return a.astype(float)
    return np.array(value, dtype=float)


def expected_prediction(model, image_u8) -> str:
    from capsules import analysis as A

    res = A.analyse(model, image_u8.astype(np.float32) / 255.0)
    return f"{res.prediction} ({res.confidence:.2f})"


def test_samples_file(samples):
    assert SAMPLES.stat().st_size < 1_000_000
    n = len(samples["labels"])
    assert samples["images"].shape == (n, 28, 28) and samples["images"].dtype == np.uint8
    for key in ("labels", "indices", "predictions"):
        assert samples[key].shape == (n,) and samples[key].dtype == np.int64
    assert np.bincount(samples["labels"], minlength=10).min() >= 20
    assert (samples["misclassified"] == (samples["predictions"] != samples["labels"])).all()


def test_opens_on_a_sample_with_prediction_and_charts(at, app_model, samples):
    assert not at.error
    k = at.selectbox(key="sample").value
    assert samples["labels"][k] == 7  # the page opens on a 7
    assert metric(at, "Prediction") == expected_prediction(app_model, samples["images"][k])
    found = charts(at)
    for key in ("fig_pair", "fig_lengths", "fig_lengths_iter", "fig_length_change"):
        assert key in found, key
    assert "fig_perturbation" not in found  # closed tabs compute nothing
    compute = metric(at, "Compute, last interaction")
    assert compute.endswith(" ms") and float(compute.split()[0]) > 0
    views = {"Routing step by step": ("fig_coupling", "fig_agreement_tiles", "fig_mass", "fig_agreement"),
             "Evidence map": ("fig_evidence",), "Routing iterations": ("fig_sweep_lengths", "fig_sweep_strip"),
             "Pose perturbation": ("fig_pose_live", "fig_pose_vector", "fig_perturbation"),
             "Transform explorer": ("fig_tf_pair", "fig_tf_lengths", "fig_tf_pose", "fig_tf_sweep")}
    for view, keys in views.items():
        found = charts(open_view(at, view))
        for key in keys:
            assert key in found, (view, key)
        assert "fig_pair" in found and metric(at, "Prediction")
    assert not at.error


def test_choosing_another_sample_changes_the_prediction(at, app_model, samples):
    k = int(np.flatnonzero(samples["labels"] == 3)[0])
    at.selectbox(key="sample").set_value(k).run()
    assert not at.exception
    assert metric(at, "Prediction") == expected_prediction(app_model, samples["images"][k])


def test_routing_iterations_slider(at):
    open_view(at, "Evidence map")
    assert len(charts(at)["fig_evidence"]["frames"]) == 3
    at.slider(key="iterations").set_value(5).run()
    assert not at.exception
    assert len(charts(at)["fig_evidence"]["frames"]) == 5
    open_view(at, "Routing step by step")
    assert at.slider(key="routing_iteration").max == 5
    found = charts(at)
    assert np.nanmax(np.abs(array(found["fig_coupling"]["data"][0]["z"]))) > 0  # iteration 5 moved
    at.slider(key="routing_iteration").set_value(1).run()
    assert not at.exception
    # iteration 1 is uniform coupling: the c - 1/10 map is zero everywhere
    z = array(charts(at)["fig_coupling"]["data"][0]["z"])
    assert z.shape == (27, 55) and np.nanmax(np.abs(z)) < 1e-7
    at.slider(key="routing_iteration").set_value(5).run()
    at.slider(key="iterations").set_value(3).run()  # the iteration slider follows r down
    assert not at.exception and at.slider(key="routing_iteration").value <= 3
    at.slider(key="iterations").set_value(1).run()  # a single iteration: no iteration slider
    assert not at.exception
    assert not [s for s in at.slider if s.key == "routing_iteration"]


def test_pose_slider_changes_the_live_reconstruction(at):
    open_view(at, "Pose perturbation")
    before = charts(at)["fig_pose_live"]
    at.slider(key="pose_3").set_value(0.25).run()
    assert not at.exception
    after = charts(at)["fig_pose_live"]
    assert np.abs(array(before["data"][0]["z"]) - array(after["data"][0]["z"])).max() > 1e-4
    at.button(key="pose_reset").click().run()
    assert not at.exception
    assert at.slider(key="pose_3").value == 0.0
    at.selectbox(key="pose_digit").set_value(4).run()
    assert not at.exception


def test_other_controls_rerun_cleanly(at):
    open_view(at, "Routing step by step")
    at.radio(key="routing_view").set_value(at.radio(key="routing_view").options[1]).run()
    open_view(at, "Evidence map")
    for option in at.radio(key="evidence_mode").options[1:]:
        at.radio(key="evidence_mode").set_value(option).run()
        assert not at.exception, option
    at.toggle(key="evidence_normalize").set_value(False).run()
    at.selectbox(key="evidence_digit").set_value(1).run()
    assert not at.exception
    open_view(at, "Transform explorer")
    at.slider(key="tf_rotate").set_value(20.0).run()
    at.selectbox(key="tf_sweep").set_value("scale").run()
    assert not at.exception
    assert metric(at, "Prediction (transformed)")
    at.button(key="tf_reset").click().run()
    assert at.slider(key="tf_rotate").value == 0.0
    assert not at.exception and not at.error


def test_make_samples_selection():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "scripts" / "make_samples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 50)
    predictions = labels.copy()
    wrong = rng.choice(500, size=80, replace=False)
    predictions[wrong] = (labels[wrong] + 1) % 10
    confidence = rng.random(500).astype(np.float32)
    indices, flags = mod.select(labels, predictions, confidence, per_class=20, max_misclassified=60, seed=0)
    assert len(set(indices.tolist())) == len(indices)  # no digit twice
    assert np.bincount(labels[indices[:200]], minlength=10).tolist() == [20] * 10
    np.testing.assert_array_equal(flags, predictions[indices] != labels[indices])
    extra = indices[200:]
    assert (predictions[extra] != labels[extra]).all()
    # the 60 least confident mistakes are all in, whether drawn per class or added
    least = wrong[np.argsort(confidence[wrong], kind="stable")][:60]
    assert set(least.tolist()) <= set(indices.tolist())
    assert not (set(wrong.tolist()) - set(least.tolist())) & set(extra.tolist())
