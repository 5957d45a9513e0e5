"""capsules.stats: the Wilson interval, the paired test of two means and McNemar's exact test, against
closed forms."""

import math

import pytest

from capsules.experiments import accuracy_interval, intervals_overlap, wilson_interval


def test_wilson_interval_closed_forms():
    z2 = 1.959963984540054**2
    lo, hi = wilson_interval(0, 10)  # k = 0: [0, z^2 / (n + z^2)]
    assert lo == 0.0 and hi == pytest.approx(100 * z2 / (10 + z2))
    lo, hi = wilson_interval(50, 50)  # k = n: [n / (n + z^2), 1]
    assert lo == pytest.approx(100 * 50 / (50 + z2)) and hi == pytest.approx(100.0)
    lo, hi = wilson_interval(9956, 10000)
    assert lo < 99.56 < hi and hi - lo < 0.3
    width = lambda k, n: wilson_interval(k, n)[1] - wilson_interval(k, n)[0]  # noqa: E731
    assert width(5, 10) > width(500, 1000) > width(5000, 10000)


def test_accuracy_interval_and_overlap():
    assert accuracy_interval(99.4, 500) == wilson_interval(497, 500)
    assert accuracy_interval(38.0, 500) == wilson_interval(190, 500)
    assert intervals_overlap((99.41, 99.67), (99.19, 99.51))
    assert intervals_overlap((1.0, 2.0), (2.0, 3.0))  # touching ends share a point
    assert not intervals_overlap((99.41, 99.67), (99.0, 99.40))
    assert intervals_overlap([0, 3], [1, 4], [2, 5]) and not intervals_overlap([0, 3], [1, 4], [3.5, 5])
    with pytest.raises(ValueError, match="at least one"):
        intervals_overlap()


def test_paired_mean_test_closed_forms():
    """z = mean(d) / (sd(d) / sqrt(n)) on the differences, two-sided against the normal."""
    from capsules.experiments import paired_mean_p

    assert paired_mean_p([3, 1, 2], [3, 1, 2]) == 1.0  # no difference at all
    assert paired_mean_p([2, 2, 2], [1, 1, 1]) == 0.0  # the same difference on every item
    d = [1, -1, 1, 1]  # mean 0.5, sd 1, n 4: z = 1
    assert paired_mean_p(d, [0] * 4) == pytest.approx(math.erfc(1 / math.sqrt(2)))  # 0.3173
    assert paired_mean_p([0] * 4, d) == paired_mean_p(d, [0] * 4)  # two-sided
    big = [1] * 60 + [0] * 40  # mean 0.6, sd 0.4924: z = 12.2
    assert paired_mean_p(big, [0] * 100) < 1e-30
    with pytest.raises(ValueError, match="two paired samples"):
        paired_mean_p([1], [1, 2])


def test_mcnemar_is_the_exact_two_sided_binomial_test_of_the_changed_predictions():
    from capsules.experiments import mcnemar_p

    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(3, 3) == 1.0
    assert mcnemar_p(4, 0) == mcnemar_p(0, 4) == 2 / 16  # all 4 one way: 2 x (1/2)^4
    assert mcnemar_p(6, 2) == pytest.approx(2 * (1 + 8 + 28) / 256)
    assert mcnemar_p(10, 0) < 0.05 < mcnemar_p(5, 0)
