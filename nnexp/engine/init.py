"""Weight initialisers: (fan_in, fan_out, rng) -> array of shape (fan_in, fan_out). Biases start at zero."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nnexp.errors import choice

Init = Callable[[int, int, np.random.Generator], np.ndarray]


def xavier_uniform(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """Glorot: U(-l, l) with l = sqrt(6 / (fan_in + fan_out))."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out))


def xavier_normal(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """Glorot: N(0, 2 / (fan_in + fan_out))."""
    return rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), (fan_in, fan_out))


def he_normal(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """He: N(0, 2 / fan_in), for ReLU layers."""
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_in, fan_out))


def uniform(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """The naive scheme the seed warns against: U(-1, 1) whatever the layer size (for ablations)."""
    return rng.uniform(-1.0, 1.0, (fan_in, fan_out))


INITS: dict[str, Init] = {
    "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "he_normal": he_normal,
    "uniform": uniform,
}


def get(name: str, field: str = "init") -> Init:
    return INITS[choice(field, name, INITS)]
