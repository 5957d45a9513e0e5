"""Fixtures of the dashboard's tests: the model and the samples the app loads, an opened app; for the
browser tests a chromium and a server per module."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from benchmarks.browser import CHROMIUM_ARGS, find_chromium, streamlit_server  # noqa: E402
from tests.dashboard.helpers import APP, SAMPLES  # noqa: E402


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


# ------------------------------------------------------------------------------ the browser


def _required() -> bool:
    return os.environ.get("CAPSULES_REQUIRE_BROWSER", "") not in ("", "0", "false", "no")


def _missing(reason: str):
    if _required():
        pytest.fail(f"the browser test is required here (CAPSULES_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    """One chromium for a module's browser tests (skipped without it, a failure under CAPSULES_REQUIRE_BROWSER=1)."""
    chromium = find_chromium()
    if chromium is None:
        _missing("no chromium executable found (/usr/bin/chromium or $CAPSULES_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright Python package is not installed")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def app_url():
    """One `streamlit run` of the dashboard for a module's browser tests (closed with the module, so that
    no idle page or server is left running beside the next module's)."""
    env = {"CAPSULES_DEVICE": os.environ.get("CAPSULES_DEVICE", "cpu")}
    with streamlit_server(env=env, timeout=120) as url:  # terminated on exit, also on failure
        yield url
