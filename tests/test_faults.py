"""Fault injection on the stores: a journal record torn at the end or in the middle, a full disk while
a store is created or written (simulated everywhere, and on a real 2-16 MiB tmpfs where mount is
permitted), two processes creating one new store, a read-only store. After each fault: every trial
finished before it is still readable and unchanged, a resumed sweep ends with exactly n_trials, no
MLflow run is RUNNING, and each store opens."""

import errno
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import optuna
import pytest
from conftest import ROOT, run_script
from helpers import FINAL, assert_complete_and_unique, assert_nothing_running, run_sweep
from helpers import load_study as load
from helpers import sweep_args as args_for
from mlflow import MlflowClient
from optuna.storages.journal import JournalFileBackend
from sqlalchemy import event
from sqlalchemy.engine import Engine

from nnexp import cli, config, runner
from nnexp.errors import StoreError
from nnexp.interrupts import handled
from nnexp.recording.store import Store
from nnexp.sweeps import journal, trial_log
from nnexp.sweeps import storage as studies


def sweep_args(tmp, n, *extra):
    # grace 3 s: a trial a fault left RUNNING is reclaimed by the resume within seconds, not 2 minutes
    return args_for(tmp, "sweep.confirm_seeds=[]", "sweep.heartbeat.interval=0.5", "sweep.heartbeat.grace=3", *extra,
                    n=n, population=4, epochs=30)


def finished(tmp):
    return {t.number: (t.state.name, t.value, t.params) for t in load(tmp).trials if t.state.name in FINAL}


def assert_whole(tmp, n, before=None):
    """Exactly n trials and one run each, nothing RUNNING, the trials finished `before` the fault
    unchanged, and both stores open."""
    assert_complete_and_unique(tmp, n)
    assert_nothing_running(tmp)
    now = finished(tmp)
    assert all(now[k] == v for k, v in (before or {}).items())
    Store(f"sqlite:///{tmp / 'mlflow.db'}").experiment("nnexp-sweep")


