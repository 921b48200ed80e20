"""Optuna's own figures of a study for the sweep's parent run (Optuna draws them on pyplot figures; they
are relabelled and laid out here like nnexp's own plots, and every figure opened here is closed here)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna

from nnexp.plotkit import fit, plain_log, text_width, wrap
from nnexp.plots import DPI, TITLE_SIZE, WIDTH, axis_label, metric_name, save


def optuna_plots(study: optuna.Study, out: Path, metric: str = "") -> list[Path]:
    """Optuna's own figures (matplotlib backend), titled and labelled with the objective `metric` and laid
    out for about 1100 px (plots.DPI, fixed margins); one that cannot be drawn (too few trials) is skipped.
    Optuna draws on pyplot figures: every figure opened here is closed here."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ov

    target, what = (axis_label(metric), metric_name(metric)) if metric else ("objective value",) * 2
    paths = []
    for name, fn in (("optimization_history", ov.plot_optimization_history),
                     ("param_importances", ov.plot_param_importances),
                     ("parallel_coordinate", ov.plot_parallel_coordinate), ("slice", ov.plot_slice)):
        opened = set(plt.get_fignums())
        try:
            with warnings.catch_warnings(), plt.rc_context():  # Optuna sets the ggplot style globally
                warnings.simplefilter("ignore")
                ax = fn(study, target_name=target)
                fig: Any = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
                margins = optuna_layout(name, fig, ax, target, f"Sweep {study.study_name}", what)
                paths.append(save(fig, out / f"{name}.png", **margins))
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue
        finally:
            for n in set(plt.get_fignums()) - opened:
                plt.close(n)
    return paths



def optuna_layout(name: str, fig: Any, ax: Any, target: str, head: str, what: str) -> dict[str, Any]:
    """Title, labels and layout for Optuna's figure `name` (optimization_history, param_importances,
    parallel_coordinate, slice); returns the margins for `save`. `target` is the objective's axis
    label, `what` its name in words, `head` the title's start (e.g. the sweep)."""
    fig.set_layout_engine("none")  # Optuna may ask for tight_layout: fixed margins instead
    fig.set_dpi(DPI)
    return {"optimization_history": _history, "param_importances": _importances,
            "parallel_coordinate": _parallel, "slice": _slice}[name](fig, ax, target, what, head)


def _history(fig: Any, ax: Any, target: str, what: str, head: str) -> dict[str, Any]:
    fig.set_size_inches(WIDTH, 4.8)
    ax.set_title(f"{head}: {what} of each trial, and the best so far", fontsize=TITLE_SIZE, y=1.0)
    ax.set(xlabel="trial number", ylabel=target)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, ["trial" if lab == target else "best so far" for lab in labels], loc="best")
    return {"left": 0.95, "top": 0.45}


def _importances(fig: Any, ax: Any, target: str, what: str, head: str) -> dict[str, Any]:
    names = [t.get_text() for t in ax.get_yticklabels()]
    fig.set_size_inches(WIDTH, max(2.4, 0.45 * len(names) + 1.4))
    ax.set_title("", loc="left")  # Optuna's
    ax.set_title(f"{head}: parameter importances for {what}", fontsize=TITLE_SIZE, y=1.0)
    ax.set(xlabel=f"importance for {what} (Optuna's evaluator; all parameters sum to 1)", ylabel="parameter")
    if ax.get_legend() is not None:
        ax.get_legend().remove()  # one series: the title names it
    return {"left": text_width(fig, names, 10) + 0.7, "bottom": 0.65, "top": 0.45}


