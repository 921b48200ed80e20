"""The Optuna side of a sweep: storages, creating or resuming a study, its fingerprint, and keeping
trials out of RUNNING when their worker is gone.

Embedded default: Optuna's journal file storage (`optuna-journal.log` at the project root). Measured
on this machine (see README), a trial that reports to a SQLite storage 30 times costs ~100 ms in
Optuna alone against ~10 ms on the journal file, and four processes finish a sweep on the journal
file in a fifth of SQLite's time; both stay consistent. Any Optuna RDB URL (sqlite:///,
postgresql://, mysql://) is taken as is, and `journal:<path>` names another journal file.

A trial's life: `ask` -> RUNNING -> told COMPLETE / PRUNED / FAIL. A trial whose worker is interrupted
goes back to WAITING (it keeps its parameters, and the next `ask` of any worker re-runs it); a trial
whose worker died without a word (SIGKILL, a lost machine) stops sending heartbeats and is put back to
WAITING by the next worker that looks (`reclaim_stale`). Trial numbers 0 .. n_trials - 1 are the
study's budget: a trial numbered beyond it is put back unrun, so the study ends with exactly n_trials
trials in final states however many workers ask at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from nnexp import faults
from nnexp.errors import ConfigError
from nnexp.interrupts import deferred
from nnexp.paths import project_root
from nnexp.sweeps.journal import open_journal

HEARTBEAT = "nnexp:heartbeat"
RECLAIMED = "nnexp:reclaimed"
WORKER = "nnexp:worker"
DEFAULT_JOURNAL = "optuna-journal.log"


def quiet_optuna() -> None:
    """Optuna's progress logs and its experimental-feature and re-report warnings off (the sweep command
    calls it; importing this module changes nothing)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="The reported value is ignored")  # a re-run trial reports again


def open_storage(url: str | None) -> optuna.storages.BaseStorage:
    """null -> the project's journal file; journal:<path> -> that journal file; else an RDB URL."""
    from optuna.storages import RDBStorage

    if not url or url.startswith("journal:"):
        path = Path(url[len("journal:"):]) if url else Path(DEFAULT_JOURNAL)
        return open_journal(path if path.is_absolute() else project_root() / path)
    if "://" not in url:
        raise ConfigError("sweep.storage", url, "expected null (the project's journal file), journal:<path>, or a "
                          "database URL such as sqlite:///optuna.db or postgresql://user@host/db")
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        with deferred():  # a new database is created and migrated here: never leave it half made
            db = faults.sqlite_file(url)
            if db is not None:  # made whole beside its final name, then linked into place
                faults.create_sqlite(url, lambda tmp: RDBStorage(tmp, engine_kwargs=kwargs).engine.dispose(),
                                     "sweep.storage", "Optuna storage")
                faults.writable(db, "sweep.storage", "Optuna storage")
                faults.reserve(db)
            return RDBStorage(url, engine_kwargs=kwargs)
    except ConfigError:
        raise
    except Exception as e:  # a driver that is not installed, a server that does not answer
        raise ConfigError("sweep.storage", redact(url), f"cannot open this Optuna storage ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:300]})") from None


def describe(url: str | None) -> str:
    return redact(url) if url else f"journal:{project_root() / DEFAULT_JOURNAL}"


