"""One tracked run: what lands in MLflow, the pickle-free model, determinism, failure states,
and every config in every group."""

from pathlib import Path

import mlflow
import numpy as np
import pytest
from conftest import ROOT, run_script
from mlflow import MlflowClient

from nnexp import config, runner
from nnexp import plan as plans
from nnexp.errors import ConfigError
from nnexp.plan import build_plan as plan_of

CURVES = ["train_mse", "val_mse", "test_mse", "train_r2", "val_r2", "test_r2", "lr"]


def cfg_for(store, *overrides, epochs=20):
    return config.compose([f"tracking.uri={store}", f"trainer.epochs={epochs}", *overrides])


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    store = f"sqlite:///{tmp_path_factory.mktemp('t') / 'mlflow.db'}"
    summary = runner.run(cfg_for(store), progress=False)
    return store, summary, MlflowClient(store)


def test_run_records_params_curves_and_finals(tracked):
    store, s, client = tracked
    run = client.get_run(s.run_id)
    assert run.info.status == "FINISHED"
    p = run.data.params
    assert p["optimizer.lr"] == "0.1" and p["schedule.name"] == "step_decay"
    assert p["model.hidden"] == "[6, 4]" and p["model.sizes"] == "[4, 6, 4, 1]"
    for key in CURVES:
        hist = client.get_metric_history(s.run_id, key)
        assert sorted(m.step for m in hist) == list(range(20)), key
    m = run.data.metrics
    assert m["n_params"] == 63 and m["epochs"] == 20
    assert m["gap_mse"] == pytest.approx(m["test_mse"] - m["train_mse"])
    assert m["test_r2"] == s.result.curves["test_r2"][-1]
    assert 0 <= m["best_epoch"] < 20


def test_run_records_config_plots_dataset_and_provenance(tracked):
    store, s, client = tracked
    names = {a.path for a in client.list_artifacts(s.run_id)} | {
        a.path for a in client.list_artifacts(s.run_id, "plots")}
    assert {"config.yaml", "plots/learning_curves.png", "plots/predicted_vs_actual.png", "plots/residuals.png"} <= names
    local = Path(client.download_artifacts(s.run_id, "config.yaml"))
    assert "lr: 0.1" in local.read_text()
    run = client.get_run(s.run_id)
    tags = run.data.tags
    assert len(tags["mlflow.source.git.commit"]) >= 7 and tags["git_dirty"] in ("true", "false")
    assert tags["numpy_version"] == np.__version__ and "python_version" in tags and "nnexp_version" in tags
    inputs = run.inputs.dataset_inputs
    assert inputs and inputs[0].dataset.digest == plan_of(cfg_for(store)).data.digest()
    png = Path(client.download_artifacts(s.run_id, "plots/residuals.png")).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_artifacts_sit_beside_the_database(tracked):
    store, s, client = tracked
    uri = client.get_run(s.run_id).info.artifact_uri
    assert uri.startswith("file://") and str(Path(store[len("sqlite:///"):]).parent) in uri


def test_logged_model_predicts_like_the_engine_and_holds_no_pickle(tracked):
    import pandas as pd

    store, s, client = tracked
    mlflow.set_tracking_uri(store)
    loaded = mlflow.pyfunc.load_model(f"runs:/{s.run_id}/model")
    plan = plan_of(cfg_for(store))
    from nnexp.engine.model import Model

    engine = Model.from_state(plan.spec, s.result.state, plan.data.scaler)
    x = np.random.default_rng(0).uniform(-2, 2, (25, 4))
    table = pd.DataFrame(x, columns=["x1", "x2", "x3", "x4"])
    out = loaded.predict(table)
    assert list(out.columns) == ["y"]
    np.testing.assert_allclose(out["y"], engine.predict(x), rtol=0, atol=1e-12)
    model_dir = Path(mlflow.artifacts.download_artifacts(f"runs:/{s.run_id}/model"))
    files = [p for p in model_dir.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".pkl", ".pickle", ".cloudpickle", ".py")]
    for p in files:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:  # would refuse pickled arrays
                assert all(z[k].dtype.kind == "f" for k in z.files)


