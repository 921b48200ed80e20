"""Evaluation metrics, one value per replica: pred, y of shape (..., n, n_out) -> (R,)."""

from __future__ import annotations

import numpy as np

Array = np.ndarray


def mse(pred: Array, y: Array) -> Array:
    """mean((pred - y)^2) per replica."""
    diff = pred - y
    return np.atleast_1d((diff * diff).mean(axis=(-2, -1)))


def r2(pred: Array, y: Array) -> Array:
    """R^2 = 1 - SS_res / SS_tot per replica; NaN where the target is constant (SS_tot = 0: undefined)."""
    ss_tot = float(((y - y.mean()) ** 2).sum())
    ss_res = np.atleast_1d(((pred - y) ** 2).sum(axis=(-2, -1)))
    if ss_tot == 0.0:
        return np.full_like(ss_res, np.nan)
    return 1.0 - ss_res / ss_tot
