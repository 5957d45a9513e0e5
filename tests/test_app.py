"""dashboard/app.py (the entry) and its explorer page under Streamlit's AppTest (no browser; the
canvas component does not render here, so the page runs from its built-in sample digits)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from capsules import zoo as Z  # noqa: E402

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
    import torch

    monkeypatch.setenv("CAPSULES_DEVICE", "cpu")
    monkeypatch.setenv("CAPSULES_THREADS", str(torch.get_num_threads()))  # keep the tests' own
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
    from capsules import analysis as A
    from dashboard.figures.routing import coupling_tiles

    open_view(at, "Routing step by step")
    options = at.radio(key="routing_view").options
    raw = next(o for o in options if o.startswith("c itself"))
    at.radio(key="routing_view").set_value(raw).run()
    heat = charts(at)["fig_coupling"]["data"][0]
    assert heat["colorbar"]["title"]["text"] == "c" and heat["zmid"] == pytest.approx(0.1)
    res = A.analyse(app_model, samples["images"][at.selectbox(key="sample").value])
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
    from capsules import analysis as A

    open_view(at, "Routing iterations")
    at.slider(key="iterations").set_value(10).run()
    assert not at.exception
    text = " ".join(c.value for c in at.caption)
    trained = A.training_iterations(app_model.metadata)
    if trained is not None:
        assert f"training used r = {trained}" in text
    assert "at k = 10," in text and "approach length 1" in text
    lengths = array(charts(at)["fig_sweep_lengths"]["data"][0]["y"])
    assert lengths.shape == (10,)


def test_reading_notes():
    from capsules import analysis as A
    from capsules.data.drawing import Converted
    from dashboard.app_pages.explorer import Input, reading_notes

    class Lengths:  # what reading_notes reads of an analysis: r = 3, the lengths
        iterations, sweep = 3, None

        def __init__(self, lengths):
            self.lengths = np.asarray(lengths)
            self.reading = A.reading(self.lengths)

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
    from capsules import analysis as A
    from dashboard.app_pages.explorer import Input, reading_notes

    k = int(np.flatnonzero(samples["labels"] == 7)[0])
    image = samples["images"][k]
    res = A.analyse(app_model, image, iterations=10)
    assert res.reading.several  # the shipped model: 7 (1.00), 3 (0.95), 9 (0.89), ...
    notes = reading_notes(res, Input(A.as_image(image), "test digit", 7, None, drawn=False), 3)
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
    from capsules import analysis as A
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
    res = A.analyse(app_model, convert(rasterise_strokes(snapped, CANVAS_SIDE, STROKE_WIDTH)[0]).image)
    assert metric(at, "Prediction") == f"{res.prediction} ({res.confidence:.2f})"
    (pad,) = [c for c in at.get("bidi_component") if "strokes" in json.loads(c.proto.json or "{}")]
    assert json.loads(pad.proto.json)["strokes"] == stroke  # back to the pad
    at.session_state["canvas"] = {"strokes": []}  # Clear
    at.run()
    assert any("**Input now:** test digit" in c.value for c in at.caption)
    assert metric(at, "Prediction") == sample_prediction


def test_the_server_works_on_one_thread_unless_told(monkeypatch):
    """Each script run is a thread of its own; torch's thread count set in one is what later
    threads start with."""
    import threading

    import torch

    def threads_of_a_new_thread() -> int:
        seen = []
        worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        worker.start()
        worker.join()
        return seen[0]

    before = torch.get_num_threads()
    monkeypatch.setenv("CAPSULES_DEVICE", "cpu")
    monkeypatch.delenv("CAPSULES_THREADS", raising=False)
    try:
        AppTest.from_file(str(APP), default_timeout=60).run()
        assert threads_of_a_new_thread() == 1
        monkeypatch.setenv("CAPSULES_THREADS", "2")
        AppTest.from_file(str(APP), default_timeout=60).run()
        assert threads_of_a_new_thread() == 2
    finally:
        torch.set_num_threads(before)


def test_figures_are_built_once_per_numbers():
    from dashboard.figures.base import image_figure, lengths_figure
    from dashboard.figures.pose import pose_figure
    from dashboard.views import figure

    lengths = np.linspace(0, 0.9, 10)
    first = figure(lengths_figure, lengths, 9, height=300)
    assert figure(lengths_figure, lengths.copy(), 9, height=300) is first  # same numbers: same figure
    assert figure(lengths_figure, lengths, 8, height=300) is not first
    changed = lengths.copy()
    changed[0] = 0.5
    assert figure(lengths_figure, changed, 9, height=300) is not first
    other = figure(pose_figure, lengths, 9, height=300)  # the same arguments to another figure: its own
    assert other is not first and other.layout.title.text != first.layout.title.text
    assert figure(image_figure, np.zeros((28, 28)), "x").data[0].type != "bar"


def test_make_samples_selection():
    from dashboard import samples as mod

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


# ------------------------------------------------------------------------------ the experiments page


EXPERIMENT_CHARTS = ("fig_iterations", "fig_dynamics", "fig_ablations", "fig_robustness", "fig_confusion")


def open_experiments(app):
    app.switch_page("app_pages/experiments.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def texts(app) -> str:
    return " ".join(m.value for m in app.markdown) + " " + " ".join(c.value for c in app.caption)


def test_experiments_page_shows_the_shipped_results(at, shipped_results):
    from capsules.report import iteration_intervals

    open_experiments(at)
    assert not at.error and not [b for b in at.button if b.key == "compute"]  # shipped: nothing to compute
    found = charts(at)
    for key in EXPERIMENT_CHARTS:
        assert key in found, key
    accuracy = found["fig_iterations"]["data"][0]
    np.testing.assert_allclose(array(accuracy["y"]), list(shipped_results["iterations"].values()))
    np.testing.assert_allclose(array(accuracy["y"]) + array(accuracy["error_y"]["array"]),
                               iteration_intervals(shipped_results)[:, 1])
    rotate = found["fig_robustness"]["data"][0]
    np.testing.assert_allclose(array(rotate["y"]), [a for _, a in shipped_results["robustness"]["rotate"]])
    text = texts(at)
    own = shipped_results["ablations"]["routing"]
    assert f"{own['accuracy']:.2f}% [{own['interval'][0]:.2f}, {own['interval'][1]:.2f}]" in text
    assert f"On {shipped_results['robustness_subset']:,} test images" in text
    assert "Zhao et al. used the training set" in text and "Paik et al." in text and "Gu & Tresp" in text
    assert f"{len(shipped_results['errors'])} of 10,000 test digits are wrong" in text
    assert f"in {shipped_results['seconds']:.0f} s" in text
    # routing at inference across the shipped zoo, under Table 1: its table and its sentence
    zoo = Z.routing_at_inference()
    assert len(zoo.models) >= 1 and all(line in text for line in zoo.findings)
    assert any(list(d.value.columns) == list(Z.ROUTING_COLUMNS) and d.value.to_dict("records") == zoo.records()
               for d in at.dataframe)
    # every misclassified digit of the shipped model has its button (one page of the gallery)
    keys = {b.key for b in at.button}
    assert {f"open_{e['index']}" for e in shipped_results["errors"]} <= keys


def test_a_misclassified_digit_opens_in_the_explorer(at, app_model, samples, shipped_results):
    error = shipped_results["errors"][0]
    idx = error["index"]
    open_experiments(at)
    at.selectbox(key="errors_true").set_value(error["label"]).run()  # the filters keep it
    at.selectbox(key="errors_pred").set_value(error["prediction"]).run()
    assert f"open_{idx}" in {b.key for b in at.button}
    at.button(key=f"open_{idx}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.query_params["test_digit"] == str(idx)
    k = int(np.flatnonzero(samples["indices"] == idx)[0])  # the shipped model's mistakes are built-in samples
    assert at.selectbox(key="sample").value == k
    assert f"Input now:** test digit #{idx} (label {error['label']})" in texts(at)
    prediction = metric(at, "Prediction")
    assert prediction == expected_prediction(app_model, samples["images"][k])
    assert prediction.startswith(f"{error['prediction']} (")  # the mistake the experiments page listed
    # picking another sample leaves it: the address names the sample instead. (AppTest reruns the page
    # its switch_page() named last, unlike a browser, whose address now names the explorer: name it.)
    other = int(np.flatnonzero(samples["labels"] == 3)[0])
    at.switch_page("app_pages/explorer.py")
    at.selectbox(key="sample").set_value(other).run()
    assert not at.exception and at.query_params["test_digit"] == str(int(samples["indices"][other]))
    assert metric(at, "Prediction") == expected_prediction(app_model, samples["images"][other])


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


@pytest.fixture()
def other_checkpoint(tmp_path, app_model):
    """The shipped weights saved again in half precision: another sha256, no results beside it."""
    from capsules.checkpoint import save_model

    def make(dtype: str):
        path = tmp_path / f"capsnet-{dtype}.safetensors"
        meta = {k: v for k, v in app_model.metadata.items()
                if k not in ("format", "config", "weights", "weights_dtype", "sha256")}
        save_model(app_model, path, meta, weights_dtype=dtype)
        return path

    return make


def experiments_app(monkeypatch, checkpoint, data: Path):
    monkeypatch.setenv("CAPSULES_DEVICE", "cpu")
    monkeypatch.setenv("CAPSULES_CHECKPOINT", str(checkpoint))
    monkeypatch.setenv("CAPSULES_DATA", str(data))
    return open_experiments(AppTest.from_file(str(APP), default_timeout=120).run())


def test_a_checkpoint_without_results_gets_the_command_that_computes_them(monkeypatch, tmp_path, other_checkpoint):
    """Nothing is computed on the page (no MNIST needed): it gives the command, and reads the file
    the command writes on its next run."""
    from capsules import experiments as E

    checkpoint = other_checkpoint("bf16")
    app = experiments_app(monkeypatch, checkpoint, tmp_path / "empty")
    info = " ".join(i.value for i in app.info)
    assert "No experiment results ship with `capsnet-bf16.safetensors`" in info
    assert f"python -m capsules.experiments --checkpoint {checkpoint}" in info
    assert not app.button and not app.get("plotly_chart") and not app.exception
    shipped = E.load_results()  # the same weights in bf16 storage: another sha256, so the file is rewritten for it
    E.save_results({**shipped, "checkpoint_sha256": E.checkpoint_sha256(checkpoint)}, E.results_path(checkpoint))
    app.run()
    assert not app.exception and set(EXPERIMENT_CHARTS) <= set(charts(app))


# ------------------------------------------------------------------------------ the model picker and the zoo


def shipped_capsnets():
    from capsules.zoo import list_shipped

    return [m for m in list_shipped() if m.kind == "capsnet" and m.dataset == "mnist"]


def table1_frame(app):
    frames = [d.value for d in app.dataframe if "Table 1 row" in d.value.columns]
    assert frames, "no Table 1 on the page"
    return frames[0]


def test_the_model_picker_switches_between_the_shipped_capsnets_on_both_pages(at, samples):
    from capsules import load_model
    from capsules.checkpoint import SHIPPED
    from capsules.experiments import load_results

    models = shipped_capsnets()
    assert {"capsnet-mnist", "capsnet-mnist-r1"} <= {m.name for m in models}
    picker = at.selectbox(key="model")
    assert picker.value == str(SHIPPED.resolve()) and picker.options == [m.short_label for m in models]
    k = at.selectbox(key="sample").value
    for m in [*models[1:], models[0]]:
        at.selectbox(key="model").set_value(str(m.path.resolve())).run()
        assert not at.exception, [e.value for e in at.exception]
        model = load_model(m.path, "cpu")
        assert at.slider(key="iterations").value == model.config.routing_iterations  # a new model: its own r
        assert metric(at, "Prediction") == expected_prediction(model, samples["images"][k])
        assert f"**Checkpoint:** `{m.path.name}`" in texts(at)
        open_experiments(at)  # the choice holds on the other page
        assert f"**Checkpoint:** `{m.path.name}`" in texts(at)
        assert m.name in list(table1_frame(at)["this project: model"])
        if load_results(m.path) is None:
            assert f"No experiment results ship with `{m.path.name}`" in " ".join(i.value for i in at.info)
        else:
            assert set(EXPERIMENT_CHARTS) <= set(charts(at))
        at.switch_page("app_pages/explorer.py").run()
        assert not at.exception and metric(at, "Prediction") == expected_prediction(model, samples["images"][k])


@pytest.fixture()
def zoo_dir(tmp_path, monkeypatch):
    """A folder of shipped models: the shipped CapsNets (linked) and a small baseline CNN, with
    robustness results (every point 50%) on the same test digits as the shipped CapsNet's."""
    import torch

    from capsules import BaselineCNN, BaselineCNNConfig, save_model
    from capsules import experiments as E
    from capsules.checkpoint import SHIPPED

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for path in SHIPPED.parent.iterdir():
        if not path.name.startswith("cnn-"):
            (folder / path.name).symlink_to(path)
    torch.manual_seed(0)
    cnn = BaselineCNN(BaselineCNNConfig(conv_channels=(4, 4, 2), fc_hidden=(8, 8))).eval()
    path = folder / "cnn-mnist.safetensors"
    save_model(cnn, path, {"test_accuracy": 99.0, "test_correct": 9900, "test_total": 10000, "epoch": 10, "epochs": 10,
                           "train_config": {"model": "cnn", "epochs": 10}, "hardware": "CPU: test, 2 threads"})
    capsnet = E.load_results()
    E.save_results({"format": E.FORMAT, "version": E.VERSION, "kind": cnn.FORMAT, "checkpoint": path.name,
                    "checkpoint_sha256": E.checkpoint_sha256(path), "test_images": capsnet["test_images"],
                    "robustness": {kind: [[v, 50.0] for v, _ in curve] for kind, curve in capsnet["robustness"].items()},
                    # every point 50%: the even digits right at every point, the odd ones at none
                    "robustness_right": {kind: [len(curve) * (1 - i % 2) for i in range(capsnet["robustness_subset"])]
                                         for kind, curve in capsnet["robustness"].items()},
                    "robustness_subset": capsnet["robustness_subset"], "robustness_seed": capsnet["robustness_seed"],
                    "robustness_units": capsnet["robustness_units"]}, E.results_path(path))
    monkeypatch.setenv("CAPSULES_CHECKPOINT_DIR", str(folder))
    monkeypatch.setenv("CAPSULES_DEVICE", "cpu")
    monkeypatch.delenv("CAPSULES_CHECKPOINT", raising=False)
    return folder, cnn


