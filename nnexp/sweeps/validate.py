"""Checks a sweep's settings and search space share: strict integers and seconds, names Optuna and
MLflow can store, a journal file that can be opened, written and is a journal, the trials' epochs,
and grids of stepped ranges computed in decimal as Optuna does.
Every refusal is a `ConfigError` raised before anything is created or recorded."""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnexp.errors import ConfigError
from nnexp.paths import project_root

MAX_TRIALS = 100_000  # a study's trials (each also an MLflow run); far beyond any sweep this harness runs
SEED_MAX = 2**32 - 1  # numpy's RandomState, behind Optuna's samplers, takes seeds in [0, 2**32 - 1]
WORKER_INDEX_MAX = 2**17  # a worker started by hand seeds its sampler with seed + 1000 + pid % 100000 (cli.py)
STUDY_NAME_MAX = 244  # the parent run is named sweep-<study name>: MLflow keeps run names of 250 characters
EXPERIMENT_NAME_MAX = 256  # MLflow's experiments.name column
DEFAULT_JOURNAL = "optuna-journal.log"  # as nnexp.sweeps.storage opens it for sweep.storage = null


def integer(field: str, value: Any, low: int, high: int | None = None, why: str = "") -> int:
    """An int (never a bool, a float or a string) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f"expected an integer >= {low}" if high is None else f"expected an integer in [{low}, {high}]"
        raise ConfigError(field, value, allowed + (f" ({why})" if why else ""))
    return value


def seconds(field: str, value: Any, least: float = 0.0, most: float = math.inf, optional: bool = False) -> float | None:
    """A finite number of seconds > 0, at least `least` and at most `most`; None when `optional`."""
    if value is None and optional:
        return None
    number = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not number or value <= 0 or value < least or value > most:
        bounds = [f">= {least:g}" if least > 0 else "> 0"] + ([f"<= {most:g}"] if most < math.inf else [])
        raise ConfigError(field, value, f"expected a finite number of seconds {' and '.join(bounds)}"
                          + (", or null for no limit" if optional else ""))
    return float(value)


def name(field: str, value: Any, limit: int, why: str, optional: bool = False) -> str | None:
    """A name a store can keep: a non-empty string of printable characters, no surrounding spaces,
    at most `limit` characters (`why` says which store)."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ConfigError(field, value, "expected a name (a string" + (", or null" if optional else "") + ")",
                          f"Quote a number: {field}='{value}'." if isinstance(value, (int, float)) else "")
    if not value.strip() or value != value.strip() or not value.isprintable():
        raise ConfigError(field, value, "expected a non-empty name of printable characters, without control "
                          "characters or surrounding spaces")
    if len(value) > limit:
        raise ConfigError(field, f"{value[:24]}... ({len(value)} characters)", f"expected at most {limit} "
                          f"characters ({why})")
    return value


def storage(field: str, value: Any) -> str | None:
    """sweep.storage: null, journal:<path> (checked: see `journal_file`) or a database URL."""
    if value is None:
        journal_file(field, None)
        return None
    if not isinstance(value, str) or not value.strip() or ("://" not in value and not value.startswith("journal:")):
        raise ConfigError(field, value, "expected null (the project's journal file), journal:<path>, or a database "
                          "URL such as sqlite:///optuna.db or postgresql://user@host/db")
    if value.startswith("journal:"):
        journal_file(field, value)
    return value


def journal_file(field: str, url: str | None) -> Path:
    """The journal file `url` names (null: the project's), refused unless Optuna can open it: not a
    directory, not under a file, in a directory where files can be created (its lock file is made
    beside it), and if it exists a readable, writable Optuna journal (never appended to another file)."""
    raw = url[len("journal:"):] if url else DEFAULT_JOURNAL
    if not raw.strip():
        raise ConfigError(field, url, "expected journal:<path to a journal file>, e.g. journal:optuna-journal.log")
    path = Path(raw) if Path(raw).is_absolute() else project_root() / raw
    exists = _stat(field, url, path)
    if exists and path.is_dir():
        raise ConfigError(field, url, f"{path} is a directory; name a file in it",
                          f"For example sweep.storage=journal:{path / DEFAULT_JOURNAL}")
    if exists and not path.is_file():
        raise ConfigError(field, url, f"{path} is not a regular file")
    if exists and not os.access(path, os.R_OK | os.W_OK):
        raise ConfigError(field, url, f"{path} cannot be read and written by this user")
    if exists and not _is_journal(path):
        raise ConfigError(field, url, f"{path} is not an Optuna journal file (its first line is not a journal "
                          "record): a sweep never appends to another file")
    parent = next(p for p in path.parents if _stat(field, url, p))
    if not parent.is_dir():
        raise ConfigError(field, url, f"{parent} is a file, so the journal cannot be created under it")
    try:
        with tempfile.TemporaryFile(dir=parent):  # the only reliable test (root passes os.access)
            pass
    except OSError as e:
        raise ConfigError(field, url, f"cannot create files in {parent} ({e.strerror}); the journal's lock file"
                          f"{'' if exists else ', the journal and the directories above it'} are made there") from None
    return path


def _stat(field: str, url: str | None, path: Path) -> bool:
    """Whether `path` exists (False when it or a parent is missing or a parent is a file)."""
    try:
        os.stat(path)
        return True
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        raise ConfigError(field, url, f"cannot look at {path} ({e.strerror})") from None


def _is_journal(path: Path) -> bool:
    """An empty file, or one whose first line is an Optuna journal record (a JSON object with op_code)."""
    try:
        with open(path, "rb") as f:
            first = f.readline(1 << 20)
        record = json.loads(first) if first.strip() else {"op_code": None}
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and "op_code" in record


def epochs(cfg: DictConfig, params: Sequence[Any]) -> tuple[int, int] | None:
    """The fewest and most epochs a trial trains (the base config's trainer.epochs and the ends of a
    sampled trainer.epochs), or None while any of them is not an integer (the config check reports it)."""
    values = [OmegaConf.select(cfg, "trainer.epochs", default=None)]
    for p in params:
        if p.path == "trainer.epochs":
            values += list(p.choices) if p.kind == "categorical" else [p.low, p.high]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        return None
    return min(values), max(values)


def decimal_number(d: Decimal) -> int | float:
    return int(d) if d == d.to_integral_value() else float(d)


def on_grid(v: float, low: float, step: float) -> bool:
    """v = low + k * step for a whole k, in decimal as Optuna checks a range (0.1 steps are exact)."""
    return (Decimal(str(v)) - Decimal(str(low))) % Decimal(str(step)) == 0


def grid_neighbours(v: float, low: float, step: float) -> tuple[int | float, int | float]:
    """The grid points low + k * step just below and just above v."""
    d_low, d_step = Decimal(str(low)), Decimal(str(step))
    k = (Decimal(str(v)) - d_low) // d_step
    return decimal_number(d_low + k * d_step), decimal_number(d_low + (k + 1) * d_step)
