"""Optuna's journal file as nnexp's workers write and open it: appends whole or not at all, flushed once
per population; a torn last record (a crash or a full disk mid-write) cut off before Optuna reads, a
torn record with records after it refused with what to do."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from nnexp import faults
from nnexp.errors import StoreError
from nnexp.interrupts import deferred


class Journal(JournalFileBackend):
    """Optuna's journal file (the same format, under Optuna's own lock), with every append whole or not
    at all, and flushed to the disk once per population rather than once per operation.

    Optuna's own append (one write, then fsync) leaves the bytes a full disk let through; the next
    append then lands on that torn record and the journal is unreadable from there on (reproduced:
    `'_last_created_trial_id_by_this_process'`, then JSONDecodeError on every run). Here a failed or
    interrupted append is cut off again before the lock is released, and an append that finds a torn
    record left by a writer that died mid-write sets it aside first (`set_aside`).

    Optuna's fsync after every append was the largest part of its time in a sweep (~20 operations a
    trial: 3,625 fsyncs, 18.8 s of a 192-trial sweep's 30.7 s in Optuna, profiled on the 2-core machine
    under load). Here an append reaches the OS's cache (a killed process loses nothing it appended) and
    `sync()` flushes at a population's end; a power cut can lose the last population's operations or
    tear the last record, which `open_journal` cuts off on the next start."""

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
                    while view:  # a regular file takes it in one write unless the disk is full (then OSError)
                        view = view[os.write(fd, view):]
                except BaseException as e:
                    os.ftruncate(fd, end)  # the partial record goes; the caller sees the write fail
                    if isinstance(e, OSError):
                        raise OSError(e.errno, e.strerror, str(self.path)) from e
                    raise
            finally:
                os.close(fd)

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        """Optuna's read, skipped when the file has not grown since log `log_number_from` (one stat rather than
        an open, a read and a close: Optuna reads the journal before every storage call, ~25 times a trial)."""
        known = self._log_number_offset.get(log_number_from)
        if known is not None and os.stat(self.path).st_size == known:
            return
        yield from super().read_logs(log_number_from)

    def sync(self) -> None:
        """Flush every appended operation to the disk (a population's end, a worker's exit)."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
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
    """Hold the journal's lock: the one Optuna's append takes, so no worker appends meanwhile. Ctrl-C and
    SIGTERM wait until it is released: Optuna's release renames the lock, then unlinks the renamed file,
    and an interrupt between the two made it unlink twice (FileNotFoundError, a traceback instead of a
    clean stop; seen once in a test run)."""
    lock.acquire()
    with deferred():
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
