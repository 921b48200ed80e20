import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.pop("MLFLOW_TRACKING_URI", None)  # tests never write to a user's server


@pytest.fixture
def store(tmp_path):
    """A throwaway SQLite tracking store under tmp_path."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def run_script(script, *args, env=None, timeout=300, cwd=None):
    """Run experiments/<script> in a subprocess; returns the CompletedProcess."""
    full_env = {**os.environ, "CI": "1", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "experiments" / script), *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout, cwd=cwd or ROOT)
