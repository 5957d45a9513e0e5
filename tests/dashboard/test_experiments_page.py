"""The Test-set experiments page under Streamlit's AppTest: the shipped results, a misclassified
digit opened in the explorer, and the command for a checkpoint without results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from capsules import zoo  # noqa: E402
from tests.dashboard.helpers import (  # noqa: E402
    APP,
    EXPERIMENT_CHARTS,
    array,
    charts,
    expected_prediction,
    metric,
    open_experiments,
    texts,
)


def test_experiments_page_shows_the_shipped_results(at, shipped_results):
    from dashboard.figures.experiments_notes import iteration_intervals

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
    routing = zoo.routing_at_inference()
    assert len(routing.models) >= 1 and all(line in text for line in routing.findings)
    assert any(list(d.value.columns) == list(zoo.ROUTING_COLUMNS) and d.value.to_dict("records") == routing.records()
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
    from capsules import experiments

    checkpoint = other_checkpoint("bf16")
    app = experiments_app(monkeypatch, checkpoint, tmp_path / "empty")
    info = " ".join(i.value for i in app.info)
    assert "No experiment results ship with `capsnet-bf16.safetensors`" in info
    assert f"python -m capsules.experiments --checkpoint {checkpoint}" in info
    assert not app.button and not app.get("plotly_chart") and not app.exception
    # the same weights in bf16 storage: another sha256, so the file is rewritten for it
    shipped = experiments.load_results()
    experiments.save_results({**shipped, "checkpoint_sha256": experiments.checkpoint_sha256(checkpoint)},
                             experiments.results_path(checkpoint))
    app.run()
    assert not app.exception and set(EXPERIMENT_CHARTS) <= set(charts(app))
