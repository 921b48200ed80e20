"""The layers of the package: the engine stays free of Hydra, MLflow and Optuna and of nnexp's upper
layers; tracking and tuning sit on top of it."""

import pkgutil
import subprocess
import sys

import nnexp.engine

ENGINE = sorted(m.name for m in pkgutil.iter_modules(nnexp.engine.__path__))


def test_engine_imports_no_harness_library_and_no_upper_layer():
    code = (f"import sys; import {', '.join('nnexp.engine.' + m for m in ENGINE)}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('hydra', 'omegaconf', 'mlflow', 'optuna') "
            "or (m.startswith('nnexp.') and not m.startswith('nnexp.engine') and m != 'nnexp.errors')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert len(ENGINE) >= 10 and out == "[]"
