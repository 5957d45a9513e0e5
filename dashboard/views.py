"""How a page shows its views: charts (with a figure cache shared by every session), tabs of which
only the open one runs, fragments that rerun one view alone, and, with ``?debug=1`` in the
address, the time of each rerun in the sidebar (:class:`Clock`)."""

from __future__ import annotations

import functools
import time

import streamlit as st

from dashboard import url_state

PLOTLY_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


# ------------------------------------------------------------------------------ timing


class Clock:
    """Wall time of one script run: ``total`` from the clock's creation (the whole rerun so
    far), ``steps`` the model work by label."""

    def __init__(self):
        self.start = time.perf_counter()
        self.steps: dict[str, float] = {}

    def __call__(self, label: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.steps[label] = self.steps.get(label, 0.0) + (time.perf_counter() - t0) * 1e3
        return out

    @property
    def total(self) -> float:
        """Milliseconds since the run began."""
        return (time.perf_counter() - self.start) * 1e3


# ------------------------------------------------------------------------------ widgets


def chart(fig, key: str) -> None:
    st.plotly_chart(fig, key=key, config=PLOTLY_CONFIG)


@st.cache_resource(max_entries=256, show_spinner=False)
def _figure(_draw, name: str, args: tuple, kwargs: tuple):
    return _draw(*args, **dict(kwargs))


def figure(draw, *args, **kwargs):
    """``draw(*args, **kwargs)`` (a function of :mod:`dashboard.figures`), built once per figure
    function and distinct arguments (hashed by content) and shared by all sessions: a rerun that
    shows the same numbers again does not rebuild the figure. Figures are only read afterwards
    (``st.plotly_chart`` copies them)."""
    return _figure(draw, f"{draw.__module__}.{draw.__qualname__}", args, tuple(sorted(kwargs.items())))


def debug_mode() -> bool:
    """Diagnostics (the rerun timings in the sidebar) show only with ``?debug=1`` in the URL."""
    return st.query_params.get("debug") == "1"


def report_time(slot, clock: Clock) -> None:
    """With ``?debug=1``: the time of this whole script run, in the slot :func:`model_panel` left.
    Call it last."""
    if not debug_mode():
        return
    with slot.container():
        st.metric("Compute, this rerun", f"{clock.total:.0f} ms",
                  help="Wall time of this whole script run on the server: reading the widgets, the "
                       "model work, building the figures and sending them (the browser's drawing "
                       "is not included). Results and figures already made for these numbers come "
                       "from a cache. A control inside a view reruns only that view (below).")
        if clock.steps:
            st.caption("model work: " + " · ".join(f"{k_} {v_:.1f} ms" for k_, v_ in clock.steps.items()))
        last = st.session_state.get("new_input_ms")
        if last is not None:
            st.caption(f"Last new input: **{last:.0f} ms** for the whole rerun.")


def show_views(views: dict, key: str, param: str | None = "tab") -> None:
    """A page's views as tabs (session-state key ``key``); only the open tab's ``draw()`` runs:
    a closed tab computes and draws nothing. The open tab is kept in the address as ``param``
    (:func:`dashboard.url_state.slug` of its label; the first tab is the default)."""
    labels = list(views)
    if param:
        url_state.restore(param, key, url_state.one_of({url_state.slug(v): v for v in labels}, "tab"), "tab")
    tabs = st.tabs(labels, key=key, on_change="rerun")
    for label, tab in zip(labels, tabs):
        if tab.open:
            if param:
                url_state.remember(param, None if label == labels[0] else url_state.slug(label))
            with tab:
                views[label]()


def end_run(slot, clock: Clock, input_key) -> None:
    """Last on a page: the cost of this run is remembered as that of a new input when
    ``input_key`` (what the page reads, and r) changed, and the time goes to the sidebar's
    ``slot`` (:func:`report_time`)."""
    if st.session_state.get("input_key") != input_key:
        st.session_state["input_key"] = input_key
        st.session_state["new_input_ms"] = clock.total
    report_time(slot, clock)


def view(draw):
    """A view of a page as a fragment: its own controls rerun only it, not the page. ``draw``
    takes its arguments and a :class:`Clock` (last); with ``?debug=1`` the view's time goes to the
    sidebar."""

    @functools.wraps(draw)
    def run(*args):
        clock = Clock()
        draw(*args, clock)
        if not debug_mode():
            return
        with st.sidebar:
            work = " · ".join(f"{k_} {v_:.1f} ms" for k_, v_ in clock.steps.items())
            st.caption(f"Open view, last rerun: **{clock.total:.0f} ms**" + (f" (model work: {work})" if work else ""))

    return st.fragment(run)
