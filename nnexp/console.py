"""Console output: a progress line when attached to a terminal (quiet in CI and logs), and tables."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

import numpy as np

from nnexp.engine.loop import Callback


def interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


class Progress(Callback):
    """`epoch 120/300  val_r2 0.871` redrawn at most 10 times a second on stderr, only on a terminal."""

    def __init__(self, epochs: int, label: str = "", enabled: bool | None = None) -> None:
        self.epochs, self.label = epochs, label
        self.enabled = interactive() if enabled is None else enabled
        self.last = 0.0

    def on_epoch_end(self, epoch, replicas, metrics):
        now = time.monotonic()
        if self.enabled and (now - self.last > 0.1 or epoch + 1 == self.epochs):
            self.last = now
            val = metrics.get("val_r2", metrics.get("train_r2"))
            width = 30
            done = int(width * (epoch + 1) / self.epochs)
            bar = "#" * done + "." * (width - done)
            score = f"  val_r2 {np.nanmax(val):.4f}" if val is not None and len(val) else ""
            sys.stderr.write(f"\r{self.label}[{bar}] epoch {epoch + 1}/{self.epochs}{score}  ")
            sys.stderr.flush()
        return None

    def on_train_end(self, result):
        if self.enabled:
            sys.stderr.write("\n")


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    """A plain aligned text table."""
    cells = [[str(c) for c in header]] + [[f"{c:.4f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class SweepProgress:
    """Called after each population: trials done of the budget, best value, pruned and failed counts.
    A redrawn bar on a terminal; one line per population in logs."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.tty = interactive() if enabled is None else enabled
        self.t0 = time.monotonic()

    def __call__(self, worker) -> None:
        from nnexp.sweeps import storage as studies

        settings = worker.settings
        c = studies.counts(worker.study, settings.n_trials)
        done = c["COMPLETE"] + c["PRUNED"] + c["FAIL"]
        values = [t.value for t in worker.study.get_trials(deepcopy=False, states=(studies.TrialState.COMPLETE,))
                  if t.number < settings.n_trials]
        best = (max if settings.maximize else min)(values) if values else float("nan")
        width = 30
        bar = "#" * int(width * done / settings.n_trials) + "." * (width - int(width * done / settings.n_trials))
        line = (f"[{bar}] {done}/{settings.n_trials} trials  best {settings.metric} {best:.4f}  pruned {c['PRUNED']}  "
                f"failed {c['FAIL']}  {time.monotonic() - self.t0:.0f} s")
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if done >= settings.n_trials else ""))
            sys.stderr.flush()
        else:
            print(line, flush=True)
