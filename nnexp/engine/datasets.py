"""The synthetic data sets, each a pure function of its parameters: the guide's regression set, a set
of the same family with other coefficients, Friedman #1, and the phase-1 truth tables."""

from __future__ import annotations

import numpy as np

from nnexp.engine.data import MAX_COLUMNS, MAX_ROWS, MAX_VALUES, Dataset, Scaler, _integer, _is_real, split
from nnexp.errors import ConfigError, choice

Array = np.ndarray


def seed_regression_raw(n: int, seed: int, noise: float = 0.0) -> tuple[Array, Array]:
    """The seed's 4-feature problem in its own units: x ~ U(-2, 2)^4 and
    y = sin(x1 x2) + cos(x3) sin(x4) + 0.1 (x1^2 + x2^2) + 0.3 x3 x4 + exp(-0.5 (x3^2 + x4^2))
        + 0.5 x1 - 0.3 x2 + 0.2 x3 + 0.1 x4 + noise * N(0, 1)."""
    rng = np.random.default_rng([seed, 11])
    x = rng.uniform(-2.0, 2.0, (n, 4))
    x1, x2, x3, x4 = x.T
    y = (np.sin(x1 * x2) + np.cos(x3) * np.sin(x4)
         + 0.1 * (x1**2 + x2**2) + 0.3 * x3 * x4
         + np.exp(-0.5 * (x3**2 + x4**2))
         + 0.5 * x1 - 0.3 * x2 + 0.2 * x3 + 0.1 * x4)
    return x, y + noise * rng.normal(size=n)


def seed_regression(n_train: int = 800, n_test: int = 400, seed: int = 0, noise: float = 0.05,
                    val_fraction: float = 0.2) -> Dataset:
    """The seed's synthetic regression set (800 train / 400 test), target scaled to [0, 1] on train."""
    n_train, n_test, seed = _synthetic(n_train, n_test, seed, noise)
    x, y = seed_regression_raw(n_train + n_test, seed, noise)
    return split(x[:n_train], y[:n_train], x[n_train:], y[n_train:], val_fraction, seed, "seed_regression")


def seed_like_coefficients(coef_seed: int) -> dict[str, float]:
    """The coefficients of `seed_like` for `coef_seed`, drawn in this order from default_rng([coef_seed, 23])
    (the seed's own values in brackets, within the ranges):

        a, w      ~ U(0.5, 1.5)        trigonometric interaction  a sin(w x1 x2)           [1, 1]
        b, u, v   ~ U(0.5, 1.5)        cos-sin term               b cos(u x3) sin(v x4)    [1, 1, 1]
        q1, q2    ~ U(0.05, 0.2)       quadratic terms            q1 x1^2 + q2 x2^2        [0.1, 0.1]
        p         ~ ±U(0.1, 0.5)       product                    p x3 x4                  [0.3]
        e         ~ U(0.5, 1.5)        Gaussian bump height       e exp(-((x3 - c3)^2 + (x4 - c4)^2) / (2 s^2))  [1]
        s         ~ U(0.7, 1.4)        bump width                                          [1]
        c3, c4    ~ U(-1, 1)           bump centre                                         [0, 0]
        l1..l4    ~ ±U(0.1, 0.5)       linear terms               l1 x1 + l2 x2 + l3 x3 + l4 x4  [0.5, -0.3, 0.2, 0.1]

    (±: the sign is drawn after the magnitude, + or - with probability 1/2.)"""
    coef_seed = _integer("data.coef_seed", coef_seed, 0)
    rng = np.random.default_rng([coef_seed, 23])

    def signed(lo: float, hi: float) -> float:
        magnitude = rng.uniform(lo, hi)
        return float(magnitude if rng.random() < 0.5 else -magnitude)

    c: dict[str, float] = {}
    for name in ("a", "w", "b", "u", "v"):
        c[name] = float(rng.uniform(0.5, 1.5))
    for name in ("q1", "q2"):
        c[name] = float(rng.uniform(0.05, 0.2))
    c["p"] = signed(0.1, 0.5)
    c["e"] = float(rng.uniform(0.5, 1.5))
    c["s"] = float(rng.uniform(0.7, 1.4))
    for name in ("c3", "c4"):
        c[name] = float(rng.uniform(-1.0, 1.0))
    for name in ("l1", "l2", "l3", "l4"):
        c[name] = signed(0.1, 0.5)
    return c


def seed_like_raw(n: int, seed: int, noise: float = 0.0, coef_seed: int = 1) -> tuple[Array, Array]:
    """A task of the seed's family in its own units (see `seed_like_coefficients` for the recipe):
    x ~ U(-2, 2)^4, drawn as `seed_regression_raw` draws it (the same x and noise for the same seed; only
    the formula differs), and
    y = a sin(w x1 x2) + b cos(u x3) sin(v x4) + q1 x1^2 + q2 x2^2 + p x3 x4
        + e exp(-((x3 - c3)^2 + (x4 - c4)^2) / (2 s^2)) + l1 x1 + l2 x2 + l3 x3 + l4 x4 + noise * N(0, 1)."""
    c = seed_like_coefficients(coef_seed)
    rng = np.random.default_rng([seed, 11])
    x = rng.uniform(-2.0, 2.0, (n, 4))
    x1, x2, x3, x4 = x.T
    y = (c["a"] * np.sin(c["w"] * x1 * x2) + c["b"] * np.cos(c["u"] * x3) * np.sin(c["v"] * x4)
         + c["q1"] * x1**2 + c["q2"] * x2**2 + c["p"] * x3 * x4
         + c["e"] * np.exp(-((x3 - c["c3"]) ** 2 + (x4 - c["c4"]) ** 2) / (2 * c["s"] ** 2))
         + c["l1"] * x1 + c["l2"] * x2 + c["l3"] * x3 + c["l4"] * x4)
    return x, y + noise * rng.normal(size=n)


