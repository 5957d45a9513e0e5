"""Many users at once: 10 browser sessions against one running dashboard, drawing concurrently.

Each session draws a "1" or a "7"; all must get the right prediction with no exception on any
page, and the server's memory must stay bounded. Prints the figures (sessions, time, peak memory).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from benchmarks.browser import (
    CHROMIUM_ARGS, STROKE_ONE, STROKE_SEVEN, draw, find_canvas, find_chromium, free_port, metric_value,
    streamlit_server, wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SESSIONS = 10


def _server_rss_mb(port: int) -> tuple[float, float]:
    """(current, peak) resident memory of the streamlit process serving ``port``, in MiB."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"streamlit" in b" ".join(cmd) and str(port).encode() in cmd:
            status = Path(f"/proc/{pid}/status").read_text()
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)
    raise RuntimeError(f"no streamlit process for port {port}")


def test_ten_sessions_at_once(capsys):
    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("CAPSULES_REQUIRE_BROWSER", "") not in ("", "0"):
            pytest.fail("chromium is required here (CAPSULES_REQUIRE_BROWSER=1) but was not found")
        pytest.skip("no chromium executable found")
    from playwright.sync_api import sync_playwright

    port = free_port()
    with streamlit_server(port=port, env={"CAPSULES_DEVICE": "cpu"}, timeout=120) as url, \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            t0 = time.perf_counter()
            contexts = [browser.new_context(viewport={"width": 1300, "height": 900}) for _ in range(SESSIONS)]
            pages = [ctx.new_page() for ctx in contexts]
            for page in pages:  # all sessions open at once
                page.goto(url, wait_until="commit")
            canvases = []
            for page in pages:
                wait_idle(page, 180_000)
                canvases.append(find_canvas(page, 60_000))
            _, peak_open = _server_rss_mb(port)
            expected = []
            for k, (page, canvas) in enumerate(zip(pages, canvases)):  # draw in every session, then wait
                stroke, digit = (STROKE_ONE, "1") if k % 2 == 0 else (STROKE_SEVEN, "7")
                draw(page, canvas, stroke)
                expected.append(digit)
            results = []
            for page, digit in zip(pages, expected):
                deadline = time.monotonic() + 180
                value = None
                while time.monotonic() < deadline:
                    wait_idle(page, 180_000)
                    value = metric_value(page, "Prediction")
                    if value and value.startswith(digit):
                        break
                    page.wait_for_timeout(500)
                results.append(value)
                assert page.locator('[data-testid="stException"]').count() == 0
            elapsed = time.perf_counter() - t0
            current, peak = _server_rss_mb(port)
        finally:
            browser.close()
    with capsys.disabled():
        print(f"\n[load] {SESSIONS} sessions, {elapsed:.1f} s from opening to all predictions; "
              f"server memory {current:.0f} MiB now, peak {peak:.0f} MiB (after opening: {peak_open:.0f} MiB)")
    assert [r[:1] if r else r for r in results] == expected, results
    assert peak < 4096, f"server peak memory {peak:.0f} MiB"
