"""What the config accepts: the fields of every group and option, and strict checks of their values.

A field that belongs to no option of its group (`+trainer.patience=5`, a typo of
`early_stopping_patience`; momentum on Adam; `+seedd=3`) is refused, never ignored; a boolean is
`true` or `false`, never a string that happens to be truthy. Every refusal is a `ConfigError`
naming the field, the value and what is allowed (with the close matches of a misspelt name).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from nnexp.errors import ConfigError

TOP_LEVEL = ("model", "data", "optimizer", "schedule", "trainer", "seed", "tracking", "sweep", "ablation", "hydra")
MODEL = ("hidden", "hidden_activation", "output_activation", "init", "dropout", "batch_norm", "leaky_relu_alpha")
TRAINER = ("epochs", "batch_size", "early_stopping_patience")
TRACKING = ("uri", "experiment", "run_name", "log_model", "plots")
OPTIMIZERS: dict[str, tuple[str, ...]] = {  # name: its fields besides `name` (what optim.make uses)
    "sgd": ("lr", "l1", "l2"),
    "sgd_momentum": ("lr", "momentum", "nesterov", "l1", "l2"),
    "adam": ("lr", "beta1", "beta2", "eps", "l1", "l2"),
    "rmsprop": ("lr", "rho", "eps", "l1", "l2"),
    "adagrad": ("lr", "eps", "l1", "l2"),
}
SCHEDULES: dict[str, tuple[str, ...]] = {
    "constant": (),
    "step_decay": ("decay_rate", "decay_steps"),
    "exponential": ("decay_rate", "decay_steps"),
    "cosine": ("min_lr",),
}
# field: (check, what is allowed, integer?)
NUMBERS: dict[str, tuple[Callable[[float], bool], str, bool]] = {
    "optimizer.lr": (lambda v: v > 0, "expected a learning rate > 0", False),
    "optimizer.momentum": (lambda v: 0 <= v < 1, "expected a momentum in [0, 1)", False),
    "optimizer.beta1": (lambda v: 0 <= v < 1, "expected beta1 in [0, 1)", False),
    "optimizer.beta2": (lambda v: 0 <= v < 1, "expected beta2 in [0, 1)", False),
    "optimizer.rho": (lambda v: 0 <= v < 1, "expected rho in [0, 1)", False),
    "optimizer.eps": (lambda v: v > 0, "expected eps > 0", False),
    "optimizer.l1": (lambda v: v >= 0, "expected an L1 strength >= 0", False),
    "optimizer.l2": (lambda v: v >= 0, "expected an L2 strength >= 0", False),
    "schedule.decay_rate": (lambda v: 0 < v <= 1, "expected a decay rate in (0, 1]", False),
    "schedule.decay_steps": (lambda v: v >= 1, "expected an integer number of epochs >= 1", True),
    "schedule.min_lr": (lambda v: v >= 0, "expected a minimum learning rate >= 0", False),
    "trainer.epochs": (lambda v: v >= 1, "expected an integer >= 1", True),
    "trainer.batch_size": (lambda v: v >= 1, "expected an integer >= 1", True),
    "trainer.early_stopping_patience": (lambda v: v >= 1, "expected an integer >= 1, or null to train every epoch",
                                        True),
    "seed": (lambda v: v >= 0, "expected an integer seed >= 0", True),
    "model.dropout": (lambda v: 0 <= v < 1, "expected a drop probability in [0, 1)", False),
    "model.leaky_relu_alpha": (lambda v: v > 0, "expected a slope > 0", False),
}


def number(field: str, value: Any, ok: Callable[[float], bool] | None = None, allowed: str = "",
           integer: bool = False) -> Any:
    """A finite int or float (never a bool or a string) passing `ok`, as int when `integer`."""
    if ok is None:
        ok, allowed, integer = NUMBERS[field]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(field, value, allowed)
    if (integer and int(value) != value) or not ok(value):
        raise ConfigError(field, value, allowed)
    return int(value) if integer else float(value)


def boolean(field: str, value: Any) -> bool:
    """`true` or `false` only: a string such as 'off' or 'maybe' is refused, not read as true."""
    if not isinstance(value, bool):
        raise ConfigError(field, value, "expected true or false")
    return value


def text(field: str, value: Any, allowed: str = "expected a non-empty name", optional: bool = False) -> str | None:
    """A non-empty string (or None when `optional`)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(field, value, allowed)
    return value


def known_keys(node: Mapping[str, Any] | Iterable[str], where: str, allowed: Iterable[str], what: str = "") -> None:
    """Refuse any key of `node` not in `allowed`, naming it, the allowed ones and the close matches."""
    allowed = list(allowed)
    for key in node:
        if key not in allowed:
            field = f"{where}.{key}" if where else str(key)
            close = difflib.get_close_matches(str(key), allowed, n=3) or [
                a for a in allowed if str(key).lower() in a.lower() or a.lower() in str(key).lower()][:3]
            hint = f"Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            value = node[key] if isinstance(node, Mapping) else None
            raise ConfigError(field, value, f"not a setting of {what or where or 'the config'}; its settings: "
                              f"{', '.join(allowed) or '(none)'}", hint)


def tracking(node: Mapping[str, Any]) -> dict[str, Any]:
    """`cfg.tracking`, checked: uri and run_name strings or null, a named experiment, two switches."""
    known_keys(node, "tracking", TRACKING)
    return {"uri": text("tracking.uri", node.get("uri"), "expected a tracking URI, or null for the project's "
                        "store", optional=True),
            "experiment": text("tracking.experiment", node.get("experiment"), "expected a non-empty experiment name"),
            "run_name": text("tracking.run_name", node.get("run_name"), "expected a run name, or null for one made "
                             "from the config", optional=True),
            "log_model": boolean("tracking.log_model", node.get("log_model")),
            "plots": boolean("tracking.plots", node.get("plots"))}
