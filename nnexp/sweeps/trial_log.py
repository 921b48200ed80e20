"""Recording a sweep's finished trials: each one's record (its MLflow child run, which the recorder writes
on the other core) to the spool, then its Optuna `tell` — a trial never counts as done before its record
is written."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from nnexp.engine.loop import COMPLETED, DIVERGED, PRUNED, STOPPED, ReplicaResult
from nnexp.interrupts import deferred
from nnexp.plan import Plan
from nnexp.recording import Recording, records
from nnexp.sweeps import storage
from nnexp.sweeps.settings import Settings

TrialState = optuna.trial.TrialState


class SweepError(RuntimeError):
    """A sweep that cannot go on (too many failures in a row): the message says why."""


class Phases:
    """Seconds spent per phase of a worker's work (`with phases("sample"): ...`): training, Optuna's sampling
    (ask and suggest), pruning (report and the pruner's decision), telling a trial's end, the journal's
    upkeep (reclaiming dead workers' trials, flushing), building trial configs, and handing records to the
    spool."""

    OPTUNA = ("sample", "prune", "tell", "journal")

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(("train", *self.OPTUNA, "config", "record"), 0.0)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


@dataclass
class Member:
    """One trial of a population: its sampled values, its plan and params (or why it has none)."""

    trial: optuna.Trial
    values: dict[str, Any]
    trial_id: int  # the storage's id of the trial
    plan: Plan | None = None
    params: dict[str, str] = field(default_factory=dict)
    error: str = ""
    baseline: bool = False
    reclaimed: bool = False  # re-run after its first worker died: its record replaces that worker's


class TrialLog:
    """Records finished trials: the record of its MLflow child run to the spool, then Optuna's `tell`."""

    def __init__(self, settings: Settings, study: optuna.Study, rec: Recording, parent_key: str,
                 phases: Phases) -> None:
        self.settings, self.study, self.rec, self.parent_key, self.phases = settings, study, rec, parent_key, phases
        self.uid = str(study.user_attrs.get("nnexp.uid") or study.study_name)
        self.open: set[int] = set()
        self.label, self.start_ms, self.failures_in_row = "", 0, 0
        self.ready = False

    def start(self, label: str, members: Sequence[Member]) -> None:
        self.label, self.start_ms = label, records.now_ms()
        self.open = {m.trial.number for m in members}

    def finish(self, m: Member, result: ReplicaResult | None) -> None:
        """Record one member: its record, then its Optuna trial's end (never half of it)."""
        state, value, reason = outcome(m, result, self.settings.metric)
        with deferred():
            with self.phases("record"):
                self.rec.write(self.record(m, result, state, reason))
                if not self.ready:  # no trial counts as done on a store that does not answer
                    self.rec.wait_reachable()
                    self.ready = True
            with self.phases("tell"):
                attrs: dict[str, Any] = {"population": self.label}
                if result is not None:
                    attrs["epochs"] = result.epochs
                    attrs["metrics"] = {k: v for k, v in result.final.items() if math.isfinite(v)}
                    metric = self.settings.metric
                    curve = thin(result.curves, [metric], self.settings.curve_points).get(metric, {})
                    attrs["curve"] = {str(e): v for e, v in curve.items()}  # the objective, for the end's plots
                if reason:
                    attrs["failure_reason"] = reason
                m.trial.set_user_attr("nnexp", attrs)
                self.study.tell(m.trial, value if state == TrialState.COMPLETE else None, state=state,
                                skip_if_finished=True)
            self.open.discard(m.trial.number)
        self.failures_in_row = self.failures_in_row + 1 if state == TrialState.FAIL else 0
        if self.failures_in_row >= self.settings.max_failures_in_row:
            raise SweepError(f"{self.failures_in_row} trials failed in a row (sweep.max_failures_in_row = "
                             f"{self.settings.max_failures_in_row}); the last: {reason}")

    def record(self, m: Member, result: ReplicaResult | None, state: TrialState, reason: str) -> dict[str, Any]:
        n = m.trial.number
        tags: dict[str, Any] = {"nnexp.kind": "trial", "nnexp.trial_number": n, "nnexp.trial_state": state.name,
                                "nnexp.population": self.label, "optuna.study": self.study.study_name,
                                **records.provenance()}
        if m.baseline:
            tags["nnexp.baseline"] = "true"
        if reason:
            tags["nnexp.failure_reason"] = reason[:5000]
        if result is not None:
            tags["nnexp.status"] = result.status
        params = {**m.params, **{f"sampled.{k}": str(v) for k, v in m.values.items()}, "trial_number": str(n)}
        points: list[list[Any]] = []
        if result is not None:
            curves = thin(result.curves, self.settings.curves, self.settings.curve_points)
            points = records.curve_points(curves)
            if result.final and m.plan is not None:
                points += records.final_points(result, m.plan.spec, curves)[1]
        return records.run(f"trial:{self.uid}:{n}", self.settings.experiment, parent=self.parent_key,
                           name=f"{self.study.study_name} trial {n:04d}", tags=tags, params=params, metrics=points,
                           start_ms=self.start_ms, end_ms=records.now_ms(), fresh=m.reclaimed,
                           status="FAILED" if state == TrialState.FAIL else "FINISHED")

    def sync(self) -> None:
        """A population's end: its journal operations and records flushed to the disk."""
        with self.phases("journal"):
            storage.flush(getattr(self.study, "_storage", None))
        with self.phases("record"):
            self.rec.writer.sync()


def outcome(m: Member, result: ReplicaResult | None, metric: str) -> tuple[TrialState, float | None, str]:
    if result is None:
        return TrialState.FAIL, None, m.error
    if result.status == DIVERGED:
        return TrialState.FAIL, None, result.reason
    if result.status == PRUNED:
        return TrialState.PRUNED, None, ""
    assert result.status in (COMPLETED, STOPPED)
    value = result.final.get(metric, math.nan)
    if not math.isfinite(value):
        return TrialState.FAIL, None, f"the objective {metric} is undefined ({value})"
    return TrialState.COMPLETE, value, ""


def thin(curves: dict[str, np.ndarray], names: Sequence[str], points: int) -> dict[str, dict[int, float]]:
    """The named curves at about `points` of their evaluated (finite) epochs, always including the last."""
    out: dict[str, dict[int, float]] = {}
    for k in names:
        arr = curves.get(k)
        if arr is None:
            continue
        epochs = np.flatnonzero(np.isfinite(arr))
        if not len(epochs):
            continue
        step = max(1, math.ceil(len(epochs) / points))
        keep = sorted({*epochs[step - 1 :: step].tolist(), int(epochs[-1])})
        out[k] = {e: float(arr[e]) for e in keep}
    return out
