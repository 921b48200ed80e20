"""`make sweep ARGS="..."`: an Optuna search over the config space, every trial recorded in MLflow.

    python experiments/sweep.py                                  # the default sweep (conf/sweep/default.yaml)
    python experiments/sweep.py sweep=architecture sweep.n_trials=60 trainer.epochs=200
    python experiments/sweep.py --worker=1 sweep.storage=postgresql://...   # join a running sweep (make sweep-worker)
"""

import sys

from nnexp.cli import run_sweep

if __name__ == "__main__":
    run_sweep(sys.argv[1:])
