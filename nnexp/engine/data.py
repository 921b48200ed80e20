"""Datasets as pure functions of their parameters, and a CSV loader for a user's own table.

Every dataset comes out as a `Dataset`: train / validation / test splits, features standardised and
the target min-max scaled to [0, 1] with statistics of the training split only (the scaler is kept,
so predictions map back to the original units). The validation split is carved from the training
set, so model selection never looks at the test set.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnexp.errors import ConfigError, choice

Array = np.ndarray
HUGE = 1e150  # larger magnitudes overflow when squared (variance, MSE) in float64


@dataclass(frozen=True)
class Scaler:
    """x_scaled = (x - x_mean) / x_std; y_scaled = (y - y_min) / y_range."""

    x_mean: Array
    x_std: Array
    y_min: float
    y_range: float

    @classmethod
    def fit(cls, x: Array, y: Array) -> Scaler:
        std = x.std(axis=0)
        y_range = float(y.max() - y.min())
        return cls(x.mean(axis=0), np.where(std > 0, std, 1.0), float(y.min()), y_range if y_range > 0 else 1.0)

    def x(self, x: Array) -> Array:
        return (x - self.x_mean) / self.x_std

    def y(self, y: Array) -> Array:
        return (y - self.y_min) / self.y_range

    def y_inverse(self, y_scaled: Array) -> Array:
        return y_scaled * self.y_range + self.y_min

    def to_dict(self) -> dict:
        return {"x_mean": self.x_mean.tolist(), "x_std": self.x_std.tolist(), "y_min": self.y_min,
                "y_range": self.y_range}

    @classmethod
    def from_dict(cls, d: dict) -> Scaler:
        return cls(np.asarray(d["x_mean"], float), np.asarray(d["x_std"], float), float(d["y_min"]),
                   float(d["y_range"]))


@dataclass(frozen=True)
class Dataset:
    """Scaled splits; x_*: (n, n_features), y_*: (n, 1)."""

    name: str
    x_train: Array
    y_train: Array
    x_val: Array
    y_val: Array
    x_test: Array
    y_test: Array
    scaler: Scaler
    feature_names: list[str] = field(default_factory=list)
    target_name: str = "y"

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    def digest(self) -> str:
        """SHA-256 (first 16 hex digits) of every split's bytes: the same data gives the same digest.
        Computed once per dataset (its arrays are never changed after it is made)."""
        return self._digest

    @functools.cached_property
    def _digest(self) -> str:
        h = hashlib.sha256()
        for a in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test):
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
        return h.hexdigest()[:16]


def split(x: Array, y: Array, x_test: Array, y_test: Array, val_fraction: float, seed: int, name: str,
          feature_names: list[str] | None = None, target_name: str = "y") -> Dataset:
    """Carve a validation split from (x, y), fit the scaler on the rest, and scale every split."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError("data.val_fraction", val_fraction, "expected a fraction in [0, 1)")
    n_val = int(round(len(x) * val_fraction))
    if len(x) - n_val < 2 or (val_fraction > 0 and n_val < 1):
        raise ConfigError("data.val_fraction", val_fraction,
                          f"the training set has {len(x)} rows, too few for a validation split of this size")
    order = np.random.default_rng([seed, 7]).permutation(len(x))
    val, fit = order[:n_val], order[n_val:]
    scaler = Scaler.fit(x[fit], y[fit])

    def xs(a: Array) -> Array:
        return scaler.x(a)

    def ys(a: Array) -> Array:
        return scaler.y(a).reshape(-1, 1)

    names = feature_names or [f"x{i + 1}" for i in range(x.shape[1])]
    return Dataset(name, xs(x[fit]), ys(y[fit]), xs(x[val]), ys(y[val]), xs(x_test), ys(y_test), scaler,
                   names, target_name)


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
    for name, v in (("data.n_train", n_train), ("data.n_test", n_test)):
        if int(v) != v or v < 2:
            raise ConfigError(name, v, "expected an integer of at least 2")
    if not (math.isfinite(noise) and noise >= 0):
        raise ConfigError("data.noise", noise, "expected a finite number >= 0")
    x, y = seed_regression_raw(n_train + n_test, seed, noise)
    return split(x[:n_train], y[:n_train], x[n_train:], y[n_train:], val_fraction, seed, "seed_regression")


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


def load_csv(path: str | Path, target: str, features: list[str] | None = None, test_fraction: float = 1 / 3,
             val_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """A user's table: a header row, numeric cells. `target` names the column to predict; `features` the
    inputs (default: every other column). Rows are split test / train at random with `seed`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("data.path", str(path), "no such file (give a path to a CSV file with a header row)")
    with path.open(newline="") as f:
        rows = [r for r in csv.reader(f) if any(cell.strip() for cell in r)]
    if not rows:
        raise ConfigError("data.path", str(path), "the file is empty (expected a header row and data rows)")
    header = [h.strip() for h in rows[0]]
    if target not in header:
        raise ConfigError("data.target", target, f"no such column in {path.name}; columns: {', '.join(header)}")
    features = list(features) if features else [h for h in header if h != target]
    missing = [f for f in features if f not in header]
    if missing:
        raise ConfigError("data.features", missing, f"no such column in {path.name}; columns: {', '.join(header)}")
    if not features:
        raise ConfigError("data.features", features, "expected at least one feature column besides the target")
    cols = [header.index(c) for c in [*features, target]]
    values = np.empty((len(rows) - 1, len(cols)))
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ConfigError("data.path", str(path), f"line {i} has {len(row)} cells, the header has {len(header)}")
        for j, c in enumerate(cols):
            try:
                values[i - 2, j] = float(row[c])
            except ValueError:
                raise ConfigError("data.path", str(path),
                                  f"line {i}, column {header[c]!r}: {row[c]!r} is not a number") from None
    bad = ~np.isfinite(values)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ConfigError("data.path", str(path),
                          f"line {i + 2}, column {[*features, target][j]!r}: {values[i, j]} (NaN or infinite values "
                          "are not allowed; drop or fill those rows)")
    huge = np.abs(values) > HUGE
    if huge.any():
        i, j = np.argwhere(huge)[0]
        raise ConfigError("data.path", str(path),
                          f"line {i + 2}, column {[*features, target][j]!r}: {values[i, j]:g} is too large to scale "
                          f"(|values| up to {HUGE:g}: their squares must fit a float64; rescale the column)")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError("data.test_fraction", test_fraction, "expected a fraction in (0, 1)")
    n = len(values)
    n_test = int(round(n * test_fraction))
    n_val = int(round((n - n_test) * val_fraction))
    if n_test < 1 or n - n_test - n_val < 2:
        raise ConfigError("data.path", str(path), f"{n} data rows are too few to split into train (>= 2), "
                          f"validation ({val_fraction:.0%}) and test ({test_fraction:.0%}) sets")
    order = np.random.default_rng([seed, 17]).permutation(n)
    test, train = values[order[:n_test]], values[order[n_test:]]
    return split(train[:, :-1], train[:, -1], test[:, :-1], test[:, -1], val_fraction, seed,
                 f"csv:{path.name}", features, target)
