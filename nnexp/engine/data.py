"""Datasets as pure functions of their parameters, and a CSV loader for a user's own table.

Every dataset comes out as a `Dataset`: train / validation / test splits, features standardised and
the target min-max scaled to [0, 1] with statistics of the training split only (the scaler is kept,
so predictions map back to the original units). The validation split is carved from the training
set, so model selection never looks at the test set.
"""

from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import math
import os
import re
import stat
import unicodedata
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO, TypeGuard

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
MAX_BYTES = 2 * 1024**3  # the file's size
MAX_COLUMNS = 10_000  # columns of the header
MAX_ROW_CHARS = 4 * 1024**2  # one row of the file, quoted line breaks included
MAX_ROWS = 10_000_000  # data rows
MAX_VALUES = 20_000_000  # data rows x columns used (160 MB as float64)
# A number as a spreadsheet reads it: optional sign, ASCII digits, one '.', optional exponent. Python's float()
# also reads '1_000', 'nan', 'infinity' and digits of other scripts ('١٢'), which are text to a spreadsheet.
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # of a stripped cell
SEPARATORS = {";": "';'", "\t": "tab", "|": "'|'"}
SHOWN = 40  # characters of a cell or a name shown in a message
LISTING = 300  # characters of column names listed in a message


def load_csv(path: str | Path, target: str, features: Sequence[str] | None = None, test_fraction: float = 1 / 3,
             val_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """A user's table: a header row, numeric cells, UTF-8 (a leading byte-order mark is skipped), comma-
    separated, any line endings. `target` names the column to predict; `features` the inputs (default: every
    other column). Rows are split test / train at random with `seed`.

    Files are data: anything but a plain table is refused with a ConfigError naming the physical line (1-based,
    blank lines counted) and the column: duplicate or empty column names, numbers a spreadsheet would read as
    text ('1_000', 'nan', '1,5'), empty cells, bytes that are not UTF-8, and files or rows beyond the MAX_* bounds.
    Columns that are not used may hold anything."""
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError("data.path", path, "expected a path to a CSV file with a header row")
    path = Path(path)
    target = _column_name("data.target", target)
    wanted = _feature_names(features, target)
    if not (_is_real(test_fraction) and 0.0 < test_fraction < 1.0):
        raise ConfigError("data.test_fraction", test_fraction, "expected a fraction in (0, 1)")
    if not (_is_real(val_fraction) and 0.0 <= val_fraction < 1.0):
        raise ConfigError("data.val_fraction", val_fraction, "expected a fraction in [0, 1)")
    seed = _integer("data.seed", seed, 0)
    with _open(path) as f:
        values, names = _read(path, f, target, wanted)
    n = len(values)
    n_test = int(round(n * test_fraction))
    n_val = int(round((n - n_test) * val_fraction))
    if n_test < 1 or n - n_test - n_val < 2:
        raise ConfigError("data.path", str(path), f"{n} data rows are too few to split into train (>= 2), "
                          f"validation ({val_fraction:.0%}) and test ({test_fraction:.0%}) sets")
    order = np.random.default_rng([seed, 17]).permutation(n)
    test, train = values[order[:n_test]], values[order[n_test:]]
    return split(train[:, :-1], train[:, -1], test[:, :-1], test[:, -1], val_fraction, seed,
                 f"csv:{path.name}", names, target)


def _read(path: Path, f: TextIO, target: str, wanted: list[str] | None) -> tuple[Array, list[str]]:
    """The used columns of the table in `f` as an (n, features + 1) array, the target last; and the features."""
    records = _records(path, f)
    first = next(records, None)
    if first is None:
        raise ConfigError("data.path", str(path), "the file is empty (expected a header row and data rows)")
    header_line, header = first[0], [_normal(h) for h in first[1]]
    _check_header(path, header_line, header)
    columns = f"columns: {_listing(header)}"
    if target not in header:
        raise ConfigError("data.target", target, f"no such column in {path.name!r}; {columns}")
    features = wanted if wanted is not None else [h for h in header if h != target]
    missing = [c for c in features if c not in header]
    if missing:
        raise ConfigError("data.features", features, f"no such column {', '.join(map(_show, missing))} in "
                          f"{path.name!r}; {columns}")
    if not features:
        raise ConfigError("data.features", features, "expected at least one feature column besides the target")
    names = [*features, target]
    cols = [header.index(c) for c in names]  # the names are unique: checked above
    limit = min(MAX_ROWS, MAX_VALUES // len(cols))
    # the used cells of a row joined by ',' are len(cols) numbers with spaces around them (float() strips the
    # same spaces); a cell holding a ',' (a quoted "1,5") makes one number too many
    numeric = re.compile(rf"\s*{NUMBER.pattern}\s*(?:,\s*{NUMBER.pattern}\s*){{{len(cols) - 1}}}")
    buf = array("d")
    n = 0
    for line, row in records:
        if len(row) != len(header):
            raise ConfigError("data.path", str(path), f"line {line} has {len(row)} cells, the header (line "
                              f"{header_line}) has {len(header)}")
        if n == limit:
            raise ConfigError("data.path", str(path), f"line {line}: more than {limit:,} data rows; nnexp reads at "
                              f"most {MAX_ROWS:,} (sample or split the file)" if limit == MAX_ROWS else
                              f"line {line}: more than {limit:,} data rows of {len(cols)} columns used; nnexp reads "
                              f"at most {MAX_VALUES:,} values (rows x columns used: sample the rows or use fewer "
                              "columns)")
        cells = [row[c] for c in cols]
        if numeric.fullmatch(",".join(cells)):
            numbers = [float(c) for c in cells]
            if -HUGE <= min(numbers) and max(numbers) <= HUGE:
                buf.extend(numbers)
                n += 1
                continue
        for name, cell in zip(names, cells, strict=True):
            _check_cell(path, line, name, cell.strip())
        raise AssertionError(f"line {line}: a row neither read nor refused")  # never drop a row silently
    if n == 0:
        raise ConfigError("data.path", str(path), f"line {header_line} is a header row (columns "
                          f"{_listing(header)}) but no data rows follow")
    return np.frombuffer(buf, dtype=np.float64).reshape(n, len(cols)), features


def _check_cell(path: Path, line: int, name: str, cell: str) -> None:
    """Raise the ConfigError for a cell that is not a number a spreadsheet would show (`cell` is stripped)."""
    where = f"line {line}, column {_show(name)}"
    if not cell:
        raise ConfigError("data.path", str(path), f"{where} is empty (missing values are not allowed; drop or fill "
                          "those rows)")
    try:
        value: float | None = float(cell)
    except ValueError:
        value = None
    if NUMBER.fullmatch(cell):
        if not -HUGE <= float(cell) <= HUGE:
            raise ConfigError("data.path", str(path), f"{where}: {_show(cell)} is too large to scale (|values| up "
                              f"to {HUGE:g}: their squares must fit a float64; rescale the column)")
    elif value is not None and not math.isfinite(value):
        raise ConfigError("data.path", str(path), f"{where}: {_show(cell)} is NaN or infinite (not allowed; drop or "
                          "fill those rows)")
    elif value is not None:
        raise ConfigError("data.path", str(path), f"{where}: {_show(cell)} is not a plain decimal number (Python "
                          f"would read it as {value!r}, a spreadsheet as text); write the digits 0-9 with an "
                          "optional sign, '.' and exponent, such as -1.5 or 2e-3")
    else:
        raise ConfigError("data.path", str(path), f"{where}: {_show(cell)} is not a number")


def _check_header(path: Path, line: int, header: list[str]) -> None:
    if header[0].lower().startswith("sep=") and not any(header[1:]):
        raise ConfigError("data.path", str(path), f"line {line} is a spreadsheet's separator line "
                          f"{_show(','.join(header))}, not a header; delete it (nnexp reads comma-separated files)")
    if len(header) > MAX_COLUMNS:
        raise ConfigError("data.path", str(path), f"line {line}: the header has {len(header):,} columns; nnexp "
                          f"reads at most {MAX_COLUMNS:,}")
    if len(header) == 1:
        for sep, name in SEPARATORS.items():
            if sep in header[0]:
                raise ConfigError("data.path", str(path), f"line {line}: the header is one column "
                                  f"{_show(header[0])}: it looks like {name}-separated; nnexp reads comma-separated "
                                  "files (save the table as 'CSV UTF-8 (Comma delimited)')")
    seen: dict[str, int] = {}
    for j, name in enumerate(header):
        if not name:
            raise ConfigError("data.path", str(path), f"column {j + 1} of the header (line {line}) has no name "
                              "(name the column or delete it)")
        if name in seen:
            raise ConfigError("data.path", str(path), f"line {line}: the header names {_show(name)} twice (columns "
                              f"{seen[name] + 1} and {j + 1}); column names must be unique (compared without "
                              "surrounding spaces)")
        seen[name] = j


def _column_name(field: str, name: object) -> str:
    if isinstance(name, bool) or not isinstance(name, (str, int)) or not _normal(str(name)):
        raise ConfigError(field, name, "expected a column name")
    return _normal(str(name))


def _feature_names(features: object, target: str) -> list[str] | None:
    """The feature columns asked for (None: every column but the target), checked without the file."""
    if features is None:
        return None
    if isinstance(features, (str, bytes)) or not isinstance(features, Sequence):
        raise ConfigError("data.features", features, "expected a list of column names such as [a, b] (or null: "
                          "every column except the target)")
    names = [_column_name("data.features", f) for f in features]
    if not names:
        raise ConfigError("data.features", features, "expected at least one feature column (or null: every column "
                          "except the target)")
    if target in names:
        raise ConfigError("data.features", features, f"includes the target column {_show(target)}: the model would "
                          "be given the answer as an input; list the input columns only (or null: every column "
                          "except the target)")
    twice = [c for i, c in enumerate(names) if c in names[:i]]
    if twice:
        raise ConfigError("data.features", features, f"names column {_show(twice[0])} twice: it would be read twice")
    return names


def _normal(name: str) -> str:
    """A column name as compared: without surrounding spaces, in one Unicode form ('é' is one name, however
    the file spells it)."""
    return unicodedata.normalize("NFC", name.strip())


def _show(text: str) -> str:
    """A cell or name for a message: repr (invisible characters escaped), cut to SHOWN characters."""
    return repr(text) if len(text) <= SHOWN else f"{text[:SHOWN]!r}... ({len(text):,} characters)"


def _listing(names: list[str]) -> str:
    """Column names for a message, up to about LISTING characters."""
    shown: list[str] = []
    for name in names:
        shown.append(_show(name))
        if sum(len(s) + 2 for s in shown) > LISTING:
            break
    rest = f", ... ({len(names):,} columns)" if len(shown) < len(names) else ""
    return ", ".join(shown) + rest


def _open(path: Path) -> TextIO:
    """The file for reading as UTF-8 text, or a ConfigError saying why it cannot be (checked before opening:
    a pipe or a device would block or never end)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError("data.path", str(path), "no such file (give a path to a CSV file with a header "
                          "row)") from None
    except OSError as e:
        raise ConfigError("data.path", str(path), f"cannot be read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError("data.path", str(path), "is a directory, not a file (give a path to a CSV file with a header "
                          "row)")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError("data.path", str(path), "is not a regular file (a pipe, device or socket); give a path to "
                          "a CSV file")
    if st.st_size > MAX_BYTES:
        raise ConfigError("data.path", str(path), f"the file is {st.st_size:,} bytes; nnexp reads CSV files of at "
                          f"most {MAX_BYTES:,} bytes (sample or split the file)")
    try:
        return open(path, encoding="utf-8-sig", newline="")  # closed by the caller's `with`
    except OSError as e:
        raise ConfigError("data.path", str(path), f"cannot be read ({e.strerror or e})") from None


class _TooLong(Exception):
    """One row of the file is longer than MAX_ROW_CHARS, or the file grew beyond MAX_BYTES while read."""


class _Lines:
    """The physical lines of a text file for csv.reader, each read with a bound (a file of one endless line
    is never read whole); `row_chars` counts the characters of the row being read."""

    def __init__(self, f: TextIO) -> None:
        self.f, self.row_chars, self.chars = f, 0, 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.f.readline(MAX_ROW_CHARS + 1)
        if not line:
            raise StopIteration
        self.row_chars += len(line)
        self.chars += len(line)
        if self.row_chars > MAX_ROW_CHARS or self.chars > MAX_BYTES:
            raise _TooLong
        return line


def _records(path: Path, f: TextIO) -> Iterator[tuple[int, list[str]]]:
    """(physical line where the row starts, its cells) for every row with a non-blank cell. A row may span
    lines (a quoted line break); blank lines are skipped but counted."""
    lines = _Lines(f)
    reader = csv.reader(lines, strict=True)
    end = 0
    while True:
        start = end + 1
        try:
            row = next(reader, None)
        except csv.Error as e:
            if "field limit" in str(e):
                why = f": a cell is longer than {csv.field_size_limit():,} characters (is a quote left open?)"
            elif "unexpected end of data" in str(e):
                why = ": a quoted cell opened on this line is never closed"
            else:
                why = f" is not valid CSV ({e})"
            raise ConfigError("data.path", str(path), f"line {start}{why}") from None
        except _TooLong:
            why = (f"the file grew beyond {MAX_BYTES:,} bytes while it was read" if lines.chars > MAX_BYTES else
                   f"a row of the file is longer than {MAX_ROW_CHARS:,} characters (is a quote left open?)")
            raise ConfigError("data.path", str(path), f"line {start}: {why}") from None
        except UnicodeDecodeError:
            raise _not_utf8(path) from None
        except OSError as e:
            raise ConfigError("data.path", str(path), f"cannot be read ({e.strerror or e})") from None
        if row is None:
            return
        end = reader.line_num
        lines.row_chars = 0
        if "".join(row).strip():
            yield start, row


def _not_utf8(path: Path) -> ConfigError:
    """The error for a file that is not UTF-8, naming the physical line and byte offset of the first bad byte."""
    try:
        bad = _first_bad_byte(path)
        with open(path, "rb") as f:
            utf16 = f.read(2) in (b"\xff\xfe", b"\xfe\xff")
    except OSError:
        bad, utf16 = None, False
    where = f"line {bad[0]} (byte {bad[1]} of the file, 0x{bad[2]:02x})" if bad else "the file"
    hint = "it starts with a UTF-16 byte-order mark (Excel's 'Unicode Text'); " if utf16 else ""
    return ConfigError("data.path", str(path), f"{where} is not UTF-8; {hint}save the file as UTF-8 (in Excel: 'CSV "
                       "UTF-8 (Comma delimited)')")


def _first_bad_byte(path: Path) -> tuple[int, int, int] | None:
    """(physical line, byte offset, byte) of the first byte that is not UTF-8, reading blocks (no line of
    the file is held whole). A UTF-8 character never contains the bytes of '\\r' or '\\n', so line ends are
    counted on the bytes: '\\r\\n', '\\r' and '\\n' each end a line."""

    def line_ends(chunk: bytes, after_cr: bool) -> int:
        n = chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n")
        return n - 1 if after_cr and chunk.startswith(b"\n") else n

    decoder = codecs.getincrementaldecoder("utf-8")()
    line, offset, after_cr = 1, 0, False
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 16)
            pending = len(decoder.getstate()[0])  # bytes of a character begun in the previous block
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                at = offset - pending + e.start
                return line + line_ends(block[:max(0, at - offset)], after_cr), at, e.object[e.start]
            if not block:
                return None
            line += line_ends(block, after_cr)
            after_cr = block.endswith(b"\r")
            offset += len(block)


def _is_real(v: object) -> TypeGuard[float]:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _integer(field: str, v: object, low: int, high: int | None = None) -> int:
    """`v` as an int if it is a whole number in [low, high], else a ConfigError naming `field`."""
    if not (_is_real(v) and int(v) == v and low <= v and (high is None or v <= high)):
        raise ConfigError(field, v, f"expected an integer of at least {low}" if high is None else
                          f"expected an integer from {low} to {high:,}")
    return int(v)
