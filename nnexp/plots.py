"""Matplotlib figures for runs, sweeps and studies, written as PNG files.

Each function takes plain arrays and returns the path of the PNG it wrote. Figures are
`matplotlib.figure.Figure` objects on an Agg canvas: no pyplot, so importing this module neither
chooses a backend nor keeps figures in pyplot's global registry.

Every figure has a title and labelled axes with units, at DPI = 120 and about 1080 px wide (the
MLflow artifact viewer shows a PNG at its natural size up to about 1000 px). Margins are fixed in
inches (or measured from the labels that vary, such as variant names), never `tight_layout`, which
doubled the cost of a small figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nnexp.plotkit import DPI, TITLE_SIZE, fit, log_y, shorten, text_width

Array = np.ndarray
WIDTH = 9.0  # inches: 1080 px at DPI
SCALED = "target scaled to [0, 1]"  # every MSE in nnexp is on the min-max scaled target
METRIC_NAMES = {"train_mse": "training MSE", "val_mse": "validation MSE", "test_mse": "test MSE",
                "train_r2": "training R²", "val_r2": "validation R²", "test_r2": "test R²",
                "gap_mse": "gap MSE (test − training)"}
TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
         "#17becf")


def metric_name(metric: str) -> str:
    """A metric's name in words ("val_r2" -> "validation R²"); other text is returned as it is."""
    return METRIC_NAMES.get(metric, metric)


