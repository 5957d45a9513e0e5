"""Drive the dashboard in a real browser: start ``streamlit run``, open it in chromium with
Playwright, draw on the drawing pad. A harness, not a page: used by the browser tests
(``tests/dashboard/test_browser.py``, ``tests/dashboard/test_load.py``), ``scripts/screenshot.py`` and
``benchmarks/page.py``; Playwright is imported by those, not here.

Nothing is downloaded: the browser is the system's chromium (``$CAPSULES_CHROMIUM``, else
``/usr/bin/chromium``, else ``chromium`` / ``chromium-browser`` / ``google-chrome`` on PATH).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboard" / "app.py"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def find_chromium() -> str | None:
    """Path of a chromium/chrome executable, or None."""
    env = os.environ.get("CAPSULES_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(port: int | None = None, extra_args: list[str] | None = None,
                     env: dict | None = None, timeout: float = 90.0, log: Path | None = None,
                     poll: float = 0.3):
    """Run ``streamlit run dashboard/app.py`` headless on 127.0.0.1; yield its URL; stop it after.

    Waits for ``/_stcore/health`` to answer ``ok``, asking every ``poll`` seconds; raises
    RuntimeError (with the server's output) when it does not within ``timeout`` seconds or the
    process exits.
    """
    port = port or free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
           *(extra_args or [])]
    log_file = open(log, "w+b") if log else tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log_file,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def output() -> str:
        log_file.flush()
        log_file.seek(0)
        return log_file.read().decode(errors="replace")[-3000:]

    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{output()}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not answer on {url} within {timeout:.0f} s:\n{output()}")
            time.sleep(poll)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log_file.close()


def wait_idle(page, timeout_ms: float = 60_000) -> None:
    """Wait until the app has finished its script run (no running indicator, no stale elements)."""
    page.wait_for_function(
        """() => {
            const app = document.querySelector('[data-testid="stApp"]');
            if (!app) return false;
            if (document.querySelector('[data-testid="stStatusWidget"] [data-testid="stStatusWidgetRunningIcon"]')) return false;
            return app.getAttribute('data-test-script-state') !== 'running';
        }""",
        timeout=timeout_ms,
    )
    page.wait_for_timeout(300)


def find_canvas(page, timeout_ms: float = 30_000):
    """The drawing pad's canvas (``canvas.drawing-pad``, :mod:`dashboard.pad`), else the first
    canvas of at least 100x100 pixels, in the page (shadow roots included) or in a component
    iframe. Returns a Playwright ``Locator``."""
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        for scope in [page, *[f for f in page.frames if f != page.main_frame]]:
            for selector in ("canvas.drawing-pad", "canvas"):
                loc = scope.locator(selector)
                try:
                    n = loc.count()
                except Exception:
                    continue
                for i in range(n):
                    box = loc.nth(i).bounding_box()
                    if box and box["width"] >= 100 and box["height"] >= 100:
                        return loc.nth(i)
        page.wait_for_timeout(250)
    raise RuntimeError("no drawing canvas found on the page")


def clear_canvas(page) -> None:
    """Press the drawing pad's Clear button (the page returns to its sample)."""
    page.get_by_role("button", name="Clear", exact=True).click()


def draw(page, canvas, points: list[tuple[float, float]], steps: int = 6) -> None:
    """Drag the mouse through ``points`` given as fractions (0..1) of the canvas box."""
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=steps)
    page.mouse.up()


def metric_value(page, label: str) -> str | None:
    """The value shown by the ``st.metric`` whose label is ``label``."""
    return page.evaluate(
        """(label) => {
            for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
                const l = m.querySelector('[data-testid="stMetricLabel"]');
                const v = m.querySelector('[data-testid="stMetricValue"]');
                if (l && v && l.innerText.trim() === label) return v.innerText.trim();
            }
            return null;
        }""",
        label,
    )