@pytest.fixture
def cli_exit(capsys):
    """Run a command line entry point in this process: (exit code, stderr)."""
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def call(fn, *args):
        with pytest.raises(SystemExit) as info:
            fn(list(args))
        return info.value.code, " ".join(capsys.readouterr().err.split())

    yield call
    handled()
    for s, h in old.items():
        signal.signal(s, h)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A finished 8-trial sweep; a test that damages it works on a copy (`copy_of`)."""
    tmp = tmp_path_factory.mktemp("swept")
    run_sweep(sweep_args(tmp, 8))
    return tmp


def copy_of(swept, tmp_path):
    for src in swept.iterdir():
        if src.name.endswith(("-wal", "-shm")):
            continue
        if src.suffix == ".db":  # this process may hold it open: SQLite's backup copies it whole
            with sqlite3.connect(src) as a, sqlite3.connect(tmp_path / src.name) as b:
                a.backup(b)
        elif src.is_dir():
            shutil.copytree(src, tmp_path / src.name)
        else:
            shutil.copy2(src, tmp_path / src.name)
    return tmp_path


def tear(path, how):
    """Leave the journal as a crash or a full disk in the middle of its last write does."""
    size = path.stat().st_size
    if how == "cut short":  # the last record's end never reached the disk
        os.truncate(path, size - 25)
    elif how == "written over":  # ... and Optuna's own append (nnexp before the repair) landed on it
        os.truncate(path, size - 25)
        JournalFileBackend(str(path)).append_logs([{"op_code": 9, "worker_id": "w", "trial_id": 0,
                                                    "system_attr": {"k": 1}}])
    else:  # a power cut can leave a file's last blocks zero-filled
        with open(path, "ab") as f:
            f.write(bytes(300))


@pytest.mark.parametrize("how", ["cut short", "written over", "zeros"])
def test_a_torn_journal_tail_is_cut_off_and_the_sweep_resumes(swept, tmp_path, capsys, how):
    copy_of(swept, tmp_path)
    before, journal = finished(tmp_path), tmp_path / "optuna.log"
    whole = journal.read_bytes()
    tear(journal, how)
    torn = journal.read_bytes()
    capsys.readouterr()
    run_sweep(sweep_args(tmp_path, 12))
    err = capsys.readouterr().err
    assert re.search(r"journal .*optuna.log: its last record was torn .*cut off at byte \d+", err), err
    aside = list(tmp_path.glob("optuna.log.torn-*"))
    assert len(aside) == 1
    cut = int(re.search(r"cut off at byte (\d+)", err).group(1))
    assert torn[cut:] == aside[0].read_bytes() and whole.startswith(torn[:cut])  # nothing else was touched
    assert_whole(tmp_path, 12, before)


def test_a_torn_record_in_the_middle_is_refused_and_cutting_there_resumes(swept, tmp_path):
    """Optuna's own append after a torn record, twice (what a sweep did before the repair): the
    torn record is no longer the last one, so nnexp refuses, naming the file and the byte to cut at."""
    copy_of(swept, tmp_path)
    before, journal = finished(tmp_path), tmp_path / "optuna.log"
    tear(journal, "written over")
    start = journal.read_bytes().rstrip(b"\n").rfind(b"\n") + 1  # where the torn record begins
    JournalFileBackend(str(journal)).append_logs([{"op_code": 9, "worker_id": "w", "trial_id": 0,
                                                   "system_attr": {"k": 2}}])
    damaged = journal.read_bytes()
    with pytest.raises(StoreError, match=rf"record \d+ of the journal {re.escape(str(journal))}, at byte {start}, "
                                         r"is not a whole record.*truncate -s \d+"):
        run_sweep(sweep_args(tmp_path, 12))
    assert journal.read_bytes() == damaged  # refused, not repaired
    os.truncate(journal, start)  # what the message says to do
    run_sweep(sweep_args(tmp_path, 12))
    assert_whole(tmp_path, 12, before)


class FailingOs:
    """The os module, except that writes to the journal fail with ENOSPC after writing half of the
    first one (what a disk that fills up mid-write does)."""

    def __init__(self):
        self.full = False

    def __getattr__(self, name):
        return getattr(os, name)

    def write(self, fd, data):
        if not self.full:
            return os.write(fd, data)
        if len(data) > 1:
            os.write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_journal_append_the_disk_cut_short_is_taken_back(tmp_path, monkeypatch):
    storage = studies.open_storage(f"journal:{tmp_path / 'optuna.log'}")
    study = optuna.create_study(study_name="s", storage=storage)
    study.set_user_attr("a", 1)
    size = (tmp_path / "optuna.log").stat().st_size
    fake = FailingOs()
    monkeypatch.setattr(journal, "os", fake)
    fake.full = True
    with pytest.raises(OSError, match=r"No space left on device.*optuna.log"):
        study.set_user_attr("b", 2)
    assert (tmp_path / "optuna.log").stat().st_size == size  # the half record was taken back
    fake.full = False
    study.set_user_attr("c", 3)
    reopened = optuna.load_study(study_name="s", storage=studies.open_storage(
        f"journal:{tmp_path / 'optuna.log'}"))
    assert reopened.user_attrs == {"a": 1, "c": 3}


class PageLimit:
    """Simulated full disk for SQLite: connections opened to a file whose name starts with a key of
    `limits` may not grow it beyond that many pages (SQLite then fails as on a full disk: "database or
    disk is full"); `connections` holds every SQLite connection opened meanwhile."""

    def __init__(self):
        self.limits, self.connections = {}, []

    def __call__(self, dbapi_connection, record):
        self.connections.append(dbapi_connection)
        db = dbapi_connection.execute("PRAGMA database_list").fetchone()[2]
        for name, pages in self.limits.items():
            if os.path.basename(db).startswith(name):
                dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")


@pytest.fixture
def page_limit():
    limit = PageLimit()
    event.listen(Engine, "connect", limit)
    yield limit
    event.remove(Engine, "connect", limit)


@pytest.mark.parametrize("store", ["mlflow", "optuna"])
def test_a_full_disk_while_a_new_store_is_created_leaves_no_store(tmp_path, page_limit, store):
    """Simulated: the migration stops midway (MLflow's store has ~233 pages, Optuna's 28). Migrated in
    place, the half-made store then failed every later run ("table secrets already exists")."""
    name, pages = ("mlflow.db", 100) if store == "mlflow" else ("optuna.db", 14)
    url = f"sqlite:///{tmp_path / name}"
    page_limit.limits[name] = pages

    def use():
        if store == "mlflow":
            s = Store(url)
            exp = s.experiment("x")
            s.end(s.create(exp, "k", "after", {}, None, None), "FINISHED")
            return [r.info.status for r in s.client.search_runs([exp])]
        study = optuna.create_study(study_name="s", storage=studies.open_storage(url))
        study.tell(study.ask(), 1.0)
        return [t.state.name for t in study.trials]

    with pytest.raises(StoreError, match=rf"could not create the new .* {re.escape(str(tmp_path / name))}: the disk "
                                         r"is full .*Nothing was written.*Free some space"):
        use()
    assert sorted(os.listdir(tmp_path)) == []  # not even a temporary file
    page_limit.limits.clear()
    assert use() == (["FINISHED"] if store == "mlflow" else ["COMPLETE"])


@pytest.fixture
def tmpfs(tmp_path):
    """mount(name, size) -> a directory on a tmpfs of that size (a disk that really fills up), and
    resize(directory, size); skipped where mounting is not permitted."""
    mounted = []
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the simulated variant of this test runs instead")

    def mount(name, size):
        d = tmp_path / name
        d.mkdir()
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True,
                             text=True)
        if out.returncode:
            pytest.skip(f"mount is not permitted here ({out.stderr.strip()}); the simulated variant runs instead")
        mounted.append(d)
        return d

    def resize(d, size):
        subprocess.run(["mount", "-o", f"remount,size={size}", str(d)], check=True)

    yield mount, resize
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], check=False)


