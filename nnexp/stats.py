"""Statistics for multi-seed comparisons: means with t confidence intervals, paired differences with a
paired t test and a Wilcoxon signed-rank test, and Holm's correction for testing several variants.

Seeds are the unit of replication: a variant and the baseline trained on the same seeds give paired
samples, so the difference is judged seed by seed, not mean against mean.

The Wilcoxon signed-rank test is computed here in NumPy rather than by `scipy.stats.wilcoxon`, whose
handling of ties and zeros at small n changed across SciPy versions (1.15 switched to sign-flip
permutations): the p-values printed in recorded reports must not depend on the installed SciPy. With it
come the smallest p the test can reach (`wilcoxon_min_p`: with 5 seeds it is 0.0625, so it can never
reject at 0.05), the minimum detectable effect of the paired t test, a seeded bootstrap interval of the
mean difference, and a test of a claim over several tasks. The expected best score against the number of
tuning trials is in `nnexp.tuning_stats`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy import stats as sps

Array = np.ndarray

REAL, NOISE, REVERSED = "real", "within noise", "reversed"
EXACT_MAX_N = 25  # the signed-rank p is exact up to this many non-zero differences, the normal approximation above
MIN_TASKS = 6  # a test over tasks needs 6: with 5 the signed-rank test's smallest two-sided p is 2 / 2^5 = 0.0625


@dataclass(frozen=True)
class Interval:
    """mean with the [lo, hi] confidence interval of the mean, over n samples."""

    mean: float
    lo: float
    hi: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {(self.hi - self.lo) / 2:.4f}" if self.n > 1 else f"{self.mean:.4f}"


def _finite(values: Sequence[float] | Array) -> Array:
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


def _values(values: Sequence[float] | Array) -> tuple[Array, float, Interval | None]:
    """The finite values, their mean, and the interval itself when there are too few for one (none: NaN;
    one: a point)."""
    x = _finite(values)
    if len(x) == 0:
        return x, math.nan, Interval(math.nan, math.nan, math.nan, 0)
    m = float(x.mean())
    return x, m, Interval(m, m, m, 1) if len(x) == 1 else None


def mean_ci(values: Sequence[float] | Array, confidence: float = 0.95) -> Interval:
    """Student-t interval: mean ± t_{(1+c)/2, n-1} · s / sqrt(n) (NaNs dropped; n = 1 gives a point)."""
    x, m, degenerate = _values(values)
    if degenerate is not None:
        return degenerate
    n = len(x)
    half = float(sps.t.ppf((1 + confidence) / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Interval(m, m - half, m + half, n)


def bootstrap_mean_ci(values: Sequence[float] | Array, confidence: float = 0.95, resamples: int = 10_000,
                      seed: int = 0) -> Interval:
    """Percentile bootstrap interval of the mean: [q_{(1-c)/2}, q_{(1+c)/2}] of the means of `resamples`
    resamples with replacement drawn by numpy.random.default_rng(seed) (NaNs dropped; n = 1 gives a point).

    Percentile rather than BCa: with the 5-20 seeds of a study, BCa's bias and acceleration are estimated
    from the same few values (and its bias correction is infinite when every resample falls on one side, as
    for a constant shift), while the percentile interval is the plain quantiles of the resampled means. Both
    are too narrow at small n (the bootstrap variance of the mean is (n-1)/n · s²/n, with z instead of t
    quantiles); the t interval stays the primary one, the bootstrap shows a skewed difference. One seed gives
    one interval (on a given NumPy: NEP 19 does not promise Generator streams across NumPy versions); the
    resample indices are one resamples × n array, so memory grows with n."""
    x, m, degenerate = _values(values)
    if degenerate is not None:
        return degenerate
    n = len(x)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(m, float(lo), float(hi), n)


@dataclass(frozen=True)
class SignedRank:
    """Wilcoxon signed-rank test on n non-zero differences: T+ and its two-sided p (exact or normal)."""

    t_plus: float  # sum of the mid-ranks of |d| over the positive d
    p: float  # two-sided
    n: int  # differences left after dropping the exact zeros
    exact: bool  # p from the permutation distribution (n <= EXACT_MAX_N), else the normal approximation


def _doubled_ranks(a: Array) -> tuple[Array, Array]:
    """2 × the mid-ranks of a (integers: a tie group over ranks s+1..e shares (s+1+e)/2), and the tie group sizes."""
    if len(a) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = np.argsort(a, kind="stable")
    sorted_a = a[order]
    starts = np.flatnonzero(np.r_[True, sorted_a[1:] != sorted_a[:-1]])
    ends = np.r_[starts[1:], len(a)]
    sizes = ends - starts
    doubled = np.empty(len(a), dtype=np.int64)
    doubled[order] = np.repeat(starts + 1 + ends, sizes)
    return doubled, sizes


def _exact_p(doubled: Array, t2: int) -> float:
    """p = min(1, 2 min(P(T+ <= t), P(T+ >= t))) over the 2^n equally likely sign assignments, T+ doubled.

    counts[s] = number of sign assignments whose doubled T+ is s, built one rank at a time (a subset-sum
    dynamic program): adding rank r either leaves it negative (s stays) or makes it positive (s + r)."""
    counts = np.zeros(int(doubled.sum()) + 1, dtype=np.int64)
    counts[0] = 1
    for r in doubled:
        counts[r:] = counts[r:] + counts[:-r]
    tail = min(int(counts[: t2 + 1].sum()), int(counts[t2:].sum()))
    return min(1.0, 2 * tail / 2 ** len(doubled))


def _normal_p(n: int, t_plus: float, ties: Array) -> float:
    """p = 2 (1 - Φ(max(|T+ - n(n+1)/4| - 1/2, 0) / σ)), σ² = n(n+1)(2n+1)/24 - Σ(t³ - t)/48 over tie groups."""
    var = n * (n + 1) * (2 * n + 1) / 24 - float(np.sum(ties.astype(float) ** 3 - ties)) / 48
    z = max(abs(t_plus - n * (n + 1) / 4) - 0.5, 0.0) / math.sqrt(var)
    return min(1.0, float(2 * sps.norm.sf(z)))


def wilcoxon(d: Sequence[float] | Array) -> SignedRank:
    """Wilcoxon signed-rank test, two-sided: T+ = Σ_{d_i > 0} rank(|d_i|), p = min(1, 2 min(P(T+ <= t), P(T+ >= t))).

    NaNs are dropped; differences of exactly 0 are dropped too (Wilcoxon's own "wilcox" zero method: a pair
    on which the two agree says nothing about the direction), so n counts the non-zero differences. Ties in
    |d| share their mid-rank. For n <= 25 the p is exact: the distribution of T+ over all 2^n sign
    assignments of these ranks, ties included (the mid-ranks are doubled into integers). Above that, the
    normal approximation with the tie correction of the variance and a continuity correction of 1/2."""
    x = _finite(d)
    if len(x) == 0:
        return SignedRank(math.nan, math.nan, 0, False)
    x = x[x != 0]
    doubled, ties = _doubled_ranks(np.abs(x))
    t2 = int(doubled[x > 0].sum())
    n = len(x)
    if n <= EXACT_MAX_N:
        return SignedRank(t2 / 2, _exact_p(doubled, t2), n, True)
    return SignedRank(t2 / 2, _normal_p(n, t2 / 2, ties), n, False)


def wilcoxon_min_p(d: Sequence[float] | Array) -> float:
    """Smallest p the signed-rank test can give for these ranks, that of every sign alike: 2 / 2^n when exact.

    With 5 non-zero differences it is 0.0625: the test cannot reject at α = 0.05 whatever the data."""
    return wilcoxon(np.abs(_finite(d))).p


def min_detectable_effect(sd: float, k: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest |mean difference| a two-sided paired t test on k pairs detects with this power: δ = λ s / √k,
    λ solving P(|T'| > t_{1-α/2, k-1}) = power for T' noncentral t with k - 1 degrees of freedom and
    noncentrality λ (NaN when k < 2 or the SD is 0 or not finite)."""
    if not (0 < alpha < 1 and alpha < power < 1):
        raise ValueError(f"expected 0 < alpha < power < 1, got alpha={alpha}, power={power}")
    if k < 2 or not math.isfinite(sd) or sd <= 0:
        return math.nan
    df = k - 1
    crit = float(sps.t.ppf(1 - alpha / 2, df))

    def shortfall(lam: float) -> float:
        return float(sps.nct.sf(crit, df, lam) + sps.nct.sf(crit, df, -lam)) - power  # sf(-λ): cdf(-crit, λ) can be NaN

    hi = float(sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power))  # the normal approximation's λ
    while shortfall(hi) < 0:
        hi *= 2
    lam = optimize.brentq(shortfall, 0.0, hi, xtol=1e-12, rtol=1e-12)
    return float(lam) * sd / math.sqrt(k)


