"""What the experiments' modules share: the progress callback ``progress(fraction, message)`` (the
dashboard passes one that drives ``st.progress``, the command line a tqdm bar) and percentages."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float, str], None]


def _report(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(min(max(fraction, 0.0), 1.0), message)


def _span(progress: Progress | None, lo: float, hi: float) -> Progress | None:
    """A callback mapping [0, 1] onto [lo, hi] of ``progress``."""
    if progress is None:
        return None
    return lambda f, msg: progress(lo + (hi - lo) * f, msg)


def _percent(correct: int, total: int) -> float:
    return 100.0 * correct / total if total else 0.0
