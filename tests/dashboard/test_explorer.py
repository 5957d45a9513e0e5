"""The explorer page (dashboard/app_pages/explorer.py) under Streamlit's AppTest (no browser; the
canvas component does not render here, so the page runs from its built-in sample digits)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.dashboard.helpers import APP, array, charts, expected_prediction, metric, open_view, texts  # noqa: E402


def test_opens_on_a_sample_with_prediction_and_charts(at, app_model, samples):
    assert not at.error
    k = at.selectbox(key="sample").value
    assert samples["labels"][k] == 7  # the page opens on a 7
    assert metric(at, "Prediction") == expected_prediction(app_model, samples["images"][k])
    found = charts(at)
    for key in ("fig_pair", "fig_lengths", "fig_lengths_iter", "fig_length_change"):
        assert key in found, key
    assert "fig_perturbation" not in found  # closed tabs compute nothing
    assert not [m for m in at.metric if m.label == "Compute, this rerun"]  # diagnostics: ?debug=1 only
    views = {"Routing step by step": ("fig_coupling", "fig_agreement_tiles", "fig_mass"),
             "Evidence map": ("fig_evidence",), "Routing iterations": ("fig_sweep_lengths", "fig_sweep_strip"),
             "Pose perturbation": ("fig_pose_live", "fig_pose_vector", "fig_perturbation"),
             "Transform explorer": ("fig_tf_pair", "fig_tf_lengths", "fig_tf_pose", "fig_tf_sweep")}
    for view, keys in views.items():
        found = charts(open_view(at, view))
        for key in keys:
            assert key in found, (view, key)
        assert "fig_pair" in found and metric(at, "Prediction")
    assert "fig_agreement" not in charts(open_view(at, "Routing step by step"))  # its expander is closed
    at.session_state["routing_every"] = True  # opened: built and drawn
    at.run()
    assert "fig_agreement" in charts(at)
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
    for option in at.radio(key="evidence_spread").options:
        at.radio(key="evidence_spread").set_value(option).run()
        assert not at.exception, option
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


def metric_proto(app, label: str):
    found = [m.proto for m in app.metric if m.label == label]
    assert found, f"no metric labelled {label!r}"
    return found[0]


def test_routing_metrics_have_no_arrows_and_iteration_1_is_a_tie(at):
    from streamlit.proto.Metric_pb2 import Metric

    open_view(at, "Routing step by step")
    labels = ["Routing entropy", "Largest |c − 1/10|", "Most coupled primary"]
    labels.append(next(m.label for m in at.metric if m.label.startswith("Coupling mass")))
    for t in (3, 1):
        at.slider(key="routing_iteration").set_value(t).run()
        assert not at.exception
        for label in labels:  # none of them is a change over time: no up or down arrow
            assert metric_proto(at, label).direction == Metric.MetricDirection.NONE, (t, label)
    assert metric(at, "Most coupled primary") == "none: all equal"
    assert metric_proto(at, "Most coupled primary").delta == "c = 0.1000 for every primary"
    mass = metric_proto(at, labels[-1])
    assert mass.body == "115.200" and mass.delta == "uniform: 115.2"
    at.slider(key="routing_iteration").set_value(3).run()
    assert metric(at, "Most coupled primary").startswith("type ")


def test_raw_coupling_is_labelled_c(at, app_model, samples):
    from capsules import analysis
    from dashboard.figures.routing import coupling_tiles

    open_view(at, "Routing step by step")
    options = at.radio(key="routing_view").options
    raw = next(o for o in options if o.startswith("c itself"))
    at.radio(key="routing_view").set_value(raw).run()
    heat = charts(at)["fig_coupling"]["data"][0]
    assert heat["colorbar"]["title"]["text"] == "c" and heat["zmid"] == pytest.approx(0.1)
    res = analysis.analyse(app_model, samples["images"][at.selectbox(key="sample").value])
    expected = coupling_tiles(res.c[-1, :, res.prediction])  # c itself, not c - 1/10
    np.testing.assert_allclose(array(heat["z"]), expected, rtol=1e-5, atol=1e-7)


def test_pose_offsets_reset_when_the_input_changes(at, samples):
    open_view(at, "Pose perturbation")
    at.slider(key="pose_3").set_value(0.25).run()
    assert at.slider(key="pose_3").value == 0.25  # kept while the input stays
    at.selectbox(key="pose_digit").set_value(2).run()
    assert at.slider(key="pose_3").value == 0.25
    k = int(np.flatnonzero(samples["labels"] == 3)[0])
    at.selectbox(key="sample").set_value(k).run()
    assert not at.exception
    assert all(at.slider(key=f"pose_{d}").value == 0.0 for d in range(16))


def test_iterations_view_shows_saturation_and_the_training_r(at, app_model):
    from capsules import analysis

    open_view(at, "Routing iterations")
    at.slider(key="iterations").set_value(10).run()
    assert not at.exception
    text = " ".join(c.value for c in at.caption)
    trained = analysis.training_iterations(app_model.metadata)
    if trained is not None:
        assert f"training used r = {trained}" in text
    assert "at k = 10," in text and "approach length 1" in text
    lengths = array(charts(at)["fig_sweep_lengths"]["data"][0]["y"])
    assert lengths.shape == (10,)


def test_reading_notes():
    from capsules import analysis
    from capsules.data.drawing import Converted
    from dashboard.app_pages.explorer import Input, reading_notes

    class Lengths:  # what reading_notes reads of an analysis: r = 3, the lengths
        iterations, sweep = 3, None

        def __init__(self, lengths):
            self.lengths = np.asarray(lengths)
            self.reading = analysis.reading(self.lengths)

    blank = np.zeros((28, 28), np.float32)
    sample = Input(blank, "test digit", 7, None, drawn=False)
    assert reading_notes(Lengths([0, 0, 0, 0, 0, 0, 0, 0.95, 0, 0]), sample, 3) == []
    smiley = reading_notes(Lengths([0.47, 0.2, 0, 0, 0, 0, 0, 0, 0, 0.1]), sample, 3)
    assert len(smiley) == 1 and "No capsule is longer than 0.5" in smiley[0] and "0.47" in smiley[0]
    hash_ = reading_notes(Lengths([0, 0, 0, 0, 0.88, 0, 0, 0.67, 0, 0]), sample, 3)
    assert len(hash_) == 1 and "4 (0.88), 7 (0.67)" in hash_[0] and "overlapping" in hash_[0]
    hesitant = reading_notes(Lengths([0, 0, 0, 0, 0.7, 0, 0, 0.1, 0, 0]), sample, 3)
    assert len(hesitant) == 1 and "m⁺ = 0.9" in hesitant[0]
    dot = Input(blank, "your drawing", None, Converted(blank, extent=0.05), drawn=True)
    notes = reading_notes(Lengths([0.97, 0, 0, 0, 0, 0, 0, 0, 0, 0]), dot, 3)
    assert len(notes) == 1 and "5% of the canvas" in notes[0] and "14×" in notes[0]


def test_long_capsules_at_r_10_are_put_down_to_r(app_model, samples):
    """At r = 10 several capsules of an ordinary digit are long; the note says it is routing
    longer than training did, and which capsules are long at training's r."""
    from capsules import analysis
    from dashboard.app_pages.explorer import Input, reading_notes

    k = int(np.flatnonzero(samples["labels"] == 7)[0])
    image = samples["images"][k]
    res = analysis.analyse(app_model, image, iterations=10)
    assert res.reading.several  # the shipped model: 7 (1.00), 3 (0.95), 9 (0.89), ...
    notes = reading_notes(res, Input(analysis.as_image(image), "test digit", 7, None, drawn=False), 3)
    assert len(notes) == 1 and "more iterations than training's r = 3" in notes[0]
    assert f"with r = 3 the long ones are {res.prediction} (" in notes[0]
    assert "overlapping" not in notes[0]