def test_a_shipped_cnn_answers_beside_the_capsnet_and_joins_the_comparisons(zoo_dir, monkeypatch, tmp_path, samples):
    from capsules import analysis as A
    from capsules import experiments as E

    folder, cnn = zoo_dir
    app = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not app.exception, [e.value for e in app.exception]
    assert not [o for o in app.selectbox(key="model").options if "cnn" in o]  # no CapsNet: not offered
    k = app.selectbox(key="sample").value
    answer = A.classify(cnn, samples["images"][k])
    said = f"{answer.prediction} ({answer.probability:.2f})"
    assert metric(app, "Baseline CNN (cnn-mnist)") == said and metric(app, "Prediction")
    open_view(app, "Transform explorer")  # untransformed: the same answer
    assert metric(app, "Baseline CNN, transformed (cnn-mnist)") == said

    open_experiments(app)
    table = table1_frame(app)
    row = table[table["Table 1 row"] == "baseline CNN"].iloc[0]
    assert row["this project: model"] == "cnn-mnist" and row["error [95% interval]"].startswith("1.00% [0.82, 1.21]")
    robust = charts(app)["fig_robustness"]["data"]
    assert {t["name"] for t in robust} == {"CapsNet (capsnet-mnist)", "baseline CNN (cnn-mnist)"}
    np.testing.assert_allclose(array(next(t for t in robust if t["name"] == "baseline CNN (cnn-mnist)")["y"]), 50.0)
    assert "The baseline CNN `cnn-mnist` on the same digits" in texts(app)
    capsnet, theirs = E.load_results(), E.load_results(folder / "cnn-mnist.safetensors")
    rotate = E.compare_robustness(capsnet, theirs)[0]
    better, worse = rotate.paired
    assert better + worse > 0 and rotate.p < 0.05  # the shipped CapsNet against a CNN at 50%
    assert (f"rotations {rotate.mean_a:.1f}% against 50.0% (the CapsNet right at more of the curve's points for "
            f"{better} digits, the CNN for {worse}; paired test of the means, p = {rotate.p:.2g}: beyond the "
            "noise)") in texts(app)
    untransformed = dict(capsnet["robustness"]["rotate"])[0.0]
    assert (f"Untransformed, these digits score {untransformed:.1f}% for this CapsNet and 50.0% for the CNN: part of "
            "any gap under the transforms is the gap the two models start from.") in texts(app)
    E.save_results({k: v for k, v in theirs.items() if k != "robustness_right"},
                   E.results_path(folder / "cnn-mnist.safetensors"))  # results from before the counts
    app.run()
    assert "predates the per-image counts, so the difference is not tested" in texts(app)
    assert f"rotations {rotate.mean_a:.1f}% against 50.0%;" in texts(app)

    E.results_path(folder / "cnn-mnist.safetensors").unlink()  # no curves, no MNIST: the page says so
    monkeypatch.setenv("CAPSULES_DATA", str(tmp_path / "empty"))
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    info = " ".join(i.value for i in app.info)
    assert "No robustness curves of the baseline CNN `cnn-mnist` ship with `cnn-mnist.safetensors`" in info
    assert "python -m capsules.experiments --checkpoint" in info
    assert {t["name"] for t in charts(app)["fig_robustness"]["data"]} == {"CapsNet (capsnet-mnist)"}