def _parallel(fig: Any, ax: Any, target: str, what: str, head: str) -> dict[str, Any]:
    """Axes and colour bar placed by hand: room left of the objective's tick labels and right of the last
    parameter's, and the parameter names level (broken at "_" or " " when they would not fit their column)."""
    fig.set_size_inches(WIDTH + 1.0, 5.4)
    w, h = fig.get_size_inches()
    twins = [a for a in fig.axes if a is not ax and a.get_label() != "<colorbar>"]
    bars = [a for a in fig.axes if a.get_label() == "<colorbar>"]
    for a in twins:
        if a.get_yscale() == "log":
            plain_log(a.yaxis, most=6)
    values = [[t.get_text() for t in a.get_yticklabels()] for a in twins]
    left = text_width(fig, [t.get_text() for t in ax.get_yticklabels()], 10) + 0.45  # the objective's labels
    column = (w - left - 2.6) / max(1, len(twins))
    size = 9 if all(text_width(fig, v, 9) < 0.85 * column for v in values) else 8  # e.g. long category names
    for a in twins:
        a.tick_params(labelsize=size)
        for t in a.get_yticklabels():  # readable over the lines
            t.set_bbox({"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1.0})
    bar = max((_bar_room(fig, b) for b in bars), default=1.05)  # the colour bar's distance from the right edge
    right, top = text_width(fig, values[-1] if values else [], size) + 0.25 + bar + 0.05, 0.55
    names = [t.get_text() for t in ax.get_xticklabels()]
    column = (w - left - right) / max(1, len(names) - 1)
    # each name is centred under its axis: the first (the objective's) has only the left margin on its left
    names = [wrap(fig, n, 10, min(0.9 * column, 2 * (left - 0.1)) if i == 0 else 0.9 * column)
             for i, n in enumerate(names)]
    bottom = 0.45 + 0.18 * max((n.count("\n") + 1 for n in names), default=1)
    ax.set_position([left / w, bottom / h, 1 - (left + right) / w, 1 - (bottom + top) / h])
    for b in bars:
        b.set_position([1 - bar / w, bottom / h, 0.18 / w, 1 - (bottom + top) / h])
        b.set_ylabel(target)
    ax.set_xticks(ax.get_xticks(), names, rotation=0, ha="center")
    ax.set_title(f"{head}: each trial's parameters and {what} (one line per trial)", fontsize=TITLE_SIZE,
                 y=1.02)
    ax.set(ylabel=target, xlabel="parameter (each vertical axis at its own scale, values on its right)")
    return {"left": None}


def _bar_room(fig: Any, bar: Any) -> float:
    """Inches from the figure's right edge to where a colour bar starts: the bar, its tick labels (as wide
    as its formatter makes them: 0.00925 for an objective near 0.01) and its label beside them."""
    ticks = bar.yaxis.get_major_formatter().format_ticks(bar.yaxis.get_majorticklocs())
    labels = bar.get_yticklabels()
    return max(0.9, 0.18 + text_width(fig, ticks, labels[0].get_fontsize() if labels else 10) + 0.4)


def _slice(fig: Any, ax: Any, target: str, what: str, head: str) -> dict[str, Any]:
    """The panels in a grid of up to three columns (Optuna puts them in one row, the colour bar over
    the last panel), the colour bar at the right; categorical values without Optuna's quotes, slanted
    when they would not fit their panel (the rows then move apart to make room)."""
    panels = list(getattr(ax, "flat", [ax]))
    bars = [a for a in fig.axes if a.get_label() == "<colorbar>"]
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig.set_size_inches(WIDTH + 1.0, 1.0)  # the width first: it decides which labels must slant
    w = WIDTH + 1.0
    left, right, bottom, top, wgap, hgap = 0.95, 1.2, 0.75, 0.55, 0.35, 0.95
    ph = 2.0
    ylabel = wrap(fig, target, 10, ph - 0.1)  # a long objective name ("validation MSE (target scaled ...)")
    left += 0.17 * ylabel.count("\n")
    pw = (w - left - right - wgap * (cols - 1)) / cols
    categorical = {}
    for a in panels:
        labels = [t.get_text() for t in a.get_xticklabels()]
        if any(lab.startswith("'") for lab in labels):  # Optuna plots repr(value)
            categorical[a] = [lab.strip("'") for lab in labels]
    slanted = {a for a, labels in categorical.items() if text_width(fig, labels, 10) * len(labels) > 0.85 * pw}
    drop = max((0.57 * text_width(fig, categorical[a], 10) for a in slanted), default=0.0)  # sin 35°
    bottom, hgap = bottom + drop, hgap + drop
    fig.set_size_inches(w, bottom + top + rows * ph + (rows - 1) * hgap)
    h = fig.get_size_inches()[1]
    for i, a in enumerate(panels):
        r, c = divmod(i, cols)
        a.set_title("")  # Optuna's "Slice Plot" on a single panel: the figure's title replaces it
        a.set_position([(left + c * (pw + wgap)) / w, (bottom + (rows - 1 - r) * (ph + hgap)) / h, pw / w, ph / h])
        a.tick_params(labelleft=c == 0)
        a.set_ylabel(ylabel if c == 0 else "")
        if a.get_xscale() == "log":
            a.set_xlabel(f"{a.get_xlabel()} (log scale)")
            plain_log(a.xaxis, most=5)
        if a in categorical:
            slant = a in slanted
            a.set_xticks(a.get_xticks(), categorical[a], rotation=35 if slant else 0,
                         ha="right" if slant else "center", rotation_mode="anchor" if slant else "default")
    for b in bars:
        b.set_position([1 - 0.95 / w, bottom / h, 0.18 / w, 1 - (bottom + top) / h])
        b.set_ylabel("trial number")
    fig.suptitle(fit(fig, f"{head}: {what} against each parameter (colour: trial number)", w - 0.3),
                 fontsize=TITLE_SIZE, y=1 - 0.2 / h)
    return {"left": None}
