"""What the AppTest tests of the pages share: the app's paths and readers of what a page shows."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dashboard" / "app.py"
SAMPLES = ROOT / "dashboard" / "samples.npz"


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
    from capsules import analysis

    res = analysis.analyse(model, image_u8.astype(np.float32) / 255.0)
    return f"{res.prediction} ({res.confidence:.2f})"


EXPERIMENT_CHARTS = ("fig_iterations", "fig_dynamics", "fig_ablations", "fig_robustness", "fig_confusion")


def open_experiments(app):
    app.switch_page("app_pages/experiments.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def texts(app) -> str:
    return " ".join(m.value for m in app.markdown) + " " + " ".join(c.value for c in app.caption)


TWO_DIGITS = "app_pages/two_digits.py"


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
