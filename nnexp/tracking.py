"""MLflow tracking on top of the engine: runs, batched metric logging, artifacts and the model.

Embedded default: a SQLite store at the project root (`mlflow.db`) with artifacts beside it in
`mlartifacts/`, whatever the working directory. `tracking.uri` (or MLFLOW_TRACKING_URI) points at a
shared tracking server instead. Everything goes through `MlflowClient` with explicit run ids, and
metrics are buffered and sent with `log_batch` (one call per 1,000 points, not one per point).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm bars while logging models

import logging  # noqa: E402

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from nnexp import __version__  # noqa: E402
from nnexp.engine.data import Dataset  # noqa: E402
from nnexp.engine.loop import Callback, ReplicaResult  # noqa: E402
from nnexp.engine.model import MLPSpec, Model  # noqa: E402
from nnexp.interrupts import deferred  # noqa: E402
from nnexp.paths import project_root  # noqa: E402

logging.getLogger("mlflow").setLevel(logging.WARNING)  # not "Updating database tables" on every new store
logging.getLogger("alembic").setLevel(logging.WARNING)

MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100


def resolve_uri(uri: str | None) -> str:
    """An explicit URI, else MLFLOW_TRACKING_URI, else the project's own SQLite store."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def artifact_root(uri: str) -> str | None:
    """For a SQLite store, artifacts live beside the database (an absolute file URI, so the UI finds
    them from any working directory); a tracking server chooses its own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()
    return None


@functools.cache
def provenance() -> dict[str, str]:
    """Git commit (and whether the tree has uncommitted changes) and package versions."""
    root = project_root()

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no")) if commit else False
    import hydra
    import optuna
    import scipy

    return {
        "mlflow.source.git.commit": commit or "unknown",
        "git_dirty": str(dirty).lower(),
        "nnexp_version": __version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "mlflow_version": mlflow.__version__,
        "optuna_version": optuna.__version__,
        "hydra_version": hydra.__version__,
        "scipy_version": scipy.__version__,
        "platform": platform.platform(),
    }


@functools.cache
def _sqlite_commits_without_fsync() -> None:
    """Every SQLite connection this process opens commits with synchronous=NORMAL: in WAL mode a commit
    then waits for no disk flush (a crash of the process loses nothing; a power cut may lose the last
    commits)."""
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def pragmas(dbapi_connection: Any, record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    event.listen(Engine, "connect", pragmas)


def use_wal(uri: str) -> None:
    """Put an embedded SQLite store in write-ahead-log mode (kept in the file): readers (the UI) never
    block writers, concurrent workers wait less, and a commit costs one write instead of several
    synchronous ones. Measured in README (Speed)."""
    if not uri.startswith("sqlite:///"):
        return
    import sqlite3

    path = Path(uri[len("sqlite:///"):])
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=60)
    try:
        if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()
    _sqlite_commits_without_fsync()


class Tracker:
    """One tracking store and experiment; runs are addressed by id."""

    def __init__(self, uri: str | None = None, experiment: str = "nnexp") -> None:
        self.uri = resolve_uri(uri)
        # a new store is created and migrated on first use (about 1 s): cut by Ctrl-C halfway, its half-made
        # schema would fail every later run ("duplicate column name"), so the first use is never cut
        with deferred():
            use_wal(self.uri)
            self.client = mlflow.MlflowClient(self.uri)
            self.experiment_id = self._experiment(experiment)

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=artifact_root(self.uri))
        except MlflowException:  # another process created it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def start(self, name: str | None = None, tags: Mapping[str, str] | None = None, parent: str | None = None,
              start_time: int | None = None) -> str:
        all_tags = {**provenance(), **(tags or {})}
        if parent:
            all_tags["mlflow.parentRunId"] = parent
        with deferred():
            run = self.client.create_run(self.experiment_id, start_time=start_time, tags=all_tags, run_name=name)
        return run.info.run_id

    def log(self, run_id: str, params: Mapping[str, Any] | None = None, metrics: Iterable[Metric] = (),
            tags: Mapping[str, Any] | None = None) -> None:
        """Params, metrics and tags in as few log_batch calls as MLflow's limits allow."""
        ps = [Param(k, str(v)[:6000]) for k, v in (params or {}).items()]
        ts = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        ms = list(metrics)
        with deferred():  # a batch is written whole or not at all, never cut by Ctrl-C
            while ps or ts or ms:  # each call: <= 100 params, <= 100 tags, <= 1000 entries in all
                p, t = ps[:MAX_PARAMS], ts[:MAX_TAGS]
                m = ms[: MAX_METRICS - len(p) - len(t)]
                self.client.log_batch(run_id, metrics=m, params=p, tags=t)
                ps, ts, ms = ps[len(p):], ts[len(t):], ms[len(m):]

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        with deferred():
            self.client.set_terminated(run_id, status=status)

    def log_dataset(self, run_id: str, data: Dataset, context: str = "training") -> None:
        """The dataset as a run input, identified by its digest."""
        from mlflow.data.numpy_dataset import from_numpy
        from mlflow.entities import DatasetInput, InputTag

        ds = from_numpy(features=data.x_train, targets=data.y_train[:, 0], name=data.name, digest=data.digest())
        entity = DatasetInput(ds._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])
        self.client.log_inputs(run_id, datasets=[entity])

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        with deferred():
            self.client.log_text(run_id, text, artifact_file)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        with deferred():
            self.client.log_artifact(run_id, str(path), artifact_path)

    def log_model(self, run_id: str, model: Model, status: str = "FINISHED", step: int = 0) -> str:
        """Log `model` as an MLflow pyfunc model that holds data only (spec.json and weights.npz; its loader
        is nnexp.serving from the installed package: see that module for the trust model), record the
        data files' SHA-256 digests and the model id on the run, link the run's final metric values to
        the model (the model's output step is `step`), then end the run with `status` (MLflow's fluent
        API ends the run it logged into). Returns the model id."""
        from nnexp import serving

        mlflow.set_tracking_uri(self.uri)
        with tempfile.TemporaryDirectory() as tmp:
            data = model.save(Path(tmp) / serving.DATA)
            mlflow.start_run(run_id=run_id)
            try:
                with warnings.catch_warnings():  # no input example on purpose: it would copy data rows
                    warnings.filterwarnings("ignore", message=".*input example was not provided")
                    info = mlflow.pyfunc.log_model(
                        name="model",
                        loader_module=serving.LOADER,
                        data_path=str(data),
                        signature=serving.signature(model),
                        pip_requirements=[f"numpy=={np.__version__}", f"mlflow=={mlflow.__version__}"],
                        step=step,
                    )
                tags = {serving.DIGESTS_TAG: json.dumps(serving.digests(data)), serving.MODEL_ID_TAG: info.model_id}
                self.log(run_id, tags=tags, metrics=self._final_points(run_id, info.model_id))
            finally:
                mlflow.end_run(status)
        return info.model_id

    def _final_points(self, run_id: str, model_id: str) -> list[Metric]:
        """The latest point of each of the run's metrics (its final value: the returned model's, as
        `final_points` records them) again with the model's id: MLflow links it to the model and keeps
        one point in the run's history (same key, step, time and value)."""
        out = []
        for key in self.client.get_run(run_id).data.metrics:
            last = max(self.client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
            out.append(Metric(key, last.value, last.timestamp, last.step, model_id=model_id))
        return out


def curve_metrics(curves: Mapping[str, Sequence[float] | np.ndarray | Mapping[int, float]], first_epoch: int = 0,
                  stamp: int | None = None) -> list[Metric]:
    """Per-epoch values as MLflow metrics with step = epoch (NaN points, e.g. undefined R^2, left out).

    A curve is a sequence starting at `first_epoch`, or a mapping epoch -> value (a thinned curve)."""
    stamp = stamp or int(time.time() * 1000)
    return [Metric(k, float(v), stamp, e) for k, arr in curves.items()
            for e, v in (arr.items() if isinstance(arr, Mapping) else enumerate(arr, first_epoch)) if np.isfinite(v)]


SUMMARY = ("gap_mse", "best_epoch", "epochs", "n_params")


def final_points(result: ReplicaResult, spec: MLPSpec, logged: Mapping[str, Mapping[int, float]],
                 stamp: int | None = None, extra: Mapping[str, float] | None = None
                 ) -> tuple[dict[str, float], list[Metric]]:
    """The returned model's final metrics (and `extra` ones, without curves), and the points that record
    them beside the curves already `logged`: the summary and extra values at step 0, the others at the
    last epoch where a curve does not already hold them, and values of weights restored by early
    stopping one step after the last epoch."""
    metrics = {**final_metrics(result, spec), **(extra or {})}
    last = result.epochs - 1
    at: dict[int, dict[str, list[float]]] = {}
    for k, v in metrics.items():
        if k in SUMMARY or k in (extra or {}):
            step = 0
        elif k in result.curves and result.curves[k][-1] != v:
            step = result.epochs
        elif logged.get(k, {}).get(last) == v:
            continue
        else:
            step = last
        at.setdefault(step, {})[k] = [v]
    return metrics, [p for step, curves in at.items() for p in curve_metrics(curves, step, stamp)]


class CurveLogger(Callback):
    """Buffers each replica's per-epoch metrics and sends them with log_batch every `flush_seconds`
    (so a long run can be watched live) and when the replica ends."""

    def __init__(self, tracker: Tracker, run_ids: Mapping[int, str], flush_seconds: float = 10.0) -> None:
        self.tracker, self.run_ids, self.flush_seconds = tracker, dict(run_ids), flush_seconds
        self.buffer: dict[int, list[Metric]] = {r: [] for r in self.run_ids}
        self.last = time.monotonic()

    def on_epoch_end(self, epoch: int, replicas: np.ndarray, metrics: dict[str, np.ndarray]) -> None:
        stamp = int(time.time() * 1000)
        for k, values in metrics.items():
            for i, r in enumerate(replicas):
                v = float(values[i])
                if r in self.buffer and np.isfinite(v):
                    self.buffer[int(r)].append(Metric(k, v, stamp, epoch))
        if time.monotonic() - self.last > self.flush_seconds:
            self.flush()
        return None

    def on_replica_end(self, replica: int, result: ReplicaResult) -> None:
        self.flush([replica])

    def flush(self, replicas: Iterable[int] | None = None) -> None:
        for r in self.buffer if replicas is None else replicas:
            if r in self.buffer and self.buffer[r]:
                self.tracker.log(self.run_ids[r], metrics=self.buffer[r])
                self.buffer[r] = []
        self.last = time.monotonic()


def final_metrics(result: ReplicaResult, spec: MLPSpec) -> dict[str, float]:
    """The returned model's metrics under the curves' names, plus gap_mse, best_epoch, n_params."""
    f = {k: v for k, v in result.final.items() if np.isfinite(v)}
    f["gap_mse"] = result.final["test_mse"] - result.final["train_mse"]
    f["best_epoch"] = float(result.best_epoch)
    f["epochs"] = float(result.epochs)
    f["n_params"] = float(spec.n_params)
    return f