def test_the_logged_model_carries_the_final_metrics_not_the_first_epochs(tracked):
    store, s, client = tracked
    run = client.get_run(s.run_id)
    [output] = run.outputs.model_outputs
    model_id = output.model_id
    linked = {}
    for m in client.get_logged_model(model_id).metrics:
        assert m.key not in linked, f"{m.key} linked twice"
        linked[m.key] = m.value
    assert linked == run.data.metrics  # every final value, as the run shows them
    assert linked["val_r2"] == s.metrics["val_r2"] != s.result.curves["val_r2"][0]
    assert {"test_rmse", "gap_mse", "n_params"} <= linked.keys()
    for key in ("val_r2", "test_mse"):  # the run's history keeps one point per epoch
        assert sorted(m.step for m in client.get_metric_history(s.run_id, key)) == list(range(20))


def test_errors_are_also_recorded_in_the_targets_units(tracked):
    store, s, client = tracked
    m = client.get_run(s.run_id).data.metrics
    d = plan_of(cfg_for(store)).data
    from nnexp.engine.model import Model

    model = Model.from_state(plan_of(cfg_for(store)).spec, s.result.state, d.scaler)
    for split, x, y in (("train", d.x_train, d.y_train), ("val", d.x_val, d.y_val), ("test", d.x_test, d.y_test)):
        err = model.predict(d.scaler.x_mean + x * d.scaler.x_std) - d.scaler.y_inverse(y[:, 0])
        assert m[f"{split}_rmse"] == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-12)
        assert m[f"{split}_mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-12)
        # *_mse is on the target scaled to [0, 1]: the same error, another unit
        assert m[f"{split}_rmse"] == pytest.approx(np.sqrt(m[f"{split}_mse"]) * d.scaler.y_range, rel=1e-9)
    assert d.scaler.y_range > 3  # the seed's target spans several units: the two scales differ
    assert len(client.get_metric_history(s.run_id, "test_rmse")) == 1  # once, at the end, not per epoch


def test_same_config_and_seed_record_identical_metrics(store):
    a = runner.run(cfg_for(store, epochs=15), progress=False)
    b = runner.run(cfg_for(store, epochs=15), progress=False)
    client = MlflowClient(store)
    assert client.get_run(a.run_id).data.metrics == client.get_run(b.run_id).data.metrics
    c = runner.run(cfg_for(store, "seed=1", epochs=15), progress=False)
    assert client.get_run(c.run_id).data.metrics != client.get_run(a.run_id).data.metrics


def test_a_diverging_run_is_failed_with_its_reason(store):
    s = runner.run(cfg_for(store, "model.output_activation=identity", "optimizer.lr=50",
                             "schedule=constant"), progress=False)
    run = MlflowClient(store).get_run(s.run_id)
    assert s.status == "FAILED" and run.info.status == "FAILED"
    assert "diverged" in run.data.tags["nnexp.failure_reason"]
    assert "test_r2" not in run.data.metrics or np.isfinite(run.data.metrics["test_r2"])


def test_an_interrupted_run_is_killed_not_left_running(store, monkeypatch):
    def interrupt(self, callbacks=()):
        raise KeyboardInterrupt

    monkeypatch.setattr(plans.Plan, "fit", interrupt)
    with pytest.raises(KeyboardInterrupt):
        runner.run(cfg_for(store), progress=False)
    runs = MlflowClient(store).search_runs([MlflowClient(store).get_experiment_by_name("nnexp").experiment_id])
    assert [r.info.status for r in runs] == ["KILLED"]


def test_early_stopping_closes_the_curves_with_the_returned_model(store):
    s = runner.run(cfg_for(store, "trainer.early_stopping_patience=3", "schedule.decay_rate=0.000001",
                             "schedule.decay_steps=5", epochs=200), progress=False)
    client = MlflowClient(store)
    run = client.get_run(s.run_id)
    assert run.data.tags["nnexp.status"] == "early_stopped"
    assert run.data.metrics["val_mse"] == s.result.curves["val_mse"][s.result.best_epoch]
    linked = {m.key: m.value for m in client.get_logged_model(run.outputs.model_outputs[0].model_id).metrics}
    assert linked["val_mse"] == s.result.curves["val_mse"][s.result.best_epoch]  # the restored model's
    assert run.outputs.model_outputs[0].step == s.result.epochs


def all_options():
    for group in ("model", "data", "optimizer", "schedule", "trainer", "experiment"):
        for path in sorted((ROOT / "conf" / group).glob("*.yaml")):
            yield group, path.stem


@pytest.mark.parametrize(("group", "option"), list(all_options()))
def test_every_config_composes_and_builds(group, option, tmp_path):
    overrides = [f"{group}={option}"]
    if option == "mlp_2" or option == "simple_patterns":
        overrides += ["model=mlp_2", "data=simple_patterns"]
    if option == "csv":
        csv = tmp_path / "t.csv"
        rng = np.random.default_rng(0)
        csv.write_text("a,b,c,d,y\n" + "".join(",".join(f"{v:.3f}" for v in row) + "\n" for row in rng.random((40, 5))))
        overrides += [f"data.path={csv}", "data.target=y"]
    plan = plan_of(config.compose(overrides))
    assert plan.spec.sizes[0] == plan.data.n_features and plan.epochs >= 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["optimizer.lr=0"], "optimizer.lr"),
        (["optimizer.lr=-1"], "optimizer.lr"),
        (["optimizer.lr=abc"], "optimizer.lr"),
        (["optimizer.momentum=1"], "optimizer.momentum"),
        (["optimizer.momentum=-0.1"], "optimizer.momentum"),
        (["model.hidden_activation=relu6"], "model.hidden_activation"),
        (["model.init=glorot"], "model.init"),
        (["model.hidden=[6,0]"], "model.hidden"),
        (["model.hidden=4"], "model.hidden"),
        (["+model.sizes=[4,6,1]"], "model.sizes.*not a setting of model"),
        (["optimizer=adam", "+optimizer.momentum=0.5"], "optimizer.momentum.*not a setting of optimizer 'adam'"),
        (["+trainer.patience=5"], "trainer.patience.*Did you mean 'early_stopping_patience'"),
        (["+seedd=3"], "seedd.*Did you mean 'seed'"),
        (["model.batch_norm=off"], "model.batch_norm = 'off' is not valid: expected true or false"),
        (["optimizer.nesterov=maybe"], "optimizer.nesterov = 'maybe'"),
        (["trainer.epochs=1000000000"], "trainer.epochs = 1000000000 is not valid: training needs about"),
        (["model.hidden=[100000,100000]"], r"model.hidden = \[100000, 100000\] is not valid: training needs about"),
        (["optimizer.l2=50"], "optimizer.l2 = 50.0 is not valid: with optimizer.lr = 0.1 the weight decay alone"),
        (["+data._target_=shutil.rmtree"], "data._target_.*not a setting of data set 'seed_regression'"),
        (["optimizer.name=adamw"], "optimizer.name"),
        (["trainer.batch_size=0"], "trainer.batch_size"),
        (["trainer.epochs=0"], "trainer.epochs"),
        (["trainer.epochs=2.5"], "trainer.epochs"),
        (["schedule.decay_rate=0"], "schedule.decay_rate"),
        (["schedule.decay_rate=1.5"], "schedule.decay_rate"),
        (["schedule.decay_steps=0"], "schedule.decay_steps"),
        (["data=csv", "data.path=/nonexistent.csv", "data.target=y"], "data.path"),
        (["data.val_fraction=1.5"], "data.val_fraction"),
    ],
)
def test_bad_values_are_refused_before_training(overrides, field):
    with pytest.raises(ConfigError, match=field):
        plan_of(config.compose(overrides))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["optimizer.lr=-0.1"], "optimizer.lr = -0.1 is not valid: expected a learning rate > 0"),
        (["model=mlp_6_5"], "Did you mean .*'mlp_6_4'"),
        (["optimizer=adma"], "Did you mean 'adam'"),
        (["optimizer.lrr=0.1"], "optimizer.lrr: no such setting.*Did you mean 'lr'"),
        (["optimizer.lr=="], "could not parse the override"),
        (["model.hidden_activation=rel"], "model.hidden_activation = 'rel'.*Did you mean 'relu'"),
        (["data=csv", "data.path=missing.csv", "data.target=y"], "data.path.*no such file"),
    ],
)
def test_cli_bad_input_exits_with_one_message_and_no_run(args, message, tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    p = run_script("train.py", *args, f"tracking.uri={store}")
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    import re

    assert re.search(message, " ".join(p.stderr.split())), p.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing was recorded


def test_cli_trains_and_prints_the_summary(tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    p = run_script("train.py", f"tracking.uri={store}", "trainer.epochs=30", "tracking.log_model=false")
    assert p.returncode == 0, p.stderr
    assert "R2   train" in p.stdout and "gap (test - train)" in p.stdout and "make ui" in p.stdout
    assert not (ROOT / "outputs").exists() or not any((ROOT / "outputs").iterdir())
