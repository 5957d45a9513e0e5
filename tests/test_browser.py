"""The dashboard in a real browser: streamlit run + Debian's chromium through Playwright.

Draws a vertical stroke on the canvas and checks that the page reads it as a "1", then empties
the canvas and checks that the page is back on the sample; uploads a scan and a broken file. Skipped when
chromium or Playwright is missing, a failure instead under ``CAPSULES_REQUIRE_BROWSER=1``.
The "reads as 1" check needs the trained, shipped checkpoint; with an untrained model only the
page mechanics are checked (the stroke replaces the sample and the page reruns cleanly).
"""

from __future__ import annotations

import os

import pytest

from browser import (
    CHROMIUM_ARGS, STROKE_ONE, draw, find_canvas, find_chromium, metric_value, streamlit_server,
    wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _required() -> bool:
    return os.environ.get("CAPSULES_REQUIRE_BROWSER", "") not in ("", "0", "false", "no")


def _missing(reason: str):
    if _required():
        pytest.fail(f"the browser test is required here (CAPSULES_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
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
    env = {"CAPSULES_DEVICE": os.environ.get("CAPSULES_DEVICE", "cpu")}
    with streamlit_server(env=env, timeout=120) as url:  # terminated on exit, also on failure
        yield url


def test_draw_a_one(browser, app_url):

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(app_url, wait_until="domcontentloaded")
        page.wait_for_selector('[data-testid="stMetric"]', timeout=120_000)
        wait_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert "test digit" in page.inner_text("body")  # opens on a sample
        sample_prediction = metric_value(page, "Prediction")
        assert sample_prediction and sample_prediction[0].isdigit()

        draw(page, find_canvas(page), STROKE_ONE, steps=8)
        page.wait_for_function("() => document.body.innerText.includes('your drawing')",
                               timeout=60_000)
        wait_idle(page)

        value = metric_value(page, "Prediction")
        assert value is not None and value[0].isdigit(), value
        assert page.locator(".js-plotly-plot").count() >= 4  # the image pair + the open tab's three
        assert page.locator('[data-testid="stException"]').count() == 0
        assert value.startswith("1"), f"a vertical stroke was read as {value}"

        # emptying the canvas returns to the sample
        page.get_by_role("button", name="Reset canvas & history").click()
        page.wait_for_function("() => document.body.innerText.includes('Input now: test digit')",
                               timeout=60_000)
        wait_idle(page)
        assert metric_value(page, "Prediction") == sample_prediction
        assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        page.close()


def _png(array) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_upload_a_photo_and_a_broken_file(browser, app_url):
    """An uploaded scan (dark ink on white paper) replaces the sample; a file that is no image
    shows an info message, never an exception box."""
    import numpy as np

    from capsules import analysis as A, load_model
    from capsules.checkpoint import SHIPPED
    from capsules.preprocess import load_image, to_mnist

    with np.load(SHIPPED.parents[1] / "dashboard" / "samples.npz", allow_pickle=False) as z:
        k = int(np.flatnonzero(z["labels"] == 3)[0])
        digit = z["images"][k]
    scan = 255 - np.kron(digit, np.ones((8, 8), np.uint8))  # 224x224, dark ink on white
    data = _png(np.stack([scan] * 3, axis=-1))
    model = load_model(SHIPPED, "cpu")
    res = A.analyse(model, to_mnist(load_image(data)))
    expected = f"{res.prediction} ({res.confidence:.2f})"

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(app_url, wait_until="domcontentloaded")
        page.wait_for_selector('[data-testid="stMetric"]', timeout=120_000)
        wait_idle(page)
        uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
        uploader.set_input_files(files=[{"name": "three.png", "mimeType": "image/png", "buffer": data}])
        page.wait_for_function("() => document.body.innerText.includes('Input now: upload three.png')",
                               timeout=60_000)
        wait_idle(page)
        assert metric_value(page, "Prediction") == expected
        assert page.locator('[data-testid="stException"]').count() == 0

        # replace it with bytes that are no image
        page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
            files=[{"name": "broken.png", "mimeType": "image/png", "buffer": b"\x89PNG not really"}])
        page.wait_for_function("() => document.body.innerText.includes('Could not read')",
                               timeout=60_000)
        wait_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert page.locator('[data-testid="stAlertContentInfo"]').count() >= 1
        assert "test digit" in page.inner_text('[data-testid="stMain"]')  # back on the sample
    finally:
        page.close()
