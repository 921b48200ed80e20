"""The data a network trains on: a `Dataset` of scaled splits and the `Scaler` that maps predictions back
to the data's units. The sets themselves: `nnexp.engine.datasets` (synthetic, pure functions of their
parameters) and `nnexp.engine.csvfile` (a user's own table).

Every dataset comes out as a `Dataset`: train / validation / test splits, features standardised and
the target min-max scaled to [0, 1] with statistics of the training split only (the scaler is kept,
so predictions map back to the original units). The validation split is carved from the training
set, so model selection never looks at the test set.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field
from typing import TypeGuard

import numpy as np

from nnexp.errors import ConfigError

Array = np.ndarray
HUGE = 1e150  # larger magnitudes overflow when squared (variance, MSE) in float64
MAX_COLUMNS = 10_000  # columns of the header
MAX_ROWS = 10_000_000  # data rows
MAX_VALUES = 20_000_000  # data rows x columns used (160 MB as float64)


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
    if not (_is_real(val_fraction) and 0.0 <= val_fraction < 1.0):
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


def _is_real(v: object) -> TypeGuard[float]:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _integer(field: str, v: object, low: int, high: int | None = None) -> int:
    """`v` as an int if it is a whole number in [low, high], else a ConfigError naming `field`."""
    if not (_is_real(v) and int(v) == v and low <= v and (high is None or v <= high)):
        raise ConfigError(field, v, f"expected an integer of at least {low}" if high is None else
                          f"expected an integer from {low} to {high:,}")
    return int(v)
