"""`make sweep`: Optuna searches the config space; every trial is an Optuna trial and an MLflow child run.

A worker asks Optuna for a *population* of P trials, builds each trial's config (composed once per
choice of config groups, sampled values set on a copy), trains the population in as few passes of
the replica axis as its structure allows (`nnexp.population`), reports each member's validation
curve to its own trial (a pruned member leaves the pass), and records each member as it ends. P = 1
is the classic one-trial-at-a-time sweep.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import optuna
from omegaconf import DictConfig

from nnexp import population
from nnexp.config import ConfigCache, flat_params, run_params
from nnexp.engine.loop import COMPLETED, DIVERGED, PRUNED, STOPPED, Callback, ReplicaResult
from nnexp.errors import ConfigError
from nnexp.interrupts import check, deferred
from nnexp.plan import Plan
from nnexp.sweeps import space
from nnexp.sweeps import storage as studies
from nnexp.sweeps.settings import Settings
from nnexp.tracking import Tracker, curve_metrics, final_points

TrialState = optuna.trial.TrialState


class SweepError(RuntimeError):
    """A sweep that cannot go on (too many failures in a row): the message says why."""


class Configs(ConfigCache):
    """Trial configs: the base overrides plus a trial's group choices, composed once per distinct
    choice (Hydra compose costs ~50 ms), then the sampled values set on a copy (~1 ms)."""

    def __init__(self, base_overrides: Sequence[str], params: Sequence[space.Param]) -> None:
        super().__init__(base_overrides)
        self.params = list(params)

    def config(self, values: Mapping[str, Any]) -> DictConfig:
        return space.apply_values(self.composed(space.group_overrides(self.params, values)), self.params, values)


@dataclass
class Member:
    trial: optuna.Trial
    values: dict[str, Any]
    cfg: DictConfig | None = None
    plan: Plan | None = None
    error: str = ""
    baseline: bool = False
    trial_id: int = -1  # the storage's id of the trial (set when its population starts)


class Reporter(Callback):
    """Reports each member's objective to its own trial every `interval` epochs and prunes the
    members Optuna says to stop; hands each member to `finish` as it ends."""

    def __init__(self, members: list[Member], metric: str, interval: int, prune: bool, finish,
                 timing: dict[str, float]) -> None:
        self.members, self.metric, self.interval, self.prune = members, metric, interval, prune
        self.finish, self.timing = finish, timing

    def on_epoch_end(self, epoch: int, replicas: np.ndarray, metrics: dict[str, np.ndarray]) -> list[int]:
        if not self.prune or (epoch + 1) % self.interval:
            return []
        t0 = time.perf_counter()
        stop = []
        values = metrics[self.metric]
        for i, r in enumerate(replicas):
            trial = self.members[int(r)].trial
            trial.report(float(values[i]), epoch)
            if trial.should_prune():
                stop.append(int(r))
        self.timing["optuna"] += time.perf_counter() - t0
        return stop

    def on_replica_end(self, replica: int, result: ReplicaResult) -> None:
        self.finish(self.members[replica], result)


@dataclass
class Worker:
    """One process's share of a sweep: asks populations until the study's budget is used up."""

    st: Settings
    configs: Configs
    storage: Any
    study: optuna.Study
    tracker: Tracker
    parent_run: str
    on_population: Any = None  # called after each population with the worker
    deadline: float | None = None  # time.monotonic() after which no new population is asked
    failures_in_row: int = 0
    populations: int = 0
    timing: dict[str, float] = field(default_factory=lambda: {"train": 0.0, "optuna": 0.0, "mlflow": 0.0,
                                                                "config": 0.0})

    def __post_init__(self) -> None:
        self.sid = studies.study_id(self.storage, self.study)  # fixed for the study's life

    def run(self) -> None:
        while not self.out_of_time():
            check()
            studies.reclaim_stale(self.storage, self.study, self.st.heartbeat["grace"])
            members = self.ask()
            if not members:
                return
            self.train(members)
            self.populations += 1
            if self.on_population:
                self.on_population(self)

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def ask(self) -> list[Member]:
        """Up to P trials of the budget, each with its config built and validated."""
        members: list[Member] = []
        sid = self.sid
        try:
            while len(members) < self.st.population:
                t0 = time.perf_counter()
                with deferred():  # a trial is asked and given its parameters, or not asked at all
                    trial = self.study.ask()
                    beyond = trial.number >= self.st.n_trials
                    if beyond:  # beyond the budget: leave it for a larger n_trials
                        studies.put_back(self.storage, sid, [trial.number])
                    else:
                        values = space.suggest(trial, self.st.space)
                        members.append(Member(trial, values, baseline=bool(trial.user_attrs.get("nnexp.baseline"))))
                t1 = time.perf_counter()
                self.timing["optuna"] += t1 - t0
                if beyond:
                    break
                m = members[-1]
                try:
                    m.cfg = self.configs.config(m.values)
                    m.plan = replace(self.configs.plan(m.cfg), eval_every=self.st.eval_every)
                except ConfigError as e:
                    m.error = f"invalid trial config: {e}"
                self.timing["config"] += time.perf_counter() - t1
        except BaseException:
            studies.put_back(self.storage, sid, [m.trial.number for m in members])
            raise
        return members

    def train(self, members: list[Member]) -> None:
        label = f"{socket.gethostname()}:{os.getpid()}:{self.populations}"
        start_ms = int(time.time() * 1000)
        open_ = {m.trial.number for m in members}
        ok = [m for m in members if m.plan is not None]
        sid = self.sid
        for m in members:
            m.trial_id = self.storage.get_trial_id_from_study_id_trial_number(sid, m.trial.number)
        try:
            with studies.Heartbeat(self.storage, [m.trial_id for m in members], self.st.heartbeat["interval"]):
                for m in members:
                    if m.plan is None:
                        self.finish(m, None, label, start_ms, open_)
                prune = self.st.pruner["name"] != "none"

                def callbacks(idx: list[int]) -> list[Callback]:
                    group = [ok[i] for i in idx]
                    return [Reporter(group, self.st.metric, int(self.st.pruner["interval"]), prune,
                                     lambda m, r: self.finish(m, r, label, start_ms, open_), self.timing)]

                t0 = time.perf_counter()
                outer = {k: self.timing[k] for k in ("optuna", "mlflow")}
                try:
                    population.train([m.plan for m in ok], callbacks)  # type: ignore[misc]
                except SweepError:
                    raise
                except Exception as e:  # a bug or an unforeseen numerical fault: these trials fail, the sweep goes on
                    reason = f"training raised {type(e).__name__}: {e}"
                    for m in ok:
                        if m.trial.number in open_:
                            m.error = reason
                            self.finish(m, None, label, start_ms, open_)
                inside = sum(self.timing[k] - outer[k] for k in outer)
                self.timing["train"] += time.perf_counter() - t0 - inside
        finally:
            # interrupted: the members not yet recorded go back to WAITING, to be re-run by the next ask
            studies.put_back(self.storage, sid, sorted(open_))

    def finish(self, m: Member, result: ReplicaResult | None, label: str, start_ms: int, open_: set[int]) -> None:
        """Record one member: its MLflow child run, then its Optuna trial's end (never half of it)."""
        with deferred():
            t0 = time.perf_counter()
            state, value, reason = self.outcome(m, result)
            run_id = self.log_child(m, result, state, reason, label, start_ms)
            t1 = time.perf_counter()
            attrs: dict[str, Any] = {"mlflow_run_id": run_id, "population": label}
            if result is not None:
                attrs["epochs"] = result.epochs
            if result is not None and result.final:
                attrs["metrics"] = {k: v for k, v in result.final.items() if math.isfinite(v)}
            if reason:
                attrs["failure_reason"] = reason
            m.trial.set_user_attr("nnexp", attrs)
            self.study.tell(m.trial, value if state == TrialState.COMPLETE else None, state=state,
                            skip_if_finished=True)
            open_.discard(m.trial.number)
            self.timing["mlflow"] += t1 - t0
            self.timing["optuna"] += time.perf_counter() - t1
        self.failures_in_row = self.failures_in_row + 1 if state == TrialState.FAIL else 0
        if self.failures_in_row >= self.st.max_failures_in_row:
            raise SweepError(f"{self.failures_in_row} trials failed in a row (sweep.max_failures_in_row = "
                             f"{self.st.max_failures_in_row}); the last: {reason}")

    def outcome(self, m: Member, result: ReplicaResult | None) -> tuple[TrialState, float | None, str]:
        if result is None:
            return TrialState.FAIL, None, m.error
        if result.status == DIVERGED:
            return TrialState.FAIL, None, result.reason
        if result.status == PRUNED:
            return TrialState.PRUNED, None, ""
        assert result.status in (COMPLETED, STOPPED)
        value = result.final.get(self.st.metric, math.nan)
        if not math.isfinite(value):
            return TrialState.FAIL, None, f"the objective {self.st.metric} is undefined ({value})"
        return TrialState.COMPLETE, value, ""

    def log_child(self, m: Member, result: ReplicaResult | None, state: TrialState, reason: str, label: str,
                  start_ms: int) -> str:
        n = m.trial.number
        tags: dict[str, Any] = {"nnexp.kind": "trial", "nnexp.trial_number": n, "nnexp.trial_state": state.name,
                "nnexp.population": label, "optuna.study": self.study.study_name}
        if m.baseline:
            tags["nnexp.baseline"] = "true"
        if reason:
            tags["nnexp.failure_reason"] = reason[:5000]
        if result is not None:
            tags["nnexp.status"] = result.status
        if self.storage.get_trial(m.trial_id).system_attrs.get(studies.RECLAIMED):
            self.drop_leftovers(n)  # its first worker died: a half-written run of it may exist
        run_id = self.tracker.start(f"trial-{n:04d}", {k: str(v) for k, v in tags.items()}, parent=self.parent_run,
                                    start_time=start_ms)
        params = {} if m.cfg is None else run_params(m.cfg, m.plan) if m.plan is not None else flat_params(m.cfg)
        params.update({f"sampled.{k}": str(v) for k, v in m.values.items()})
        params["trial_number"] = str(n)
        points = []
        if result is not None:
            curves = thin(result.curves, self.st.curves, self.st.curve_points)
            points = curve_metrics(curves)
            if result.final and m.plan is not None:
                points += final_points(result, m.plan.spec, curves)[1]
        self.tracker.log(run_id, params=params, metrics=points)
        self.tracker.end(run_id, "FAILED" if state == TrialState.FAIL else "FINISHED")
        return run_id


    def drop_leftovers(self, number: int) -> None:
        """Delete the runs a dead worker may have left for this trial (the re-run records it whole)."""
        client = self.tracker.client
        found = client.search_runs([self.tracker.experiment_id], filter_string=(
            f"tags.`mlflow.parentRunId` = '{self.parent_run}' and tags.`nnexp.trial_number` = '{number}'"))
        for run in found:
            client.delete_run(run.info.run_id)


def thin(curves: Mapping[str, np.ndarray], names: Sequence[str], points: int) -> dict[str, dict[int, float]]:
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
