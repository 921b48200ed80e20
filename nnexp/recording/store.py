"""The MLflow side of recording (imported by the recorder process only): experiments, runs found by
their record key, batched logging, artifacts, figures, datasets and models.

Embedded default: a SQLite store at the project root (`mlflow.db`, WAL mode) with artifacts beside it
in `mlartifacts/`. `tracking.uri` (or MLFLOW_TRACKING_URI) points at a tracking server instead.
Every run carries the tag `nnexp.key`, the key of the record that made it: a record replayed after a
crash finds its run instead of making a second one.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from nnexp import faults
from nnexp.interrupts import deferred
from nnexp.recording import artifact_root

MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100
KEY_TAG = "nnexp.key"
KIND_TAG = "mlflow.experimentKind"  # MLflow 3's UI opens an experiment on its model-training pages with this
MODEL_TRAINING = "custom_model_development"
TERMINAL = ("FINISHED", "FAILED", "KILLED")


class Store:
    """One tracking store; experiments by name, runs by record key."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._experiments: dict[str, str] = {}  # name -> id
        # a new store is created and migrated on first use (about 1 s): cut halfway, its half-made schema
        # would fail every later run ("duplicate column name"), so the first use is never cut
        with deferred():
            try:
                use_wal(uri)
                self.client = MlflowClient(uri)
                self.client.search_experiments(max_results=1)  # the store answers (and is migrated) now
            except Exception as e:  # a full disk, a read-only store: one paragraph, not a traceback
                faults.explain(e, {"mlflow": ("tracking.uri", uri)}, "Nothing was recorded.")
                raise
        self.runs: dict[str, str] = {}  # record key -> run id, for runs this recorder made or found

    @functools.cache  # noqa: B019 - one Store per recorder process
    def experiment(self, name: str) -> str:
        if name not in self._experiments:
            self._experiments[name] = self._experiment(name)
        return self._experiments[name]

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                return self.client.create_experiment(name, artifact_location=artifact_root(self.uri),
                                                     tags={KIND_TAG: MODEL_TRAINING})
            except MlflowException:  # another process created it first
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.tags.get(KIND_TAG) is None:
            self.client.set_experiment_tag(found.experiment_id, KIND_TAG, MODEL_TRAINING)
        return found.experiment_id

    def find(self, experiment_id: str, key: str) -> Any | None:
        """The run a record key made, if any (a replayed record, a resumed sweep's parent)."""
        found = self.client.search_runs([experiment_id], filter_string=f"tags.`{KEY_TAG}` = '{key}'", max_results=5)
        return found[0] if found else None

    def create(self, experiment_id: str, key: str, name: str | None, tags: Mapping[str, Any], parent: str | None,
               start_ms: int | None) -> str:
        all_tags = {k: str(v)[:5000] for k, v in tags.items()} | {KEY_TAG: key}
        if parent:
            all_tags["mlflow.parentRunId"] = parent
        with deferred():
            run = self.client.create_run(experiment_id, start_time=start_ms, tags=all_tags, run_name=name)
        self.runs[key] = run.info.run_id
        return run.info.run_id

    def log(self, run_id: str, params: Mapping[str, Any] | None = None, metrics: Iterable[Metric] = (),
            tags: Mapping[str, Any] | None = None) -> None:
        """Params, metrics and tags in as few log_batch calls as MLflow's limits allow."""
        ps = [Param(k, str(v)[:6000]) for k, v in (params or {}).items()]
        ts = [RunTag(k, str(v)[:5000]) for k, v in (tags or {}).items()]
        ms = list(metrics)
        with deferred():  # a batch is written whole or not at all, never cut by Ctrl-C
            while ps or ts or ms:  # each call: <= 100 params, <= 100 tags, <= 1000 entries in all
                p, t = ps[:MAX_PARAMS], ts[:MAX_TAGS]
                m = ms[: MAX_METRICS - len(p) - len(t)]
                self.client.log_batch(run_id, metrics=m, params=p, tags=t)
                ps, ts, ms = ps[len(p):], ts[len(t):], ms[len(m):]

    def end(self, run_id: str, status: str, end_ms: int | None = None) -> None:
        with deferred():
            self.client.set_terminated(run_id, status=status, end_time=end_ms)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        with deferred():
            self.client.log_text(run_id, text, artifact_file)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        with deferred():
            self.client.log_artifact(run_id, str(path), artifact_path)

    def log_dataset(self, run_id: str, ds: Mapping[str, Any]) -> None:
        """A dataset input identified by its digest (name, digest, source, shape; never the rows)."""
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        entity = Dataset(name=str(ds["name"]), digest=str(ds["digest"]), source_type=str(ds.get("source_type", "code")),
                         source=json.dumps(ds.get("source", {})), profile=json.dumps(ds.get("profile", {})))
        with deferred():
            self.client.log_inputs(run_id, datasets=[DatasetInput(entity, tags=[
                InputTag("mlflow.data.context", str(ds.get("context", "training")))])])

    def has_model(self, experiment_id: str, run_id: str) -> bool:
        """A model was logged from this run already (MLflow 3 keeps it as a logged model, not a run artifact)."""
        return bool(self.client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run_id}'",
                                                     max_results=1))


