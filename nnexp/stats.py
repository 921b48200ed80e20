"""Statistics for multi-seed comparisons: means with t confidence intervals, paired differences with a
paired t test and a Wilcoxon signed-rank test, and Holm's correction for testing several variants.

Seeds are the unit of replication: a variant and the baseline trained on the same seeds give paired
samples, so the difference is judged seed by seed, not mean against mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

Array = np.ndarray

REAL, NOISE, REVERSED = "real", "within noise", "reversed"


@dataclass(frozen=True)
class Interval:
    """mean with the [lo, hi] confidence interval of the mean, over n samples."""

    mean: float
    lo: float
    hi: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {(self.hi - self.lo) / 2:.4f}" if self.n > 1 else f"{self.mean:.4f}"


def mean_ci(values: Sequence[float] | Array, confidence: float = 0.95) -> Interval:
    """Student-t interval: mean ± t_{(1+c)/2, n-1} · s / sqrt(n) (NaNs dropped; n = 1 gives a point)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    m = float(x.mean())
    if n == 1:
        return Interval(m, m, m, 1)
    half = float(sps.t.ppf((1 + confidence) / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Interval(m, m - half, m + half, n)


@dataclass(frozen=True)
class Paired:
    """variant - baseline, seed by seed: the mean difference with its CI and two paired tests."""

    diff: Interval
    t_p: float  # paired t test, two-sided
    wilcoxon_p: float  # Wilcoxon signed-rank, two-sided (exact for small n without ties)


def paired(variant: Sequence[float] | Array, baseline: Sequence[float] | Array, confidence: float = 0.95) -> Paired:
    """Compare two samples taken on the same seeds; pairs with a NaN on either side are dropped."""
    a, b = np.asarray(variant, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need the same seeds: {a.shape} vs {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    ci = mean_ci(d, confidence)
    if len(d) < 2:
        return Paired(ci, math.nan, math.nan)
    if not np.any(d != 0):  # identical on every seed: no difference at all
        return Paired(ci, 1.0, 1.0)
    if np.all(d == d[0]):  # a constant shift: t is infinite, the difference is certain
        t_p = 0.0
    else:
        t_p = float(sps.ttest_rel(a[ok], b[ok]).pvalue)
    w_p = float(sps.wilcoxon(d).pvalue)
    return Paired(ci, t_p, w_p)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaNs stay NaN and do not count as tests).

    Sorted ascending, p_(i) becomes max_{j <= i} min(1, (m - j) p_(j)) for j counted from 0."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), math.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def verdict(diff: Interval, p_adjusted: float, higher_is_better: bool, expect_better: bool = True,
            alpha: float = 0.05) -> str:
    """Judge variant - baseline against the direction a claim expects: 'real' if the adjusted test
    rejects and the variant moved the expected way, 'reversed' if it rejects and the variant moved the
    other way, 'within noise' otherwise."""
    if not (math.isfinite(p_adjusted) and p_adjusted < alpha):
        return NOISE
    better = diff.mean > 0 if higher_is_better else diff.mean < 0
    return REAL if better == expect_better else REVERSED
