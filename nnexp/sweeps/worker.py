"""One process's share of a sweep: ask a population of trials, train it, record each trial.

    Worker.run():  reclaim trials of dead workers -> ask P trials (Asker) -> train them in as few
                   passes of the replica axis as their structures allow, each member reporting its
                   validation curve to its own trial (Pruner) -> record each member as it ends (TrialLog)

Recording a trial is one record in the spool (its MLflow child run, which the recorder writes on the
other core) and then its Optuna `tell`: a trial never counts as done before its record is written.
P = 1 is the classic one-trial-at-a-time sweep. Where the time goes is timed per phase (`Phases`).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import optuna

from nnexp import population
from nnexp.engine.loop import COMPLETED, DIVERGED, PRUNED, STOPPED, Callback, ReplicaResult
from nnexp.errors import ConfigError
from nnexp.interrupts import check, deferred
from nnexp.plan import Plan
from nnexp.recording import Recording, records
from nnexp.sweeps import space
from nnexp.sweeps import storage as studies
from nnexp.sweeps.settings import Settings
from nnexp.sweeps.trials import Configs

TrialState = optuna.trial.TrialState


class SweepError(RuntimeError):
    """A sweep that cannot go on (too many failures in a row): the message says why."""


class Phases:
    """Seconds spent per phase of a worker's work (`with phases("optuna"): ...`)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {"train": 0.0, "optuna": 0.0, "config": 0.0, "record": 0.0}

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


class Asker:
    """Asks the study for up to P trials of its budget and builds each one's plan."""

    def __init__(self, settings: Settings, configs: Configs, storage: Any, study: optuna.Study, phases: Phases) -> None:
        self.settings, self.configs, self.storage, self.study, self.phases = settings, configs, storage, study, phases
        self.study_id = studies.id_of_study(storage, study)  # fixed for the study's life

    def ask(self) -> list[Member]:
        members: list[Member] = []
        try:
            while len(members) < self.settings.population:
                with self.phases("optuna"), deferred():  # a trial is asked and given its values, or not at all
                    trial = self.study.ask()
                    if trial.number >= self.settings.n_trials:  # beyond the budget: leave it for a larger n_trials
                        studies.put_back(self.storage, self.study_id, [trial.number])
                        break
                    values = space.suggest(trial, self.settings.space)
                    tid = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)
                    m = Member(trial, values, tid, baseline=bool(trial.user_attrs.get("nnexp.baseline")),
                               reclaimed=bool(self.storage.get_trial_system_attrs(tid).get(studies.RECLAIMED)))
                    members.append(m)
                with self.phases("config"):
                    self.build(m)
        except BaseException:
            studies.put_back(self.storage, self.study_id, [m.trial.number for m in members])
            raise
        return members

    def build(self, m: Member) -> None:
        try:
            plan, m.params = self.configs.trial(m.values)
            m.plan = replace(plan, eval_every=self.settings.eval_every)
        except ConfigError as e:
            m.error = f"invalid trial config: {e}"


class Pruner(Callback):
    """Reports each member's objective to its own trial every `interval` epochs and stops the members
    Optuna says to prune; hands each member to `finish` as it ends."""

    def __init__(self, members: list[Member], settings: Settings, finish: Any, phases: Phases) -> None:
        self.members, self.metric, self.finish, self.phases = members, settings.metric, finish, phases
        self.interval, self.prune = int(settings.pruner["interval"]), settings.pruner["name"] != "none"

    def on_epoch_end(self, epoch: int, replicas: np.ndarray, metrics: dict[str, np.ndarray]) -> list[int]:
        if not self.prune or (epoch + 1) % self.interval:
            return []
        stop = []
        with self.phases("optuna"):
            for value, r in zip(metrics[self.metric].tolist(), replicas.tolist(), strict=True):
                trial = self.members[r].trial
                trial.report(value, epoch)
                if trial.should_prune():
                    stop.append(r)
        return stop

    def on_replica_end(self, replica: int, result: ReplicaResult) -> None:
        self.finish(self.members[replica], result)


class Worker:
    """Asks populations until the study's budget is used up (or the deadline passes)."""

    def __init__(self, settings: Settings, configs: Configs, storage: Any, study: optuna.Study, rec: Recording,
                 parent_key: str) -> None:
        self.settings, self.storage, self.study = settings, storage, study
        self.phases = Phases()
        self.asker = Asker(settings, configs, storage, study, self.phases)
        self.log = TrialLog(settings, study, rec, parent_key, self.phases)
        self.on_population: Any = None  # called after each population with the worker
        self.deadline: float | None = None  # time.monotonic() after which no new population is asked
        self.populations = 0

    def run(self) -> None:
        while not self.out_of_time():
            check()
            with self.phases("optuna"):
                studies.reclaim_stale(self.storage, self.study, self.settings.heartbeat["grace"])
            members = self.asker.ask()
            if not members:
                return
            self.train_population(members)
            self.populations += 1
            if self.on_population:
                self.on_population(self)

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def train_population(self, members: list[Member]) -> None:
        label = f"{socket.gethostname()}:{os.getpid()}:{self.populations}"
        self.log.start(label, members)
        ok = [m for m in members if m.plan is not None]
        try:
            with studies.Heartbeat(self.storage, [m.trial_id for m in members], self.settings.heartbeat["interval"]):
                for m in members:
                    if m.plan is None:
                        self.log.finish(m, None)
                self.train_passes(ok)
        finally:
            # interrupted: the members not yet recorded go back to WAITING, to be re-run by the next ask
            studies.put_back(self.storage, self.asker.study_id, sorted(self.log.open))
            self.log.sync()

    def train_passes(self, ok: list[Member]) -> None:
        def callbacks(idx: list[int]) -> list[Callback]:
            return [Pruner([ok[i] for i in idx], self.settings, self.log.finish, self.phases)]

        t0, inside = time.perf_counter(), sum(self.phases.seconds.values())
        try:
            population.fit([m.plan for m in ok], callbacks)  # type: ignore[misc]
        except SweepError:
            raise
        except Exception as e:  # a bug or an unforeseen numerical fault: these trials fail, the sweep goes on
            for m in ok:
                if m.trial.number in self.log.open:
                    m.error = f"training raised {type(e).__name__}: {e}"
                    self.log.finish(m, None)
        finally:  # training time: the pass's wall time less the bookkeeping done inside it
            self.phases.seconds["train"] += time.perf_counter() - t0 - (sum(self.phases.seconds.values()) - inside)


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
                if not self.ready:  # no trial counts as done on a store that cannot take its record
                    self.rec.wait_ready()
                    self.ready = True
            with self.phases("optuna"):
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
        backend = getattr(getattr(self.study, "_storage", None), "_backend", None)
        with self.phases("optuna"):
            if hasattr(backend, "sync"):
                backend.sync()
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
