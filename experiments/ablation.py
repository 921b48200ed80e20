"""`make ablation ARGS="..."`: an ablation study (conf/ablation/), its report and MLflow runs.

    python experiments/ablation.py                              # ablation=seed_claims
    python experiments/ablation.py ablation=my_study trainer.epochs=200
    python experiments/ablation.py --check ablation=seed_claims # make ablation-check STUDY=seed_claims
"""

import sys

from nnexp.cli import run_ablation

if __name__ == "__main__":
    run_ablation(sys.argv[1:])
