"""Sweeps (`make sweep`): Optuna searches the config space, trials trained as populations on the
engine's replica axis, every trial an MLflow child run of the sweep's parent run.

settings (`cfg.sweep` validated), space (the search space), storage (Optuna storages and studies),
worker (ask, train, record), run (the command: coordinator and workers), report (the end of a sweep).
It may import the engine and the shared harness modules (nnexp.config, plan, population, tracking,
...), never nnexp.ablations.
"""
