"""Matplotlib figures for runs, sweeps and studies (Agg backend, written as PNG files).

Each function takes plain arrays and returns the path of the PNG it wrote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

Array = np.ndarray
DPI = 80


def _save(fig, path: Path, **margins: float) -> Path:
    # fixed margins: tight_layout doubles the cost of a small figure (measured, see README)
    fig.subplots_adjust(**{"left": 0.1, "right": 0.97, "bottom": 0.14, "top": 0.9, "wspace": 0.28, **margins})
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def learning_curves(curves: Mapping[str, Array], path: Path, title: str = "") -> Path:
    """log10 MSE per epoch on train / validation / test, and R^2 beside it.

    (log10 on a linear axis: a log-scaled axis costs twice as much to draw.)"""
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    for split in ("train", "val", "test"):
        if f"{split}_mse" in curves:
            a.plot(np.log10(curves[f"{split}_mse"]), label=split)
            b.plot(curves[f"{split}_r2"], label=split)
    a.set(xlabel="epoch", ylabel="log10 MSE", title=title or "learning curves")
    b.set(xlabel="epoch", ylabel="R²", ylim=(max(-0.5, b.get_ylim()[0]), 1.0))
    a.legend()
    return _save(fig, path)


def predictions(y_true: Array, y_pred: Array, path: Path, target: str = "y") -> Path:
    """Predicted against actual on the test split, with the identity line."""
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.scatter(y_true, y_pred, s=6, alpha=0.6)
    lo, hi = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set(xlabel=f"actual {target}", ylabel=f"predicted {target}", title="test: predicted vs actual")
    return _save(fig, path, left=0.16)


def residuals(y_true: Array, y_pred: Array, path: Path, target: str = "y") -> Path:
    """Residuals (actual - predicted) against the prediction on the test split."""
    res = y_true - y_pred
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.scatter(y_pred, res, s=6, alpha=0.6)
    ax.axhline(0, color="k", lw=1)
    ax.set(xlabel=f"predicted {target}", ylabel="residual",
           title=f"test residuals (mean {res.mean():+.3g}, std {res.std():.3g})")
    return _save(fig, path, left=0.16)


def compare_steps(runs: Mapping[str, tuple[Sequence[int], Sequence[float]]], path: Path, metric: str) -> Path:
    """One metric's curve (epochs, values) for several named runs, e.g. the best trial against the baseline."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, (steps, values) in runs.items():
        ax.plot(steps, values, marker=".", label=name)
    ax.set(yscale="log" if metric.endswith("mse") else "linear", xlabel="epoch", ylabel=metric)
    ax.legend()
    return _save(fig, path)


def steps_over_time(series: Mapping[str, tuple[Array, Array]], path: Path, ylabel: str) -> Path:
    """Best-so-far curves against wall-clock seconds, one per named series (seconds, values)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, (seconds, values) in series.items():
        ax.step(seconds, values, where="post", label=name)
    ax.set(xlabel="wall-clock seconds", ylabel=ylabel)
    lo = min(float(np.quantile(v, 0.05)) for _, v in series.values() if len(v))
    ax.set_ylim(lo, None)
    ax.legend()
    return _save(fig, path, left=0.13)


def bands(groups: Mapping[str, Array | Sequence[Array]], path: Path, ylabel: str, log: bool = True) -> Path:
    """Mean curve with a band (min..max over seeds) per group; each value is an (n_seeds, n_epochs) array."""
    fig, ax = plt.subplots(figsize=(7, 4))
    colors = plt.get_cmap("tab20" if len(groups) > 10 else "tab10").colors  # type: ignore[attr-defined]
    for i, (name, arr) in enumerate(groups.items()):
        arr = np.asarray(arr, dtype=float)
        x = np.arange(arr.shape[1])
        c = colors[i % len(colors)]
        ax.plot(x, np.nanmean(arr, axis=0), label=name, lw=1.2, color=c)
        ax.fill_between(x, np.nanmin(arr, axis=0), np.nanmax(arr, axis=0), alpha=0.12, color=c)
    ax.set(yscale="log" if log else "linear", xlabel="epoch", ylabel=ylabel)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def effects(names: Sequence[str], diffs: Sequence[float], lo: Sequence[float], hi: Sequence[float], path: Path,
            xlabel: str) -> Path:
    """Horizontal error bars: each variant's difference from the baseline with its CI."""
    d, low, high = (np.asarray(a, dtype=float) for a in (diffs, lo, hi))
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2))
    y = np.arange(len(names))
    ax.errorbar(d, y, xerr=[d - low, high - d], fmt="o", capsize=3)
    ax.axvline(0, color="k", lw=1)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set(xlabel=xlabel)
    return _save(fig, path, left=0.26, bottom=0.12, top=0.97)
