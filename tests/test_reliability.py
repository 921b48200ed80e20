"""Trust under real conditions: bad input through every command, interruptions at random points, a
worker killed outright, four workers on one storage, numerical faults, determinism across BLAS threads
and processes. Each test asserts that nothing is lost: no MLflow run and no Optuna trial left RUNNING."""

import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, run_script
from helpers import assert_complete_and_unique, assert_nothing_running, run_sweep, wait_for
from helpers import load_study as load
from helpers import sweep_args as args_for
from mlflow import MlflowClient

from nnexp import cli, config, runner
from nnexp.interrupts import handled

CSV_CASES = {
    "empty": ("", "the file is empty"),
    "non_numeric": ("a,b,y\n" + "1,2,3\n" * 8 + "1,two,3\n", "'two' is not a number"),
    "nan": ("a,b,y\n" + "1,2,3\n" * 8 + "1,nan,3\n", "NaN or infinite"),
    "one_row": ("a,b,y\n1,2,3\n", "too few to split"),
    "huge": ("a,b,y\n" + "1,2,3\n" * 8 + "1,2,1e300\n", "too large to scale"),
    "wrong_column": ("a,b,price\n" + "1,2,3\n" * 9, "data.target = 'y'.*no such column"),
}



@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_bad_csv_files_through_the_train_command(tmp_path, case):
    text, message = CSV_CASES[case]
    (tmp_path / "data.csv").write_text(text)
    out = run_script("train.py", "data=csv", f"data.path={tmp_path / 'data.csv'}", "data.target=y",
                     f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert re.search(message, out.stderr), out.stderr
    assert_nothing_running(tmp_path)


@pytest.fixture
def in_process_cli():
    """Run the sweep/ablation commands in this process (fast), restoring the signal handlers after."""
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def call(fn, *args):
        with pytest.raises(SystemExit) as info:
            fn(list(args))
        return info.value.code

    yield call
    handled()
    for s, h in old.items():
        signal.signal(s, h)


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [("sweep", ["sweep=nosuch"], r"sweep = 'nosuch' is not valid: expected one of architecture, default"),
     ("sweep", ["sweep.n_trials=many"], r"sweep.n_trials = 'many' is not valid"),
     ("sweep", ["optimizer.lr=-1"], r"optimizer.lr = -1 is not valid: expected a learning rate > 0"),
     ("sweep", ["sweep.space.lr.low=="], r"could not parse the override"),
     ("sweep", ["sweep.storage=nowhere"], r"sweep.storage = 'nowhere' is not valid"),
     ("sweep", ["sweep.space.model.choices=[mlp_6_4,mlp_6_4]"], r"distinct scalar choices"),
     ("sweep", ["data=csv", "data.path=/no/such.csv", "data.target=y"], r"data.path = '/no/such.csv'.*no such file"),
     ("ablation", ["ablation=nosuch"],
      r"ablation = 'nosuch' is not valid: expected one of quick, seed_claims, seed_claims_tuned"),
     ("ablation", ["ablation.seeds=[1]"], r"at least 2"),
     ("ablation", ["ablation.variants.deeper.overrides=['model=mlp_9']"], r"ablation.variants.deeper .*mlp_9"),
     ("ablation", ["ablation.variants.deeper=['model=mlp_9']"], r"Error merging override .*Cannot merge"),
     ("ablation", ["ablation.target_mse=-1"], r"ablation.target_mse = -1"),
     ("ablation", ["trainer.batch_size=0"], r"trainer.batch_size = 0 is not valid")],
)
def test_bad_input_through_the_sweep_and_ablation_commands(tmp_path, capsys, in_process_cli, command, args, message):
    stores = [f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"]
    if command == "sweep":
        stores.append(f"sweep.storage=journal:{tmp_path / 'optuna.log'}")
        fn = cli.run_sweep
    else:
        stores += ["ablation=quick", f"ablation.report_dir={tmp_path / 'report'}", "ablation.force=true"]
        fn = cli.run_ablation
    code = in_process_cli(fn, *stores, *args)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert re.search(message, " ".join(err.split())), err
    assert not (tmp_path / "report").exists()
    assert_nothing_running(tmp_path)


def test_numerical_faults_a_constant_target_and_a_constant_feature(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    rows = "\n".join(f"{a},{b},5.0,7.0" for a, b in x)
    (tmp_path / "flat.csv").write_text("a,b,const,y\n" + rows + "\n")
    cfg = config.compose(["data=csv", f"data.path={tmp_path / 'flat.csv'}", "data.target=y",
                          "trainer.epochs=5", "trainer.batch_size=1", "tracking.plots=false",
                          "tracking.log_model=false", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"])
    s = runner.run(cfg, progress=False)
    assert s.status == "FINISHED"
    assert "test_r2" not in s.metrics and np.isfinite(s.metrics["test_mse"])  # undefined, not NaN
    assert "test undefined" in runner.summary_text(s).replace("   ", " ")
    run = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(s.run_id)
    assert "test" in run.data.tags["nnexp.r2_undefined"] and "test_r2" not in run.data.metrics


def assert_killed_cleanly(tmp_path, code, err):
    """Interrupted: exit 130, or finished first (0), or ended by the signal's default action while the
    interpreter starts or shuts down (before or after any record): in every case nothing is RUNNING."""
    assert code in (0, 130) or code < 0, (code, err)
    assert_nothing_running(tmp_path)


def interrupt_at(cmd, env, delay, sig):
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "CI": "1", **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=180)
    assert "Traceback" not in err, err
    return proc.returncode, err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_run_interrupted_anywhere_ends_killed_or_finished(tmp_path, sig):
    delay = random.Random(int(sig)).uniform(0.5, 5.0)  # during imports, training or logging
    store = f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"
    code, err = interrupt_at([sys.executable, "experiments/train.py", store, "trainer.epochs=3000"], {}, delay, sig)
    assert_killed_cleanly(tmp_path, code, err)
    assert run_script("train.py", store, "trainer.epochs=20").returncode == 0
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    statuses = [r.info.status for r in client.search_runs([client.get_experiment_by_name("nnexp").experiment_id])]
    assert "FINISHED" in statuses and set(statuses) <= {"FINISHED", "KILLED"}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_ablation_interrupted_anywhere_leaves_nothing_running(tmp_path, sig):
    delay = random.Random(10 + int(sig)).uniform(1.0, 6.0)
    args = ["ablation=quick", f"ablation.report_dir={tmp_path / 'report'}", "ablation.force=true",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"]
    code, err = interrupt_at([sys.executable, "experiments/ablation.py", *args], {}, delay, sig)
    assert_killed_cleanly(tmp_path, code, err)
    out = run_script("ablation.py", *args)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "report" / "REPORT.md").exists()


@pytest.mark.slow
def test_a_killed_worker_does_not_hold_its_trials_forever(tmp_path):
    args = args_for(tmp_path, "sweep.workers=2", "sweep.heartbeat.interval=0.5", "sweep.heartbeat.grace=3",
                    "sweep.confirm_seeds=[]", "sweep.pruner.name=none", n=16, population=2, epochs=800)
    coordinator = subprocess.Popen([sys.executable, "experiments/sweep.py", *args], cwd=ROOT, text=True,
                                   env={**os.environ, "CI": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def worker_pid():
        out = subprocess.run(["pgrep", "-P", str(coordinator.pid), "-f", "sweep.py --worker"], capture_output=True,
                             text=True)
        return int(out.stdout.split()[0]) if out.stdout.split() else None

    def worker_is_training():
        pid = worker_pid()
        try:
            trials = load(tmp_path).trials
        except KeyError:
            return False
        return pid is not None and any(t.state.name == "RUNNING" and t.system_attrs.get("nnexp:worker", "").endswith(
            f":{pid}") for t in trials)

    assert wait_for(worker_is_training, timeout=120), coordinator.communicate()
    os.kill(worker_pid(), signal.SIGKILL)
    out, err = coordinator.communicate(timeout=300)
    assert coordinator.returncode == 0, err
    assert_complete_and_unique(tmp_path, 16)
    assert_nothing_running(tmp_path)


@pytest.mark.slow
def test_four_workers_on_the_embedded_storage(tmp_path):
    """The multi-machine path on one machine: `make sweep` starts the study, four `make sweep-worker`
    processes started together share it, and `make sweep` again reports (nothing left to run)."""
    args = args_for(tmp_path, "sweep.confirm_seeds=[]", n=32, population=2, epochs=200)
    assert run_script("sweep.py", *[a for a in args if not a.startswith("sweep.n_trials")],
                      "sweep.n_trials=1").returncode == 0
    workers = [subprocess.Popen([sys.executable, "experiments/sweep.py", f"--worker={i}", *args], cwd=ROOT,
                                env={**os.environ, "CI": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for i in range(1, 5)]
    for w in workers:
        out, err = w.communicate(timeout=300)
        assert w.returncode == 0 and "database is locked" not in err and "Traceback" not in err, err
    out = run_script("sweep.py", *args)
    assert out.returncode == 0, out.stderr
    _, trials = assert_complete_and_unique(tmp_path, 32)
    assert len({r.data.tags["nnexp.population"].split(":")[1] for r in trials}) >= 3  # the workers shared it


def final_metrics_of(tmp_path, env):
    store = f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_script("train.py", store, "trainer.epochs=40", "tracking.plots=false", "tracking.log_model=false",
                     env=env)
    assert out.returncode == 0, out.stderr
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    latest = client.search_runs([client.get_experiment_by_name("nnexp").experiment_id], order_by=["start_time DESC"])[0]
    return {k: v for k, v in latest.data.metrics.items()}


def test_the_same_run_on_one_and_two_blas_threads_gives_the_same_metrics(tmp_path):
    one = final_metrics_of(tmp_path, {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    two = final_metrics_of(tmp_path, {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"})
    assert one == two


def test_a_sweep_trial_in_a_worker_equals_the_same_run_alone(tmp_path):
    run_sweep(args_for(tmp_path, "sweep.confirm_seeds=[]", n=3, population=3, epochs=15))
    study = load(tmp_path)
    base = study.trials[0]
    alone = runner.run(config.compose([f"tracking.uri=sqlite:///{tmp_path / 'alone.db'}", "trainer.epochs=15",
                                         "tracking.plots=false", "tracking.log_model=false"]), progress=False)
    assert base.user_attrs["nnexp"]["metrics"]["test_r2"] == alone.metrics["test_r2"]
    assert base.value == alone.metrics["val_r2"]
