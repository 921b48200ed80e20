"""`make train ARGS="..."`: see `nnexp.cli.run_train` and the README.

    python experiments/train.py [Hydra overrides]
"""

import sys

from nnexp.interrupts import sigterm_interrupts

sigterm_interrupts()  # first: Ctrl-C and SIGTERM end the command cleanly even while it starts

from nnexp.recording import start_early  # noqa: E402

start_early()  # the recorder imports MLflow while this command imports and composes its config

from nnexp.cli import run_train  # noqa: E402

if __name__ == "__main__":
    run_train(sys.argv[1:])
