"""A link in a real browser (streamlit run + Debian's chromium through Playwright, as
tests/dashboard/test_browser.py, whose browser and server it shares): a view is drawn, a tab opened and a
pose slider moved in one tab; "Copy link" puts its address on the clipboard; a fresh browser
context (no cookies, no session) opened on it shows the same drawing, prediction, tab and slider.
Skipped without chromium or Playwright, a failure instead under ``CAPSULES_REQUIRE_BROWSER=1``."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from benchmarks.browser import STROKE_SEVEN, draw, find_canvas, metric_value, open_tab, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _settled(page, url: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector('[data-testid="stMetric"]', timeout=120_000)
    wait_idle(page)


def _open_tab(page) -> str:
    return page.locator('[role="tab"][aria-selected="true"]').inner_text().strip()


def _slider(page, label: str) -> str:
    """The value of the slider labelled ``label`` (its start: "dim 3 (")."""
    return page.locator('[data-testid="stSlider"]').filter(has_text=label).get_by_role("slider").input_value()


def test_a_copied_link_opens_the_same_view_in_a_fresh_browser(browser, app_url):  # noqa: F811
    first = browser.new_context(viewport={"width": 1400, "height": 1000})
    first.grant_permissions(["clipboard-read", "clipboard-write"], origin=app_url)
    fresh = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = first.new_page()
        _settled(page, app_url)
        draw(page, find_canvas(page), STROKE_SEVEN)
        page.wait_for_function("() => document.body.innerText.includes('your drawing')", timeout=60_000)
        wait_idle(page)
        prediction = metric_value(page, "Prediction")
        open_tab(page, "Pose perturbation")
        dim3 = page.locator('[data-testid="stSlider"]').filter(has_text="dim 3 (").get_by_role("slider")
        dim3.focus()
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")  # +0.10, in a fragment: the page does not rerun
        page.wait_for_function("() => location.search.includes('pose=')", timeout=30_000)
        wait_idle(page)
        assert _slider(page, "dim 3 (") == "0.1"
        page.get_by_role("button", name="Copy link").click()
        page.wait_for_timeout(300)
        link = page.evaluate("navigator.clipboard.readText()")
        params = parse_qs(urlparse(link).query)
        assert link.startswith(app_url) and {"model", "draw", "tab", "pose"} <= set(params), link
        assert params["tab"] == ["pose-perturbation"] and params["pose"] == ["3:0.1"]
        assert len(link) < 600, link  # a drawing is short

        other = fresh.new_page()
        _settled(other, link)
        other.wait_for_function("() => document.body.innerText.includes('your drawing')", timeout=60_000)
        wait_idle(other)
        assert metric_value(other, "Prediction") == prediction
        assert _open_tab(other) == "Pose perturbation"
        assert _slider(other, "dim 3 (") == "0.1" and _slider(other, "dim 4 (") == "0"
        strips = other.locator("img.pose-spread")  # the spread of each pose value, under its slider
        assert strips.count() == 16 and all((strips.nth(k).bounding_box() or {}).get("height", 0) > 10
                                            for k in (0, 15))
        assert other.locator('[data-testid="stException"]').count() == 0
        assert other.locator('[data-testid="stAlert"]').filter(has_text="could not be used").count() == 0
    finally:
        first.close()
        fresh.close()


def test_a_stale_link_falls_back_with_a_notice(browser, app_url):  # noqa: F811
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        image = "%21%5Bx%5D%28http%3A%2F%2F127.0.0.2%2Fx.png%29"  # ![x](http://127.0.0.2/x.png): shown, not fetched
        _settled(page, f"{app_url}/?model=capsnet-imagenet&draw=AAA!!&tab={image}")
        alerts = page.locator('[data-testid="stAlert"]').all_inner_texts()
        assert len(alerts) == 3 and all("could not be used" in a for a in alerts), alerts
        assert "![x](http://127.0.0.2/x.png)" in " ".join(alerts)
        assert page.locator('[data-testid="stAlert"] img').count() == 0
        assert "test digit" in page.inner_text("body") and _open_tab(page) == "Capsule lengths"
        assert "model=capsnet-mnist" in page.url and "draw=" not in page.url and "tab=" not in page.url
        assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        page.close()