def axis_label(metric: str) -> str:
    """An axis label with units: MSEs are on the scaled target, R² is unitless."""
    name = metric_name(metric)
    return f"{name} ({SCALED})" if metric.endswith("mse") and SCALED not in name else name


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def figure(width: float = WIDTH, height: float = 4.5) -> Figure:
    """A figure (inches) on its own Agg canvas, outside pyplot."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Any, path: Path, left: float = 0.85, right: float = 0.25, bottom: float = 0.65, top: float = 0.6,
         wspace: float | None = None, hspace: float | None = None) -> Path:
    """Fixed margins in inches (subplots_adjust, no layout engine), then the PNG at DPI; left=None keeps
    the axes where the caller placed them. Titles are set at y=1.0 (matplotlib's search for tick labels
    above the axes cost a quarter of a small figure's drawing), so no axis shows an offset text there;
    a title too long for the canvas is cut in the middle.

    Tests wrap this function to inspect every figure before and after it is drawn."""
    w, h = fig.get_size_inches()
    if left is not None:
        fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h,
                            wspace=wspace, hspace=hspace)
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):  # no offset text ("1e5" above the axis) where a title sits at y=1
            if isinstance(axis.get_major_formatter(), ticker.ScalarFormatter):
                axis.get_major_formatter().set_useOffset(False)
        if ax.title.get_text():  # a title names a sweep, a study or a target, whose names can be long
            pos = ax.get_position()
            centre = (pos.x0 + pos.width / 2) * w
            ax.title.set_text(fit(fig, ax.title.get_text(), 2 * min(centre, w - centre) - 0.15,
                                  ax.title.get_fontsize()))
    fig.savefig(path, dpi=DPI, pil_kwargs={"compress_level": 1})  # zlib level 1: half the encoding time, +12% bytes
    return path


def learning_curves(curves: Mapping[str, Array], path: Path, title: str = "") -> Path:
    """MSE per epoch on train / validation / test (log scale), and R² beside it."""
    fig = figure(WIDTH, 4.4)
    a, b = fig.subplots(1, 2)
    for split, name in (("train", "training"), ("val", "validation"), ("test", "test")):
        if f"{split}_mse" in curves:
            a.plot(curves[f"{split}_mse"], label=name)
        if f"{split}_r2" in curves:
            b.plot(curves[f"{split}_r2"], label=name)
    log_y(a)
    a.set(xlabel="epoch", ylabel=f"MSE ({SCALED})")
    b.set(xlabel="epoch", ylabel="R²", ylim=(max(-0.5, b.get_ylim()[0]), 1.0))
    a.set_title("MSE (log scale)", y=1.0)
    b.set_title("R² (1 = perfect fit)", y=1.0)
    a.legend()
    fig.suptitle(fit(fig, title or "Learning curves: training, validation and test per epoch", WIDTH - 0.3),
                 fontsize=TITLE_SIZE)
    return save(fig, path, left=0.85, right=0.2, bottom=0.6, top=0.75, wspace=0.3)


def _r2(y_true: Array, y_pred: Array) -> str:
    ss = float(np.sum((y_true - y_true.mean()) ** 2))
    return f", R² {1 - float(np.sum((y_true - y_pred) ** 2)) / ss:.3f}" if ss > 0 else ""


def predictions(y_true: Array, y_pred: Array, path: Path, target: str = "y") -> Path:
    """Predicted against actual on the test split, with the identity line (the target's own units)."""
    fig = figure(7.5, 7.0)
    ax = fig.subplots()
    ax.scatter(y_true, y_pred, s=10, alpha=0.6, label="test rows")
    lo, hi = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="predicted = actual")
    ax.set(xlabel=f"actual {target} (original units)", ylabel=f"predicted {target} (original units)")
    ax.set_title(f"Test split: predicted vs actual {target} ({len(y_true)} rows{_r2(y_true, y_pred)})",
                 fontsize=TITLE_SIZE, y=1.0)
    ax.legend(loc="upper left")
    return save(fig, path, left=0.9, right=0.3, bottom=0.65, top=0.45)


def residuals(y_true: Array, y_pred: Array, path: Path, target: str = "y") -> Path:
    """Residuals (actual - predicted) against the prediction on the test split (the target's own units)."""
    res = y_true - y_pred
    fig = figure(WIDTH, 4.6)
    ax = fig.subplots()
    ax.scatter(y_pred, res, s=10, alpha=0.6)
    ax.axhline(0, color="k", lw=1)
    ax.set(xlabel=f"predicted {target} (original units)", ylabel=f"actual − predicted {target} (original units)")
    ax.set_title(f"Test split: residuals of {target} (mean {res.mean():+.3g}, std {res.std():.3g}, "
                 "original units)", fontsize=TITLE_SIZE, y=1.0)
    return save(fig, path, left=0.95, top=0.45)


def compare_steps(runs: Mapping[str, tuple[Sequence[int], Sequence[float]]], path: Path, metric: str,
                  title: str = "") -> Path:
    """One metric's curve (epochs, values) for several named runs, e.g. the best trial against the baseline."""
    fig = figure(WIDTH, 4.6)
    ax = fig.subplots()
    for name, (steps, values) in runs.items():
        ax.plot(steps, values, marker="o", ms=4, label=name)
    if metric.endswith("mse"):
        log_y(ax)
    ax.set(xlabel="epoch", ylabel=axis_label(metric))
    ax.set_title(title or sentence(f"{metric_name(metric)} per epoch"), fontsize=TITLE_SIZE, y=1.0)
    ax.legend()
    return save(fig, path, left=0.95, top=0.45)


def steps_over_time(series: Mapping[str, tuple[Array, Array]], path: Path, ylabel: str, title: str = "") -> Path:
    """Best-so-far curves against wall-clock seconds, one per named series (seconds, values)."""
    fig = figure(WIDTH, 4.6)
    ax = fig.subplots()
    for name, (seconds, values) in series.items():
        ax.step(seconds, values, where="post", label=name)
    ax.set(xlabel="wall-clock time (s)", ylabel=axis_label(ylabel))
    lo = min(float(np.quantile(v, 0.05)) for _, v in series.values() if len(v))
    ax.set_ylim(lo, None)
    ax.set_title(title or sentence(f"{metric_name(ylabel)} against wall-clock time"), fontsize=TITLE_SIZE, y=1.0)
    ax.legend(loc="lower right")
    return save(fig, path, left=0.95, top=0.45)


def _stack(curves: Array | Sequence[Array]) -> Array:
    """Per-seed curves as an (n_seeds, n_epochs) array, NaN after a curve that ended early."""
    rows = [np.asarray(c, dtype=float).ravel() for c in curves]
    out = np.full((len(rows), max(len(r) for r in rows)), np.nan)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def bands(groups: Mapping[str, Array | Sequence[Array]], path: Path, ylabel: str, log: bool = True,
          title: str = "") -> Path:
    """Mean curve with a band (min..max over seeds) per group; each value is an (n_seeds, n_epochs) array.

    A group named "baseline…" is drawn black and thicker. More than 10 groups: the 10 colours repeat with
    dashed, then dotted lines; the legend goes right of the axes, its names shortened in the middle if
    they would take more than a third of the width."""
    fig = figure(WIDTH, 5.0 if len(groups) > 6 else 4.6)
    ax = fig.subplots()
    seeds = set()
    for i, (name, curves) in enumerate(groups.items()):
        arr = _stack(curves)
        seeds.add(arr.shape[0])
        x = np.arange(arr.shape[1])
        c, style = TAB10[i % 10], ("-", "--", ":")[(i // 10) % 3]
        base = name.startswith("baseline")  # the reference every other curve is read against: black, on top
        c = "black" if base else c
        ax.plot(x, np.nanmean(arr, axis=0), label=name, lw=2.0 if base else 1.4, color=c, ls=style,
                zorder=3 if base else 2)
        ax.fill_between(x, np.nanmin(arr, axis=0), np.nanmax(arr, axis=0), alpha=0.12 if len(groups) <= 4 else 0.06,
                        color=c, lw=0)
    if log:
        log_y(ax)
    ax.set(xlabel="epoch", ylabel=axis_label(ylabel))
    k = f"{min(seeds)}" if len(seeds) == 1 else f"{min(seeds)}–{max(seeds)}"
    sub = f"line: mean over {k} seeds, band: min to max"
    ax.set_title(f"{title or sentence(metric_name(ylabel) + ' per epoch')}\n{sub}", fontsize=TITLE_SIZE, y=1.0)
    right = 0.25
    if len(groups) > 4:  # legend outside, one column (two beyond 20 names)
        size, ncol = 9, 1 if len(groups) <= 20 else 2
        names = shorten(fig, list(groups), size, WIDTH / 3 / ncol - 0.45)
        handles, _ = ax.get_legend_handles_labels()
        ax.legend(handles, names, fontsize=size, ncol=ncol, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  frameon=False, handlelength=2.2, borderaxespad=0.0)
        right = ncol * (text_width(fig, names, size) + 0.45) + 0.2
    else:
        ax.legend()
    return save(fig, path, left=0.95, right=right, top=0.8)


def effects(names: Sequence[str], diffs: Sequence[float], lo: Sequence[float], hi: Sequence[float], path: Path,
            xlabel: str, title: str = "") -> Path:
    """Horizontal error bars: each variant's difference from the baseline with its CI. The left margin
    fits the longest name (names longer than 40% of the width are shortened in the middle)."""
    d, low, high = (np.asarray(a, dtype=float) for a in (diffs, lo, hi))
    fig = figure(WIDTH, 0.34 * len(names) + 1.9)
    ax = fig.subplots()
    y = np.arange(len(names))
    ax.errorbar(d, y, xerr=[d - low, high - d], fmt="o", capsize=3)
    ax.axvline(0, color="k", lw=1)
    labels = shorten(fig, list(names), 10, 0.4 * WIDTH)
    ax.set_yticks(y, labels)
    ax.set_ylim(len(names) - 0.5, -0.5)  # the first variant on top
    ax.set(xlabel=xlabel, ylabel="variant")
    ax.set_title(title or "Each variant against the baseline", fontsize=TITLE_SIZE, y=1.0)
    ax.grid(axis="x", alpha=0.3)
    left = text_width(fig, labels, 10) + 0.65  # tick labels, their padding, and the "variant" label
    return save(fig, path, left=left, bottom=0.7, top=0.25 + 0.22 * (ax.get_title().count("\n") + 1))


def budget_curves(curves: Mapping[str, Mapping[str, Array]], path: Path, metric: str, title: str,
                  budgets: Sequence[int] = ()) -> Path:
    """Expected best score against the number of tuning trials: a panel per task, a line per variant
    (the baseline black), the budgets the report judges at dotted, one legend beside the last panel."""
    tasks = list(curves)
    fig = figure(WIDTH + 1.5, 4.8)
    axes = np.atleast_1d(fig.subplots(1, len(tasks), sharey=False))
    names = list(dict.fromkeys(v for c in curves.values() for v in c))
    for ax, task in zip(axes, tasks, strict=True):
        for i, name in enumerate(names):
            y = np.asarray(curves[task].get(name, []), dtype=float)
            base = name == "baseline"
            ax.plot(np.arange(1, len(y) + 1), y, color="black" if base else TAB10[i % 10],
                    ls="-" if base else ("-", "--", ":")[(i // 10) % 3], lw=2.0 if base else 1.2, label=name)
        n = max(len(c) for c in curves[task].values())
        for b in budgets:
            ax.axvline(b, color="grey", ls=":", lw=0.8)
        ax.set(xlabel="tuning trials", xscale="log", xlim=(1, max(n, 2)))
        ax.set_xticks([2**k for k in range(int(np.log2(max(n, 1))) + 1)])
        ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.set_title(task, fontsize=10)
    axes[0].set_ylabel(f"expected best {axis_label(metric)}")
    handles, labels = axes[-1].get_legend_handles_labels()
    labels = shorten(fig, labels, 8, 1.4)
    axes[-1].legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.suptitle(fit(fig, title, WIDTH + 1.2), fontsize=TITLE_SIZE, y=1 - 0.15 / 4.8)
    return save(fig, path, left=0.95, right=text_width(fig, labels, 8) + 0.8, top=0.75, wspace=0.35)
