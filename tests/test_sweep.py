"""`make sweep`: trials in Optuna and MLflow, the baseline, pruning, failures, resume, workers, bad configs."""

import json
import math
import os
import signal
import subprocess
import sys
import uuid

import numpy as np
import optuna
import pytest
from conftest import ROOT, run_script
from helpers import (
    FINAL,
    assert_complete_and_unique,
    finished_trials,
    mlflow_runs,
    run_sweep,
    wait_for,
)
from helpers import load_study as load
from helpers import sweep_args as args_for

from nnexp.errors import ConfigError
from nnexp.sweeps.storage import open_storage


def runs(tmp_path):
    client, found = mlflow_runs(tmp_path)
    return client, found


def trial_runs(tmp_path):
    client, found = mlflow_runs(tmp_path)
    return client, [r for r in found if r.data.tags.get("nnexp.kind") == "trial"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    args = args_for(tmp, "sweep.pruner.n_warmup_steps=4", "sweep.pruner.interval=4",
                    "sweep.pruner.n_startup_trials=2", n=12, population=4, epochs=24)
    return tmp, run_sweep(args)


def test_a_sweep_records_a_parent_and_one_child_per_trial(small):
    tmp, summary = small
    study, trials = assert_complete_and_unique(tmp, 12)
    client, everything = runs(tmp)
    parent = [r for r in everything if r.data.tags.get("nnexp.kind") == "sweep"]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    p = parent[0]
    assert all(r.data.tags["mlflow.parentRunId"] == p.info.run_id for r in trials)
    by_number = {t.number: t for t in study.trials}
    for r in trials:
        t = by_number[int(r.data.tags["nnexp.trial_number"])]
        assert r.data.tags["nnexp.trial_state"] == t.state.name
        assert r.info.status == ("FAILED" if t.state.name == "FAIL" else "FINISHED")
        assert r.data.params["trial_number"] == str(t.number)
        for k, v in t.params.items():
            assert r.data.params[f"sampled.{k}"] == str(v)
        if t.state.name == "COMPLETE":
            assert r.data.metrics["val_r2"] == t.value and "test_r2" in r.data.metrics
    assert p.data.metrics["trials_complete"] + p.data.metrics["trials_pruned"] + p.data.metrics["trials_failed"] == 12
    plots = {a.path for a in client.list_artifacts(p.info.run_id, "plots")}
    assert {"plots/optimization_history.png", "plots/slice.png", "plots/best_vs_baseline.png",
            "plots/confirmation_curves.png"} <= plots
    assert {a.path for a in client.list_artifacts(p.info.run_id)} >= {"sweep.yaml", "summary.txt"}


def test_the_best_value_is_the_best_child_runs_metric_and_the_baseline_is_trial_0(small):
    tmp, summary = small
    study = load(tmp)
    _, trials = trial_runs(tmp)
    complete = [r for r in trials if r.data.tags["nnexp.trial_state"] == "COMPLETE"]
    assert study.best_value == max(r.data.metrics["val_r2"] for r in complete)
    base = study.trials[0]
    assert base.user_attrs["nnexp.baseline"] and base.params == {
        "lr": 0.1, "momentum": 0.9, "decay_rate": 0.5, "decay_steps": 100, "batch_size": 32, "model": "mlp_6_4"}
    c = summary.confirmation
    assert len(c.best.values) == 3 and c.pair.diff.lo <= c.pair.diff.mean <= c.pair.diff.hi
    assert c.verdict in ("real", "within noise", "reversed") and c.pair.wilcoxon_min_p == 0.25
    assert "the smallest Wilcoxon p is 0.25: it cannot reach 0.05" in summary.text
    assert "best trial" in summary.text and "Confirmation on seeds [1, 2, 3]" in summary.text


def test_pruned_trials_keep_their_partial_curves(small):
    tmp, _ = small
    study = load(tmp)
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned, "the small sweep is set up to prune"
    client, trials = trial_runs(tmp)
    run = next(r for r in trials if r.data.tags["nnexp.trial_number"] == str(pruned[0].number))
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_mse")]
    assert steps and max(steps) < 23 and max(steps) == max(pruned[0].intermediate_values)
    assert all(s % 2 == 1 for s in steps), "a trial is evaluated after every sweep.eval_every-th epoch"


def test_a_seeded_sweep_is_reproducible_with_one_worker(tmp_path):
    for name in ("a", "b"):
        run_sweep(args_for(tmp_path, "sweep.confirm_seeds=[]", name=name, n=10, population=3, epochs=10))
    a, b = load(tmp_path, "a"), load(tmp_path, "b")
    assert [(t.params, t.value) for t in a.trials] == [(t.params, t.value) for t in b.trials]


def test_diverging_trials_fail_with_their_reason_and_the_sweep_goes_on(tmp_path):
    run_sweep(args_for(tmp_path, "model.output_activation=identity", "schedule=constant", "~sweep.space.decay_rate",
                       "~sweep.space.decay_steps", "sweep.space.lr.low=0.05", "sweep.space.lr.high=5000",
                       "sweep.sampler.name=random", "sweep.confirm_seeds=[]", n=10, population=5))
    study, trials = assert_complete_and_unique(tmp_path, 10)
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert failed and len(failed) < 10
    assert all("diverged" in t.user_attrs["nnexp"]["failure_reason"] for t in failed)
    bad = [r for r in trials if r.data.tags["nnexp.trial_state"] == "FAIL"]
    assert all(r.info.status == "FAILED" and "diverged" in r.data.tags["nnexp.failure_reason"] for r in bad)


def test_too_many_failures_in_a_row_stop_the_sweep(tmp_path):
    from nnexp.sweeps.worker import SweepError

    with pytest.raises(SweepError, match="failed in a row"):
        run_sweep(args_for(tmp_path, "model.output_activation=identity", "schedule=constant",
                           "~sweep.space.decay_rate", "~sweep.space.decay_steps", "sweep.space.lr.low=0.05",
                           "sweep.space.lr.high=5000", "sweep.sampler.name=random",
                           "sweep.max_failures_in_row=2", "optimizer.lr=1000", n=10, population=1))
    _, everything = runs(tmp_path)
    assert not [r for r in everything if r.info.status == "RUNNING"]
    parent = next(r for r in everything if r.data.tags.get("nnexp.kind") == "sweep")
    assert parent.info.status == "FAILED" and "failed in a row" in parent.data.tags["nnexp.failure_reason"]


def test_a_changed_search_space_refuses_to_resume(tmp_path):
    run_sweep(args_for(tmp_path, "sweep.confirm_seeds=[]", n=4, epochs=5))
    with pytest.raises(ConfigError, match=r"space.lr.high: 1.0 -> 2.0.*sweep.study_name=t-2"):
        run_sweep(args_for(tmp_path, "sweep.confirm_seeds=[]", "sweep.space.lr.high=2.0", n=4, epochs=5))
    with pytest.raises(ConfigError, match=r"trainer.epochs: 5 -> 6"):
        run_sweep(args_for(tmp_path, "sweep.confirm_seeds=[]", n=4, epochs=6))
    # a larger budget is not a change of the space: the study grows to it
    run_sweep(args_for(tmp_path, "sweep.confirm_seeds=[]", n=6, epochs=5))
    assert_complete_and_unique(tmp_path, 6)


@pytest.mark.parametrize(
    ("override", "message"),
    [("sweep.space.lr.low=2.0", r"sweep.space.lr.high = 1.0 is not valid: expected a range with low < high"),
     ("sweep.space.batch_size.choices=[]", r"sweep.space.batch_size.choices = \[\] is not valid"),
     ("sweep.space.lr.path=optimizer.lrr", r"sweep.space.lr.path = 'optimizer.lrr' is not valid: no such setting"),
     ("sweep.space.model.choices=[mlp_6_4,mlp_9]", r"sweep.space.model.choices = 'mlp_9' .*options: mlp_12_8"),
     ("sweep.space.momentum.high=1.5", r"sweep.space.momentum = 1.5 .*optimizer.momentum"),
     ("sweep.space.lr.low=0.5", r"the baseline's optimizer.lr = 0.1 must lie in the space"),
     ("sweep.metric=test_r2", r"sweep.metric = 'test_r2' is not valid: the test split is for reporting only"),
     ("sweep.space.lr.type=floaty", r"sweep.space.lr.type = 'floaty' .*Did you mean 'float'"),
     ("sweep.n_trials=0", r"sweep.n_trials = 0 is not valid"),
     ("sweep.pruner.interval=5", r"sweep.pruner.interval = 5 is not valid: expected a multiple of sweep.eval_every"),
     ("schedule=constant", r"sweep.space.decay_rate.path = 'schedule.decay_rate' is not valid: no such setting"),
     ("+sweep.space.momentum.when={optimizer:[adam]}", r"'optimizer' is not a categorical parameter")],
)
def test_bad_sweep_configs_fail_before_any_trial(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        run_sweep(args_for(tmp_path, override))
    assert not (tmp_path / "optuna.log").exists() or not optuna.get_all_study_summaries(
        open_storage(f"journal:{tmp_path / 'optuna.log'}"))
    assert runs(tmp_path)[1] == []


def test_the_cli_reports_a_bad_sweep_in_one_paragraph(tmp_path):
    out = run_script("sweep.py", *args_for(tmp_path, "sweep.space.lr.low=-1"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "sweep.space.lr.low = -1" in out.stderr and "log-scale range needs low > 0" in out.stderr




@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_population_sweep_resumes_to_exactly_n_trials(tmp_path, sig):
    args = args_for(tmp_path, "sweep.confirm_seeds=[]", n=24, population=4, epochs=150)
    proc = subprocess.Popen([sys.executable, str(ROOT / "experiments" / "sweep.py"), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: finished_trials(tmp_path) >= 5), proc.communicate()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "run the same command again" in err
    assert f"interrupted ({'Ctrl-C' if sig == signal.SIGINT else 'SIGTERM'})" in err, err
    study = load(tmp_path)
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
    assert 5 <= finished_trials(tmp_path) < 24
    _, everything = runs(tmp_path)
    assert not [r for r in everything if r.info.status == "RUNNING"]
    assert next(r for r in everything if r.data.tags.get("nnexp.kind") == "sweep").info.status == "KILLED"
    run_sweep(args)
    assert_complete_and_unique(tmp_path, 24)
    _, everything = runs(tmp_path)
    parents = [r for r in everything if r.data.tags.get("nnexp.kind") == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"


@pytest.mark.slow
def test_two_worker_processes_share_the_study_without_losing_or_duplicating_trials(tmp_path):
    out = run_script("sweep.py", *args_for(tmp_path, "sweep.workers=2", "sweep.confirm_seeds=[]", n=32,
                                           population=2, epochs=200))
    assert out.returncode == 0, out.stderr
    study, trials = assert_complete_and_unique(tmp_path, 32)
    pids = {r.data.tags["nnexp.population"].split(":")[1] for r in trials}
    assert len(pids) == 2, "both workers trained trials"
    assert not math.isnan(study.best_value)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("NNEXP_TEST_POSTGRES_URL"),
                    reason="no PostgreSQL server (.ci/run starts one where the machine has or can install it)")
def test_two_workers_share_a_postgresql_storage(tmp_path):
    url = os.environ["NNEXP_TEST_POSTGRES_URL"]
    name = f"pg-{uuid.uuid4().hex[:8]}"
    args = [a for a in args_for(tmp_path, "sweep.workers=2", "sweep.confirm_seeds=[]", name=name, n=16, population=2,
                                epochs=80) if not a.startswith("sweep.storage=")]
    out = run_script("sweep.py", *args, f"sweep.storage={url}")
    assert out.returncode == 0, out.stderr
    study = optuna.load_study(study_name=name, storage=url)
    assert sorted(t.number for t in study.trials if t.state.name in FINAL) == list(range(16))
    _, trials = trial_runs(tmp_path)
    assert sorted(int(r.data.tags["nnexp.trial_number"]) for r in trials) == list(range(16))
    assert next(r for r in runs(tmp_path)[1] if r.data.tags.get("nnexp.kind") == "sweep").data.tags[
        "optuna.storage"].startswith("postgresql+psycopg://nnexp:***@")


@pytest.mark.slow
def test_the_default_sweep_beats_the_baseline_and_confirms_it(tmp_path):
    summary = run_sweep([f"sweep.storage=journal:{tmp_path / 'optuna.log'}",
                         f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"])
    study = load(tmp_path, "default")
    assert summary.counts["COMPLETE"] + summary.counts["PRUNED"] + summary.counts["FAIL"] == 384
    assert summary.best.value > summary.baseline.value and summary.baseline.number == 0
    c = summary.confirmation
    assert len(c.best.values) == 5 and c.pair.diff.mean > 0, c
    assert study.best_value == summary.best.value


def seven_feature_csv(tmp_path):
    import numpy as np

    x = np.random.default_rng(0).normal(size=(90, 7))
    rows = "\n".join(",".join(f"{v:.4f}" for v in (*r, np.sin(r[0]) + r[1] * r[2])) for r in x)
    path = tmp_path / "seven.csv"
    path.write_text("a,b,c,d,e,f,g,target\n" + rows + "\n")
    return path


def test_a_sweep_of_architectures_on_a_csv_trains_each_sampled_architecture(tmp_path):
    csv = seven_feature_csv(tmp_path)
    run_sweep(args_for(tmp_path, "data=csv", f"data.path={csv}", "data.target=target", "sweep.confirm_seeds=[]",
                       "sweep.sampler.name=random", n=8, population=4, epochs=4))
    study, trials = assert_complete_and_unique(tmp_path, 8)
    from nnexp.config import compose as compose_cfg

    by_number = {t.number: t for t in study.trials}
    models = set()
    for r in trials:
        model = by_number[int(r.data.tags["nnexp.trial_number"])].params["model"]
        hidden = list(compose_cfg([f"model={model}"]).model.hidden)
        sizes = [7, *hidden, 1]
        assert r.data.params["model.sizes"] == str(sizes), (model, r.data.params["model.sizes"])
        assert r.data.metrics["n_params"] == sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        models.add(model)
    assert len(models) >= 2, "the random sampler picked several architectures"


def test_an_override_that_makes_sampled_choices_equal_is_refused_naming_both(tmp_path):
    with pytest.raises(ConfigError, match=r"sweep.space.model = \['mlp_6_4', 'mlp_8_6_4'\].*model.hidden=\[10,6\]"):
        run_sweep(args_for(tmp_path, "model.hidden=[10,6]"))
    assert runs(tmp_path)[1] == []


def test_make_train_best_trains_the_sweeps_best_trial_again(tmp_path):
    summary = run_sweep(args_for(tmp_path, "sweep.confirm_seeds=[]", n=6, population=3, epochs=8))
    assert "make train-best SWEEP=t ARGS=sweep.storage=journal:" in summary.text
    assert "/runs?viewStateShareKey=nnexp-sweep-t" in summary.text  # the UI's runs table, set up (below)
    client, _ = mlflow_runs(tmp_path)
    exp = client.get_experiment_by_name("nnexp-sweep")
    view = json.loads(exp.tags["mlflow.sharedViewState.nnexp-sweep-t"])
    assert view["searchFilter"] == "tags.`optuna.study` = 't'" and view["orderByKey"] == "metrics.`val_r2`"
    assert not view["orderByAsc"] and {"metrics.`test_r2`", "params.`sampled.lr`"} <= set(view["selectedColumns"])
    assert list(view["runsExpanded"].values()) == [True]
    storage = f"sweep.storage=journal:{tmp_path / 'optuna.log'}"
    store = f"tracking.uri=sqlite:///{tmp_path / 'train.db'}"
    out = run_script("train.py", "--best=t", storage, store, "tracking.plots=false", "tracking.log_model=false")
    assert out.returncode == 0, out.stderr
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'train.db'}")
    run = client.search_runs([client.get_experiment_by_name("nnexp").experiment_id])[0]
    best = summary.best
    assert float(run.data.params["optimizer.lr"]) == best.params["lr"] and run.data.params["trainer.epochs"] == "8"
    assert run.data.metrics["val_r2"] == pytest.approx(best.value, abs=1e-12)  # the same training, every epoch seen
    wrong = run_script("train.py", "--best=nope", storage, store)
    said = " ".join(wrong.stderr.split())
    assert wrong.returncode == 2 and "SWEEP = 'nope'" in said and "its sweeps: t)" in said


def test_the_population_pruner_decides_as_optuna_s_should_prune(tmp_path):
    """The worker asks the median pruner with the completed trials read once per step (`Completed`): every
    decision must be the one `trial.should_prune()` makes, at every step, warmup and startup included."""
    from nnexp.sweeps.journal import open_journal
    from nnexp.sweeps.worker import Completed

    storage = open_journal(tmp_path / "j.log")
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=20, interval_steps=1)
    study = optuna.create_study(storage=storage, direction="maximize", pruner=pruner)
    rng = np.random.default_rng(0)
    for _ in range(6):  # completed trials with curves of different heights, some without every step
        t = study.ask()
        height = rng.uniform(0.2, 0.9)
        for step in range(9, 100, 10):
            if rng.uniform() > 0.2:
                t.report(height + 0.001 * step, step)
        study.tell(t, height)
        running = [study.ask() for _ in range(8)]
        decisions = 0
        for step in range(9, 100, 10):
            seen = Completed(study)
            for r in running:
                r.report(float(rng.uniform(0.0, 1.2)) if step != 49 else math.nan, step)
                ours = pruner.prune(seen, storage.get_trial(r._trial_id))
                assert ours == r.should_prune(), (r.number, step)
                decisions += ours
        for r in running:
            study.tell(r, state=optuna.trial.TrialState.FAIL)
    assert decisions > 0, "the last round prunes some trials: the comparison saw both answers"


def test_a_journal_read_sees_what_another_worker_appended(tmp_path):
    """Reads skip the file while it has not grown: a trial another process adds is still seen at once."""
    from nnexp.sweeps.journal import open_journal

    path = tmp_path / "j.log"
    mine = optuna.create_study(storage=open_journal(path), study_name="s")
    mine.tell(mine.ask(), 1.0)
    assert len(mine.trials) == 1
    assert len(mine.trials) == 1  # read again with nothing appended since: the stat-only shortcut
    other = optuna.load_study(storage=open_journal(path), study_name="s")
    other.tell(other.ask(), 2.0)
    assert [t.value for t in mine.trials] == [1.0, 2.0]
