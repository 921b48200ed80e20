"""Recording runs in MLflow off the training path.

A command (`make train`, a sweep's workers, an ablation) never imports MLflow: it writes each run's
record (params, curves, metrics, tags, texts, figures to draw, the model's files) to its spool file
and goes on training. A recorder process, started at the command's start on the other core, imports
MLflow meanwhile and drains the spool into the store (`nnexp.recording.recorder`). Nothing is lost:
the recorder drains everything before it exits (also when the command is interrupted or killed), and
a spool left behind by a recorder that died is replayed, exactly once, by the next command's recorder.

    rec = Recording(uri)          # starts the recorder
    rec.write({...})              # a record (see nnexp.recording.records)
    rec.finish()                  # waits until everything is in MLflow; raises RecordingError if not

It may import nnexp's engine and shared modules, never the sweeps or ablations.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from nnexp import faults
from nnexp.errors import ConfigError
from nnexp.paths import project_root
from nnexp.recording.spool import SpoolWriter, new_session, spool_dir

SESSION_ENV = "NNEXP_RECORDING_SESSION"  # spawned workers write into their coordinator's session


_early: list[subprocess.Popen] = []  # a recorder started before its command knew the store (`start_early`)


def start_early() -> None:
    """Start this command's recorder now, before the command has composed its config: the recorder imports
    MLflow (seconds) while the command imports and composes, and learns the store and spool from the first
    `Recording` made. A command that ends without recording (bad input) closes the pipe by exiting, and the
    recorder exits having opened nothing. Not in a worker that writes into its coordinator's session."""
    if not _early and not os.environ.get(SESSION_ENV):
        try:
            _early.append(_spawn([]))
        except OSError:  # no process to spare now: `Recording` starts one when needed, or says why it cannot
            pass


def _spawn(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nnexp.recording.recorder", *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(project_root()),
                                                                        os.environ.get("PYTHONPATH")]))})


class RecordingError(RuntimeError):
    """The store cannot take the records (a tracking server that does not answer, a store that cannot
    be written): the message says which store, what happened, and where the records wait. `opened`:
    whether the store was ever opened (if not, nothing of the command was recorded)."""

    def __init__(self, message: str, opened: bool = True) -> None:
        super().__init__(message)
        self.opened = opened


def resolve_uri(uri: str | None) -> str:
    """An explicit URI, else MLFLOW_TRACKING_URI, else the project's own SQLite store."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def artifact_root(uri: str) -> str | None:
    """For a SQLite store, artifacts live beside the database (an absolute file URI, so the UI finds
    them from any working directory); a tracking server chooses its own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()
    return None


