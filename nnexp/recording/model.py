"""Logging a trained model's files (spec.json + weights.npz, written by the command) as an MLflow pyfunc
model that holds data only (imported by the recorder only). Its loader is `nnexp.serving` from the
installed package (the trust model is described there); the run records the data files' SHA-256
digests, the model's id, and its final metric values linked to the model."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.entities import Metric

from nnexp import serving
from nnexp.engine.model import Model
from nnexp.recording.store import Store


def log_model(store: Store, run_id: str, model: dict[str, Any]) -> str:
    """Log the model in `model["dir"]` on `run_id`, its output step `model["step"]` (the step of the run's
    final metrics: the last epoch, or the one after it when early stopping restored weights)."""
    data = Path(model["dir"])
    signature = serving.signature(Model.load(data))
    mlflow.set_tracking_uri(store.uri)
    mlflow.start_run(run_id=run_id)
    try:
        with warnings.catch_warnings(), pins_taken_as_installed():  # no input example: it would copy data rows
            warnings.filterwarnings("ignore", message=".*input example was not provided")
            info = mlflow.pyfunc.log_model(name="model", loader_module=serving.LOADER, data_path=str(data),
                                           signature=signature, step=int(model.get("step", 0)),
                                           pip_requirements=[f"numpy=={np.__version__}",
                                                             f"mlflow=={mlflow.__version__}"])
    finally:
        mlflow.end_run()  # the fluent API ends the run it logged into; the record's own status follows
    tags = {serving.DIGESTS_TAG: json.dumps(serving.digests(data)), serving.MODEL_ID_TAG: info.model_id}
    store.log(run_id, tags=tags, metrics=final_points(store, run_id, info.model_id))
    return info.model_id


@contextlib.contextmanager
def pins_taken_as_installed() -> Iterator[None]:
    """MLflow checks a model's requirements against the environment, mapping every installed distribution's
    files to its modules first (~1 s on the 2-core machine: a third of the recorder's work after training
    in `make train`). The model's two pins are the running numpy's and mlflow's own versions: the check has
    nothing to find, so it is skipped while the model is logged. Should MLflow move it, it runs as before."""
    from mlflow.utils import environment

    check = getattr(environment, "warn_dependency_requirement_mismatches", None)
    if check is None:
        yield
        return
    setattr(environment, "warn_dependency_requirement_mismatches", lambda requirements: None)  # noqa: B010
    try:
        yield
    finally:
        setattr(environment, "warn_dependency_requirement_mismatches", check)  # noqa: B010


def final_points(store: Store, run_id: str, model_id: str) -> list[Metric]:
    """The latest point of each of the run's metrics (its final value: the returned model's) again with the
    model's id: MLflow links it to the model and keeps one point in the run's history."""
    out = []
    for key in store.client.get_run(run_id).data.metrics:
        last = max(store.client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
        out.append(Metric(key, last.value, last.timestamp, last.step, model_id=model_id))
    return out
