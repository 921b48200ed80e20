"""The recorder process: drains spool files into MLflow.

    python -m nnexp.recording.recorder <spool dir> <session> <uri>
    python -m nnexp.recording.recorder          # started early: the three come as a JSON list on stdin

It imports MLflow at once, while the command starts and trains; meanwhile it checks, without MLflow and
in milliseconds, that the store answers (`reachable`: a tracking server's /health, a SQLite file that is
a database or can be made). A recorder started before its command knew the store (`start_early`) waits
for the store's name on its stdin, and exits having opened nothing if the pipe closes first. It opens
the store when the first record arrives (a command that stops on bad input records nothing), and records
its session's spool files and any file a dead recorder left behind, in order. It ignores Ctrl-C (the
command's own interrupt handling ends the runs) and exits when its command has closed its stdin and every
spool of the session is drained. On stdout it says `reachable`, `ready` (store
opened), `error <message>` (the store cannot be used), `run <key> <run id> <experiment id>` and `done`.
A record is applied whole before it is acknowledged; one replayed after a crash finds the run its key
made (see `apply`), so every record is recorded exactly once. A sweep's first trial counts as done once
the store is `reachable`; a server that stops answering before the store is opened is waited for like
one that stops mid-sweep.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from nnexp.errors import ConfigError
from nnexp.recording.reach import StoreGone, cannot_open, preflight, unreachable
from nnexp.recording.spool import SpoolReader, spool_files

POLL = 0.02  # seconds between looks at the spool when idle
RETRY = 2.0  # seconds between attempts while a tracking server does not answer
WARM_AFTER = 1.0  # seconds idle after which the figure code is imported ahead of need
DRAIN_GRACE = float(os.environ.get("NNEXP_DRAIN_GRACE", "60"))  # after the command ended, then give up


def say(*words: object) -> None:
    """A status line for the command (gone already if it was killed: then nobody listens)."""
    with contextlib.suppress(BrokenPipeError, OSError):
        print(*words, flush=True)


class Command:
    """The command at the other end of our stdin: the store and the spool (given as arguments, or as the
    first line by a command that started us before it knew them), checked by `preflight`; then its end (the
    pipe closes: it finished, or died)."""

    def __init__(self, args: list[str], listen: bool = True) -> None:
        self.args = args
        self.known = threading.Event()  # the store is named and answers
        self.closed = threading.Event()
        self.closed_at = math.inf
        if listen:
            threading.Thread(target=self._listen, daemon=True, name="nnexp-command").start()

    def _listen(self) -> None:
        try:
            if not self.args:
                line = first_line()
                if line is None:
                    os._exit(0)  # the command ended before it recorded anything: nothing was opened
                self.args = [str(a) for a in json.loads(line)][:3]
            preflight(self.args[2])
        except Exception as e:  # noqa: BLE001 - the main thread waits for `known`: never leave it waiting
            say("error", str(e) if isinstance(e, StoreGone) else f"{type(e).__name__}: {e}")
            os._exit(1)  # nothing opened, nothing to drain
        say("reachable")
        self.known.set()
        # the raw descriptor, not sys.stdin: a daemon thread blocked in a buffered read holds the buffer's lock,
        # and an exit meanwhile aborts the interpreter ("could not acquire lock for <stdin> at interpreter
        # shutdown", SIGABRT), which the command took for a killed recorder
        while os.read(0, 4096):
            pass
        self.closed_at = time.monotonic()
        self.closed.set()


def first_line() -> bytes | None:
    """The first line on stdin, read a byte at a time (what follows is the pipe's end); None at its end."""
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte:
            return None
        line += byte
    return line


class Recorder:
    def __init__(self, directory: Path, session: str, uri: str, command: Command | None = None) -> None:
        self.directory, self.session, self.uri = directory, session, uri
        self.command = command or Command([str(directory), session, uri], listen=False)
        self.closed = self.command.closed  # the command closed our stdin (finished, or died)
        self.store: Any = None
        self.readers: dict[Path, SpoolReader] = {}
        self.apply: Any = None
        self.announced: set[str] = set()
        self.failures = 0
        self.idle_since, self.warm, self.figures_later = time.monotonic(), False, False

    def open_store(self) -> None:
        """Open the store for the first record. A tracking server that answered the preflight and stops
        answering before this is waited for like one that stops mid-run (trials may count as done already)."""
        self.with_retries(self._open)
        say("ready")

    def _open(self) -> None:
        from nnexp.recording.apply import Applier
        from nnexp.recording.store import Store

        try:
            self.store = Store(self.uri)
        except ConfigError as e:  # a store that cannot be written (full, read-only): its own paragraph
            raise StoreGone(str(e)) from None
        except Exception as e:
            if self.uri.startswith(("http://", "https://")) and unreachable(e):
                raise  # retried
            raise cannot_open(self.uri, f"{type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
        self.apply = Applier(self.store, on_run=self.announce)

    def announce(self, key: str, run_id: str, experiment_id: str) -> None:
        if key not in self.announced:
            self.announced.add(key)
            say("run", key, run_id, experiment_id)

    def adopt(self) -> None:
        """Start draining the session's new spool files and any file whose writer and recorder are gone."""
        for path in spool_files(self.directory):
            if path in self.readers:
                continue
            mine = path.name.startswith(f"{self.session}-")
            try:
                reader = SpoolReader(path)
            except (BlockingIOError, FileNotFoundError):  # another recorder drains it, or it is gone
                continue
            if not mine and reader.writer_alive():  # another command still writes it: its recorder will
                reader.release()
                continue
            reader.replay = not mine or reader.replayed > 0  # an earlier recorder may have recorded some of it
            self.readers[path] = reader

    def drain(self, reader: SpoolReader) -> int:
        n = 0
        for offset, record in reader.records():
            if record.get("op") not in ("header", "end"):
                self.figures_later = self.figures_later or bool(record.get("figures_later"))
                if self.store is None:
                    self.open_store()  # a store that cannot be opened fails the command at once
                try:
                    self.with_retries(lambda r=record, rd=reader: self.apply(r, rd.path, replay=rd.replay))
                except Exception as e:  # noqa: BLE001 - kept aside, reported; the others go on
                    self.quarantine(reader, record, e)
                n += 1
            reader.ack(offset)
        return n

    def with_retries(self, fn: Any) -> None:
        """Retry while the store does not answer: as long as the command runs, then for DRAIN_GRACE
        seconds more (its records stay in the spool for the next command if it does not come back)."""
        failing_since = None
        while True:
            try:
                fn()
                if failing_since is not None:
                    sys.stderr.write(f"nnexp recorder: the tracking store {self.uri} answers again\n")
                return
            except Exception as e:
                if not unreachable(e):
                    raise
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                    if not str(e).startswith("the parent run"):
                        sys.stderr.write(f"nnexp recorder: the tracking store {self.uri} does not answer "
                                         f"({' '.join(str(e).split())[:200]}); training goes on, its records wait in "
                                         f"{self.directory}; retrying\n")
                if self.closed.is_set() and now - max(failing_since, self.command.closed_at) > DRAIN_GRACE:
                    raise StoreGone(f"the tracking store {self.uri} did not answer for {DRAIN_GRACE:.0f} s after "
                                    f"the command ended; its records wait in {self.directory} and the next nnexp "
                                    "command records them") from None
                time.sleep(RETRY)

    def quarantine(self, reader: SpoolReader, record: dict[str, Any], e: Exception) -> None:
        """A record the store refuses for good (not a store that does not answer): kept in <spool>.failed
        with the reason, and reported; the records after it are recorded."""
        if isinstance(e, StoreGone):
            raise e
        failed = reader.path.with_suffix(".failed")
        with open(failed, "a") as f:
            f.write(json.dumps({"error": f"{type(e).__name__}: {e}", "record": record}) + "\n")
        self.failures += 1
        sys.stderr.write(f"nnexp recorder: a record could not be recorded ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:300]}); it is kept in {failed}\n")

    def run(self) -> None:
        while True:
            self.adopt()
            busy = 0
            for path, reader in list(self.readers.items()):
                busy += self.drain(reader)
                if reader.done():
                    if self.apply is None and reader.replay and not reader.ended:
                        self.open_store()  # adopted from a dead command whose recorder had recorded it all
                    if self.apply is not None:
                        self.apply.close_orphans(reader)
                    reader.remove()
                    del self.readers[path]
            if self.closed.is_set() and not busy and not any(
                    p.name.startswith(f"{self.session}-") for p in spool_files(self.directory)):
                return
            if not busy:
                self.warm_up()
                time.sleep(POLL)
            else:
                self.idle_since = time.monotonic()

    def warm_up(self) -> None:
        """Import the figure code (matplotlib, ~1.5 s) once the recorder has been idle a while, when a run has
        said its end will carry figures (a sweep's parent: its populations leave the recorder idle for seconds,
        and at the end the command waits for the figures)."""
        if self.warm or not self.figures_later or time.monotonic() - self.idle_since < WARM_AFTER:
            return
        self.warm = True
        from nnexp import plots  # noqa: F401


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command handles Ctrl-C; we drain what it wrote
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # we retry, saying so, not MLflow in silence
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    command = Command(argv)  # the store is checked meanwhile, and named first if we were started early
    import logging

    import mlflow  # noqa: F401 - imported now, while the command trains

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # not "Updating database tables" on every new store
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # MLflow logs every SQLite OperationalError with its traceback before raising it again (a full disk,
    # a read-only store); the error itself reaches the user as one paragraph
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    command.known.wait()
    directory, session, uri = Path(command.args[0]), command.args[1], command.args[2]
    recorder = Recorder(directory, session, uri, command)
    try:
        recorder.run()
    except StoreGone as e:
        say("error", str(e))
        return 1
    except Exception as e:  # noqa: BLE001 - the command prints it as one paragraph
        say("error", f"{type(e).__name__}: {' '.join(str(e).split())[:1500]}")
        return 1
    finally:
        if recorder.store is not None:
            from nnexp.recording.store import checkpoint

            checkpoint(uri)
    if recorder.failures:
        say("error", f"{recorder.failures} record(s) could not be recorded; they are kept in the spool's .failed "
                     f"files in {directory}")
        return 1
    say("done")
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # every record is in the store (SQLite checkpointed: `checkpoint`) and every word said: exit without the
    # interpreter's teardown of MLflow's thousands of objects (~1 s on the 2-core machine, which the command
    # waits for; MLflow's exit hooks only flush usage telemetry)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
