"""Time the dashboard as a person meets it: a real server, a real browser, medians over repeats.

    python -m benchmarks.page [--repeats 5] [--cold 3] [--json docs/bench-page.json] [--note TEXT]

Starts ``streamlit run dashboard/app.py`` on a free localhost port and drives the system's
chromium through the browser harness (:mod:`benchmarks.browser`; nothing is downloaded).
Measures, each from the browser's own event to what it shows (the page's clock,
``performance.now()``, so no round trip to this script is counted):

* cold start: from launching the server to the first prediction shown in a new browser context
  (and to the server answering), each with a server of its own; and from opening the page in a
  new browser context on a running server to its first prediction (a new visitor);
* pen-up to the new prediction: a stroke (a "1", shifted a little each time so that it is a new
  input, on the sample "7") from the pointer's release to the Prediction metric showing the new
  value, and to the page settled (the script run over, the next frame drawn);
* a tab switch: from the click on a tab to that tab settled, for every tab in turn, just after a
  new input (so each tab computes its view);
* one slider to its picture: a key press on a pose slider (its view is a fragment) to the
  decoded picture redrawn.

Also records what the server said it spent (the sidebar's "Compute, this rerun" and "Open view,
last rerun") and the bytes that crossed the websocket each way. Prints a table and writes the
figures with the date, the hardware and the load (``os.getloadavg``) as JSON. The first new input
and the first visit of each tab are done once untimed (warm-up: imports, first-use caches).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

from benchmarks import browser as harness

ROOT = Path(__file__).resolve().parents[1]
GOALS = {"cold_start": 4.0, "page_load_to_prediction": 4.0, "pen_up_to_prediction": 0.3, "tab_settled": 0.6,
         "slider_to_picture": 0.2}  # seconds, medians (issue 11)
VIEWS = ["Routing step by step", "Evidence map", "Routing iterations", "Pose perturbation",
         "Transform explorer", "Capsule lengths"]  # the page opens on the last one
POSE_SLIDER = 'input[type="range"][aria-label^="dim 4 "]'
POSE_PICTURE = "+ offsets"  # the title of the pose view's live picture

# In the page: one probe at a time, armed before an action. It notes the time of the action's
# event (capture phase, before any handler), every change of the app's script state, and the
# first frame after the watched metric's text or the watched chart's picture changed.
PROBE = """() => {
  if (window.__bench) return;
  const metric = (label) => {
    for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
      const l = m.querySelector('[data-testid="stMetricLabel"]');
      const v = m.querySelector('[data-testid="stMetricValue"]');
      if (l && v && l.innerText.trim() === label) return v.innerText.trim();
    }
    return null;
  };
  const picture = (marker) => {
    for (const p of document.querySelectorAll('.js-plotly-plot')) {
      const title = p.querySelector('.gtitle');
      if (title && title.textContent.includes(marker))
        return [...p.querySelectorAll('image')].map(i => i.getAttribute('href') || '').join('|');
    }
    return null;
  };
  let probe = null;
  const look = () => {
    if (!probe || probe.t0 === null || probe.looking) return;
    probe.looking = true;
    requestAnimationFrame(() => {
      const p = probe, t = performance.now();
      p.looking = false;
      if (p.metric && p.metricAt === null) {
        const v = metric(p.metric);
        if (v !== null && v !== p.metricBefore) { p.metricAt = t; p.metricValue = v; }
      }
      if (p.chart && p.chartAt === null) {
        const s = picture(p.chart);
        if (s && s !== p.chartBefore) p.chartAt = t;
      }
      p.frameAt = t;
    });
  };
  new MutationObserver((records) => {
    if (!probe || probe.t0 === null) return;
    const t = performance.now();
    for (const r of records)
      if (r.attributeName === 'data-test-script-state')
        probe.states.push([t, r.target.getAttribute('data-test-script-state')]);
    look();
  }).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true,
                             attributeFilter: ['data-test-script-state', 'href']});
  window.__bench = {
    arm(event, metricLabel, chartMarker) {
      probe = {t0: null, states: [], metric: metricLabel, chart: chartMarker, metricAt: null, chartAt: null,
               metricBefore: metricLabel ? metric(metricLabel) : null,
               chartBefore: chartMarker ? picture(chartMarker) : null,
               metricValue: null, frameAt: null, looking: false};
      window.addEventListener(event, () => { probe.t0 = performance.now(); look(); }, {capture: true, once: true});
    },
    read() { return probe && {...probe, now: performance.now()}; },
  };
}"""


class Meter:
    """A page under measurement: the probe installed, websocket bytes counted each way."""

    def __init__(self, page, b):
        self.page, self.b = page, b
        self.sent = self.received = 0
        page.on("websocket", self._socket)

    def _socket(self, ws):
        ws.on("framesent", lambda f: setattr(self, "sent", self.sent + len(f)))
        ws.on("framereceived", lambda f: setattr(self, "received", self.received + len(f)))

    def install(self) -> None:
        self.page.evaluate(PROBE)

    def measure(self, event: str, act, metric: str | None = None, chart: str | None = None,
                quiet_ms: float = 700, timeout_s: float = 120) -> dict:
        """Arm the probe for ``event``, run ``act()``, wait until the page has been idle for
        ``quiet_ms`` (and the watched metric or picture has changed); seconds from the event to
        each, and the bytes each way."""
        self.page.evaluate("([e, m, c]) => window.__bench.arm(e, m, c)", [event, metric, chart])
        sent, received = self.sent, self.received
        act()
        deadline = time.monotonic() + timeout_s
        while True:
            p = self.page.evaluate("() => window.__bench.read()")
            states = p["states"]
            ran = any(s == "running" for _, s in states)
            idle = ran and states[-1][1] != "running" and p["now"] - states[-1][0] >= quiet_ms
            if p["t0"] is not None and idle and (metric is None or p["metricAt"] is not None) \
                    and (chart is None or p["chartAt"] is not None):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"no settled page within {timeout_s:.0f} s after {event}: {p}")
            self.page.wait_for_timeout(50)
        t0 = p["t0"]
        settled = max(t for t, s in states if s != "running" and t >= t0)
        out = {"settled_s": (settled - t0) / 1e3, "sent_bytes": self.sent - sent,
               "received_bytes": self.received - received}
        if metric:
            out["metric_s"] = (p["metricAt"] - t0) / 1e3
            out["value"] = p["metricValue"]
        if chart:
            out["picture_s"] = (p["chartAt"] - t0) / 1e3
        return out


def server_ms(page, b) -> dict:
    """What the server reported for its last runs: the page's whole rerun and the open view's."""
    out = {}
    page_ms = b.metric_value(page, "Compute, this rerun")
    if page_ms:
        out["page_rerun_ms"] = float(page_ms.split()[0])
    m = re.search(r"Open view, last rerun: (\d+) ms", page.locator('[data-testid="stSidebar"]').inner_text())
    if m:
        out["view_rerun_ms"] = float(m.group(1))
    return out


def stroke(k: int) -> list[tuple[float, float]]:
    """The k-th "1": the harness's vertical stroke, slanted and bent a little differently each
    time (a shift alone would not do: the page centres the ink, so it would be the same input)."""
    lean = 0.05 * ((k % 7) - 3)
    bend = 0.03 * (k // 7)
    return [(x + lean * (y - 0.5) + bend * (1 - abs(2 * y - 1)), y) for x, y in harness.STROKE_ONE]


def cold_start(b, pw_browser, env: dict) -> dict:
    """Seconds from launching the server to it answering and to the first prediction shown."""
    context = pw_browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        t0 = time.perf_counter()
        with b.streamlit_server(env=env, timeout=180, poll=0.02) as url:
            ready = time.perf_counter()
            page.goto(url, wait_until="commit")
            page.wait_for_function(SHOWN, polling="raf", timeout=180_000)
            return {"server_ready_s": ready - t0, "first_prediction_s": time.perf_counter() - t0}
    finally:
        context.close()


SHOWN = """() => [...document.querySelectorAll('[data-testid="stMetricLabel"]')]
    .some(l => l.innerText.trim() === 'Prediction') && performance.now()"""


def page_load(pw_browser, url: str) -> float:
    """Seconds from navigating a new browser context to a running server to the first
    prediction shown (the page's clock: from the start of the navigation)."""
    context = pw_browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.goto(url, wait_until="commit")
        return page.wait_for_function(SHOWN, polling="raf", timeout=180_000).json_value() / 1e3
    finally:
        context.close()


def summary(values: list[float]) -> dict:
    """Median, range and the samples, in seconds (to 0.1 ms)."""
    return {"median_s": round(statistics.median(values), 4), "min_s": round(min(values), 4),
            "max_s": round(max(values), 4), "n": len(values), "samples_s": [round(v, 4) for v in values]}


def run(args) -> dict:
    b = harness
    chromium = b.find_chromium()
    if chromium is None:
        raise SystemExit("error: no chromium found (set $CAPSULES_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    env = {"CAPSULES_DEVICE": args.device}
    load_before = os.getloadavg()
    results: dict = {"cold": [], "page_load": [], "pen_up": [], "tabs": {v: [] for v in VIEWS}, "slider": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=b.CHROMIUM_ARGS)
        version = browser.version
        for k in range(args.cold):
            results["cold"].append(cold_start(b, browser, env))
            print(f"cold start {k + 1}: {results['cold'][-1]}", flush=True)
        with b.streamlit_server(env=env, timeout=180) as url:
            for k in range(args.cold + 1):  # the first opens the server's caches
                seconds = page_load(browser, url)
                if k:
                    results["page_load"].append(seconds)
                print(f"page load {k}{' (warm-up)' if not k else ''}: {seconds:.3f} s", flush=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            meter = Meter(page, b)
            page.goto(url + "/?debug=1", wait_until="domcontentloaded")  # the server's timings
            page.wait_for_selector('[data-testid="stMetric"]', timeout=180_000)
            b.wait_idle(page)
            meter.install()
            canvas = b.find_canvas(page)
            canvas.scroll_into_view_if_needed()
            for k in range(args.repeats + 1):  # the first round is the warm-up
                timed = k > 0
                if k:  # back on the sample (the tabs' round ended on the first tab)
                    b.clear_canvas(page)
                    b.wait_for_metric(page, "Prediction", lambda v: v.startswith("7"))
                canvas.scroll_into_view_if_needed()
                pen = meter.measure("pointerup", lambda: b.draw(page, canvas, stroke(k)), metric="Prediction")
                pen.update(server_ms(page, b))
                if timed:
                    results["pen_up"].append(pen)
                print(f"{'pen-up' if timed else 'pen-up (warm-up)'}: {pen}", flush=True)
                for view in VIEWS:
                    tab = page.get_by_role("tab", name=view)
                    tab.scroll_into_view_if_needed()
                    m = meter.measure("pointerup", tab.click)
                    m.update(server_ms(page, b))
                    if timed:
                        results["tabs"][view].append(m)
                    if view == "Pose perturbation":
                        slider = page.locator(POSE_SLIDER)
                        slider.scroll_into_view_if_needed()
                        slider.focus()
                        for key in ("ArrowRight", "ArrowLeft"):
                            s = meter.measure("keydown", lambda: page.keyboard.press(key), chart=POSE_PICTURE)
                            s.update(server_ms(page, b))
                            if timed:
                                results["slider"].append(s)
                shown = [round(results["tabs"][v][-1]["settled_s"], 3) for v in VIEWS] if timed else "warm-up"
                print(f"round {k}: tabs {shown}", flush=True)
            page.close()
        browser.close()
    load_after = os.getloadavg()

    tab_all = [m["settled_s"] for v in VIEWS for m in results["tabs"][v]]
    figures = {
        "cold_start": summary([c["first_prediction_s"] for c in results["cold"]]) if results["cold"] else None,
        "cold_start_server_ready": summary([c["server_ready_s"] for c in results["cold"]]) if results["cold"] else None,
        "page_load_to_prediction": summary(results["page_load"]) if results["page_load"] else None,
        "pen_up_to_prediction": summary([m["metric_s"] for m in results["pen_up"]]),
        "pen_up_to_settled": summary([m["settled_s"] for m in results["pen_up"]]),
        "tab_settled": summary(tab_all),
        **{f"tab_settled: {v}": summary([m["settled_s"] for m in results["tabs"][v]]) for v in VIEWS},
        "slider_to_picture": summary([m["picture_s"] for m in results["slider"]]),
        "slider_to_settled": summary([m["settled_s"] for m in results["slider"]]),
    }
    for name, goal in GOALS.items():
        if figures.get(name):
            figures[name]["goal_s"] = goal
            figures[name]["met"] = figures[name]["median_s"] <= goal

    def median(rows, key):
        return statistics.median(r[key] for r in rows) if rows and key in rows[0] else None

    server = {
        "pen_up_page_rerun_ms": median(results["pen_up"], "page_rerun_ms"),
        "tab_page_rerun_ms": {v: median(results["tabs"][v], "page_rerun_ms") for v in VIEWS},
        "slider_view_rerun_ms": median(results["slider"], "view_rerun_ms"),
    }
    traffic = {
        "pen_up_sent_bytes": median(results["pen_up"], "sent_bytes"),
        "pen_up_received_bytes": median(results["pen_up"], "received_bytes"),
        "tab_received_bytes": {v: median(results["tabs"][v], "received_bytes") for v in VIEWS},
        "slider_received_bytes": median(results["slider"], "received_bytes"),
    }
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.page " + shlex.join(sys.argv[1:]),
        "hardware": {"cpu": _cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
                     "load_average_before": [round(x, 2) for x in load_before],
                     "load_average_after": [round(x, 2) for x in load_after], "note": args.note},
        "software": {"python": platform.python_version(), "streamlit": _version("streamlit"),
                     "torch": _version("torch"), "playwright": _version("playwright"), "chromium": version},
        "server_device": args.device,
        "repeats": args.repeats,
        "figures": figures,
        "server": server,
        "websocket": traffic,
        "raw": results,
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def table(report: dict) -> str:
    rows = ["| measurement | median | min | max | n | goal |", "|---|---|---|---|---|---|"]
    for name, f in report["figures"].items():
        if not f:
            continue
        goal = f"≤ {f['goal_s']:g} s {'✓' if f['met'] else '✗'}" if "goal_s" in f else ""
        rows.append(f"| {name} | {f['median_s']:.3f} s | {f['min_s']:.3f} | {f['max_s']:.3f} | {f['n']} | {goal} |")
    s, w = report["server"], report["websocket"]
    rows.append("")
    rows.append(f"server, page rerun after pen-up: {s['pen_up_page_rerun_ms']} ms (median); "
                f"slider's view rerun: {s['slider_view_rerun_ms']} ms")
    rows.append("server, page rerun per tab (ms): "
                + ", ".join(f"{v}: {ms}" for v, ms in s["tab_page_rerun_ms"].items()))
    rows.append(f"websocket, pen-up: {w['pen_up_sent_bytes']} B sent, {w['pen_up_received_bytes']} B received; "
                f"slider: {w['slider_received_bytes']} B received")
    rows.append("websocket received per tab (B): "
                + ", ".join(f"{v}: {n}" for v, n in w["tab_received_bytes"].items()))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (new input, every tab, the slider)")
    p.add_argument("--cold", type=int, default=3, help="cold starts, each with a server of its own")
    p.add_argument("--device", default="cpu", help="the server's $CAPSULES_DEVICE")
    p.add_argument("--json", default=None, help="write the figures here (e.g. docs/bench-page.json)")
    p.add_argument("--note", default="", help="what else the machine was doing, for the JSON")
    args = p.parse_args(argv)
    report = run(args)
    print(table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