def use_wal(uri: str) -> None:
    """An embedded SQLite store: created whole (`create_store`), checked writable, with a disk reserve,
    in write-ahead-log mode (kept in the file): readers (the UI) never block writers, concurrent processes
    wait less, and a commit costs one write instead of several synchronous ones; commits wait for no disk
    flush (synchronous=NORMAL: a killed process loses nothing, a power cut may lose the last commits)."""
    if not uri.startswith("sqlite:///"):
        return
    import sqlite3

    path = Path(uri[len("sqlite:///"):])
    create_store(uri)
    faults.writable(path, "tracking.uri", "MLflow store")
    faults.reserve(path)
    con = sqlite3.connect(path, timeout=60)
    try:
        if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def checkpoint(uri: str) -> None:
    """Copy a SQLite store's write-ahead log into the database file and empty it, as closing its last
    connection does: the recorder exits without the interpreter's teardown (which closes them), and a copy
    of mlflow.db alone must hold every run. A checkpoint that cannot run (a full disk) leaves the log, which
    SQLite applies on the next open: nothing is lost either way."""
    if not uri.startswith("sqlite:///"):
        return
    import sqlite3

    with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(uri[len("sqlite:///"):],
                                                                              timeout=10)) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()


@functools.cache
def _commits_without_fsync() -> None:
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def pragmas(dbapi_connection: Any, record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    event.listen(Engine, "connect", pragmas)


def create_store(uri: str) -> None:
    """Create a new SQLite store whole or not at all. MLflow creates and migrates a store in place (~430
    statements, counted): a full disk halfway left a store that failed every later run ("table secrets
    already exists"), as Ctrl-C did before `deferred`, and of two processes creating it at once one
    failed ("duplicate column name: step", 3 of 3 tries). Here the store is migrated under a temporary
    name beside its final one and linked into place when whole (`faults.create_sqlite`)."""
    _commits_without_fsync()  # the migration's commits wait for no disk flush either

    def migrate(url: str) -> None:
        from mlflow.store.db.utils import _initialize_tables, _verify_schema, create_sqlalchemy_engine

        engine = create_sqlalchemy_engine(url)  # not MLflow's engine cache: this file is renamed
        try:
            _initialize_tables(engine)  # what SqlAlchemyStore does on a store without tables
            _verify_schema(engine)
        finally:
            engine.dispose()

    faults.create_sqlite(uri, migrate, "tracking.uri", "MLflow store", wal=True)


def metrics(points: Iterable[Any], stamp: int) -> list[Metric]:
    """[key, value, step] triples (NaN or None values left out) as MLflow metrics, all with timestamp
    `stamp`: a record replayed after a crash logs the same points, which MLflow keeps once."""
    out = []
    for key, value, step in points:
        if value is not None and value == value and abs(value) != float("inf"):
            out.append(Metric(str(key), float(value), int(stamp), int(step)))
    return out


def scratch() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="nnexp-record-")
