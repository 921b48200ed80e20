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

import contextlib
import hashlib
import json
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import TrialState

from nnexp import faults
from nnexp.errors import ConfigError, StoreError
from nnexp.interrupts import deferred
from nnexp.paths import project_root

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="The reported value is ignored")  # a re-run trial reports again

HEARTBEAT = "nnexp:heartbeat"
RECLAIMED = "nnexp:reclaimed"
WORKER = "nnexp:worker"
DEFAULT_JOURNAL = "optuna-journal.log"


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


class Journal(JournalFileBackend):
    """Optuna's journal file, with every append whole or not at all.

    Optuna's own append (one write, then fsync) leaves the bytes a full disk let through; the next
    append then lands on that torn record and the journal is unreadable from there on (reproduced:
    `'_last_created_trial_id_by_this_process'`, then JSONDecodeError on every run). Here a failed or
    interrupted append is cut off again before the lock is released, and an append that finds a torn
    record left by a writer that died mid-write sets it aside first (`set_aside`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = JournalFileSymlinkLock(str(path))  # Optuna's default lock: workers without nnexp's code agree
        super().__init__(str(path), lock_obj=self.lock)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode()
        with locked(self.lock):
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
            try:
                end = os.fstat(fd).st_size
                if end and os.pread(fd, 1, end - 1) != b"\n":  # a writer died mid-record: its bytes go
                    size, tail = _tail(self.path, 1)
                    set_aside(self.path, size - len(tail.rsplit(b"\n", 1)[-1]))
                    end = os.fstat(fd).st_size
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                except BaseException as e:
                    os.ftruncate(fd, end)  # the partial record goes; the caller sees the write fail
                    if isinstance(e, OSError):
                        raise OSError(e.errno, e.strerror, str(self.path)) from e
                    raise
            finally:
                os.close(fd)


def open_journal(path: Path) -> optuna.storages.JournalStorage:
    """The journal at `path` (created if missing), its torn last record cut off first. A torn record
    with records after it is refused: Optuna cannot read past it, and cutting there is the user's call."""
    from optuna.storages import JournalStorage

    store = f"journal:{path}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        faults.writable(path, "sweep.storage", "Optuna journal")
        journal = Journal(path)
        cut_torn_tail(path, journal.lock)
        faults.reserve(path)
    except OSError as e:
        faults.explain(e, {"optuna": ("sweep.storage", store)}, "Nothing was written.")
        raise
    try:
        return JournalStorage(journal)
    except ValueError:  # json.JSONDecodeError: a record Optuna cannot decode, with records after it
        bad = first_bad_record(path)
        if bad is None:
            raise
        raise torn_in_the_middle(path, *bad) from None


