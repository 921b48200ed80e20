"""nnexp: NumPy neural-network experiments, tracked in MLflow, tuned with Optuna.

The package's plan, by folder: `nnexp.engine` (NumPy only: layers, optimizers, the training loop,
data, models), `nnexp.recording` (runs into MLflow, off the training path), `nnexp.sweeps` (Optuna
searches), `nnexp.ablations` (claims tested over seeds); shared harness modules at the top (configs,
plans, populations, the command line). The three commands are functions too, for notebooks:

    import nnexp
    run = nnexp.train(["optimizer.lr=0.05", "model=mlp_8_6_4"])      # one tracked run
    print(run.metrics["test_r2"], run.run_id)
    sweep = nnexp.sweep(["sweep.n_trials=128"])                        # an Optuna sweep
    print(sweep.best.params, sweep.confirmation.verdict)
    study = nnexp.ablation(["ablation=quick"])                         # an ablation study
    print(study.text)

Each takes Hydra overrides (as `make ... ARGS="..."` does), raises `nnexp.errors.ConfigError` for bad
input before anything is recorded, and returns the same result objects the make targets print.
Importing nnexp imports none of them: each loads what it uses when it is called.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__version__ = "0.1.0"


def train(overrides: Sequence[str] = (), *, progress: bool | None = False) -> Any:
    """One run of the composed config, recorded in MLflow; returns its `RunSummary` (run_id, status,
    metrics, result with curves and weights, seconds)."""
    from nnexp.config import compose_checked
    from nnexp.runner import run

    return run(compose_checked(list(overrides)), progress=progress)


def sweep(overrides: Sequence[str] = (), *, worker: int | None = None, progress: Any = None) -> Any:
    """A sweep (`sweep=default` unless the overrides choose one); returns its `SweepSummary` (counts,
    best and baseline trials, the confirmation, the report's text, the parent run's id). `worker`:
    join a running sweep as the worker of that index instead (returns None)."""
    from nnexp.config import compose_checked, with_default_group
    from nnexp.sweeps.run import run

    args = with_default_group(list(overrides), "sweep", "default")
    return run(compose_checked(args), args, worker_index=worker, on_population=progress)


def ablation(overrides: Sequence[str] = (), *, record: bool = False) -> Any:
    """An ablation study (`ablation=seed_claims` unless the overrides choose one): trained, recorded in
    MLflow, its report written (into experiments/<study>/ with `record`); returns the report's text."""
    from nnexp.ablations import run
    from nnexp.config import compose_checked, with_default_group

    args = with_default_group(list(overrides), "ablation", "seed_claims")
    return run.record(compose_checked(args), args, into_repo=record)
