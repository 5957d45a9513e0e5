"""The other pages in a real browser (as tests/dashboard/test_browser.py, whose chromium and server they
share): the Test-set experiments page at two widths, with nothing from another host, a misclassified
digit clicked through to the explorer; two digits drawn with two pens on the two-digit page."""

from __future__ import annotations

import pytest

from benchmarks.browser import (
    chart_boxes, clear_canvas, cut_off_texts, draw, find_canvas, metric_value, open_tab, overlap, wait_idle,
)
from tests.dashboard.browser_helpers import open_page, other_hosts

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EXPERIMENT_CHARTS = ["Routing with k = 1", "Routing dynamics per iteration", "Coupling rules at inference",
                     "Accuracy under affine transforms", "Confusion matrix"]


def _open_experiments(browser, app_url, width: int):
    page, requests, errors = open_page(browser, f"{app_url}/experiments", width, ready='[data-testid="stPlotlyChart"]')
    for chart in page.query_selector_all('[data-testid="stPlotlyChart"]'):  # drawn when visible
        chart.evaluate("e => e.scrollIntoView({block: 'center'})")
        page.wait_for_timeout(200)
    page.wait_for_timeout(300)
    return page, requests, errors


@pytest.mark.parametrize("width", [1280, 1920])
def test_experiments_page_fits_and_nothing_comes_from_another_host(browser, app_url, width):
    page, requests, errors = _open_experiments(browser, app_url, width)
    try:
        assert page.locator('[data-testid="stException"]').count() == 0
        assert page.locator(".js-plotly-plot").count() == len(EXPERIMENT_CHARTS)
        assert cut_off_texts(page) == []
        for marker in EXPERIMENT_CHARTS:
            boxes = chart_boxes(page, marker)
            assert boxes is not None, marker
            parts = [boxes["title"], *boxes["legends"], *boxes["annotations"].values()]
            for i, a in enumerate(parts):  # title, legends, panel titles and labels: none over another
                assert not any(overlap(a, b) for b in parts[i + 1:]), (marker, boxes)
        main = page.locator('[data-testid="stMain"]')
        for head, count in (("The paper.", 4), ("Later work.", 4), ("This model.", 5)):  # the errors: this model only
            assert main.get_by_text(head).count() == count, head
        # the gallery's buttons are not wrapped: each index on one line
        heights = page.evaluate("""() => [...document.querySelectorAll('[data-testid="stButton"] button')]
            .filter(b => b.innerText.startsWith('#') && b.offsetParent !== null)
            .map(b => b.getBoundingClientRect().height)""")
        assert heights and max(heights) <= min(heights) + 1, heights
        assert other_hosts(requests, app_url) == []  # nothing asked of another host
        assert errors == [], errors
    finally:
        page.close()


def test_a_misclassified_digit_opens_in_the_explorer(browser, app_url):
    """Click a misclassified digit of the experiments page: the explorer shows that test digit
    with the model's (wrong) prediction, and its address names it."""
    import numpy as np

    from capsules import analysis
    from capsules import load_model
    from capsules.checkpoint import SHIPPED
    from capsules.experiments import load_results

    results = load_results(SHIPPED)
    assert results is not None, "the shipped checkpoint's experiments JSON is missing or stale"
    error = results["errors"][0]
    idx = error["index"]
    with np.load(SHIPPED.parents[1] / "dashboard" / "samples.npz", allow_pickle=False) as z:
        image = z["images"][int(np.flatnonzero(z["indices"] == idx)[0])]
    res = analysis.analyse(load_model(SHIPPED, "cpu"), image)
    expected = f"{res.prediction} ({res.confidence:.2f})"
    assert res.prediction == error["prediction"] != error["label"]

    page, _, _ = _open_experiments(browser, app_url, 1400)
    try:
        button = page.get_by_role("button", name=f"#{idx}", exact=True)
        button.scroll_into_view_if_needed()
        button.click()
        page.wait_for_function(f"() => document.body.innerText.includes('Input now: test digit #{idx}')",
                               timeout=60_000)
        wait_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert metric_value(page, "Prediction") == expected
        assert f"True label: {error['label']}" in page.inner_text('[data-testid="stMain"]')
        assert f"/?test_digit={idx}&" in page.url  # the explorer is the default page: "/?test_digit=N&model=…"
        page.reload(wait_until="domcontentloaded")  # the address alone opens the digit
        page.wait_for_function(f"() => document.body.innerText.includes('Input now: test digit #{idx}')",
                               timeout=60_000)
        wait_idle(page)
        assert metric_value(page, "Prediction") == expected
    finally:
        page.close()