@contextlib.contextmanager
def locked(lock: JournalFileSymlinkLock) -> Iterator[None]:
    """Hold the journal's lock: the one Optuna's append takes, so no worker appends meanwhile."""
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _whole(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _tail(path: Path, newlines: int) -> tuple[int, bytes]:
    """The file's size, and its end back to `newlines` newlines before it (or to its start)."""
    with open(path, "rb") as f:
        size = start = f.seek(0, os.SEEK_END)
        tail = b""
        while start > 0 and tail.count(b"\n") < newlines:  # records of any length
            step = min(start, 1 << 16)
            start -= step
            f.seek(start)
            tail = f.read(step) + tail
    return size, tail


def torn_from(path: Path) -> int | None:
    """Where the journal's torn last record starts: one that does not end with a newline, or is not a
    JSON object. None when the last record is whole, or when the one before it is not whole either
    (the damage is not only at the end: Optuna refuses to read it, and `first_bad_record` says where)."""
    size, tail = _tail(path, 3)
    if not size:
        return None
    lines = tail.split(b"\n")  # the last item follows the last newline: b"" when the file ends with one
    if lines[-1] == b"" and _whole(lines[-2]):
        return None
    cut = size - len(lines[-1] or lines[-2] + b"\n")
    if cut == 0:
        return 0
    before = lines[-2] if lines[-1] else lines[-3]
    return cut if _whole(before) else None


def cut_torn_tail(path: Path, lock: JournalFileSymlinkLock) -> None:
    """Cut a torn last record off the journal, under the journal's lock so that no worker appends
    meanwhile; the torn bytes are kept beside it (`<name>.torn-<time>`) and one line says so."""
    if torn_from(path) is None:  # the common case, read without the lock: the last record is whole
        return
    with locked(lock):
        cut = torn_from(path)  # again, under the lock: a worker may have finished writing it meanwhile
        if cut is not None:
            set_aside(path, cut)


def set_aside(path: Path, cut: int) -> None:
    """Move the journal's bytes from `cut` on into `<name>.torn-<time>-<pid>` (call under its lock)."""
    size = path.stat().st_size
    aside = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    with open(path, "rb") as f:
        f.seek(cut)
        torn = f.read()
    try:
        with open(aside, "xb") as out:
            out.write(torn)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:  # no room even for these bytes: the journal stays as it was
        aside.unlink(missing_ok=True)
        raise
    os.truncate(path, cut)
    print(f"journal {path}: its last record was torn (a crash or a full disk while it was written); cut off at "
          f"byte {cut}, the end of the last whole record ({size - cut} torn bytes kept in {aside.name})",
          file=sys.stderr)


def first_bad_record(path: Path) -> tuple[int, int, int] | None:
    """(index, byte offset, records after it) of the journal's first record Optuna cannot decode."""
    offset = 0
    with open(path, "rb") as f:
        for index, line in enumerate(f):
            if not (line.endswith(b"\n") and _whole(line)):
                return index, offset, sum(1 for _ in f)
            offset += len(line)
    return None


def torn_in_the_middle(path: Path, index: int, offset: int, after: int) -> StoreError:
    records = f"{after} record{'' if after == 1 else 's'}"
    return StoreError("sweep.storage", f"journal:{path}", (
        f"record {index + 1} of the journal {path}, at byte {offset}, is not a whole record, and Optuna cannot "
        f"read it or the {records} after it. Nothing was changed. If it was torn by a crash or a full disk and "
        "then written after (nnexp did that before it cut torn records off), no worker ever read past it "
        "either, and cutting the file there gives the study back as the workers last saw it: "
        f"`cp {path} {path}.bak && truncate -s {offset} {path}`, then run the same command again (trials "
        "recorded after that point are run again). If the file was damaged otherwise (a disk error), the cut "
        "loses those records: move the file aside and start the study again instead."))


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
               baseline: Mapping[str, Any] | None = None) -> optuna.Study:
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


def study_id(storage, study: optuna.Study) -> int:
    return storage.get_study_id_from_name(study.study_name)


def put_back(storage, sid: int, numbers: Iterable[int], reclaimed: bool = False) -> None:
    """Return RUNNING trials to WAITING: they keep their parameters and the next `ask` re-runs them.

    `reclaimed` marks trials taken from a worker that died: it may have left a half-written MLflow run,
    which the re-run replaces."""
    for n in numbers:
        tid = storage.get_trial_id_from_study_id_trial_number(sid, n)
        if storage.get_trial(tid).state == TrialState.RUNNING:
            if reclaimed:
                storage.set_trial_system_attr(tid, RECLAIMED, True)
            storage.set_trial_state_values(tid, TrialState.WAITING)


def reclaim_stale(storage, study: optuna.Study, grace: float) -> list[int]:
    """Put back RUNNING trials whose last heartbeat (or start) is older than `grace` seconds."""
    now = time.time()
    stale = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        last = t.system_attrs.get(HEARTBEAT) or (t.datetime_start.timestamp() if t.datetime_start else now)
        if now - float(last) > grace:
            stale.append(t.number)
    put_back(storage, study_id(storage, study), stale, reclaimed=True)
    return stale


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