def wait_for_metric(page, label: str, accept, timeout_s: float = 60.0) -> str:
    """Wait until the ``st.metric`` labelled ``label`` shows a value ``accept(value)`` takes and the
    app is idle; return the value. Raises TimeoutError with the last value seen."""
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = metric_value(page, label)
        if value is not None and accept(value):
            wait_idle(page)
            return value
        page.wait_for_timeout(100)
    raise TimeoutError(f"{label!r} still shows {value!r} after {timeout_s:.0f} s")


def open_tab(page, name: str) -> None:
    """Click the tab ``name``, wait for the rerun it starts, and scroll every chart into view
    once (plotly charts are drawn when they become visible)."""
    page.get_by_role("tab", name=name).click()
    wait_idle(page)
    for chart in page.query_selector_all('[data-testid="stPlotlyChart"]'):
        chart.evaluate("e => e.scrollIntoView({block: 'center'})")  # hidden ones (closed expanders) stay
        page.wait_for_timeout(150)
    page.wait_for_timeout(300)


def cut_off_texts(page) -> list[str]:
    """Texts of select boxes and metrics that do not fit their box (cut off or ellipsised)."""
    return page.evaluate(
        """() => {
            const wide = e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1;
            const inputs = [...document.querySelectorAll('[data-testid="stSelectbox"] input')]
                .filter(e => e.value && wide(e)).map(e => e.value);
            const texts = [...document.querySelectorAll('[data-testid="stMetric"] p')]
                .filter(e => e.innerText.trim() && wide(e)).map(e => e.innerText.trim());
            return [...inputs, ...texts];
        }""")


def chart_boxes(page, marker: str) -> dict | None:
    """Screen boxes of the parts of the plotly chart whose title or an annotation contains
    ``marker``: ``title``, ``legends`` (a list), ``annotations`` (text -> box), ``plot`` and the
    visible x tick labels ``xticks`` (a list of texts)."""
    return page.evaluate(
        """(marker) => {
            const box = e => { const r = e.getBoundingClientRect();
                               return {x0: r.left, x1: r.right, y0: r.top, y1: r.bottom}; };
            for (const p of document.querySelectorAll('.js-plotly-plot')) {
                const title = p.querySelector('.gtitle');
                const notes = [...p.querySelectorAll('.annotation')];
                if (!(title && title.textContent.includes(marker))
                    && !notes.some(a => a.textContent.includes(marker))) continue;
                const out = {title: title && title.textContent ? box(title) : null,
                             legends: [...p.querySelectorAll('g')]
                                 .filter(g => /^legend[0-9]*$/.test(g.getAttribute('class') || ''))
                                 .map(box),
                             annotations: {}, plot: box(p.querySelector('.draglayer') || p),
                             xticks: [...p.querySelectorAll('.xtick text')].map(t => t.textContent).filter(t => t)};
                for (const a of notes) out.annotations[a.textContent] = box(a.querySelector('text') || a);
                return out;
            }
            return null;
        }""",
        marker,
    )


def wait_for_chart(page, marker: str, timeout_s: float = 60.0) -> dict:
    """``chart_boxes(page, marker)`` once that chart is on the page (a chart drawn late, after a
    slow first call, may not be there yet); raises TimeoutError naming the marker otherwise."""
    deadline = time.monotonic() + timeout_s
    while (boxes := chart_boxes(page, marker)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no chart titled or annotated {marker!r} after {timeout_s:.0f} s")
        page.wait_for_timeout(250)
    return boxes


def overlap(a: dict, b: dict) -> bool:
    """Whether two screen boxes ({x0, x1, y0, y1}) intersect."""
    return a["x0"] < b["x1"] and b["x0"] < a["x1"] and a["y0"] < b["y1"] and b["y0"] < a["y1"]


# Strokes as fractions of the canvas: a "1" and a "7".
STROKE_ONE = [(0.5, 0.18), (0.5, 0.5), (0.5, 0.82)]
STROKE_SEVEN = [(0.28, 0.22), (0.72, 0.22), (0.58, 0.5), (0.46, 0.82)]
