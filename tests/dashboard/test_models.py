"""The model picker and dashboard/models.py under Streamlit's AppTest: the shipped CapsNets on both
pages, a shipped CNN beside the CapsNet, each page's own choice, the runs behind the weights."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.dashboard.helpers import (  # noqa: E402
    APP,
    EXPERIMENT_CHARTS,
    TWO_DIGITS,
    array,
    charts,
    expected_prediction,
    metric,
    open_experiments,
    open_view,
    texts,
    two_digits_app,
)


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
    from capsules import experiments
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
    capsnet = experiments.load_results()
    results = {"format": experiments.FORMAT, "version": experiments.VERSION, "kind": cnn.FORMAT,
               "checkpoint": path.name,
               "checkpoint_sha256": experiments.checkpoint_sha256(path), "test_images": capsnet["test_images"],
               "robustness": {kind: [[v, 50.0] for v, _ in curve] for kind, curve in capsnet["robustness"].items()},
               # every point 50%: the even digits right at every point, the odd ones at none
               "robustness_right": {kind: [len(curve) * (1 - i % 2) for i in range(capsnet["robustness_subset"])]
                                    for kind, curve in capsnet["robustness"].items()},
               "robustness_subset": capsnet["robustness_subset"], "robustness_seed": capsnet["robustness_seed"],
               "robustness_units": capsnet["robustness_units"]}
    experiments.save_results(results, experiments.results_path(path))
    monkeypatch.setenv("CAPSULES_CHECKPOINT_DIR", str(folder))
    monkeypatch.setenv("CAPSULES_DEVICE", "cpu")
    monkeypatch.delenv("CAPSULES_CHECKPOINT", raising=False)
    return folder, cnn


def test_a_shipped_cnn_answers_beside_the_capsnet_and_joins_the_comparisons(zoo_dir, monkeypatch, tmp_path, samples):
    from capsules import analysis
    from capsules import experiments

    folder, cnn = zoo_dir
    app = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not app.exception, [e.value for e in app.exception]
    assert not [o for o in app.selectbox(key="model").options if "cnn" in o]  # no CapsNet: not offered
    k = app.selectbox(key="sample").value
    answer = analysis.classify(cnn, samples["images"][k])
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
    capsnet, theirs = experiments.load_results(), experiments.load_results(folder / "cnn-mnist.safetensors")
    rotate = experiments.compare_robustness(capsnet, theirs)[0]
    better, worse = rotate.paired
    assert better + worse > 0 and rotate.p < 0.05  # the shipped CapsNet against a CNN at 50%
    assert (f"rotations {rotate.mean_a:.1f}% against 50.0% (the CapsNet right at more of the curve's points for "
            f"{better} digits, the CNN for {worse}; paired test of the means, p = {rotate.p:.2g}: beyond the "
            "noise)") in texts(app)
    untransformed = dict(capsnet["robustness"]["rotate"])[0.0]
    assert (f"Untransformed, these digits score {untransformed:.1f}% for this CapsNet and 50.0% for the CNN: part of "
            "any gap under the transforms is the gap the two models start from.") in texts(app)
    experiments.save_results({k: v for k, v in theirs.items() if k != "robustness_right"},
                   experiments.results_path(folder / "cnn-mnist.safetensors"))  # results from before the counts
    app.run()
    assert "predates the per-image counts, so the difference is not tested" in texts(app)
    assert f"rotations {rotate.mean_a:.1f}% against 50.0%;" in texts(app)

    experiments.results_path(folder / "cnn-mnist.safetensors").unlink()  # no curves, no MNIST: the page says so
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