# Two digits drawn over each other, as fractions of the pad: a "1" with pen A, a "7" with pen B.
PEN_A_ONE = [(0.42, 0.15), (0.42, 0.85)]
PEN_B_SEVEN = [(0.25, 0.25), (0.7, 0.25), (0.5, 0.85)]


def test_draw_two_digits_with_two_pens(browser, app_url):
    """On the two-digit page: a "1" with pen A (red on the pad), then a "7" over it with pen B
    (green); the page reads the drawing, one grey image, as two digits: the two longest capsules,
    different digits, with both pens' ink in the routing view's shares; nothing cut off at 1280
    pixels; Clear returns to the test pair. (With the untrained 36x36 CapsNet when no MultiMNIST
    model ships, which digits they are is noise: the page mechanics are checked.)"""
    page, requests, errors = open_page(browser, f"{app_url}/two-digits", 1280)
    try:
        assert "Input now: test pair #0" in page.inner_text("body")
        canvas = find_canvas(page)
        draw(page, canvas, PEN_A_ONE)
        page.wait_for_function("() => document.body.innerText.includes('Input now: your drawing')", timeout=60_000)
        wait_idle(page)
        assert "Only pen A has ink" in page.inner_text("body")
        page.get_by_test_id("stRadioGroup").get_by_text("pen B (green)").click()
        wait_idle(page)
        canvas = find_canvas(page)
        draw(page, canvas, PEN_B_SEVEN)
        page.wait_for_function("() => !document.body.innerText.includes('Only pen A has ink')", timeout=60_000)
        wait_idle(page)
        main = page.inner_text('[data-testid="stMain"]')
        assert "Input now: your drawing" in main and "redraws pen A (red)" in main and "redraws pen B (green)" in main
        first, second = metric_value(page, "Longest capsule"), metric_value(page, "Second longest")
        assert first and second and first[0].isdigit() and second[0].isdigit(), (first, second)
        assert first[0] != second[0], (first, second)  # two digits
        # two colours on the pad: pen A's stroke red, pen B's green, the background black
        pixels = canvas.evaluate("""(c) => { const ctx = c.getContext('2d');
            const at = (x, y) => Array.from(ctx.getImageData(x * c.width, y * c.height, 1, 1).data.slice(0, 3));
            return [at(0.42, 0.6), at(0.6, 0.25), at(0.9, 0.9)]; }""")
        assert pixels[0][0] > 200 and pixels[0][1] < 100, pixels  # red
        assert pixels[1][1] > 150 and pixels[1][0] < 100, pixels  # green
        assert max(pixels[2]) < 30, pixels
        assert page.locator('[data-testid="stException"]').count() == 0
        assert cut_off_texts(page) == [], cut_off_texts(page)
        fig5 = chart_boxes(page, "Fig. 5")
        titles = sorted(fig5["annotations"].values(), key=lambda b: b["x0"])
        assert len(titles) == 5 and not any(overlap(a, b) for a, b in zip(titles, titles[1:])), fig5["annotations"]
        open_tab(page, "Routing for the pair")
        table = page.inner_text('[data-testid="stMain"] table')
        assert "pen A" in table and "pen B" in table
        assert page.locator('[data-testid="stException"]').count() == 0
        clear_canvas(page)
        page.wait_for_function("() => document.body.innerText.includes('Input now: test pair #0')", timeout=60_000)
        wait_idle(page)
        assert metric_value(page, "Longest capsule")
        assert other_hosts(requests, app_url) == []  # nothing asked of another host
        assert errors == [], errors
    finally:
        page.close()
