"""`make train ARGS="..."`: one run of the composed config, recorded in MLflow.

    python experiments/train.py optimizer.lr=0.05 model=mlp_8_6_4
"""

import sys

import hydra
from omegaconf import DictConfig

from nnexp.cli import guarded, precheck_overrides
from nnexp.runner import summary_text, train


@hydra.main(config_path="../conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    summary = guarded(lambda: train(cfg))
    print(summary_text(summary))
    if summary.status != "FINISHED":
        sys.exit(1)


if __name__ == "__main__":
    precheck_overrides(sys.argv[1:])
    main()