class Recording:
    """This command's spool and its recorder process (or, in a spawned worker, only its spool file in
    the coordinator's session, which the coordinator's recorder drains)."""

    def __init__(self, uri: str | None = None) -> None:
        self.uri = resolve_uri(uri)
        if self.uri.startswith("sqlite:///"):  # its spool lives beside it: a store that cannot be written, no spool
            faults.writable(Path(self.uri[len("sqlite:///"):]), "tracking.uri", "MLflow store")
        self.dir = spool_dir(self.uri, project_root())
        joined = os.environ.get(SESSION_ENV)
        self.session = joined or new_session()
        self.writer = SpoolWriter(self.dir, self.session, self.uri)
        self.status, self.error = "starting", ""  # starting -> reachable -> ready -> done
        self.waited = 0.0  # seconds `finish` waited for the recorder: its lag behind the command at the end
        self.run_ids: dict[str, str] = {}  # record key -> MLflow run id, as the recorder reports them
        self.experiment_ids: dict[str, str] = {}  # record key -> its run's MLflow experiment id
        self.scratches: list[Path] = []
        self.proc: subprocess.Popen | None = None if joined else self._start()

    def _start(self) -> subprocess.Popen:
        args = [str(self.dir), self.session, self.uri]
        proc = None
        while _early and proc is None:
            early = _early.pop()
            try:  # name the store to the recorder started early; one that died meanwhile is replaced
                assert early.stdin is not None
                early.stdin.write(json.dumps(args) + "\n")
                early.stdin.flush()
                proc = early
            except OSError:
                early.wait()
        proc = proc or _spawn(args)
        self.listener = threading.Thread(target=self._listen, args=(proc,), daemon=True, name="nnexp-recorder-status")
        self.listener.start()
        return proc

    def _listen(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            word, _, rest = line.rstrip("\n").partition(" ")
            if word == "error":
                self.error = rest
            elif word == "run":
                key, run_id, *experiment = rest.split(" ")
                self.run_ids[key] = run_id
                self.experiment_ids[key] = experiment[0] if experiment else ""
            else:
                self.status = word

    def env(self) -> dict[str, str]:
        """The environment of a worker process that joins this session."""
        return {**os.environ, SESSION_ENV: self.session}

    def write(self, record: dict) -> None:
        self.writer.write(record)

    def scratch(self, name: str) -> Path:
        """A directory beside the spool for files a record carries (a model, plots): the recorder deletes
        it once it has logged them, `discard` if nothing may be recorded."""
        path = self.dir / f"{self.writer.path.stem}-{name.replace(':', '-')}"
        self.scratches.append(path)
        return path

    def check(self) -> None:
        """Raise RecordingError if the recorder could not use the store (fail fast, before more work)."""
        if self.error:
            raise RecordingError(self.error, opened=self.status == "ready")

    def wait_reachable(self) -> None:
        """Block until the recorder has found that the store answers (milliseconds after its start: it checks
        before it imports MLflow), or raise RecordingError: a sweep does not count a trial as done on a store
        that does not answer."""
        while self.proc is not None and self.status == "starting" and not self.error and self.proc.poll() is None:
            time.sleep(0.005)
        if self.proc is not None and self.proc.poll() is not None:
            self.listener.join(10)
        self.check()

    def finish(self, timeout: float | None = None) -> None:
        """Close the spool and wait until the recorder has put everything in the store (a recorder that was
        killed meanwhile is started again once: it records the rest, exactly once)."""
        self.writer.close()
        if self.proc is None:
            return
        t0 = time.monotonic()
        try:
            self._drain(timeout)
        finally:
            self.waited += time.monotonic() - t0

    def _drain(self, timeout: float | None) -> None:
        assert self.proc is not None
        for attempt in (1, 2):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                raise RecordingError(f"the tracking store {self.uri} has not taken every record after {timeout:.0f} "
                                     f"s; they wait in {self.dir} and the next nnexp command records them") from None
            self.listener.join(10)  # the status thread reads the recorder's last lines, to the end
            if self.proc.returncode >= 0 or attempt == 2:
                break
            self.proc = self._start()  # killed (SIGKILL, OOM): another one drains what is left
        self.check()
        if self.proc.returncode:
            raise RecordingError(f"the recorder stopped with exit code {self.proc.returncode}; the records wait in "
                                 f"{self.dir} and the next nnexp command records them")

    def end_after(self, key: str, experiment: str, status: str, reason: str) -> None:
        """The command failed or was interrupted while run `key` was open: end it with `status` and the
        reason, and wait for the recorder; if the store never opened, nothing of it is recorded."""
        if self.error and self.status != "ready":
            self.discard()
            return
        try:
            self.writer.write({"op": "run", "key": key, "experiment": experiment, "status": status,
                               "tags": {"nnexp.failure_reason": reason}, "ts": int(time.time() * 1000)})
            self.finish()
        except (RecordingError, OSError, ConfigError):
            pass  # the error on its way up says what happened; the spool keeps what was written

    def discard(self) -> None:
        """Nothing of this command may be recorded (bad input found after the start): drop the spool."""
        self.writer.close(discard=True)
        for path in self.scratches:
            shutil.rmtree(path, ignore_errors=True)
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
            self.proc.wait()
