"""Expected best validation score against the number of tuning trials ("Show your work", Dodge et al.
2019), with the unbiased estimator of Tang et al. 2020 ("Showing your work doesn't always work").

From N finished trials with scores v_(1) <= ... <= v_(N), the expected best of n <= N trials drawn
without replacement is E[max of n] = Σ_i v_(i) C(i-1, n-1) / C(N, n): C(i-1, n-1) / C(N, n) is the
probability that the i-th smallest score is the largest of a random n-subset. Averaged over all n-subsets
of the N, it is an unbiased estimate of the expected best of n trials from the search's distribution
(Dodge et al.'s original estimator draws with replacement and is biased). It says how much a budget of n
trials buys; it is not a confidence band, and the curve for n near N rests on a handful of top trials.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

Array = np.ndarray


@dataclass(frozen=True, eq=False)
class ExpectedBest:
    """For n = 1..N trials: the expected best score and the SD of the best of n, over n-subsets of the N."""

    n: Array  # 1..N
    mean: Array  # E[best of n]
    sd: Array  # SD of the best of n over the n-subsets (the spread one tuning run of n trials sees)


def subset_max_weights(N: int, n: int, log_factorial: Array | None = None) -> Array:
    """w_i = C(i-1, n-1) / C(N, n), i = 1..N: P(the i-th smallest of N is the largest of a random n-subset).

    In log space (log_factorial[k] = log k!, computed once by the caller for a whole curve), so N in the
    thousands neither overflows nor loses the weights; renormalised to sum to 1 (Σ_i C(i-1, n-1) = C(N, n))."""
    if not 1 <= n <= N:
        raise ValueError(f"expected 1 <= n <= N, got n={n}, N={N}")
    lf = gammaln(np.arange(N + 1) + 1.0) if log_factorial is None else log_factorial
    i = np.arange(n, N + 1)  # the i-th smallest can be the largest of n only if i >= n
    log_w = (lf[i - 1] - lf[n - 1] - lf[i - n]) - (lf[N] - lf[n] - lf[N - n])
    w = np.zeros(N)
    w[n - 1:] = np.exp(log_w)
    return w / w.sum()


def expected_best(scores: Sequence[float] | Array, maximize: bool = True) -> ExpectedBest:
    """E[best of n] = Σ_i v_(i) C(i-1, n-1) / C(N, n) for n = 1..N (Tang et al. 2020), v sorted ascending;
    with maximize=False (a loss) the expected minimum, the same on -v.

    Trials with a NaN score (failed or pruned without a value) are dropped, so N counts the scored trials;
    ties need nothing special (tied scores are interchangeable in the sum). n = 1 gives the mean of the
    scores, n = N their best. sd is √(Σ_i w_i v_(i)² - E²), computed about the mean of the scores."""
    v = np.asarray(scores, dtype=float).ravel()
    v = v[np.isfinite(v)]
    sign = 1.0 if maximize else -1.0
    v = np.sort(sign * v)
    N = len(v)
    centre = float(v.mean()) if N else 0.0
    c = v - centre
    mean, sd = np.empty(N), np.empty(N)
    lf = gammaln(np.arange(N + 1) + 1.0)
    for n in range(1, N + 1):
        w = subset_max_weights(N, n, lf)
        m = float(w @ c)
        mean[n - 1] = sign * (centre + m)
        sd[n - 1] = math.sqrt(max(float(w @ (c * c)) - m * m, 0.0))
    return ExpectedBest(np.arange(1, N + 1), mean, sd)
