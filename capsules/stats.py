"""The project's statistics, in one place: the 95% Wilson score interval of a proportion
(:func:`binomial_interval`, as fractions; :func:`wilson_interval` in percent), whether intervals
overlap (within the noise of the test set), McNemar's exact test of two classifiers on the same
images and the paired z-test of two means over the same items."""

from __future__ import annotations

import math


def binomial_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion of ``k`` in ``n``, as fractions in [0, 1]: the one
    interval of the project (:func:`capsules.experiments.wilson_interval` gives it in percent)."""
    if n <= 0:
        return 0.0, 1.0
    z = {0.9: 1.6448536269514722, 0.95: 1.959963984540054, 0.99: 2.5758293035489004}[confidence]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # the interval always contains p; min/max only absorb rounding at p = 0 and p = 1
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def wilson_interval(correct: int, total: int) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion ``correct / total``, in percent
    (:func:`capsules.stats.binomial_interval`)."""
    lo, hi = binomial_interval(correct, total)
    return 100.0 * lo, 100.0 * hi


def accuracy_interval(accuracy: float, total: int) -> tuple[float, float]:
    """:func:`wilson_interval` of an accuracy given in percent over ``total`` images (as the
    results file stores the robustness curves): the count is ``round(accuracy * total / 100)``."""
    return wilson_interval(round(accuracy * total / 100.0), total)


def mcnemar_p(broke: int, fixed: int) -> float:
    """Exact two-sided McNemar test of two classifiers scored on the same images: ``broke`` images
    only the first gets right, ``fixed`` only the second. Under no difference each of these
    discordant images falls either way with probability 1/2, so the p-value is the two-sided
    binomial tail of min(broke, fixed) in broke + fixed draws (1 when there are none)."""
    n = broke + fixed
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(broke, fixed) + 1)) / 2**n
    return min(1.0, 2.0 * tail)


SIGNIFICANCE = 0.05  # a paired difference with McNemar p below this is called beyond the noise


def mcnemar_verdict(broke: int, fixed: int) -> tuple[float, bool]:
    """:func:`mcnemar_p` of the discordant pairs, and whether it is below :data:`SIGNIFICANCE`
    (the difference is beyond the noise)."""
    p = mcnemar_p(broke, fixed)
    return p, p < SIGNIFICANCE


def intervals_overlap(*intervals: tuple[float, float] | list[float]) -> bool:
    """Whether the intervals ``(lo, hi)`` share at least one point (``max lo <= min hi``): two 95%
    intervals that overlap leave the difference within the noise of the test set."""
    if not intervals:
        raise ValueError("intervals_overlap needs at least one interval")
    return max(lo for lo, _ in intervals) <= min(hi for _, hi in intervals)


def paired_mean_p(x: list[int] | list[float], y: list[int] | list[float]) -> float:
    """Two-sided p-value of the paired z-test that the mean of ``x`` equals the mean of ``y``,
    measured on the same items: ``z = mean(d) / (sd(d) / sqrt(n))`` for the differences
    ``d = x - y`` (sample standard deviation), against the normal distribution, which the mean of
    hundreds of bounded differences follows closely. 1 when every difference is zero, 0 when they
    are all the same non-zero value."""
    n = len(x)
    if n != len(y) or n < 2:
        raise ValueError(f"paired_mean_p needs two paired samples of at least 2 items, got {n} and {len(y)}")
    d = [a - b for a, b in zip(x, y)]
    mean = sum(d) / n
    var = sum((v - mean) ** 2 for v in d) / (n - 1)
    if var == 0:
        return 1.0 if mean == 0 else 0.0
    z = mean / math.sqrt(var / n)
    return math.erfc(abs(z) / math.sqrt(2.0))