@dataclass(frozen=True)
class Paired:
    """variant - baseline, seed by seed: the mean difference with its CI and two paired tests."""

    diff: Interval
    t_p: float  # paired t test, two-sided
    wilcoxon_p: float  # Wilcoxon signed-rank, two-sided (exact up to 25 non-zero differences, ties included)
    wilcoxon_min_p: float = math.nan  # the smallest Wilcoxon p these ranks allow: above α, it cannot reject
    boot_lo: float = math.nan  # percentile bootstrap interval of the mean difference (seeded)
    boot_hi: float = math.nan


def paired(variant: Sequence[float] | Array, baseline: Sequence[float] | Array, confidence: float = 0.95,
           resamples: int = 10_000, seed: int = 0) -> Paired:
    """Compare two samples taken on the same seeds, d = variant - baseline; pairs with a NaN on either side
    are dropped. t p from t = mean(d) / (s_d / √n), Wilcoxon p from `wilcoxon(d)`, the bootstrap interval
    from `bootstrap_mean_ci(d, confidence, resamples, seed)`."""
    a, b = np.asarray(variant, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need the same seeds: {a.shape} vs {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    ci = mean_ci(d, confidence)
    if len(d) < 2:
        return Paired(ci, math.nan, math.nan)
    boot = bootstrap_mean_ci(d, confidence, resamples, seed)
    if not np.any(d != 0):  # identical on every seed: no difference at all
        t_p = 1.0
    elif np.all(d == d[0]):  # a constant shift: t is infinite, the difference is certain
        t_p = 0.0
    else:
        t_p = float(sps.ttest_rel(a[ok], b[ok]).pvalue)
    return Paired(ci, t_p, wilcoxon(d).p, wilcoxon_min_p(d), boot.lo, boot.hi)


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


def _judge(shift: float, p: float, higher_is_better: bool, expect_better: bool, alpha: float) -> str:
    if not (math.isfinite(p) and p < alpha):
        return NOISE
    better = shift > 0 if higher_is_better else shift < 0
    return REAL if better == expect_better else REVERSED


def verdict(diff: Interval, p_adjusted: float, higher_is_better: bool, expect_better: bool = True,
            alpha: float = 0.05) -> str:
    """Judge variant - baseline against the direction a claim expects: 'real' if the adjusted test
    rejects and the variant moved the expected way, 'reversed' if it rejects and the variant moved the
    other way, 'within noise' otherwise."""
    return _judge(diff.mean, p_adjusted, higher_is_better, expect_better, alpha)


@dataclass(frozen=True)
class OverTasks:
    """A claim tested on several tasks: how many tasks confirm it, are within noise, or reverse it, and
    the Wilcoxon signed-rank test over the per-task mean differences when there are enough tasks."""

    n: int  # tasks with a finite difference
    confirm: int
    noise: int
    reverse: int
    p: float  # signed-rank over tasks, two-sided; NaN when there are too few tasks for a test
    min_p: float  # the smallest p that test could give for these tasks
    verdict: str  # REAL / NOISE / REVERSED from the test over tasks; "" when not tested
    note: str


def over_tasks(diffs: Sequence[float] | Array, pvalues: Sequence[float] | Array | None = None,
               higher_is_better: bool = True, expect_better: bool = True, alpha: float = 0.05) -> OverTasks:
    """Demšar (2006): a signed-rank test over the per-task mean differences d_j (variant - baseline),
    T+ = Σ_{d_j > 0} rank(|d_j|), with at least MIN_TASKS tasks; with fewer, only the counts.

    A task confirms the claim when its own test rejects at α (`pvalues`, e.g. each task's paired p) and the
    variant moved the expected way, reverses it when it rejects the other way, else is within noise;
    without `pvalues` the tasks are counted by the sign of d_j alone (0 within noise). Tasks with a NaN
    difference are dropped."""
    d = np.asarray(diffs, dtype=float).ravel()
    p = np.full(len(d), math.nan) if pvalues is None else np.asarray(pvalues, dtype=float).ravel()
    if p.shape != d.shape:
        raise ValueError(f"one p-value per task: {len(p)} for {len(d)} tasks")
    ok = np.isfinite(d)
    d, p = d[ok], p[ok]
    if pvalues is None:  # by sign alone: any non-zero difference counts as if its test rejected
        p = np.where(d != 0, 0.0, 1.0)
    words = [_judge(float(x), float(q), higher_is_better, expect_better, alpha) for x, q in zip(d, p, strict=True)]
    counts = (words.count(REAL), words.count(NOISE), words.count(REVERSED))
    how = "per-task tests at α" if pvalues is not None else "signs of the differences only"
    if len(d) < MIN_TASKS:
        note = (f"{len(d)} tasks: too few for a test over tasks (it needs {MIN_TASKS}), counts only, by {how}")
        return OverTasks(len(d), *counts, math.nan, wilcoxon_min_p(d), "", note)
    w = wilcoxon(d)
    word = _judge(w.t_plus - w.n * (w.n + 1) / 4, w.p, higher_is_better, expect_better, alpha)
    min_p = wilcoxon_min_p(d)
    note = f"Wilcoxon signed-rank over {len(d)} tasks ({w.n} non-zero); counts by {how}"
    if min_p >= alpha:  # exact zeros dropped below 6 non-zero differences
        note += f"; it cannot reach α = {alpha:g} (its smallest p is {min_p:.3g})"
    return OverTasks(len(d), *counts, w.p, min_p, word, note)
