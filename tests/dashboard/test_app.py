"""dashboard/app.py, the entry, under Streamlit's AppTest: the samples file, the server's threads, figures built once per numbers, timings only behind ?debug=1."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.dashboard.helpers import APP, SAMPLES, metric  # noqa: E402


def test_samples_file(samples):
    assert SAMPLES.stat().st_size < 1_000_000
    n = len(samples["labels"])
    assert samples["images"].shape == (n, 28, 28) and samples["images"].dtype == np.uint8
    for key in ("labels", "indices", "predictions"):
        assert samples[key].shape == (n,) and samples[key].dtype == np.int64
    assert np.bincount(samples["labels"], minlength=10).min() >= 20
    assert (samples["misclassified"] == (samples["predictions"] != samples["labels"])).all()


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


def test_the_rerun_timings_show_with_debug_only(at):
    assert not [m for m in at.metric if m.label == "Compute, this rerun"]
    at.query_params["debug"] = "1"
    at.run()
    compute = metric(at, "Compute, this rerun")
    assert compute.endswith(" ms") and float(compute.split()[0]) > 0
    assert not at.exception
