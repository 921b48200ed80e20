"""Evaluation: MSE and R² of every split for every replica, in one forward pass.

R² = 1 - SS_res / SS_tot is undefined for a constant target (SS_tot = 0). A target that is constant
up to rounding is too: ten rows of 0.3 have SS_tot ~ 1e-32 around their rounded mean, and R² came out
as -3e30. A split whose spread is negligible against its values' magnitude (std <= 1e-10 max|y|, in
the target's own units) has no R² (NaN, which the harness records as "undefined", never as a number).
"""

from __future__ import annotations

import numpy as np

from nnexp.engine.data import Dataset
from nnexp.engine.network import Network

Array = np.ndarray
SPLITS = ("train", "val", "test")
NEGLIGIBLE = 1e-10  # a spread below this fraction of the values' magnitude is rounding noise


def constant(y: Array) -> bool:
    """Whether a target (in its own units) is constant up to rounding: std <= NEGLIGIBLE * max|y|."""
    y = np.asarray(y, dtype=float).ravel()
    if len(y) == 0:
        return True
    spread = float(np.sqrt(np.mean((y - y.mean()) ** 2)))
    return spread <= NEGLIGIBLE * float(np.abs(y).max()) or spread == 0.0


class Evaluator:
    """All splits in one forward pass: MSE (on the scaled target) and R^2 per split per replica."""

    def __init__(self, data: Dataset) -> None:
        parts = [(s, getattr(data, f"x_{s}"), getattr(data, f"y_{s}")) for s in SPLITS]
        parts = [(s, x, y) for s, x, y in parts if len(x)]
        self.splits = [s for s, _, _ in parts]
        self.x = np.ascontiguousarray(np.concatenate([x for _, x, _ in parts]).T)  # (n_features, n)
        self.y = np.concatenate([y for _, _, y in parts]).T  # (1, n)
        sizes = [len(x) for _, x, _ in parts]
        self.starts = np.cumsum([0, *sizes[:-1]])
        self.n = np.asarray(sizes, dtype=float)
        self.ss_tot = np.array([float(((y - y.mean()) ** 2).sum()) for _, _, y in parts])
        self.defined = [not constant(data.scaler.y_inverse(y)) for _, _, y in parts]

    def __call__(self, net: Network) -> dict[str, Array]:
        diff = net.forward(self.x, train=False) - self.y
        sse = np.add.reduceat(diff * diff, self.starts, axis=-1).sum(axis=-2)  # (R, n_splits) or (n_splits,)
        sse = sse.reshape(-1, len(self.splits))
        out = {}
        with np.errstate(divide="ignore", invalid="ignore"):
            for i, s in enumerate(self.splits):
                out[f"{s}_mse"] = sse[:, i] / self.n[i]
                out[f"{s}_r2"] = 1.0 - sse[:, i] / self.ss_tot[i] if self.defined[i] else np.full(len(sse), np.nan)
        return out
