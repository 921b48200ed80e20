"""Optuna's own figures of a study (matplotlib backend), for the sweep's parent run."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna

from nnexp import plots


def optuna_plots(study: optuna.Study, out: Path) -> list[Path]:
    """Optuna's own figures (matplotlib backend); one that cannot be drawn (too few trials) is skipped."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ov

    paths = []
    for name, fn in (("optimization_history", ov.plot_optimization_history),
                     ("param_importances", ov.plot_param_importances),
                     ("parallel_coordinate", ov.plot_parallel_coordinate), ("slice", ov.plot_slice)):
        try:
            with warnings.catch_warnings(), plt.rc_context():  # Optuna sets the ggplot style globally
                warnings.simplefilter("ignore")
                ax = fn(study)
                fig: Any = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
                if name == "slice":
                    fig.set_size_inches(3.2 * max(1, len(getattr(ax, "flat", [ax]))), 3.6)
                fig.tight_layout()
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue
        paths.append(out / f"{name}.png")
        fig.savefig(paths[-1], dpi=plots.DPI)
        plt.close(fig)
    return paths
