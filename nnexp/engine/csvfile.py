"""A user's own table as a `Dataset`: read as data (streamed, bounded, every cell checked), with the
physical line and column of whatever is refused."""

from __future__ import annotations

import math
import os
import re
import unicodedata
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from nnexp.engine.csvlines import _open, _records
from nnexp.engine.data import HUGE, MAX_COLUMNS, MAX_ROWS, MAX_VALUES, Dataset, _integer, _is_real, split
from nnexp.errors import ConfigError

Array = np.ndarray


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