def test_a_cnn_checkpoint_is_refused_for_the_capsnet_views(zoo_dir, monkeypatch):
    from capsules.checkpoint import SHIPPED

    folder, _ = zoo_dir
    monkeypatch.setenv("CAPSULES_CHECKPOINT", str(folder / "cnn-mnist.safetensors"))
    app = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not app.exception
    error = " ".join(e.value for e in app.error)
    assert "`cnn-mnist.safetensors` holds a baseline CNN" in error and "Pick one in the sidebar" in error
    app.selectbox(key="model").set_value(str(SHIPPED.resolve())).run()
    assert not app.exception and not app.error and metric(app, "Prediction")


# ------------------------------------------------------------------------------ the two-digit page (MultiMNIST)

TWO_DIGITS = "app_pages/two_digits.py"
PAIR_CHARTS = {"Reconstructions (Fig. 5)": ("fig_pair_lengths", "fig_pair"),
               "Routing for the pair": ("fig_pair_lengths", "fig_pair_evidence"),
               "Routing iterations": ("fig_pair_lengths", "fig_pair_sweep")}


@pytest.fixture(scope="module")
def pair_checkpoint(tmp_path_factory):
    """A tiny CapsNet for MultiMNIST's 36x36 input (4 types on the 10x10 grid), saved as training
    saves one; and the model."""
    import torch

    from capsules import CapsNet, CapsNetConfig
    from capsules.checkpoint import save_model

    torch.manual_seed(0)
    model = CapsNet(CapsNetConfig(image_size=36, conv1_channels=16, primary_types=4, decoder_hidden=(16, 16))).eval()
    path = tmp_path_factory.mktemp("multimnist") / "capsnet-tiny.safetensors"
    save_model(model, path, {"dataset": "multimnist", "test_error": 42.5, "test_errors": 4250, "test_total": 10000,
                             "test_accuracy": 57.5, "test_correct": 5750, "epoch": 1,
                             "epochs": 1, "train_config": {"dataset": "multimnist", "iterations": 3,
                                                           "reconstruction_weight": 0.0005}})
    return path, model