def redact(url: str) -> str:
    """A URL without its password, for logs and run tags."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}"
    return url


def fingerprint(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def changes(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 8) -> list[str]:
    """'key: old -> new' for every key whose value differs."""
    keys = sorted(set(old) | set(new))
    diff = [f"{k}: {old.get(k, '(absent)')} -> {new.get(k, '(absent)')}" for k in keys if old.get(k) != new.get(k)]
    return diff[:limit] + ([f"... and {len(diff) - limit} more"] if len(diff) > limit else [])


def open_study(storage, name: str, parts: Mapping[str, Any], *, create: bool, direction: Any,
               sampler: optuna.samplers.BaseSampler, pruner: optuna.pruners.BasePruner,
               baseline: Mapping[str, Any] | None = None, base_overrides: Sequence[str] = ()) -> optuna.Study:
    """Load study `name` (checking it was started with the same search space and base config), or
    create it with the baseline enqueued as trial 0."""
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        if not create:
            raise ConfigError("sweep.study_name", name, "no such study in this storage yet; start it with `make "
                              "sweep` (with the same sweep.storage), then add workers") from None
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                    direction=direction, load_if_exists=True)
        if "nnexp.fingerprint" not in study.user_attrs:  # not created by a concurrent worker
            uid = uuid.uuid4().hex
            study.set_user_attr("nnexp.uid", uid)  # names the sweep's records (MLflow runs) across stores
            study.set_user_attr("nnexp.parent_key", f"sweep:{uid}")
            study.set_user_attr("nnexp.base_overrides", list(base_overrides))  # to train its trials again
            study.set_user_attr("nnexp.parts", dict(parts))
            study.set_user_attr("nnexp.fingerprint", fingerprint(parts))
            if baseline is not None:
                study.enqueue_trial(dict(baseline), user_attrs={"nnexp.baseline": True})
            return study
    old = study.user_attrs.get("nnexp.parts", {})
    if study.user_attrs.get("nnexp.fingerprint") != fingerprint(parts):
        raise ConfigError("sweep.study_name", name, "this study was started with a different search space or base "
                          "config, so its trials would not be comparable; changed: " + "; ".join(changes(old, parts)),
                          hint=f"Start a new study with sweep.study_name={name}-2 (or undo the change to resume).")
    return study


def best_overrides(name: str, url: str | None) -> list[str]:
    """The overrides of study `name`'s best trial, as the sweep's end stored them (`make train-best`)."""
    store = open_storage(url)
    try:
        study = optuna.load_study(study_name=name, storage=store)
    except KeyError:
        names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(store)
                          if not s.study_name.startswith("ablation:")) or "none yet"
        raise ConfigError("SWEEP", name, f"no such sweep in {describe(url)} (its sweeps: {names}); a sweep in "
                          "another storage needs ARGS=\"sweep.storage=...\"") from None
    best = study.user_attrs.get("nnexp.best_overrides")
    if not isinstance(best, list) or not all(isinstance(o, str) for o in best):
        raise ConfigError("SWEEP", name, "this sweep has not finished with a best trial yet (run `make sweep` with "
                          "it to the end first)")
    return best


def flush(storage) -> None:
    """The journal file's appended operations to the disk (a population's end; RDBs commit their own)."""
    backend: Any = getattr(storage, "_backend", None)
    if hasattr(backend, "sync"):
        backend.sync()


def id_of_study(storage, study: optuna.Study) -> int:
    return storage.get_study_id_from_name(study.study_name)


def put_back(storage, study_id: int, numbers: Iterable[int], reclaimed: bool = False) -> None:
    """Return RUNNING trials to WAITING: they keep their parameters and the next `ask` re-runs them.

    `reclaimed` marks trials taken from a worker that died: it may have left a half-written MLflow run,
    which the re-run replaces."""
    for n in numbers:
        tid = storage.get_trial_id_from_study_id_trial_number(study_id, n)
        if storage.get_trial(tid).state == TrialState.RUNNING:
            if reclaimed:
                storage.set_trial_system_attr(tid, RECLAIMED, True)
            storage.set_trial_state_values(tid, TrialState.WAITING)


def reclaim_stale(storage, study: optuna.Study, grace: float) -> list[int]:
    """Put back RUNNING trials whose worker is gone: a process of this machine that no longer exists at
    once, any other once its last heartbeat (or start) is older than `grace` seconds."""
    now = time.time()
    stale = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        last = t.system_attrs.get(HEARTBEAT) or (t.datetime_start.timestamp() if t.datetime_start else now)
        if now - float(last) > grace or _dead_here(t.system_attrs.get(WORKER, "")):
            stale.append(t.number)
    put_back(storage, id_of_study(storage, study), stale, reclaimed=True)
    return stale


def _dead_here(worker: str) -> bool:
    """`host:pid` names a process of this machine that no longer runs (a reused pid reads as alive, and
    then the heartbeat's grace decides)."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def waiting_message(study: optuna.Study, grace: float) -> str:
    """What a worker waits for when the budget's last trials are held by other workers."""
    held = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    owners = sorted({str(t.system_attrs.get(WORKER, "an unknown worker")) for t in held})
    return (f"waiting for {len(held)} trial(s) that other workers hold ({', '.join(owners)}); if a worker is dead, "
            f"its trials come back {grace:g} s after its last heartbeat (sweep.heartbeat.grace) and are re-run here")


class Heartbeat:
    """A thread that stamps the given trials every `interval` seconds while a population trains; each
    trial also names its worker (`nnexp:worker` = host:pid), so a stale one says whose it was."""

    def __init__(self, storage, trial_ids: list[int], interval: float) -> None:
        self.storage, self.trial_ids, self.interval = storage, trial_ids, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="nnexp-heartbeat")
        for tid in trial_ids:
            storage.set_trial_system_attr(tid, WORKER, f"{socket.gethostname()}:{os.getpid()}")

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            for tid in list(self.trial_ids):
                try:
                    if self.storage.get_trial(tid).state == TrialState.RUNNING:
                        self.storage.set_trial_system_attr(tid, HEARTBEAT, time.time())
                except Exception:  # a storage hiccup must not kill training; the next beat retries
                    pass

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def counts(study: optuna.Study, n_trials: int) -> dict[str, int]:
    """Trials of the budget (numbers < n_trials) by state name."""
    out = {s.name: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        if t.number < n_trials:
            out[t.state.name] += 1
    return out
