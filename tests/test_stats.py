"""The statistics of ablations and sweep confirmations against values computed by hand."""

import math

import pytest

from nnexp import stats

T_975_4 = 2.7764451051977934  # Student t, 4 degrees of freedom, 97.5th percentile (table value)


def t4_two_sided(t):
    """Two-sided p of Student's t with 4 degrees of freedom, in closed form:
    F(t) = 1/2 + t / (2 sqrt(t^2 + 4)) * (1 + 2 / (t^2 + 4))."""
    t = abs(t)
    return 2 * (0.5 - t / (2 * math.sqrt(t * t + 4)) * (1 + 2 / (t * t + 4)))


def test_mean_and_t_interval():
    i = stats.mean_ci([1, 2, 3, 4, 5])
    half = T_975_4 * math.sqrt(2.5) / math.sqrt(5)  # s^2 = 10 / 4
    assert (i.mean, i.n) == (3.0, 5)
    assert i.lo == pytest.approx(3 - half, rel=1e-12) and i.hi == pytest.approx(3 + half, rel=1e-12)
    assert stats.mean_ci([2.0]).lo == 2.0 and stats.mean_ci([]).n == 0
    assert stats.mean_ci([1.0, float("nan"), 3.0]).n == 2


def test_paired_difference_t_test_and_wilcoxon():
    variant, baseline = [1.3, 2.6, 4.1, 3.8, 5.9], [1.0, 2.0, 3.0, 4.0, 5.0]
    p = stats.paired(variant, baseline)
    d = [0.3, 0.6, 1.1, -0.2, 0.9]
    mean = sum(d) / 5
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 4)
    assert p.diff.mean == pytest.approx(0.54, rel=1e-12)
    assert p.diff.hi - p.diff.mean == pytest.approx(T_975_4 * sd / math.sqrt(5), rel=1e-12)
    assert p.t_p == pytest.approx(t4_two_sided(mean / (sd / math.sqrt(5))), rel=1e-9)
    # |d| ranks 2, 3, 5, 1, 4: W- = 1; exactly 2 of the 2^5 sign patterns give W <= 1 -> two-sided 4/32
    assert p.wilcoxon_p == pytest.approx(4 / 32, rel=1e-12)


def test_paired_edge_cases():
    same = stats.paired([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same.diff.mean == 0 and same.t_p == 1.0
    shifted = stats.paired([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert shifted.diff.mean == 1.0 and shifted.t_p == 0.0
    diverged = stats.paired([1.0, float("nan"), 3.5, 4.2], [1.0, 2.0, 3.0, 4.0])
    assert diverged.diff.n == 3
    with pytest.raises(ValueError, match="same seeds"):
        stats.paired([1.0, 2.0], [1.0])


def test_holm_correction():
    assert stats.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert stats.holm([0.2, 0.6]) == pytest.approx([0.4, 0.6])
    out = stats.holm([0.01, float("nan"), 0.02])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)


@pytest.mark.parametrize(
    ("mean", "p", "higher", "expect_better", "verdict"),
    [(0.1, 0.01, True, True, "real"), (-0.1, 0.01, True, True, "reversed"), (0.1, 0.2, True, True, "within noise"),
     (-5.0, 0.001, False, True, "real"), (5.0, 0.001, False, False, "real"), (-0.1, 0.01, True, False, "real")],
)
def test_verdicts(mean, p, higher, expect_better, verdict):
    assert stats.verdict(stats.Interval(mean, mean - 1, mean + 1, 5), p, higher, expect_better) == verdict