def fill(directory):
    """Take every free byte of the disk holding `directory`."""
    with open(directory / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(bytes(1 << 16))
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return directory / "filler"


def test_a_full_tmpfs_while_a_new_mlflow_store_is_created(tmp_path, tmpfs):
    """A new store needs 4-8 MiB while it is migrated (its write-ahead log), 0.95 MiB after."""
    mount, resize = tmpfs
    disk = mount("disk", "2m")
    store = f"tracking.uri=sqlite:///{disk / 'mlflow.db'}"
    out = run_script("train.py", store, "trainer.epochs=5", "tracking.plots=false", "tracking.log_model=false")
    err = " ".join(out.stderr.split())
    assert out.returncode == 2 and "Traceback" not in err, err
    assert f"could not create the new MLflow store {disk / 'mlflow.db'}: the disk is full" in err, err
    assert "Nothing was written" in err and os.listdir(disk) == []
    resize(disk, "16m")  # space freed
    s = runner.run(config.compose([store, "trainer.epochs=5", "tracking.plots=false", "tracking.log_model=false"]),
                   progress=False)
    client = MlflowClient(f"sqlite:///{disk / 'mlflow.db'}")
    assert [r.info.status for r in client.search_runs([client.get_experiment_by_name("nnexp").experiment_id])] == [
        s.status] == ["FINISHED"]


CREATE = """
import os, sys, time
kind, url, sync = sys.argv[1], sys.argv[2], sys.argv[3]
from nnexp.recording.store import Store
from nnexp.sweeps.storage import open_storage
import optuna
open(os.path.join(sync, f"ready-{os.getpid()}"), "w").close()
while not os.path.exists(os.path.join(sync, "go")):
    time.sleep(0.001)
if kind == "mlflow":
    s = Store(url)
    exp = s.experiment("x")
    s.end(s.create(exp, f"k{os.getpid()}", "r", {}, None, None), "FINISHED")
else:
    study = optuna.create_study(study_name="s", storage=open_storage(url), load_if_exists=True)
    study.tell(study.ask(), 1.0)
"""


@pytest.mark.slow
@pytest.mark.parametrize("store", ["mlflow", "optuna"])
def test_two_processes_creating_one_new_store_both_use_it(tmp_path, store):
    """Both start creating at the same moment; the one that finishes first places its store, the other
    drops its own copy and uses it. Migrating in place, one of the two failed in 3 of 3 tries
    ("duplicate column name: step", or alembic's "expected to match one row")."""
    stores = tmp_path / "stores"
    stores.mkdir()
    url = f"sqlite:///{stores / 'store.db'}"
    procs = [subprocess.Popen([sys.executable, "-c", CREATE, store, url, str(tmp_path)], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    end = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < 2 and time.monotonic() < end:  # both have imported everything
        time.sleep(0.01)
    (tmp_path / "go").touch()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    names = os.listdir(stores)
    assert "store.db" in names and not [n for n in names if ".new-" in n], names  # no temporary copy left
    if store == "mlflow":
        client = MlflowClient(url)
        assert [r.info.status for r in client.search_runs([client.get_experiment_by_name("x").experiment_id])] == [
            "FINISHED"] * 2
    else:
        study = optuna.load_study(study_name="s", storage=studies.open_storage(url))
        assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2


def read_only(directory):
    """Make `directory` read-only for this process: its mode bits for a user, a read-only bind mount for
    root (whom mode bits do not stop). Returns the path to use and an undo."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [directory, *directory.iterdir()]}
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        return directory, lambda: [p.chmod(m) for p, m in modes.items()]
    view = directory.parent / "read-only"
    view.mkdir()
    out = subprocess.run(["mount", "--bind", "-o", "ro", str(directory), str(view)], capture_output=True, text=True)
    if out.returncode:
        pytest.skip(f"root, and a read-only bind mount is not permitted here ({out.stderr.strip()})")
    return view, lambda: subprocess.run(["umount", "-l", str(view)], check=False)


def test_a_read_only_store_is_refused_before_anything_is_written(swept, tmp_path, cli_exit):
    stores = tmp_path / "stores"
    stores.mkdir()
    before = finished(copy_of(swept, stores))
    view, undo = read_only(stores)
    try:
        code, err = cli_exit(cli.run_sweep, *sweep_args(view, 12))
        assert code == 2 and "Traceback" not in err, err
        assert re.search(rf"sweep.storage.*{view}/optuna.log (cannot be written: its file .* (is on a read-only file "
                         r"system|is not writable for this user)\. Nothing was recorded|cannot be read and written by "
                         r"this user)", err), err  # refused by the settings' check or by the store's own
        code, err = cli_exit(cli.run_train, f"tracking.uri=sqlite:///{view / 'mlflow.db'}", "trainer.epochs=5")
        assert code == 2 and "Traceback" not in err and f"the MLflow store {view}/mlflow.db cannot be written" in err
    finally:
        undo()
    run_sweep(sweep_args(stores, 12))
    assert_whole(stores, 12, before)


def fill_after(monkeypatch, calls, fault):
    """Bring on `fault()` when the sweep records its `calls`-th trial."""
    real, seen = trial_log.TrialLog.finish, []

    def finish(self, *args, **kwargs):
        seen.append(1)
        if len(seen) == calls:
            fault()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(trial_log.TrialLog, "finish", finish)


def test_a_full_disk_during_a_sweep_stops_it_cleanly_and_it_resumes_simulated(swept, tmp_path, monkeypatch,
                                                                            page_limit, cli_exit):
    """Both stores fill up when the 10th trial is recorded: journal writes fail with ENOSPC after a
    partial write, the MLflow store cannot grow. The sweep stops with one paragraph; the resume (once
    space is back) finishes exactly n_trials, re-running what the fault left RUNNING."""
    copy_of(swept, tmp_path)
    fake = FailingOs()
    monkeypatch.setattr(journal, "os", fake)

    def disk_full(full=True):
        fake.full = full
        for c in page_limit.connections:
            try:
                if c.execute("PRAGMA database_list").fetchone()[2].endswith("mlflow.db"):
                    pages = c.execute("PRAGMA page_count").fetchone()[0]
                    c.execute(f"PRAGMA max_page_count = {pages if full else 2 ** 30}")
            except sqlite3.ProgrammingError:  # closed since
                pass

    fill_after(monkeypatch, 2, disk_full)
    code, err = cli_exit(cli.run_sweep, *sweep_args(tmp_path, 12))
    assert code == 2 and "Traceback" not in err, err
    assert re.search(r"(sweep.storage: the store .*optuna.log|tracking.uri: the store .*mlflow.db) cannot be written: "
                     r"the disk is full\. Trials in progress went back to WAITING", err), err
    assert (tmp_path / "optuna.log").read_bytes().endswith(b"\n")  # no half record
    before = finished(tmp_path)
    assert len(before) == 9
    disk_full(False)
    monkeypatch.undo()
    run_sweep(sweep_args(tmp_path, 12))
    assert_whole(tmp_path, 12, before)


def test_a_full_tmpfs_during_a_sweep_stops_it_cleanly_and_it_resumes(swept, tmpfs, monkeypatch, cli_exit):
    """A real full disk when the 10th trial is recorded. The stores' reserves (1 MiB each) are given up
    so that the runs and trials in progress are closed: nothing is left RUNNING even before the resume."""
    mount, _ = tmpfs
    disk = copy_of(swept, mount("disk", "16m"))
    filler = []
    fill_after(monkeypatch, 2, lambda: filler.append(fill(disk)))
    monkeypatch.setenv("NNEXP_DRAIN_GRACE", "2")  # the recorder holds the records it cannot write, briefly
    code, err = cli_exit(cli.run_sweep, *sweep_args(disk, 12))
    assert code == 2 and "Traceback" not in err, err
    where = re.escape(str(disk))
    assert re.search(rf"(the store|the spool) \S*{where}/\S+ cannot be written: the disk is full", err), err
    before = finished(disk)
    assert len(before) >= 9  # the trials finished before the disk filled, and one whose record was written
    assert not [t for t in load(disk).trials if t.state.name == "RUNNING"]
    filler[0].unlink()
    monkeypatch.undo()
    run_sweep(sweep_args(disk, 12))
    assert_whole(disk, 12, before)


def test_a_disk_that_fills_while_a_run_trains_keeps_its_records_for_the_next_command(tmp_path, tmpfs, monkeypatch):
    """The store's disk fills up while a run trains (the run was created already): the recorder holds its
    records (training goes on), the command ends with one paragraph saying where they wait, and once
    space is freed the next command records them: the run ends FINISHED, nothing is lost."""
    mount, _ = tmpfs
    disk = mount("disk", "16m")
    store = f"tracking.uri=sqlite:///{disk / 'mlflow.db'}"
    assert run_script("train.py", store, "trainer.epochs=3", "tracking.log_model=false").returncode == 0
    proc = subprocess.Popen([sys.executable, str(ROOT / "experiments" / "train.py"), store, "trainer.epochs=400",
                             "trainer.batch_size=4", "tracking.log_model=false", "tracking.plots=false"], cwd=ROOT,
                            text=True,
                            env={**os.environ, "CI": "1", "NNEXP_DRAIN_GRACE": "2"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    client = MlflowClient(f"sqlite:///{disk / 'mlflow.db'}")
    exp = client.get_experiment_by_name("nnexp").experiment_id
    end = time.monotonic() + 120
    while time.monotonic() < end and len(client.search_runs([exp])) < 2:  # the second run exists: now fill
        time.sleep(0.2)
    filler = fill(disk)
    out, err = proc.communicate(timeout=300)
    err = " ".join(err.split())
    assert proc.returncode in (1, 2) and "Traceback" not in err, err
    assert "next nnexp command records them" in err, err
    filler.unlink()
    assert run_script("train.py", store, "trainer.epochs=3", "tracking.log_model=false").returncode == 0
    runs = client.search_runs([exp])  # the one that could not be recorded to its end: up to there, and why
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED", "FINISHED"]
    failed = next(r for r in runs if r.info.status == "FAILED")
    assert "cannot be written: the disk is full" in failed.data.tags["nnexp.failure_reason"]
