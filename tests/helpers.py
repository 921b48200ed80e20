"""Helpers shared by the test modules (test modules never import each other)."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import optuna
from conftest import ROOT
from mlflow import MlflowClient

from nnexp.config import compose, with_default_group
from nnexp.engine.loop import Callback
from nnexp.sweeps import run as sweep_run
from nnexp.sweeps.storage import open_storage

FINAL = ("COMPLETE", "PRUNED", "FAIL")


def sweep_args(tmp_path: Path, *extra: str, name: str = "t", n: int = 8, population: int = 4,
               epochs: int = 20) -> list[str]:
    """A small, fast sweep on stores under tmp_path."""
    startup = [] if "sweep.sampler.name=random" in extra else ["sweep.sampler.n_startup_trials=4"]
    return [f"sweep.study_name={name}", f"sweep.storage=journal:{tmp_path / 'optuna.log'}",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", f"sweep.n_trials={n}",
            f"sweep.population={population}", f"trainer.epochs={epochs}", "sweep.confirm_seeds=[1,2,3]",
            *startup, f"sweep.eval_every={10 if epochs >= 100 else 2}", *extra]


def run_sweep(args: list[str]):
    args = with_default_group(args, "sweep", "default")
    return sweep_run.run(compose(args), args)


def load_study(tmp_path: Path, name: str = "t") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(f"journal:{tmp_path / 'optuna.log'}"))


def mlflow_runs(store_dir: Path, experiment: str = "nnexp-sweep", uri: str | None = None):
    """The runs of an experiment (none before the store exists: a client here would create it)."""
    if uri is None and not (store_dir / "mlflow.db").exists():
        return None, []
    client = MlflowClient(uri or f"sqlite:///{store_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return client, (client.search_runs([exp.experiment_id], max_results=5000) if exp else [])


def assert_complete_and_unique(tmp_path: Path, n: int, name: str = "t", uri: str | None = None):
    """Exactly n trials in final states, one child run per trial, nothing RUNNING anywhere."""
    study = load_study(tmp_path, name)
    states = collections.Counter(t.state.name for t in study.trials if t.number < n)
    assert sum(states[s] for s in FINAL) == n and not states["RUNNING"], states
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
    client, everything = mlflow_runs(tmp_path, uri=uri)
    trials = [r for r in everything if r.data.tags.get("nnexp.kind") == "trial"]
    numbers = sorted(int(r.data.tags["nnexp.trial_number"]) for r in trials)
    assert numbers == list(range(n)), numbers
    assert not [r for r in everything if r.info.status == "RUNNING"]
    by_number = {t.number: t for t in study.trials}
    for r in trials:  # complete: the record's last step (its status) was applied
        t = by_number[int(r.data.tags["nnexp.trial_number"])]
        assert r.info.status == ("FAILED" if t.state.name == "FAIL" else "FINISHED"), (r.info.run_name, t.state)
        assert r.data.params["trial_number"] == str(t.number)
    return study, trials


def assert_nothing_running(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    if db.exists():
        client = MlflowClient(f"sqlite:///{db}")
        for exp in client.search_experiments():
            assert not [r for r in client.search_runs([exp.experiment_id]) if r.info.status == "RUNNING"]
    journal = tmp_path / "optuna.log"
    if journal.exists():
        storage = open_storage(f"journal:{journal}")
        for s in optuna.get_all_study_summaries(storage):
            trials = optuna.load_study(study_name=s.study_name, storage=storage).trials
            assert not [t for t in trials if t.state.name == "RUNNING"]


def wait_for(predicate, timeout: float = 120.0) -> bool:
    """Poll `predicate` (an exception counts as not yet: a store being created, a file being written)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001
            pass
        time.sleep(0.2)
    return False


def finished_trials(tmp_path: Path, name: str = "t") -> int:
    try:
        return sum(t.state.name in FINAL for t in load_study(tmp_path, name).trials)
    except KeyError:
        return 0


def start(script: str, *args: str, env: dict | None = None) -> subprocess.Popen:
    """experiments/<script> in a subprocess (CI mode: no progress bars)."""
    return subprocess.Popen([sys.executable, str(ROOT / "experiments" / script), *args], cwd=ROOT,
                            env={**os.environ, "CI": "1", **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def recorders_of(pid: int) -> list[int]:
    """The recorder processes a command started (they run in their own session: found by their parent)."""
    out = subprocess.run(["pgrep", "-P", str(pid), "-f", "nnexp.recording.recorder"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """`make <target> ...` in its own process group, stopped with SIGTERM to the group."""

    def __init__(self, *make_args):
        self.proc = subprocess.Popen(["make", "--no-print-directory", *make_args], cwd=ROOT, start_new_session=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def wait_ready(self, url, timeout=120):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise AssertionError(f"server did not start: {self.proc.stdout.read()[-3000:]}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def ablation_args(tmp_path: Path, *extra: str) -> list[str]:
    """A small, fast study (quick, 3 seeds, 25 epochs) on stores under tmp_path."""
    return ["ablation=quick", "ablation.seeds=[0,1,2]", "ablation.baseline=['trainer.epochs=25']",
            f"ablation.report_dir={tmp_path / 'report'}", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            "ablation.force=true", *extra]


def assert_same_run(a, b) -> None:
    """Two replica results bit for bit: status, epochs, every curve and every weight."""
    assert a.status == b.status and a.epochs == b.epochs and a.best_epoch == b.best_epoch
    for k in b.curves:
        np.testing.assert_array_equal(a.curves[k], b.curves[k], err_msg=k)
    for k in b.state:
        np.testing.assert_array_equal(a.state[k], b.state[k], err_msg=k)


class Prune(Callback):
    """Prunes `replica` at `epoch`, and notes which replicas each evaluated epoch saw."""

    def __init__(self, replica: int, epoch: int) -> None:
        self.replica, self.epoch, self.seen = replica, epoch, []

    def on_epoch_end(self, epoch, replicas, metrics):
        self.seen.append(list(replicas))
        return [self.replica] if epoch == self.epoch else None
