"""Logging a trained model's files (spec.json + weights.npz, written by the command) as an MLflow
pyfunc model on its run (imported by the recorder only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np

from nnexp.recording.store import Store

MODEL_CODE = Path(__file__).resolve().parent.parent / "mlflow_model.py"


def log_model(store: Store, run_id: str, model: dict[str, Any]) -> None:
    """Log the model in `model["dir"]` on `run_id` (pickle-free: models-from-code), its metrics linked
    at `model["step"]`, the step of the run's final metrics."""
    mlflow.set_tracking_uri(store.uri)
    mlflow.start_run(run_id=run_id)
    try:
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE),
            artifacts={"model": str(model["dir"])},
            code_paths=[str(MODEL_CODE.parent)],
            pip_requirements=[f"numpy=={np.__version__}", f"mlflow=={mlflow.__version__}"],
            step=int(model.get("step", 0)),
        )
    finally:
        mlflow.end_run()  # the fluent API ends the run it logged into; the record's own status follows