def two_digits_app(monkeypatch, checkpoint, data: Path):
    """The app on the two-digit page, its MultiMNIST model ``checkpoint``, MNIST from ``data``."""
    monkeypatch.setenv("CAPSULES_DEVICE", "cpu")
    monkeypatch.delenv("CAPSULES_CHECKPOINT", raising=False)
    monkeypatch.setenv("CAPSULES_MULTIMNIST_CHECKPOINT", str(checkpoint))
    monkeypatch.setenv("CAPSULES_DATA", str(data))
    app = AppTest.from_file(str(APP), default_timeout=120).run()
    app.switch_page(TWO_DIGITS).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def sample_pairs(samples):
    import torch

    from capsules.data import MultiMNIST

    return MultiMNIST(torch.from_numpy(samples["images"]), torch.from_numpy(samples["labels"])).test_set()


def expected_pair(model, merged_u8, iterations: int = 3) -> tuple[str, str]:
    """The two longest capsules of ``model`` for a pair, as the page's metrics show them."""
    from capsules import analysis as A

    res = A.analyse(model, merged_u8.numpy() if hasattr(merged_u8, "numpy") else merged_u8, iterations=iterations)
    a, b = A.longest(res.lengths, 2)
    return f"{a} ({res.lengths[a]:.2f})", f"{b} ({res.lengths[b]:.2f})"


