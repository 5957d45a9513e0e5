"""Screenshot the dashboard: start it, draw a digit (or keep the sample), save a full-page PNG.

    python scripts/screenshot.py [--out docs/dashboard.png] [--draw seven|one|none]
                                 [--tab "Routing step by step"] [--theme light|dark] [--width 1400]
    python scripts/screenshot.py --link "/models?card=capsnet-mnist-r1" --draw none --out docs/models-page.png

``--link`` opens that address of the app (a page and its state, as "Copy link" gives them) in a
fresh browser, as a person opening a shared link does.

Uses the system chromium through Playwright (nothing is downloaded). The PNG is reduced to a
256-colour palette so that it stays small (< 500 KB).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from benchmarks import browser as harness

ROOT = Path(__file__).resolve().parents[1]


def trim_bottom(im, keep: int = 40):
    """Cut the empty rows under the app's last element (the sidebar column is ignored)."""
    import numpy as np

    a = np.asarray(im)
    main = a[:, a.shape[1] // 4:]
    background = main[-1, -1]
    used = np.flatnonzero((main != background).any(axis=(1, 2)))
    if used.size == 0:
        return im
    return im.crop((0, 0, im.width, min(im.height, int(used[-1]) + keep)))


def shrink_png(data: bytes, max_bytes: int) -> bytes:
    """Palette-quantise (and if needed downscale) a PNG until it is under ``max_bytes``."""
    from PIL import Image

    im = trim_bottom(Image.open(io.BytesIO(data)).convert("RGB"))
    out = io.BytesIO()
    im.save(out, format="PNG", optimize=True)
    if out.tell() <= max_bytes:  # true colour when it fits
        return out.getvalue()
    scale = 1.0
    while True:
        w, h = int(im.width * scale), int(im.height * scale)
        small = im if scale == 1.0 else im.resize((w, h), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        small.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
            out, format="PNG", optimize=True)
        if out.tell() <= max_bytes or scale < 0.4:
            return out.getvalue()
        scale *= 0.85


def full_page(page, width: int, wait_idle) -> bytes:
    """A screenshot of the whole app. Streamlit scrolls inside its main container, not the
    body, so the viewport is grown to the content's height first."""
    page.set_viewport_size({"width": width, "height": 1000})
    page.wait_for_timeout(500)
    height = page.evaluate("""() => Math.max(...[
        '[data-testid="stMain"]', '[data-testid="stAppViewContainer"]', 'section.main'
    ].map(s => document.querySelector(s)).filter(Boolean).map(e => e.scrollHeight), 800)""")
    page.set_viewport_size({"width": width, "height": int(height) + 40})
    wait_idle(page)
    page.wait_for_timeout(1500)  # let plotly finish drawing at the new size
    return page.screenshot(full_page=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "dashboard.png"))
    p.add_argument("--draw", choices=["seven", "one", "none"], default="seven")
    p.add_argument("--tab", default=None, help="open this tab before the screenshot")
    p.add_argument("--all-tabs", action="store_true",
                   help="also save one screenshot per tab, as OUT-stem + '-tabN.png'")
    p.add_argument("--theme", choices=["light", "dark"], default="light")
    p.add_argument("--link", default="", help="the path and query to open, e.g. '/models' (default: the start page)")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--max-kb", type=int, default=480)
    args = p.parse_args(argv)

    b = harness
    chromium = b.find_chromium()
    if chromium is None:
        print("error: no chromium found (set $CAPSULES_CHROMIUM)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    strokes = {"one": b.STROKE_ONE, "seven": b.STROKE_SEVEN}
    with b.streamlit_server(extra_args=["--theme.base", args.theme]) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=b.CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": args.width, "height": 1000},
                                    device_scale_factor=1)
            page.goto(url + args.link, wait_until="domcontentloaded")
            page.wait_for_selector('[data-testid="stMetric"]', timeout=90_000)
            b.wait_idle(page)
            if args.draw != "none":
                before = b.metric_value(page, "Prediction")
                b.draw(page, b.find_canvas(page), strokes[args.draw])
                page.wait_for_function(
                    "() => document.body.innerText.includes('your drawing')", timeout=60_000)
                b.wait_idle(page)
                print(f"Prediction: {before} -> {b.metric_value(page, 'Prediction')}")
            if args.tab:
                page.get_by_role("tab", name=args.tab).click()
                b.wait_idle(page)
            png = full_page(page, args.width, b.wait_idle)
            extra = []
            if args.all_tabs:
                for n, tab in enumerate(page.get_by_role("tab").all()):
                    tab.click()
                    b.wait_idle(page)
                    extra.append(full_page(page, args.width, b.wait_idle))
        finally:
            browser.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = shrink_png(png, args.max_kb * 1024)
    out.write_bytes(data)
    print(f"{out}: {len(data) / 1024:.0f} KB")
    for n, png in enumerate(extra):
        path = out.with_name(f"{out.stem}-tab{n + 1}.png")
        path.write_bytes(shrink_png(png, args.max_kb * 1024))
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
