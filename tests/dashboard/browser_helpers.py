"""What the browser tests share: the page opened at a width, and the hosts it asked for."""

from __future__ import annotations

from benchmarks.browser import wait_idle


def other_hosts(requests: list[str], app_url: str) -> list[str]:
    """The addresses among ``requests`` that are neither the app nor inline data."""
    return sorted({u for u in requests if not u.startswith((app_url, "data:", "blob:", "about:"))})


def _base_path_probe(message) -> bool:
    """Streamlit's frontend, opened on a page's own address (``/experiments``), first asks whether
    the server lives under that path (``/experiments/_stcore/health``, ``.../host-config``), gets a
    404 and goes on from the root: its own probe, not an error of the app."""
    where = (message.location or {}).get("url", "")
    return message.text.startswith("Failed to load resource") and where.endswith(("/_stcore/health",
                                                                                 "/_stcore/host-config"))


def open_page(browser, url, width: int, ready: str = '[data-testid="stMetric"]'):
    """A new page of ``width`` pixels on ``url`` (the app by default), settled once ``ready``
    shows; the list its requests go to, and the browser console's errors from the first byte on."""
    page = browser.new_page(viewport={"width": width, "height": 1000})
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and not _base_path_probe(m) else None)
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector(ready, timeout=120_000)
    wait_idle(page)
    return page, requests, errors