def pair_metrics(app) -> tuple[str, str]:
    return metric(app, "Longest capsule"), metric(app, "Second longest")


def test_the_two_digit_page_reads_a_pair_with_its_checkpoint(monkeypatch, tmp_path, pair_checkpoint, samples):
    """Without MNIST: the pairs of the built-in samples (and how to get MNIST); the two longest
    capsules of the tiny checkpoint for the pair shown, every view, the pair picker, the rejected
    capsule picker and r reach the figures."""
    path, model = pair_checkpoint
    app = two_digits_app(monkeypatch, path, tmp_path / "empty")
    assert not app.error and not app.warning  # a trained (if tiny) checkpoint: no untrained warning
    info = " ".join(i.value for i in app.info)
    assert "could not be read" in info and "python -m capsules.data fetch" in info and "built-in sample digits" in info
    pairs = sample_pairs(samples)
    assert pair_metrics(app) == expected_pair(model, pairs.merged[0])
    a, b = (int(d) for d in pairs.labels[0])
    assert f"True digits: **{a}** and **{b}**" in texts(app)
    assert "MultiMNIST test error **42.50 %** [41.53, 43.47] (95% interval, 10,000 pairs); the paper, same " \
           "recipe: 5.2%" in texts(app)  # the sidebar's model panel (the interval: Wilson, 4250 of 10,000)
    assert app.selectbox(key="model_multimnist").value == str(path.resolve())
    for view, keys in PAIR_CHARTS.items():
        app.session_state["pair_view"] = view
        app.run()
        assert not app.exception, [e.value for e in app.exception]
        found = charts(app)
        assert all(k in found for k in keys), (view, list(found))
    # the routing view: each of the two capsules at each of the 3 iterations, and whose ink the votes land on
    app.session_state["pair_view"] = "Routing for the pair"
    app.run()
    evidence = charts(app)["fig_pair_evidence"]
    assert sum(t["type"] == "heatmap" for t in evidence["data"]) == 6
    assert f"% digit {a} · " in texts(app)
    app.slider(key="iterations").set_value(2).run()
    assert sum(t["type"] == "heatmap" for t in charts(app)["fig_pair_evidence"]["data"]) == 4
    # Fig. 5 with another rejected capsule
    app.slider(key="iterations").set_value(3).run()
    app.session_state["pair_view"] = "Reconstructions (Fig. 5)"
    app.run()
    from capsules import analysis as A

    res = A.analyse(model, pairs.merged[0].numpy())
    last = A.longest(res.lengths)[-1]
    app.selectbox(key="absent_digit").set_value(last).run()
    assert not app.exception
    titles = [a_["text"] for a_ in charts(app)["fig_pair"]["layout"]["annotations"]]
    assert titles[-1] == f"{last} ({res.lengths[last]:.2f}): rejected"
    # another pair
    app.number_input(key="pair").set_value(3).run()
    assert not app.exception and pair_metrics(app) == expected_pair(model, pairs.merged[3])
    assert f"Pair #3: **{int(pairs.labels[3, 0])}** (red) is built-in sample digit #3" in texts(app)


