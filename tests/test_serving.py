"""The model a researcher takes away: logged as data only (its loader comes from the installed nnexp),
with a signature naming its columns; checked against its run before it is loaded; predicting by column
name through Python, `mlflow models predict`, `make predict` and `make serve`."""

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from nnexp import config, runner, serving
from nnexp.engine.model import Model
from nnexp.plan import build_plan

FEATURES = ["rooms", "area", "age"]
SHUFFLED = ["age", "rooms", "area"]
MLFLOW_BIN = ROOT / ".venv" / "bin"


def _overrides(store, csv):
    return [f"tracking.uri={store}", "trainer.epochs=20", "tracking.plots=false", "data=csv", f"data.path={csv}",
            "data.target=price"]


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A run on a table with named features (rooms, area, age -> price), its model logged."""
    tmp = tmp_path_factory.mktemp("serving")
    rng = np.random.default_rng(0)
    x = rng.uniform([1, 30, 0], [8, 250, 90], (120, 3))
    y = 40 * x[:, 0] + 3 * x[:, 1] - 1.5 * x[:, 2] + rng.normal(0, 5, 120)
    csv = tmp / "houses.csv"
    csv.write_text("rooms,area,age,price\n" + "".join(f"{a:.3f},{b:.3f},{c:.3f},{p:.3f}\n"
                                                      for (a, b, c), p in zip(x, y, strict=True)))
    store = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg = config.compose(_overrides(store, csv))
    s = runner.run(cfg, progress=False)
    plan = build_plan(cfg)
    engine = Model.from_state(plan.spec, s.result.state, plan.data.scaler, {}, FEATURES, "price")
    inputs = pd.DataFrame(rng.uniform([1, 30, 0], [8, 250, 90], (7, 3)), columns=FEATURES)
    return store, s.run_id, engine, inputs, tmp


def _uri(logged):
    return f"runs:/{logged[1]}/model"


@contextlib.contextmanager
def _tampered(logged):
    """The stored artifact of the logged model, restored when the block ends."""
    store, run_id = logged[:2]
    client = MlflowClient(store)
    model_id = client.get_run(run_id).data.tags[serving.MODEL_ID_TAG]
    where = Path(client.get_logged_model(model_id).artifact_location.removeprefix("file://"))
    backup = where.parent / "backup"
    shutil.copytree(where, backup)
    try:
        yield where
    finally:
        shutil.rmtree(where)
        backup.rename(where)


def test_the_signature_names_the_columns_and_the_target(logged):
    store, run_id = logged[:2]
    mlflow.set_tracking_uri(store)
    sig = mlflow.models.get_model_info(_uri(logged)).signature
    assert sig.inputs.input_names() == FEATURES and [c.type.name for c in sig.inputs.inputs] == ["double"] * 3
    assert sig.outputs.input_names() == ["price"]
    doc = json.loads((Path(mlflow.artifacts.download_artifacts(f"{_uri(logged)}/data/model/spec.json"))).read_text())
    assert doc["features"] == FEATURES and doc["target"] == "price"


def test_the_artifact_holds_data_only_and_its_digests_are_on_the_run(logged):
    store, run_id = logged[:2]
    mlflow.set_tracking_uri(store)
    local = Path(mlflow.artifacts.download_artifacts(_uri(logged)))
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    assert files == ["MLmodel", "conda.yaml", "data/model/spec.json", "data/model/weights.npz", "python_env.yaml",
                     "registered_model_meta", "requirements.txt"]
    conf = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert conf["loader_module"] == "nnexp.serving" and conf["data"] == "data/model"
    assert conf.get("code") is None and "python_model" not in conf and "artifacts" not in conf
    tags = MlflowClient(store).get_run(run_id).data.tags
    assert json.loads(tags[serving.DIGESTS_TAG]) == {
        name: hashlib.sha256((local / "data/model" / name).read_bytes()).hexdigest() for name in serving.DATA_FILES}
    assert not (ROOT / "nnexp" / "mlflow_model.py").exists()


def test_the_model_pins_the_numpy_and_mlflow_it_was_trained_with(logged):
    mlflow.set_tracking_uri(logged[0])
    local = Path(mlflow.artifacts.download_artifacts(_uri(logged)))
    assert sorted((local / "requirements.txt").read_text().split()) == [f"mlflow=={mlflow.__version__}",
                                                                        f"numpy=={np.__version__}"]


def test_logging_the_model_skips_mlflows_scan_of_every_installed_package(logged, tmp_path, monkeypatch):
    """The scan (~1 s in `make train`) could only confirm pins taken from the running versions."""
    from mlflow.utils import environment, requirements_utils

    from nnexp.recording.model import log_model
    from nnexp.recording.store import Store

    scans = []
    scan = requirements_utils._init_packages_to_modules_map
    monkeypatch.setattr(requirements_utils, "_init_packages_to_modules_map", lambda: scans.append(1) or scan())
    check = environment.warn_dependency_requirement_mismatches
    store = Store(logged[0])
    run_id = store.create(store.experiment("pins"), "pins-run", "pins", {}, None, None)
    model_id = log_model(store, run_id, {"dir": str(logged[2].save(tmp_path / "model")), "step": 3})
    assert scans == [] and environment.warn_dependency_requirement_mismatches is check
    assert store.client.get_logged_model(model_id).status == "READY"
    requirements_utils.warn_dependency_requirement_mismatches(["numpy==0.0.1"])  # MLflow's own check still runs
    assert scans == [1]


def test_pyfunc_takes_columns_by_name_in_any_order(logged):
    store, _, engine, inputs, _ = logged
    mlflow.set_tracking_uri(store)
    pyfunc = mlflow.pyfunc.load_model(_uri(logged))
    expected = engine.predict(inputs.to_numpy())
    for table in (inputs, inputs[SHUFFLED], inputs[SHUFFLED].to_dict(orient="list")):
        out = pyfunc.predict(table)
        assert list(out.columns) == ["price"]
        np.testing.assert_allclose(out["price"], expected, rtol=0, atol=1e-9)
    assert not np.allclose(engine.predict(inputs[SHUFFLED].to_numpy()), expected)  # by position: wrong
    with pytest.raises(MlflowException, match=r"Model is missing inputs \['area'\]"):
        pyfunc.predict(inputs[["age", "rooms"]])


def test_a_verified_load_is_strict_about_columns(logged):
    store, _, engine, inputs, _ = logged
    model = serving.load(_uri(logged), store)
    expected = engine.predict(inputs.to_numpy())
    np.testing.assert_allclose(model.predict(inputs[SHUFFLED])["price"], expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.predict(inputs.to_numpy())["price"], expected, rtol=0, atol=1e-9)
    expected_list = r"The model takes 3 named columns, in any order: \['rooms', 'area', 'age'\]"
    with pytest.raises(ValueError, match=r"missing \['area'\]\. " + expected_list):
        model.predict(inputs[["age", "rooms"]])
    with pytest.raises(ValueError, match=r"unknown \['garden'\]\. " + expected_list):
        model.predict(inputs.assign(garden=1.0))
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        model.predict(inputs.to_numpy()[:, :2])
    by_model_id = serving.load(f"models:/{model.model_id}", store)
    assert by_model_id.run_id == model.run_id


def _refused(logged, message):
    with pytest.raises(ValueError, match=message):
        serving.load(_uri(logged), logged[0])


def test_a_changed_weights_file_is_refused(logged):
    with _tampered(logged) as where:
        path = where / "data/model/weights.npz"
        with np.load(path) as z:
            state = {k: z[k] for k in z.files}
        state["params"][0] += 0.5  # still a valid model, only another one
        np.savez(path, **state)
        _refused(logged, r"weights\.npz is not the file run [0-9a-f]+ logged \(its SHA-256 differs")


def test_an_mlmodel_naming_another_loader_or_adding_code_is_refused(logged, tmp_path):
    marker = tmp_path / "ran"
    with _tampered(logged) as where:
        doc = yaml.safe_load((where / "MLmodel").read_text())
        doc["flavors"]["python_function"]["loader_module"] = "evil"
        (where / "MLmodel").write_text(yaml.safe_dump(doc))
        _refused(logged, r"python_function\.loader_module = 'evil' \(expected 'nnexp\.serving'\)")
    with _tampered(logged) as where:  # code that would shadow our loader if MLflow put it on sys.path
        doc = yaml.safe_load((where / "MLmodel").read_text())
        doc["flavors"]["python_function"]["code"] = "code"
        (where / "MLmodel").write_text(yaml.safe_dump(doc))
        (where / "code" / "nnexp").mkdir(parents=True)
        (where / "code" / "nnexp" / "serving.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
        _refused(logged, r"unexpected \['code/nnexp/serving\.py'\]")
        (where / "code" / "nnexp" / "serving.py").unlink()
        _refused(logged, r"python_function\.code = 'code' \(expected None\)")
    assert not marker.exists()


def test_a_python_model_or_extra_file_is_refused(logged):
    with _tampered(logged) as where:
        doc = yaml.safe_load((where / "MLmodel").read_text())
        doc["flavors"]["python_function"]["python_model"] = "python_model.pkl"
        (where / "MLmodel").write_text(yaml.safe_dump(doc))
        _refused(logged, r"unexpected python_function field 'python_model'")
    with _tampered(logged) as where:
        (where / "python_model.pkl").write_bytes(b"\x80\x04N.")
        _refused(logged, r"unexpected \['python_model\.pkl'\]")


def test_an_oversized_spec_is_refused_without_allocating(logged):
    import tracemalloc

    store = logged[0]
    with _tampered(logged) as where:
        path = where / "data/model/spec.json"
        doc = json.loads(path.read_text())
        doc["spec"]["sizes"] = [3, 20000, 20000, 1]  # 400 million parameters (3.2 GB a copy) in a 1 KB file
        path.write_text(json.dumps(doc))
        assert path.stat().st_size < 3000
        _refused(logged, r"spec\.json is not the file run")  # our loader: refused by its digest
        mlflow.set_tracking_uri(store)
        tracemalloc.start()
        try:  # MLflow's own loader reaches Model.load, which refuses it before building anything
            with pytest.raises(ValueError, match=r"spec\.json: spec\.sizes \[3, 20000, 20000, 1\] make 400,120,001"):
                mlflow.pyfunc.load_model(_uri(logged))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 50_000_000


def test_a_model_without_recorded_digests_is_refused(logged):
    store, run_id = logged[:2]
    client = MlflowClient(store)
    tag = client.get_run(run_id).data.tags[serving.DIGESTS_TAG]
    client.delete_tag(run_id, serving.DIGESTS_TAG)
    try:
        _refused(logged, r"records no model digests")
    finally:
        client.set_tag(run_id, serving.DIGESTS_TAG, tag)
    with pytest.raises(ValueError, match=r"expected runs:/<run id>/model or models:/<model id>"):
        serving.load("/some/local/dir", store)


def _env(store):
    """The environment of a user's shell: the project's store, and no .venv/bin on PATH."""
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != MLFLOW_BIN)
    return {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": store, "MLFLOW_DISABLE_TELEMETRY": "true"}


@pytest.mark.slow
def test_mlflow_models_predict_takes_columns_by_name(logged):
    store, _, engine, inputs, tmp = logged
    shuffled, missing = tmp / "shuffled.csv", tmp / "missing.csv"
    inputs[SHUFFLED].to_csv(shuffled, index=False)
    inputs[["age", "rooms"]].to_csv(missing, index=False)

    def predict(path):
        return subprocess.run([str(MLFLOW_BIN / "mlflow"), "models", "predict", "-m", _uri(logged), "-i", str(path),
                               "-t", "csv", "--env-manager", "local"], capture_output=True, text=True,
                              env=_env(store), timeout=300, cwd=tmp)

    ok = predict(shuffled)
    assert ok.returncode == 0, ok.stderr
    got = [row["price"] for row in json.loads(ok.stdout.strip().splitlines()[-1])["predictions"]]
    np.testing.assert_allclose(got, engine.predict(inputs.to_numpy()), rtol=0, atol=1e-9)
    bad = predict(missing)
    assert bad.returncode != 0 and "Model is missing inputs ['area']" in bad.stderr


@pytest.mark.slow
def test_make_predict_checks_the_model_and_takes_columns_by_name(logged):
    store, _, engine, inputs, tmp = logged
    inputs[SHUFFLED].to_csv(tmp / "in.csv", index=False)
    inputs.assign(garden=1.0).to_csv(tmp / "extra.csv", index=False)

    def make(path):
        return subprocess.run(["make", "-s", "-C", str(ROOT), "predict", f"MODEL={_uri(logged)}", f"INPUT={path}"],
                              capture_output=True, text=True, env=_env(store), timeout=300)

    ok = make(tmp / "in.csv")
    assert ok.returncode == 0, ok.stderr
    got = pd.read_csv(pd.io.common.StringIO(ok.stdout))
    assert list(got.columns) == ["price"]
    np.testing.assert_allclose(got["price"], engine.predict(inputs.to_numpy()), rtol=0, atol=1e-9)
    bad = make(tmp / "extra.csv")
    assert bad.returncode == 2 and "unknown ['garden']" in bad.stderr and "Traceback" not in bad.stderr


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port, payload):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", json.dumps(payload).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.slow
def test_make_serve_answers_by_column_name_and_stops(logged):
    store, _, engine, inputs, _ = logged
    port = _free_port()
    proc = subprocess.Popen(["make", "-s", "-C", str(ROOT), "serve", f"MODEL={_uri(logged)}", f"SERVE_PORT={port}"],
                            env=_env(store), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(1)
        shuffled = inputs[SHUFFLED]
        status, body = _post(port, {"dataframe_split": {"columns": SHUFFLED, "data": shuffled.values.tolist()}})
        assert status == 200, body
        got = [row["price"] for row in body["predictions"]]
        np.testing.assert_allclose(got, engine.predict(inputs.to_numpy()), rtol=0, atol=1e-9)
        status, body = _post(port, {"dataframe_records": inputs[["age", "rooms"]].to_dict(orient="records")})
        assert status == 400 and "Model is missing inputs ['area']" in body["message"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=60)[0]  # returns once every process writing to the pipe has ended
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
    copy = re.search(r"checked copy in (\S+)\)", out)
    assert copy and not Path(copy.group(1)).exists(), out  # the checked copy it served is removed