def seed_like(n_train: int = 800, n_test: int = 400, seed: int = 1, noise: float = 0.05, val_fraction: float = 0.2,
              coef_seed: int = 1) -> Dataset:
    """A task like the seed's, not the seed's: the same families of terms on x ~ U(-2, 2)^4 with coefficients
    drawn from `coef_seed` (recipe in `seed_like_coefficients`), target scaled to [0, 1] on train. Named
    `seed_like_c<coef_seed>`: one name per task, whatever the sample (`seed`, `noise`, sizes)."""
    n_train, n_test, seed = _synthetic(n_train, n_test, seed, noise)
    coef_seed = _integer("data.coef_seed", coef_seed, 0)
    x, y = seed_like_raw(n_train + n_test, seed, noise, coef_seed)
    return split(x[:n_train], y[:n_train], x[n_train:], y[n_train:], val_fraction, seed, f"seed_like_c{coef_seed}")


def friedman1_raw(n: int, seed: int, noise: float = 1.0, n_features: int = 5) -> tuple[Array, Array]:
    """Friedman #1 (Friedman 1991, 'Multivariate adaptive regression splines') in its own units:
    x ~ U(0, 1)^n_features and y = 10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5 + noise * N(0, 1);
    features beyond the fifth are irrelevant. Generated by formula (the definition of
    sklearn.datasets.make_friedman1, not its random stream)."""
    rng = np.random.default_rng([seed, 19])
    x = rng.uniform(0.0, 1.0, (n, n_features))
    return x, friedman1_formula(x) + noise * rng.normal(size=n)


def friedman1_formula(x: Array) -> Array:
    """Friedman #1 without noise, of an (n, d >= 5) array; columns beyond the fifth are ignored."""
    return (10 * np.sin(np.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2 + 10 * x[:, 3] + 5 * x[:, 4])


def friedman1(n_train: int = 800, n_test: int = 400, seed: int = 0, noise: float = 1.0, val_fraction: float = 0.2,
              n_features: int = 5) -> Dataset:
    """Friedman #1 (see `friedman1_raw`), target scaled to [0, 1] on train; features x1..x<n_features>, of
    which x6 onwards are irrelevant. Named `friedman1_d<n_features>`."""
    n_train, n_test, seed = _synthetic(n_train, n_test, seed, noise)
    n_features = _integer("data.n_features", n_features, 5, MAX_COLUMNS)
    if (n_train + n_test) * n_features > MAX_VALUES:
        raise ConfigError("data.n_features", n_features, f"{n_train + n_test:,} rows of {n_features:,} features "
                          f"are more than {MAX_VALUES:,} values; use fewer rows or features")
    x, y = friedman1_raw(n_train + n_test, seed, noise, n_features)
    return split(x[:n_train], y[:n_train], x[n_train:], y[n_train:], val_fraction, seed, f"friedman1_d{n_features}")


def _synthetic(n_train: object, n_test: object, seed: object, noise: object) -> tuple[int, int, int]:
    """The arguments every synthetic regression set shares, checked: (n_train, n_test, seed)."""
    sizes = [_integer(name, v, 2, MAX_ROWS) for name, v in (("data.n_train", n_train), ("data.n_test", n_test))]
    if not (_is_real(noise) and noise >= 0):
        raise ConfigError("data.noise", noise, "expected a finite number >= 0")
    return sizes[0], sizes[1], _integer("data.seed", seed, 0)


PATTERNS = {
    "and": [0, 0, 0, 1],
    "or": [0, 1, 1, 1],
    "xor": [0, 1, 1, 0],
    "nand": [1, 1, 1, 0],
    "xnor": [1, 0, 0, 1],
}


def simple_patterns(pattern: str = "or", repeats: int = 25, noise: float = 0.0, seed: int = 0) -> Dataset:
    """The seed's phase-1 task for the 2->2->1 network: a two-input truth table ([0,0], [0,1], [1,0], [1,1]).

    Training uses `repeats` copies of the table (inputs jittered by `noise`); validation and test are
    the four clean patterns themselves. Inputs are kept as 0/1 and targets as 0/1 (no rescaling).
    """
    choice("data.pattern", pattern, PATTERNS)
    x4 = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y4 = np.asarray(PATTERNS[pattern], dtype=float).reshape(-1, 1)
    rng = np.random.default_rng([seed, 13])
    x = np.tile(x4, (repeats, 1)) + noise * rng.normal(size=(4 * repeats, 2))
    ident = Scaler(np.zeros(2), np.ones(2), 0.0, 1.0)
    return Dataset(f"simple_patterns_{pattern}", x, np.tile(y4, (repeats, 1)), x4, y4, x4, y4, ident,
                   ["a", "b"], pattern)


# Bounds of what the loader reads: a file asking for more is refused with the numbers, before or while it is
# read, never after it has been loaded into memory.