def test_the_two_digit_page_without_a_checkpoint_runs_an_untrained_capsnet(monkeypatch, tmp_path, samples):
    """No MultiMNIST checkpoint: the page says so with the commands that train and ship one, and
    runs on the seeded, untrained 36x36 CapsNet, labelled untrained."""
    import torch

    from capsules import CapsNet, CapsNetConfig

    app = two_digits_app(monkeypatch, tmp_path / "capsnet-multimnist.safetensors", tmp_path / "empty")
    assert "this is an **untrained** CapsNet" in " ".join(w.value for w in app.warning)
    info = " ".join(i.value for i in app.info)
    assert "No MultiMNIST CapsNet here yet" in info and "**untrained** 36×36 CapsNet" in info
    assert "python -m capsules.train --dataset multimnist --lr 1e-4 --out runs/multimnist" in info
    assert "python -m capsules.ship runs/multimnist/last.safetensors" in info
    assert "checkpoints/capsnet-multimnist.safetensors" in info
    torch.manual_seed(0)
    untrained = CapsNet(CapsNetConfig(image_size=36)).eval()
    assert pair_metrics(app) == expected_pair(untrained, sample_pairs(samples).merged[0])
    assert "An **untrained** CapsNet: these lengths are noise" in texts(app)
    for view in PAIR_CHARTS:
        app.session_state["pair_view"] = view
        app.run()
        assert not app.exception and pair_metrics(app)


