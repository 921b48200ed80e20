"""The statistics of ablations and sweep confirmations against values computed by hand."""

import itertools
import math

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from nnexp import stats, tuning_stats

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


# --- Wilcoxon signed-rank, computed here (not scipy.stats.wilcoxon) ---------------------------------------


def brute_force_wilcoxon(d):
    """Two-sided p by listing all 2^n sign flips of the mid-ranks of |d| (zeros dropped, ties averaged)."""
    d = np.asarray(d, dtype=float)
    d = d[d != 0]
    ranks = sps.rankdata(np.abs(d))
    t = ranks[d > 0].sum()
    signs = np.array(list(itertools.product((0, 1), repeat=len(d)))).reshape(2 ** len(d), len(d))
    dist = signs @ ranks  # T+ of every sign assignment
    return min(1.0, 2 * min(np.mean(dist <= t + 1e-9), np.mean(dist >= t - 1e-9)))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_wilcoxon_exact_equals_enumerating_sign_flips(seed, ties):
    rng = np.random.default_rng(seed)
    for n in (1, 2, 3, 5, 8, 11):
        # with ties: small integers, so |d| repeats and some d are exactly 0 (dropped)
        d = rng.integers(-4, 6, n).astype(float) if ties else rng.normal(0.4, 1.0, n)
        w = stats.wilcoxon(d)
        assert w.exact and w.n == np.count_nonzero(d)
        assert w.p == pytest.approx(brute_force_wilcoxon(d), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("n", [2, 4, 7, 10, 16, 25])
def test_wilcoxon_exact_equals_scipy_exact_without_ties_or_zeros(n):
    rng = np.random.default_rng(n)
    for shift in (0.0, 0.5, 1.5):
        d = rng.normal(shift, 1.0, n)
        assert stats.wilcoxon(d).p == pytest.approx(sps.wilcoxon(d, method="exact").pvalue, rel=1e-12)


def test_wilcoxon_known_values_zeros_and_nans():
    assert stats.wilcoxon([1.0, 2.0, 3.0, 4.0, 5.0]).p == 0.0625  # 2 of 32 sign patterns are as extreme
    assert stats.wilcoxon([-1.0, -2.0, -3.0, -4.0, -5.0, -6.0]).p == 2 / 64
    # all |d| tied: mid-rank 3.5 each, T+ = 3.5 · #positive; P(at least 5 of 6 positive) = 7/64
    w = stats.wilcoxon([-1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    assert (w.t_plus, w.n) == (17.5, 6) and w.p == 14 / 64
    with_zeros = stats.wilcoxon([0.0, 1.0, 0.0, 2.0, 3.0, float("nan"), 4.0, 5.0])
    assert (with_zeros.n, with_zeros.p) == (5, 0.0625)  # zeros and NaNs dropped, not ranked
    assert stats.wilcoxon([0.0, 0.0]).p == 1.0 and math.isnan(stats.wilcoxon([float("nan")]).p)


def asymptotic_scipy(d):
    try:
        return sps.wilcoxon(d, method="asymptotic", correction=True).pvalue
    except ValueError:  # SciPy < 1.13 calls it "approx"
        return sps.wilcoxon(d, method="approx", correction=True).pvalue


@pytest.mark.parametrize("ties", [False, True])
def test_wilcoxon_normal_approximation_above_25(ties):
    rng = np.random.default_rng(3)
    for n in (26, 40, 120):
        d = rng.integers(-6, 12, 3 * n).astype(float) if ties else rng.normal(0.2, 1.0, n)
        d = d[d != 0][:n]
        w = stats.wilcoxon(d)
        assert not w.exact and w.n == n
        # SciPy's normal approximation with the tie correction and continuity correction is the same formula
        assert w.p == pytest.approx(asymptotic_scipy(d), rel=1e-10)
    # and at n = 30 it is close to the exact distribution of the same ranks
    d = rng.normal(0.3, 1.0, 30)
    doubled, _ = stats._doubled_ranks(np.abs(d))
    exact = stats._exact_p(doubled, int(doubled[d > 0].sum()))
    assert stats.wilcoxon(d).p == pytest.approx(exact, abs=0.005)


def test_wilcoxon_smallest_reachable_p():
    assert stats.wilcoxon_min_p([0.3, -0.1, 0.2, 0.5, -0.4]) == 0.0625  # n = 5: can never reject at 0.05
    assert stats.wilcoxon_min_p(np.arange(1.0, 7.0)) == 2 / 64
    assert stats.wilcoxon_min_p([1.0, 1.0, 2.0, -2.0, 3.0]) == 0.0625  # ties do not change 2 / 2^n
    assert stats.wilcoxon_min_p([0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]) == 0.0625  # zeros are not counted
    d = np.random.default_rng(0).normal(size=30)
    z = (30 * 31 / 4 - 0.5) / math.sqrt(30 * 31 * 61 / 24)  # normal approximation with T+ = its maximum
    assert stats.wilcoxon_min_p(d) == pytest.approx(2 * sps.norm.sf(z), rel=1e-12)


def test_paired_uses_the_own_wilcoxon_with_ties_and_its_min_p():
    p = stats.paired([2.0, 3.0, 4.0, 5.0, 6.0, 6.0], [1.0, 2.0, 3.0, 4.0, 5.0, 7.0])  # d = 1, 1, 1, 1, 1, -1
    assert p.wilcoxon_p == 14 / 64 and p.wilcoxon_min_p == 2 / 64
    # 16 seeds with ties: exact here (SciPy's "auto" switches to the normal approximation above 13 with ties)
    d = np.array([1, 2, 2, 3, -1, 4, 4, 4, 5, -2, 6, 3, 7, 1, -3, 8], dtype=float)
    sixteen = stats.paired(10 + d, np.full(16, 10.0))
    assert sixteen.wilcoxon_p == pytest.approx(brute_force_wilcoxon(d), rel=1e-12)  # 282 / 2^16
    five = stats.paired([1.3, 2.6, 4.1, 3.8, 5.9], [1.0, 2.0, 3.0, 4.0, 5.0])
    assert five.wilcoxon_min_p == 0.0625 and five.wilcoxon_min_p > 0.05  # "cannot reach α" beside its verdict
    assert math.isnan(stats.paired([1.0], [0.0]).wilcoxon_min_p)
    old_style = stats.Paired(five.diff, five.t_p, five.wilcoxon_p)  # callers building Paired by position still work
    assert math.isnan(old_style.wilcoxon_min_p) and math.isnan(old_style.boot_lo)


# --- minimum detectable effect of the paired t test ------------------------------------------------------


def power_by_integration(delta_over_sd, k, alpha=0.05):
    """P(|T| > t_crit) with T = (Z + λ) / √(V / df), V ~ χ²_df, λ = δ √k / s, integrated over V (no nct)."""
    df, lam = k - 1, delta_over_sd * math.sqrt(k)
    crit = sps.t.ppf(1 - alpha / 2, df)

    def given_v(v):
        scale = crit * math.sqrt(v / df)
        return (sps.norm.sf(scale - lam) + sps.norm.cdf(-scale - lam)) * sps.chi2.pdf(v, df)

    return integrate.quad(given_v, 0, np.inf, limit=200)[0]


def test_min_detectable_effect_has_the_power_asked():
    mde = stats.min_detectable_effect(1.0, 10)
    assert mde == pytest.approx(0.996, abs=5e-4)  # G*Power, one-sample t, n = 10, α = .05 two-sided, 1-β = .8
    for k in (2, 3, 5, 10, 30):
        assert power_by_integration(stats.min_detectable_effect(1.0, k), k) == pytest.approx(0.8, abs=1e-6)
    assert stats.min_detectable_effect(0.02, 10) == pytest.approx(0.02 * mde, rel=1e-9)  # scales with the SD
    assert stats.min_detectable_effect(1.0, 10, power=0.9) > mde > stats.min_detectable_effect(1.0, 20)


def test_min_detectable_effect_large_k_and_undefined():
    k = 5000
    normal = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * 1.0 / math.sqrt(k)
    assert stats.min_detectable_effect(1.0, k) == pytest.approx(normal, rel=1e-3)
    for sd, k in ((1.0, 1), (0.0, 10), (float("nan"), 10), (float("inf"), 10)):
        assert math.isnan(stats.min_detectable_effect(sd, k))
    with pytest.raises(ValueError):
        stats.min_detectable_effect(1.0, 10, alpha=0.5, power=0.4)


# --- bootstrap interval of the paired mean difference ----------------------------------------------------


def test_bootstrap_is_deterministic_for_a_seed():
    d = np.random.default_rng(1).normal(0.5, 1.0, 10)
    a, b = stats.bootstrap_mean_ci(d, seed=7), stats.bootstrap_mean_ci(d, seed=7)
    assert a == b and a.lo < d.mean() < a.hi and a.n == 10 and a.mean == d.mean()
    assert stats.bootstrap_mean_ci(d, seed=8) != a
    # the percentile interval by hand, from the same draws
    means = d[np.random.default_rng(7).integers(0, 10, size=(10_000, 10))].mean(axis=1)
    assert (a.lo, a.hi) == tuple(np.quantile(means, [0.025, 0.975]))
    assert stats.bootstrap_mean_ci([2.0]) == stats.Interval(2.0, 2.0, 2.0, 1)
    assert stats.bootstrap_mean_ci([float("nan")]).n == 0


def test_bootstrap_covers_the_true_mean():
    rng = np.random.default_rng(2024)
    hits = 0
    for i in range(300):
        ci = stats.bootstrap_mean_ci(rng.normal(3.0, 2.0, 25), resamples=2000, seed=i)
        hits += ci.lo <= 3.0 <= ci.hi
    assert 0.88 <= hits / 300 <= 0.98  # nominal 0.95; the percentile interval runs a little short at small n


def test_paired_carries_the_bootstrap_interval():
    variant, baseline = [1.3, 2.6, 4.1, 3.8, 5.9], [1.0, 2.0, 3.0, 4.0, 5.0]
    p = stats.paired(variant, baseline, seed=3)
    boot = stats.bootstrap_mean_ci(np.subtract(variant, baseline), seed=3)
    assert (p.boot_lo, p.boot_hi) == (boot.lo, boot.hi) and p == stats.paired(variant, baseline, seed=3)
    assert stats.paired([2.0, 3.0, 4.0], [1.0, 2.0, 3.0]).boot_lo == pytest.approx(1.0)  # a constant shift


# --- a claim over several tasks -------------------------------------------------------------------------


def test_over_tasks_counts_only_below_six_tasks():
    r = stats.over_tasks([0.02, 0.01, -0.03, 0.0, 0.05], pvalues=[0.01, 0.3, 0.02, 1.0, 0.04])
    assert (r.n, r.confirm, r.noise, r.reverse) == (5, 2, 2, 1)
    assert math.isnan(r.p) and r.verdict == "" and "too few" in r.note and r.min_p == 0.125  # 4 non-zero
    by_sign = stats.over_tasks([0.02, -0.01, 0.0, float("nan")])
    assert (by_sign.n, by_sign.confirm, by_sign.noise, by_sign.reverse) == (3, 1, 1, 1) and "signs" in by_sign.note
    with pytest.raises(ValueError, match="one p-value per task"):
        stats.over_tasks([0.1, 0.2], pvalues=[0.01])


def test_over_tasks_signed_rank_from_six_tasks():
    r = stats.over_tasks([0.02, 0.01, 0.03, 0.04, 0.05, 0.06])
    assert r.p == 2 / 64 and r.verdict == stats.REAL and "Wilcoxon" in r.note and r.confirm == 6
    # lower is better (a loss): the same differences reverse a claim that the variant lowers it
    loss = stats.over_tasks([0.02, 0.01, 0.03, 0.04, 0.05, 0.06], higher_is_better=False)
    assert loss.verdict == stats.REVERSED and loss.reverse == 6
    mixed = np.array([0.02, -0.01, 0.03, -0.04, 0.05, 0.01, -0.02])
    m = stats.over_tasks(mixed)
    assert m.p == stats.wilcoxon(mixed).p and m.verdict == stats.NOISE
    tied = stats.over_tasks([0.02, 0.01, 0.03, 0.0, 0.05, 0.06])  # 5 non-zero: tested, but it cannot reject
    assert tied.p == 0.0625 and tied.min_p == 0.0625 and "cannot reach" in tied.note and tied.verdict == stats.NOISE


# --- expected best score against the number of tuning trials --------------------------------------------


@pytest.mark.parametrize("scores", [[0.71, 0.64, 0.80, 0.52, 0.77, 0.69, 0.74],
                                    [0.5, 0.7, 0.5, 0.9, 0.7, 0.7, 0.1]])  # the second with ties
def test_expected_best_equals_averaging_all_subsets(scores):
    e = tuning_stats.expected_best(scores)
    low = tuning_stats.expected_best(scores, maximize=False)
    for n in range(1, 8):
        subsets = list(itertools.combinations(scores, n))
        best, worst = [max(s) for s in subsets], [min(s) for s in subsets]
        assert e.mean[n - 1] == pytest.approx(np.mean(best), rel=1e-12)
        assert e.sd[n - 1] == pytest.approx(np.std(best), rel=1e-9, abs=1e-12)
        assert low.mean[n - 1] == pytest.approx(np.mean(worst), rel=1e-12)
    assert list(e.n) == list(range(1, 8))


def test_expected_best_limits_and_large_n():
    v = np.random.default_rng(5).normal(0.8, 0.05, 2000)
    e = tuning_stats.expected_best(np.r_[v, np.nan])  # a failed trial is dropped
    assert len(e.mean) == 2000 and np.all(np.isfinite(e.mean)) and np.all(np.isfinite(e.sd))
    assert e.mean[0] == pytest.approx(v.mean(), rel=1e-12) and e.mean[-1] == pytest.approx(v.max(), rel=1e-12)
    assert np.all(np.diff(e.mean) >= -1e-12) and e.sd[-1] == pytest.approx(0.0, abs=1e-9)
    assert e.sd[0] == pytest.approx(v.std(), rel=1e-9)
    w = tuning_stats.subset_max_weights(2000, 1000)
    assert w.sum() == pytest.approx(1.0) and np.all(w[:999] == 0)
    assert tuning_stats.expected_best([]).mean.size == 0
