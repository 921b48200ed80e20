"""Recording off the training path: the spool and the recorder lose nothing and record every record
exactly once, whatever is killed when; a store that cannot be opened fails the command at once."""

import os
import random
import signal
import time

import pytest
from conftest import ROOT, run_script
from helpers import (
    Served,
    assert_complete_and_unique,
    assert_nothing_running,
    finished_trials,
    free_port,
    mlflow_runs,
    recorders_of,
    start,
    sweep_args,
    wait_for,
)

from nnexp.recording import Recording, records
from nnexp.recording.spool import spool_dir, spool_files


def test_records_reach_the_store_exactly_once_after_the_recorder_is_killed_midway(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    os.environ.pop("NNEXP_RECORDING_SESSION", None)
    keys = [f"run:{i}" for i in range(40)]
    for attempt in range(3):  # kill the recorder at several points of its work
        rec = Recording(uri)
        if attempt == 0:
            for k in keys:
                rec.write(records.run(k, "x", name=k, params={"i": k}, metrics=[["m", 1.0, s] for s in range(50)],
                                      status="FINISHED"))
        time.sleep(random.Random(attempt).uniform(1.0, 4.0))
        if rec.proc.poll() is None:
            rec.proc.kill()
            rec.proc.wait()
        rec.writer.close()
    Recording(uri).finish()  # the next command's recorder replays what is left
    client, found = mlflow_runs(tmp_path, "x")
    assert sorted(r.data.tags["nnexp.key"] for r in found) == sorted(keys)
    assert all(r.info.status == "FINISHED" and len(client.get_metric_history(r.info.run_id, "m")) == 50
               for r in found)
    assert not spool_files(tmp_path / ".nnexp-spool")


def test_a_copy_of_the_store_file_alone_holds_every_run_once_the_command_has_ended(tmp_path):
    """The recorder exits without the interpreter's teardown; the write-ahead log is moved into mlflow.db first."""
    import shutil
    import sqlite3

    os.environ.pop("NNEXP_RECORDING_SESSION", None)
    rec = Recording(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for k in ("run:a", "run:b"):
        rec.write(records.run(k, "x", name=k, metrics=[["m", 1.0, s] for s in range(200)], status="FINISHED"))
    rec.finish()
    (tmp_path / "copy").mkdir()
    shutil.copy(tmp_path / "mlflow.db", tmp_path / "copy" / "mlflow.db")
    db = sqlite3.connect(tmp_path / "copy" / "mlflow.db")
    assert db.execute("SELECT name, status FROM runs ORDER BY name").fetchall() == [("run:a", "FINISHED"),
                                                                                    ("run:b", "FINISHED")]
    assert db.execute("SELECT count(*) FROM metrics").fetchone() == (400,)


def test_a_recorder_started_early_exits_having_opened_nothing_when_its_command_names_no_store(tmp_path):
    """`make train` starts its recorder before it composes its config; bad input then ends the command."""
    from nnexp import recording

    proc = recording._spawn([])
    proc.stdin.close()  # what the command's exit does
    assert proc.wait(60) == 0 and proc.stdout.read() == ""  # not even `reachable`: no store was looked at


def test_a_recorder_that_cannot_use_what_it_was_told_says_so_and_exits():
    """Its main thread waits for the store's name: a line it cannot read must not leave it (and the command
    waiting for it) hanging."""
    from nnexp import recording

    for line in ('["only one"]\n', '["not json\n'):
        proc = recording._spawn([])
        proc.stdin.write(line)
        proc.stdin.close()
        assert proc.wait(60) == 1 and proc.stdout.read().startswith("error ")


@pytest.mark.parametrize("killed", [False, True])
def test_the_recorder_started_early_records_the_command_or_is_replaced_if_it_died(tmp_path, monkeypatch, killed):
    from nnexp import recording

    monkeypatch.delenv("NNEXP_RECORDING_SESSION", raising=False)
    monkeypatch.setattr(recording, "_early", [])
    recording.start_early()
    early = recording._early[0]
    if killed:
        early.kill()
        early.wait()
    rec = Recording(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert (rec.proc is early) != killed and recording._early == []
    rec.write(records.run("run:a", "x", name="a", params={"p": 1}, metrics=[["m", 2.0, 0]], status="FINISHED"))
    rec.finish()
    assert rec.proc.returncode == 0 and rec.status == "done"
    [run] = mlflow_runs(tmp_path, "x")[1]
    assert run.info.status == "FINISHED" and run.data.params == {"p": "1"} and run.data.metrics == {"m": 2.0}


def test_a_store_that_cannot_be_opened_fails_fast_and_records_nothing(tmp_path):
    t0 = time.monotonic()
    out = run_script("train.py", "tracking.uri=http://127.0.0.1:9", "trainer.epochs=5")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "tracking.uri = 'http://127.0.0.1:9': cannot open this tracking store" in " ".join(out.stderr.split())
    assert time.monotonic() - t0 < 60
    assert not spool_files(spool_dir("http://127.0.0.1:9", ROOT)), "nothing waits to be recorded"


@pytest.mark.parametrize("folder", ["", "my runs #1?x%20y"])
def test_a_store_file_that_is_not_a_database_is_refused_before_any_trial_counts(tmp_path, folder):
    """The recorder's check before it imports MLflow (a sweep's first trial waits only for that) also
    refuses a store file that is no SQLite database, and leaves the file as it was — also in a folder
    whose name SQLite's URIs would read as a query or a fragment (that check once opened `my runs `,
    creating an empty file there, and passed)."""
    (tmp_path / folder).mkdir(exist_ok=True)
    db = tmp_path / folder / "mlflow.db"
    db.write_bytes(b"these are my notes, not a database\n" * 200)
    before = db.read_bytes()
    args = [a for a in sweep_args(tmp_path, n=4, epochs=5) if not a.startswith("tracking.")]
    out = run_script("sweep.py", *args, f"tracking.uri='sqlite:///{db}'", "sweep.confirm_seeds=[]")  # Hydra-quoted
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "cannot open this tracking store (DatabaseError: file is not a database)" in " ".join(out.stderr.split())
    assert finished_trials(tmp_path) == 0
    assert db.read_bytes() == before
    assert not spool_files(spool_dir(f"sqlite:///{db}", ROOT)), "nothing waits to be recorded"
    assert not (tmp_path / "my runs ").exists(), "no stray store where the name was cut"


def test_a_sweep_on_a_store_that_cannot_be_opened_leaves_its_trials_waiting(tmp_path):
    args = [a for a in sweep_args(tmp_path, n=4, epochs=5) if not a.startswith("tracking.")]
    out = run_script("sweep.py", *args, "tracking.uri=http://127.0.0.1:9", "sweep.confirm_seeds=[]")
    assert out.returncode == 2 and "cannot open this tracking store" in out.stderr, out.stderr
    assert finished_trials(tmp_path) == 0
    assert_nothing_running(tmp_path)


LONG = ("trainer.epochs=5000", "trainer.batch_size=1", "tracking.plots=false")  # minutes, few curve points


def running(tmp_path):
    return [r for r in mlflow_runs(tmp_path, "nnexp")[1] if r.info.status == "RUNNING"]


def kill_while_running(tmp_path, store: str, recorder_too: bool) -> None:
    """Start a long `make train`, SIGKILL it once its run is RUNNING in the store (its recorder too)."""
    proc = start("train.py", store, *LONG)
    try:
        assert wait_for(lambda: running(tmp_path), 120)
    finally:
        for pid in recorders_of(proc.pid) if recorder_too else ():
            os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_a_sigkilled_run_is_marked_killed_with_its_reason(tmp_path):
    kill_while_running(tmp_path, f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", recorder_too=False)
    # the command died; its recorder drains the spool and ends the run it left open
    assert wait_for(lambda: not running(tmp_path), 60)
    run = mlflow_runs(tmp_path, "nnexp")[1][0]
    assert run.info.status == "KILLED" and "died without ending it" in run.data.tags["nnexp.failure_reason"]


@pytest.mark.slow
def test_a_sigkilled_run_and_recorder_are_cleaned_up_by_the_next_command(tmp_path):
    store = f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"
    kill_while_running(tmp_path, store, recorder_too=True)
    assert run_script("train.py", store, "trainer.epochs=5", "tracking.log_model=false").returncode == 0
    statuses = sorted(r.info.status for r in mlflow_runs(tmp_path, "nnexp")[1])
    assert statuses == ["FINISHED", "KILLED"]


@pytest.mark.slow
@pytest.mark.parametrize("target", ["worker", "recorder"])
def test_a_sweep_killed_anywhere_ends_with_one_complete_child_run_per_trial(tmp_path, target):
    args = sweep_args(tmp_path, "sweep.confirm_seeds=[]", n=24, population=4, epochs=60)
    proc = start("sweep.py", *args)
    at = random.Random(target).randint(3, 14)
    assert wait_for(lambda: finished_trials(tmp_path) >= at, 180), proc.communicate()
    if target == "worker":
        proc.kill()
        proc.wait()
    else:  # the command notices its recorder died, starts another, which records the rest exactly once
        for pid in recorders_of(proc.pid):
            os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    out = run_script("sweep.py", *args, timeout=600)
    assert out.returncode == 0, out.stderr
    assert_complete_and_unique(tmp_path, 24)


@pytest.mark.slow
def test_a_tracking_server_stopped_mid_sweep_and_started_again_loses_nothing(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_args = ("server", f"SERVER_PORT={port}", f"SERVER_DIR={tmp_path / 'server'}")
    server = Served(*server_args)
    server.wait_ready(url)
    args = [a for a in sweep_args(tmp_path, "sweep.confirm_seeds=[]", n=32, population=4, epochs=80)
            if not a.startswith("tracking.")]
    proc = start("sweep.py", *args, env={"MLFLOW_TRACKING_URI": url})
    try:
        assert wait_for(lambda: finished_trials(tmp_path) >= 8, 180), proc.communicate()
        server.stop()
        time.sleep(8)  # training goes on; the recorder holds the records
        server = Served(*server_args)
        server.wait_ready(url)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert "does not answer" in err and "answers again" in err
        assert_complete_and_unique(tmp_path, 32, uri=url)
    finally:
        server.stop()
        if proc.poll() is None:
            proc.kill()


def test_the_preflight_refuses_only_a_server_that_does_not_answer():
    """The check before MLflow's import must not refuse what MLflow would open: a server behind a proxy or a
    path prefix (its /health a 404) answers; a port nobody listens on does not."""
    import http.server
    import threading

    from nnexp.recording.reach import StoreGone, preflight

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        preflight(f"http://127.0.0.1:{server.server_port}/mlflow")
    finally:
        server.shutdown()
    with pytest.raises(StoreGone, match="cannot open this tracking store"):
        preflight(f"http://127.0.0.1:{free_port()}")


def test_the_recorder_imports_the_figure_code_ahead_only_for_a_run_that_will_draw(tmp_path):
    """Warming up matplotlib while idle helps a sweep's end; in a `make train` (which draws its own plots)
    it would only cost the other core and could delay the run's last record."""
    from nnexp.recording.recorder import Recorder

    r = Recorder(tmp_path, "s", f"sqlite:///{tmp_path / 'm.db'}")
    r.idle_since -= 10
    r.warm_up()
    assert not r.warm
    r.figures_later = True
    r.warm_up()
    assert r.warm