@pytest.mark.data
def test_the_two_digit_page_shows_the_multimnist_test_pairs(monkeypatch, data_dir, pair_checkpoint):
    """With MNIST: pair k of the fixed, seeded test set the model is scored on, its true digits
    and the paper's criterion."""
    import torch

    from capsules.data import load_multimnist_test
    from capsules.evaluate import two_digit_correct

    path, model = pair_checkpoint
    app = two_digits_app(monkeypatch, path, data_dir)
    assert not app.info and not app.error
    pairs = load_multimnist_test(data_dir)
    assert app.number_input(key="pair").max == len(pairs) - 1 == 9999
    app.number_input(key="pair").set_value(5).run()
    assert not app.exception
    p = pairs[5]
    a, b = (int(d) for d in p.labels)
    assert f"Pair #5: **{a}** (red) is MNIST test digit #5" in texts(app)
    assert pair_metrics(app) == expected_pair(model, p.merged)
    lengths = model(torch.from_numpy(p.merged.numpy()).float()[None, None] / 255).lengths.detach()
    right = bool(two_digit_correct(lengths, p.labels[None])[0])
    assert ("✓ both read" if right else "✗ not both read") in texts(app)


def test_a_28x28_checkpoint_is_refused_on_the_two_digit_page(monkeypatch, tmp_path):
    from capsules.checkpoint import SHIPPED

    app = two_digits_app(monkeypatch, SHIPPED, tmp_path / "empty")
    error = " ".join(e.value for e in app.error)
    assert f"`{SHIPPED.name}` holds a CapsNet for 28×28 images" in error
    assert "this page shows a MultiMNIST CapsNet (36×36 input)" in error and not app.metric


def test_each_page_keeps_its_own_model_choice(monkeypatch, tmp_path, pair_checkpoint):
    """The MNIST pages' picked model holds while the two-digit page (with its own picker) is
    open, and back."""
    r1 = next(m for m in shipped_capsnets() if m.name == "capsnet-mnist-r1")
    path, _ = pair_checkpoint
    app = two_digits_app(monkeypatch, path, tmp_path / "empty")
    app.switch_page("app_pages/explorer.py").run()
    app.selectbox(key="model").set_value(str(r1.path.resolve())).run()
    assert not app.exception
    app.switch_page(TWO_DIGITS).run()
    assert not app.exception and app.selectbox(key="model_multimnist").value == str(path.resolve())
    assert [s for s in app.selectbox if s.key == "model"] == []  # one picker: the page's own
    app.switch_page("app_pages/explorer.py").run()
    assert not app.exception and app.selectbox(key="model").value == str(r1.path.resolve())


def test_model_panel_counts_every_run_that_trained_the_weights(monkeypatch, tmp_path, app_model):
    """Weights trained further from another run's (--init-from): the sidebar gives the epochs and
    the time of both runs, not of the last alone."""
    from capsules.checkpoint import save_model

    path = tmp_path / "continued.safetensors"
    first = {"path": "checkpoints/capsnet-mnist.safetensors", "sha256": "ab" * 32, "epoch": 29,
             "train_seconds": 14132.3, "hardware": "CPU: AMD EPYC, 2 threads"}
    save_model(app_model, path, {"epoch": 15, "epochs": 15, "train_seconds": 7920.0, "test_accuracy": 99.6,
                                 "hardware": "CPU: Intel Xeon, 2 threads", "init_from": first})
    monkeypatch.setenv("CAPSULES_DEVICE", "cpu")
    monkeypatch.setenv("CAPSULES_CHECKPOINT", str(path))
    app = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not app.exception, [e.value for e in app.exception]
    panel = " ".join(m.value for m in app.sidebar.markdown)
    assert "epochs: 44 (29 + 15), in 2 runs" in panel and "15 of 15" not in panel
    assert "training time: 368 min (3.9 h on CPU: AMD EPYC, 2 threads, then 2.2 h on CPU: Intel Xeon, 2 threads)" in panel


def test_the_rerun_timings_show_with_debug_only(at):
    assert not [m for m in at.metric if m.label == "Compute, this rerun"]
    at.query_params["debug"] = "1"
    at.run()
    compute = metric(at, "Compute, this rerun")
    assert compute.endswith(" ms") and float(compute.split()[0]) > 0
    assert not at.exception
