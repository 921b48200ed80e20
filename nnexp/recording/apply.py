"""Applying one record to the MLflow store (the recorder's work), exactly once.

A `run` record names its run by `key`. The first record of a key creates the run (tags, name, parent,
start time); every record of the key logs its params, metrics (each with the record's own timestamp,
so a replayed record logs points MLflow already holds and keeps once), tags, texts, figures, dataset
and model; a record with a `status` ends the run. `fresh` (a trial re-run after its worker died)
deletes a run an earlier attempt left. A record replayed after a crash looks its key up in the store
first: a run it already ended is skipped, a half-logged one is completed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from nnexp.recording.spool import SpoolReader
from nnexp.recording.store import TERMINAL, Store, metrics, scratch


class ParentNotYet(RuntimeError):
    """A child's parent run is recorded by another process that has not got to it yet (retried)."""


VIEW_TAG = "mlflow.sharedViewState."  # MLflow UI: #/experiments/<id>?viewStateShareKey=<key> opens this view
# kinds the recorder draws; make train now draws its own three (learning_curves, predictions, residuals),
# which stay here so that a spool an earlier version left behind is still replayed whole
FIGURES = ("learning_curves", "predictions", "residuals", "compare_steps", "bands", "effects", "steps_over_time")


class Applier:
    def __init__(self, store: Store, on_run: Any = None) -> None:
        self.store, self.on_run = store, on_run or (lambda key, run_id, experiment_id: None)
        self.open: dict[Path, dict[str, str]] = {}  # spool -> key -> run id of the runs it left RUNNING

    def __call__(self, record: dict[str, Any], source: Path, replay: bool = False) -> None:
        op = record.get("op")
        if op == "corrupt":
            raise ValueError(f"a spool line is not a record (a disk that filled up mid-write?): {record['raw'][:200]}")
        if op != "run":
            raise ValueError(f"unknown spool record op {op!r}")
        run_id = self.run_for(record, replay)
        if run_id is None:
            self.clean(record, source)
            return
        self.on_run(record["key"], run_id, self.store.experiment(record["experiment"]))
        self.log(run_id, record, source)
        if record.get("view"):  # a runs table set up for this run's children, under a share key
            view = record["view"]
            state = {**view["state"], "runsExpanded": {run_id: True}}
            self.store.client.set_experiment_tag(self.store.experiment(record["experiment"]),
                                                 f"{VIEW_TAG}{view['key']}", json.dumps(state))
        status = record.get("status")
        runs = self.open.setdefault(source, {})
        if status:
            self.store.end(run_id, status, record.get("end_ms"))
            runs.pop(record["key"], None)
        else:
            runs[record["key"]] = run_id

    def run_for(self, record: dict[str, Any], replay: bool) -> str | None:
        """The run of this record's key: made by an earlier record, found in the store, or created now.
        None: a replayed record whose run is already complete."""
        key = record["key"]
        exp = self.store.experiment(record["experiment"])
        run_id = self.store.runs.get(key)
        if run_id is None and (replay or record.get("fresh") or record.get("resume")):
            found = self.store.find(exp, key)
            if found is not None and record.get("fresh") and not replay:
                self.store.client.delete_run(found.info.run_id)  # a dead worker's attempt: this one replaces it
                found = None
            if found is not None:
                if replay and found.info.status in TERMINAL and record.get("status"):
                    return None  # recorded whole before the crash
                run_id = self.store.runs[key] = found.info.run_id
                if record.get("resume") and found.info.status != "RUNNING":
                    self.store.client.update_run(run_id, status="RUNNING")
        if run_id is None:
            parent = self.store.runs.get(record["parent"]) if record.get("parent") else None
            if record.get("parent") and parent is None:
                found = self.store.find(exp, record["parent"])
                if found is None:  # another machine's recorder has not made it yet: the caller retries
                    raise ParentNotYet(f"the parent run {record['parent']} is not in the store yet")
                parent = self.store.runs[record["parent"]] = found.info.run_id
            run_id = self.store.create(exp, key, record.get("name"), record.get("tags", {}), parent,
                                       record.get("start_ms"))
        return run_id

    def log(self, run_id: str, record: dict[str, Any], source: Path) -> None:
        stamp = int(record.get("ts") or record.get("start_ms") or 0)
        self.store.log(run_id, params=record.get("params"), metrics=metrics(record.get("metrics", ()), stamp),
                       tags=record.get("tags"))
        for name, text in (record.get("texts") or {}).items():
            self.store.log_text(run_id, text, name)
        if record.get("dataset"):
            self.store.log_dataset(run_id, record["dataset"])
        if record.get("figures"):
            self.draw(run_id, record["figures"])
        for path, artifact_dir in record.get("files") or ():
            if Path(path).exists():
                self.store.log_artifact(run_id, Path(path), artifact_dir or None)
        if record.get("model") and not self.store.has_model(self.store.experiment(record["experiment"]), run_id):
            from nnexp.recording.model import log_model

            log_model(self.store, run_id, record["model"])
        self.clean(record, source)

    @staticmethod
    def clean(record: dict[str, Any], source: Path) -> None:
        """Delete the command's copies of files the record carried (those it wrote beside its spool)."""
        spool = source.parent.resolve()
        paths = [Path(p) for p, _ in record.get("files") or ()]
        if record.get("model"):
            paths.append(Path(record["model"]["dir"]).parent)
        for path in paths:
            if spool in path.resolve().parents:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                if path.parent != spool and not any(path.parent.iterdir()):
                    path.parent.rmdir()

    def draw(self, run_id: str, figures: list[dict[str, Any]]) -> None:
        """Figures drawn here, from the data in the record (only the kinds nnexp.plots draws)."""
        from nnexp import plots

        with scratch() as tmp:
            for fig in figures:
                kind = fig["kind"]
                if kind not in FIGURES:
                    raise ValueError(f"unknown figure kind {kind!r} in a record")
                out = Path(tmp) / Path(fig["path"]).name
                getattr(plots, kind)(path=out, **{k: _arrays(v) for k, v in fig.get("args", {}).items()})
                self.store.log_artifact(run_id, out, str(Path(fig["path"]).parent) or None)

    def unended(self, reader: SpoolReader) -> dict[str, str]:
        """The runs a spool started and never ended, still RUNNING in the store: key -> run id."""
        import json

        keys, ended = {}, set()
        with open(reader.path, "rb") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("op") == "run":
                    keys[record["key"]] = record["experiment"]
                    if record.get("status"):
                        ended.add(record["key"])
        out = {}
        for key, experiment in keys.items():
            found = None if key in ended else self.store.find(self.store.experiment(experiment), key)
            if found is not None and found.info.status == "RUNNING":
                out[key] = found.info.run_id
        return out

    def close_orphans(self, reader: SpoolReader) -> None:
        """Runs a spool started and never ended: its command died (SIGKILL, a crash)."""
        runs = self.open.pop(reader.path, {})
        if reader.ended:
            return
        who = f"pid {reader.header.get('pid')} on {reader.header.get('host')}"
        if reader.replay:  # an earlier recorder drained part of it: its open runs are found by their keys
            runs |= self.unended(reader)
        for run_id in runs.values():
            self.store.log(run_id, tags={"nnexp.failure_reason": f"the process that trained it ({who}) died "
                                         "without ending it (killed, or a crash); recorded up to its last record"})
            self.store.end(run_id, "KILLED")


def _arrays(value: Any) -> Any:
    """JSON lists of numbers back as arrays (a mapping of them, e.g. curves, too)."""
    import numpy as np

    if isinstance(value, dict):
        return {k: _arrays(v) for k, v in value.items()}
    if isinstance(value, list) and value and all(isinstance(x, (int, float)) or x is None for x in value):
        return np.asarray([np.nan if x is None else x for x in value], dtype=float)
    if isinstance(value, list) and value and all(isinstance(x, list) for x in value):
        return [_arrays(x) for x in value]
    return value
