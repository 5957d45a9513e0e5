"""The explorer in a real browser: streamlit run + Debian's chromium through Playwright.

Draws a vertical stroke on the drawing pad and checks that the page reads it as a "1" (the pad
sends one small message, at pen-up), takes a second stroke back with Undo, then empties the pad
and checks that the page is back on the sample; uploads a scan and a broken file;
opens every view at 1280 and 1920 pixels and checks what a person sees there (no cut-off text,
no overlapping titles and legends, every digit labelled, no arrows on numbers that are not
changes) and that the page asks nothing of any other host. Skipped when chromium or Playwright is
missing, a failure instead under ``CAPSULES_REQUIRE_BROWSER=1``.

The "reads as 1" check needs the trained, shipped checkpoint; with an untrained model only the
page mechanics are checked (the stroke replaces the sample and the page reruns cleanly).
"""

from __future__ import annotations

import pytest

from benchmarks.browser import (
    STROKE_ONE, chart_boxes, clear_canvas, cut_off_texts, draw, find_canvas, metric_value, open_tab, overlap,
    wait_for_chart, wait_for_metric, wait_idle,
)
from tests.dashboard.browser_helpers import open_page, other_hosts

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_draw_a_one(browser, app_url):
    """A vertical stroke is read as a "1"; the pad sends nothing while the pen is down and one
    small message at pen-up; Undo takes a second stroke back; Clear returns to the sample."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sent = []  # sizes of the messages the browser sends to the server
    page.on("websocket", lambda ws: ws.on("framesent", lambda f: sent.append(len(f))))
    try:
        page.goto(app_url, wait_until="domcontentloaded")
        page.wait_for_selector('[data-testid="stMetric"]', timeout=120_000)
        wait_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert "test digit" in page.inner_text("body")  # opens on a sample
        sample_prediction = metric_value(page, "Prediction")
        assert sample_prediction and sample_prediction[0].isdigit()

        canvas = find_canvas(page)
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in STROKE_ONE]
        before = len(sent)
        page.mouse.move(*xy[0])
        page.mouse.down()
        for x, y in xy[1:]:
            page.mouse.move(x, y, steps=8)
        page.wait_for_timeout(500)
        assert len(sent) == before, "the pad sent something before the pen was lifted"
        page.mouse.up()
        page.wait_for_function("() => document.body.innerText.includes('your drawing')",
                               timeout=60_000)
        assert sent[before:] and max(sent[before:]) < 4096, sent[before:]  # strokes, not an image
        wait_idle(page)

        value = metric_value(page, "Prediction")
        assert value is not None and value[0].isdigit(), value
        assert page.locator(".js-plotly-plot").count() >= 4  # the image pair + the open tab's three
        assert page.locator('[data-testid="stException"]').count() == 0
        assert value.startswith("1"), f"a vertical stroke was read as {value}"

        # a second stroke changes the reading; Undo takes it back
        draw(page, canvas, [(0.2, 0.5), (0.8, 0.5)])
        wait_for_metric(page, "Prediction", lambda v: v != value)
        page.get_by_role("button", name="Undo", exact=True).click()
        wait_for_metric(page, "Prediction", lambda v: v == value)
        assert metric_value(page, "Prediction") == value

        # emptying the canvas returns to the sample
        clear_canvas(page)
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

    from capsules import analysis
    from capsules import load_model
    from capsules.checkpoint import SHIPPED
    from capsules.data.drawing import to_mnist
    from capsules.data.uploads import load_image

    with np.load(SHIPPED.parents[1] / "dashboard" / "samples.npz", allow_pickle=False) as z:
        k = int(np.flatnonzero(z["labels"] == 3)[0])
        digit = z["images"][k]
    scan = 255 - np.kron(digit, np.ones((8, 8), np.uint8))  # 224x224, dark ink on white
    data = _png(np.stack([scan] * 3, axis=-1))
    model = load_model(SHIPPED, "cpu")
    res = analysis.analyse(model, to_mnist(load_image(data)))
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
        message = page.inner_text('[data-testid="stAlertContentInfo"]')
        assert "broken.png" in message and " at 0x" not in message and "BytesIO" not in message
        assert "test digit" in page.inner_text('[data-testid="stMain"]')  # back on the sample
    finally:
        page.close()


VIEWS = ["Capsule lengths", "Routing step by step", "Evidence map", "Routing iterations",
         "Pose perturbation", "Transform explorer"]


@pytest.mark.parametrize("width", [1280, 1920])
def test_every_view_fits_and_nothing_comes_from_another_host(browser, app_url, width):
    page, requests, errors = open_page(browser, app_url, width)
    try:
        # the input row: the canvas fits its column, the sample picker's text is not cut off
        canvas = find_canvas(page).bounding_box()
        column = page.locator('[data-testid="stColumn"]').first.bounding_box()
        assert canvas["x"] + canvas["width"] <= column["x"] + column["width"] + 1
        pair = chart_boxes(page, "Reconstruction (")
        first, second = (pair["annotations"][k] for k in sorted(pair["annotations"]))
        assert not overlap(first, second), pair["annotations"]
        assert cut_off_texts(page) == []
        # the longest sample label, a misclassified digit, fits too
        picker = page.get_by_role("combobox", name="Sample MNIST test digit")
        picker.fill("#1014")
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.body.innerText.includes('test digit #1014')", timeout=60_000)
        wait_idle(page)
        assert "read as" in picker.input_value() and cut_off_texts(page) == [], picker.input_value()
        for view in VIEWS:
            open_tab(page, view)
            assert page.locator('[data-testid="stException"]').count() == 0, view
            assert cut_off_texts(page) == [], (view, cut_off_texts(page))
            if view == "Capsule lengths":
                lengths = chart_boxes(page, "Digit-capsule lengths")
                assert lengths["xticks"] == [str(j) for j in range(10)]  # every digit labelled
            if view == "Transform explorer":
                for marker, ticks in (("Lengths |v", range(10)), ("Pose v", range(1, 17))):
                    boxes = chart_boxes(page, marker)
                    assert boxes["xticks"] == [str(k) for k in ticks], marker  # every one labelled
                    assert not any(overlap(boxes["title"], lg) for lg in boxes["legends"]), marker
                tf_pair = chart_boxes(page, "Transformed (")
                first, second = (tf_pair["annotations"][k] for k in sorted(tf_pair["annotations"]))
                assert not overlap(first, second), tf_pair["annotations"]
                sweep = wait_for_chart(page, "Pose of capsule")  # drawn last
                pose_legend, digit_legend = sorted(sweep["legends"], key=lambda b: b["y0"])
                assert not overlap(pose_legend, digit_legend)
        assert other_hosts(requests, app_url) == []  # nothing asked of another host
        assert errors == [], errors
    finally:
        page.close()


def test_routing_metrics_show_no_arrows(browser, app_url):
    """None of the routing metrics is a change over time: no up or down arrow, at any iteration;
    the closed expander's chart comes when it is opened."""
    page, _, _ = open_page(browser, app_url, 1400)
    try:
        open_tab(page, "Routing step by step")
        main = page.locator('[data-testid="stMain"]')
        assert main.locator('[data-testid="stMetric"]').count() >= 4
        assert main.locator('[data-testid^="stMetricDeltaIcon"]').count() == 0
        main.get_by_role("slider", name="Iteration").focus()
        page.keyboard.press("Home")  # iteration 1: uniform coupling, a tie
        page.wait_for_function("() => document.body.innerText.includes('none: all equal')", timeout=60_000)
        wait_idle(page)
        assert metric_value(page, "Most coupled primary") == "none: all equal"
        assert main.locator('[data-testid^="stMetricDeltaIcon"]').count() == 0
        assert "all equal" in page.inner_text('[data-testid="stMain"]')
        # the expander's chart is built when it is opened, not before
        charts = page.locator(".js-plotly-plot").count()
        main.get_by_text("Agreement of every primary with every digit capsule").click()
        page.wait_for_function("(n) => document.querySelectorAll('.js-plotly-plot').length > n", arg=charts,
                               timeout=60_000)
        wait_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        page.close()


def test_a_control_in_a_view_reruns_only_that_view(browser, app_url):
    """A pose slider reruns the Pose view (a fragment): its picture changes and the view reports a
    new time, while the page's own rerun time in the sidebar stays as it was."""
    page, _, _ = open_page(browser, app_url + "/?debug=1", 1400)
    try:
        open_tab(page, "Pose perturbation")
        page_time = metric_value(page, "Compute, this rerun")
        sidebar = page.locator('[data-testid="stSidebar"]')
        before = sidebar.inner_text()
        assert page_time and "Open view, last rerun" in before and "v + offsets" not in page.inner_text("body")
        page.locator('input[type="range"][aria-label^="dim 4 "]').focus()  # "dim 4 (-0.36)"
        page.keyboard.press("End")
        page.wait_for_function("() => document.body.innerText.includes('v + offsets')", timeout=60_000)
        wait_idle(page)
        assert metric_value(page, "Compute, this rerun") == page_time  # the page did not rerun
        assert sidebar.inner_text() != before  # the view did, and said so
        assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        page.close()
