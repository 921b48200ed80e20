"""The engine stays free of Hydra, MLflow and Optuna: tracking and tuning sit on top of it."""

import subprocess
import sys

ENGINE = ["activations", "data", "errors", "init", "layers", "losses", "metrics", "model", "network", "optim",
          "schedules", "train"]


def test_engine_imports_no_harness_library():
    code = (f"import sys; import {', '.join('nnexp.' + m for m in ENGINE)}; "
            "print(sorted(m for m in ('hydra', 'omegaconf', 'mlflow', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