def test_an_unreadable_drawing_shows_its_reason(monkeypatch):
    """The page catches the preprocessing module's error for what the pad sends, and only it."""
    import dashboard.widgets as widgets

    messages = []
    monkeypatch.setattr(widgets.st, "warning", messages.append)
    monkeypatch.setattr(widgets, "drawing_pad", lambda key, **kw: [{"pen": 0, "xy": [1, 2, 3]}])
    assert widgets.read_drawing() is None and "even count" in messages[0]

    stroke = [{"pen": 0, "xy": [120, 40, 120, 200]}]
    monkeypatch.setattr(widgets, "drawing_pad", lambda key, **kw: stroke)
    assert widgets.read_drawing().image.shape == (28, 28)  # a good stroke is read
    monkeypatch.setattr(widgets, "drawing_pad", lambda key, **kw: [])
    assert widgets.read_drawing() is None and len(messages) == 1  # an emptied pad: the sample, quietly

    def broken(array):
        raise RuntimeError("a bug in preprocessing")

    monkeypatch.setattr(widgets, "drawing_pad", lambda key, **kw: stroke)
    monkeypatch.setattr(widgets, "convert", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        widgets.read_drawing()


def test_the_pad_sends_its_strokes_to_the_page(at, app_model):
    """Strokes in the pad's state (where the browser puts them on pen-up) replace the sample: the
    page predicts their drawing, snapped to the grid a link keeps (dashboard.url_state), and sends
    them back to the pad; emptied, it returns to the sample."""
    from capsules import analysis
    from capsules.data.drawing import convert
    from capsules.data.strokes import rasterise_strokes
    from dashboard.url_state import snap_strokes
    from dashboard.widgets import CANVAS_SIDE, STROKE_WIDTH

    sample_prediction = metric(at, "Prediction")
    stroke = [{"pen": 0, "xy": [120, 40, 121, 120, 120, 200]}]
    at.session_state["canvas"] = {"strokes": stroke}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("**Input now:** your drawing" in c.value for c in at.caption)
    snapped = snap_strokes(stroke, CANVAS_SIDE)
    assert snapped != stroke
    res = analysis.analyse(app_model, convert(rasterise_strokes(snapped, CANVAS_SIDE, STROKE_WIDTH)[0]).image)
    assert metric(at, "Prediction") == f"{res.prediction} ({res.confidence:.2f})"
    (pad,) = [c for c in at.get("bidi_component") if "strokes" in json.loads(c.proto.json or "{}")]
    assert json.loads(pad.proto.json)["strokes"] == stroke  # back to the pad
    at.session_state["canvas"] = {"strokes": []}  # Clear
    at.run()
    assert any("**Input now:** test digit" in c.value for c in at.caption)
    assert metric(at, "Prediction") == sample_prediction


@pytest.mark.data
def test_the_explorer_opens_a_test_digit_from_the_data_folder(monkeypatch, data_dir, mnist_test, app_model,
                                                            samples):
    images, labels = mnist_test
    idx = next(i for i in range(len(labels)) if i not in set(samples["indices"].tolist()))
    monkeypatch.setenv("CAPSULES_DEVICE", "cpu")
    monkeypatch.delenv("CAPSULES_CHECKPOINT", raising=False)
    monkeypatch.setenv("CAPSULES_DATA", str(data_dir))
    app = AppTest.from_file(str(APP), default_timeout=60)
    app.query_params["test_digit"] = str(idx)
    app.run()
    assert not app.exception and not app.warning
    assert f"test digit #{idx} (label {int(labels[idx])}, from the MNIST test set)" in texts(app)
    assert metric(app, "Prediction") == expected_prediction(app_model, images[idx].numpy())


def test_the_explorer_says_why_it_cannot_open_a_test_digit(monkeypatch, tmp_path, samples):
    idx = next(i for i in range(10000) if i not in set(samples["indices"].tolist()))
    monkeypatch.setenv("CAPSULES_DEVICE", "cpu")
    monkeypatch.delenv("CAPSULES_CHECKPOINT", raising=False)
    monkeypatch.setenv("CAPSULES_DATA", str(tmp_path))  # no MNIST there
    for value, said in ((str(idx), ["not among the built-in samples", "python -m capsules.data fetch"]),
                        ("seven", ["is not an index of the MNIST test set"])):
        app = AppTest.from_file(str(APP), default_timeout=60)
        app.query_params["test_digit"] = value
        app.run()
        assert not app.exception
        warning = " ".join(w.value for w in app.warning)
        assert all(s in warning for s in said), warning
        assert "Input now:** test digit #" in texts(app)  # a sample is shown instead
        assert metric(app, "Prediction")
