"""The spool: an append-only file of records, one JSON object a line, that a command writes while it
trains and a recorder process drains into MLflow.

A command's spool file is `<session>-<pid>.jsonl` in the store's spool directory. Its writer holds an
exclusive `flock` on it for its whole life, so a writer that died (SIGKILL, a crash) is told apart
from one still writing by the kernel, with no pid to guess. A record counts as written once its line
is in the file (one `write` of the whole line: the kernel keeps it if the process is killed); it is
flushed to the disk at `sync()` and at the end. The recorder that drains a file appends the offset
of every record it has recorded to `<name>.acks`, holding a lock on that file, so two recorders never
drain one spool, and a new recorder resumes after the last acknowledged record.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nnexp import faults
from nnexp.errors import StoreError

VERSION = 1
END = {"op": "end"}


def spool_dir(uri: str, project: Path) -> Path:
    """Where a store's spool lives: beside an embedded SQLite store; for a server, under the project."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).resolve().parent / ".nnexp-spool"
    return project / ".nnexp-spool" / hashlib.sha256(uri.encode()).hexdigest()[:12]


def new_session() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:8]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a regular file takes it in one write unless the disk is full (then OSError)
        view = view[os.write(fd, view):]


class SpoolWriter:
    """Appends records to this process's spool file of `session`; `close()` marks the end."""

    def __init__(self, directory: Path, session: str, uri: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{session}-{os.getpid()}.jsonl"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)  # held until close: "this writer is alive"
        self.closed = False
        self.write({"op": "header", "v": VERSION, "uri": uri, "session": session, "pid": os.getpid(),
                    "host": socket.gethostname(), "time": time.time()})

    def write(self, record: dict[str, Any]) -> None:
        """One record, as one line in one write (a killed process leaves it whole or absent). A disk that
        cannot take it (full, read-only) stops the command with a StoreError naming the spool."""
        end = os.lseek(self.fd, 0, os.SEEK_END)
        try:
            _write_all(self.fd, (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8"))
        except OSError as e:
            with contextlib.suppress(OSError):  # the part a full disk let through goes: the next record starts a line
                os.ftruncate(self.fd, end)
            why = faults.cause(e)
            if why is None:
                raise
            raise StoreError("tracking.uri", str(self.path), f"the spool {self.path} cannot be written: {why}. The "
                             "records written before wait there and the next nnexp command records them; free some "
                             "space first") from e

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self, discard: bool = False) -> None:
        """Mark the end (the recorder may delete the file once it has drained it), or remove the file
        when nothing in it may be recorded (`discard`: bad input found before anything was recorded)."""
        if discard:
            self.path.unlink(missing_ok=True)
            self.path.with_suffix(".acks").unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # nothing else waits there: leave no trace
                self.path.parent.rmdir()
        if self.closed:
            return
        self.closed = True
        if not discard:
            self.write(END)
            os.fsync(self.fd)
        os.close(self.fd)


class SpoolReader:
    """The recorder's side of one spool file: the records after the last acknowledged one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.acks_path = path.with_suffix(".acks")
        self.ack_fd = os.open(self.acks_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.ack_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # one recorder drains a spool
        except BlockingIOError:
            os.close(self.ack_fd)
            raise
        lines = self.acks_path.read_text().split()
        self.offset = int(lines[-1]) if lines else 0
        self.replayed = self.offset  # records up to here were recorded; beyond, by an earlier recorder maybe
        self.replay = False  # look each record's run up first (set by the recorder for adopted files)
        self.header: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError, AttributeError), open(path, "rb") as f:  # who wrote it
            first = json.loads(f.readline())
            self.header = first if first.get("op") == "header" else {}
        self.ended = False
        self.torn = b""

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(end offset, record) of every complete line after the current offset."""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        start, pos = self.offset, 0
        while True:
            nl = data.find(b"\n", pos)
            if nl < 0:
                self.torn = data[pos:]
                return
            line, pos = data[pos:nl], nl + 1
            try:
                record = json.loads(line)
            except ValueError:  # a line a full disk cut short, with the next one appended to it
                record = {"op": "corrupt", "raw": line[:2000].decode("utf-8", "replace")}
            if record.get("op") == "header":
                self.header = record
            elif record.get("op") == "end":
                self.ended = True
            yield start + pos, record

    def ack(self, offset: int) -> None:
        self.offset = offset
        _write_all(self.ack_fd, f"{offset}\n".encode())

    def writer_alive(self) -> bool:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def done(self) -> bool:
        """Everything the writer will ever write is recorded. A writer that died in the middle of a record
        (killed, or its disk full) left it torn: those bytes are kept in <name>.torn, not recorded."""
        size = self.path.stat().st_size
        if self.ended:
            return self.offset == size
        if self.writer_alive():
            return False
        if self.offset < size and self.torn and self.offset + len(self.torn) == size:
            with contextlib.suppress(OSError):  # kept for inspection where the disk allows (a partial record)
                with open(self.path.with_suffix(".torn"), "ab") as f:
                    f.write(self.torn)
            self.ack(size)
        return self.offset == size

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.acks_path.unlink(missing_ok=True)
        os.close(self.ack_fd)

    def release(self) -> None:
        os.close(self.ack_fd)


def spool_files(directory: Path, session: str | None = None) -> list[Path]:
    """The spool files in `directory`, oldest first (of one session, or all)."""
    if not directory.is_dir():
        return []
    pattern = f"{session}-*.jsonl" if session else "*.jsonl"
    return sorted(directory.glob(pattern), key=lambda p: p.stat().st_mtime)
