"""One process's share of a sweep: ask a population of trials, train it, record each trial.

    Worker.run():  reclaim trials of dead workers -> ask P trials (Asker) -> train them in as few
                   passes of the replica axis as their structures allow, each member reporting its
                   validation curve to its own trial (Pruner) -> record each member as it ends (TrialLog)

Recording a trial is one record in the spool (its MLflow child run, which the recorder writes on the
other core) and then its Optuna `tell`: a trial never counts as done before its record is written.
P = 1 is the classic one-trial-at-a-time sweep. Where the time goes is timed per phase (`Phases`);
recording the trials is `nnexp.sweeps.trial_log`.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import replace
from typing import Any

import numpy as np
import optuna

from nnexp import faults, population
from nnexp.engine.loop import Callback, ReplicaResult
from nnexp.errors import ConfigError
from nnexp.interrupts import check, deferred
from nnexp.recording import Recording
from nnexp.sweeps import space
from nnexp.sweeps import storage as studies
from nnexp.sweeps.settings import Settings
from nnexp.sweeps.trial_log import Member, Phases, SweepError, TrialLog
from nnexp.sweeps.trials import Configs

TrialState = optuna.trial.TrialState


class Asker:
    """Asks the study for up to P trials of its budget and builds each one's plan."""

    def __init__(self, settings: Settings, configs: Configs, storage: Any, study: optuna.Study, phases: Phases) -> None:
        self.settings, self.configs, self.storage, self.study, self.phases = settings, configs, storage, study, phases
        self.study_id = studies.id_of_study(storage, study)  # fixed for the study's life

    def ask(self) -> list[Member]:
        members: list[Member] = []
        try:
            while len(members) < self.settings.population:
                with self.phases("sample"), deferred():  # a trial is asked and given its values, or not at all
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
        except BaseException as e:
            faults.best_effort(e, lambda: studies.put_back(self.storage, self.study_id,
                                                           [m.trial.number for m in members]))
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

    def __init__(self, members: list[Member], settings: Settings, finish: Any, phases: Phases,
                 study: optuna.Study, storage: Any) -> None:
        self.members, self.metric, self.finish, self.phases = members, settings.metric, finish, phases
        self.interval, self.prune = int(settings.pruner["interval"]), settings.pruner["name"] != "none"
        self.study, self.storage = study, storage

    def on_epoch_end(self, epoch: int, replicas: np.ndarray, metrics: dict[str, np.ndarray]) -> list[int]:
        if not self.prune or (epoch + 1) % self.interval:
            return []
        stop = []
        with self.phases("prune"):
            pruner = self.study.pruner
            seen = Completed(self.study) if isinstance(pruner, optuna.pruners.PercentilePruner) else None
            for value, r in zip(metrics[self.metric].tolist(), replicas.tolist(), strict=True):
                m = self.members[r]
                m.trial.report(value, epoch)
                if seen is None:
                    prune = m.trial.should_prune()
                else:
                    prune = pruner.prune(seen, self.storage.get_trial(m.trial_id))  # type: ignore[arg-type]
                if prune:
                    stop.append(r)
        return stop

    def on_replica_end(self, replica: int, result: ReplicaResult) -> None:
        self.finish(self.members[replica], result)


class Completed:
    """The study as a percentile (median) pruner reads it, `direction` and its COMPLETE trials, read once for
    all members reporting at one step rather than once per member (`trial.should_prune()` reads the storage
    three times; measured on the default sweep, 4.4 -> 2.7 ms a trial). No trial of this worker ends between
    its members' reports of one step, so each member gets the decision `should_prune()` gives (a seeded sweep
    prunes the same trials); another worker's trial ending meanwhile counts from the next step on."""

    def __init__(self, study: optuna.Study) -> None:
        self.direction = study.direction
        self.complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    def get_trials(self, deepcopy: bool = False, states: Any = None) -> list[optuna.trial.FrozenTrial]:
        if deepcopy or tuple(states or ()) != (TrialState.COMPLETE,):
            raise NotImplementedError("the percentile pruner reads only the COMPLETE trials")
        return self.complete


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
            with self.phases("journal"):
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
        except BaseException as e:
            # interrupted, or a store refused a write: the members not yet recorded go back to WAITING, to be
            # re-run by the next ask (after a store fault marked reclaimed: a record of theirs may be half
            # written; if the Optuna storage refuses this too, they are reclaimed once stale)
            fault = faults.cause(e) is not None
            faults.best_effort(e, lambda: studies.put_back(self.storage, self.asker.study_id, sorted(self.log.open),
                                                           reclaimed=fault))
            faults.best_effort(e, self.log.sync)
            raise
        studies.put_back(self.storage, self.asker.study_id, sorted(self.log.open))
        self.log.sync()

    def train_passes(self, ok: list[Member]) -> None:
        def callbacks(idx: list[int]) -> list[Callback]:
            return [Pruner([ok[i] for i in idx], self.settings, self.log.finish, self.phases, self.study, self.storage)]

        t0, inside = time.perf_counter(), sum(self.phases.seconds.values())
        try:
            population.fit([m.plan for m in ok], callbacks)  # type: ignore[misc]
        except SweepError:
            raise
        except Exception as e:  # a bug or an unforeseen numerical fault: these trials fail, the sweep goes on
            if faults.cause(e):  # a store that refuses writes is no fault of the trials: the sweep stops
                raise
            for m in ok:
                if m.trial.number in self.log.open:
                    m.error = f"training raised {type(e).__name__}: {e}"
                    self.log.finish(m, None)
        finally:  # training time: the pass's wall time less the bookkeeping done inside it
            self.phases.seconds["train"] += time.perf_counter() - t0 - (sum(self.phases.seconds.values()) - inside)
