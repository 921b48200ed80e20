"""The objective and its penalties, each as value and gradient.

Arrays may carry a leading replica axis; values are per replica (reduced over the last two axes).
"""

from __future__ import annotations

import numpy as np

Array = np.ndarray


def mse(pred: Array, y: Array) -> tuple[Array, Array]:
    """L = mean((pred - y)^2) per replica; dL/dpred = 2 (pred - y) / n. pred, y: (..., batch, n_out)."""
    diff = pred - y
    n = diff.shape[-2] * diff.shape[-1]
    return (diff * diff).sum(axis=(-2, -1)) / n, diff * (2.0 / n)


def mse_grad(pred: Array, y: Array) -> Array:
    """dL/dpred of the MSE alone (the training step does not need the value)."""
    diff = pred - y
    diff *= 2.0 / (diff.shape[-2] * diff.shape[-1])
    return diff


def l1_penalty(w: Array, strength: Array | float, mask: Array) -> tuple[Array, Array]:
    """P = l1 * sum(|w| * mask) per replica; dP/dw = l1 * sign(w) * mask. w: (R, P); mask marks weights."""
    strength = np.asarray(strength, dtype=float).reshape(-1, 1)
    return (strength * np.abs(w) * mask).sum(axis=-1), strength * np.sign(w) * mask


def l2_penalty(w: Array, strength: Array | float, mask: Array) -> tuple[Array, Array]:
    """P = (l2 / 2) * sum(w^2 * mask) per replica; dP/dw = l2 * w * mask (weight decay)."""
    strength = np.asarray(strength, dtype=float).reshape(-1, 1)
    return 0.5 * (strength * w * w * mask).sum(axis=-1), strength * w * mask
