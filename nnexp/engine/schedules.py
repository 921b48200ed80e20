"""Learning-rate schedules: pure functions epoch -> lr, one value per replica (arrays of shape (R,)).

Every parameter may be a scalar or one value per replica.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nnexp.errors import choice

Array = np.ndarray
Schedule = Callable[[int], Array]


def _as_array(x: float | Array) -> Array:
    return np.atleast_1d(np.asarray(x, dtype=float))


def constant(lr: float | Array) -> Schedule:
    lr = _as_array(lr)
    return lambda epoch: lr.copy()


def step_decay(lr: float | Array, decay_rate: float | Array = 0.5, decay_steps: int | Array = 100) -> Schedule:
    """The seed's rule: lr = lr0 * decay_rate ** (epoch // decay_steps)."""
    lr, rate, steps = _as_array(lr), _as_array(decay_rate), _as_array(decay_steps)
    return lambda epoch: lr * rate ** (epoch // steps)


def exponential(lr: float | Array, decay_rate: float | Array = 0.5, decay_steps: int | Array = 100) -> Schedule:
    """Smooth decay: lr = lr0 * decay_rate ** (epoch / decay_steps)."""
    lr, rate, steps = _as_array(lr), _as_array(decay_rate), _as_array(decay_steps)
    return lambda epoch: lr * rate ** (epoch / steps)


def cosine(lr: float | Array, epochs: int, min_lr: float | Array = 0.0) -> Schedule:
    """lr = min_lr + (lr0 - min_lr) * (1 + cos(pi * epoch / epochs)) / 2."""
    lr, lo = _as_array(lr), _as_array(min_lr)
    return lambda epoch: lo + (lr - lo) * 0.5 * (1.0 + np.cos(np.pi * min(epoch, epochs) / epochs))


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": constant, "step_decay": step_decay, "exponential": exponential, "cosine": cosine,
}


def get(name: str, **kwargs) -> Schedule:
    return SCHEDULES[choice("schedule.name", name, SCHEDULES)](**kwargs)
