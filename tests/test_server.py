"""Scale-out and browsing on real servers: a sweep of two worker processes logging to `make server`,
and `make ui` serving a local store's experiments, metric histories and plots to a browser."""

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import run_script
from helpers import Served, free_port
from helpers import load_study as load
from helpers import sweep_args as args_for
from mlflow import MlflowClient

from nnexp import config, runner


def get(url, host=None):
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()


@pytest.mark.slow
def test_two_workers_log_every_trial_to_a_tracking_server(tmp_path):
    port = free_port()
    server = Served("server", f"SERVER_PORT={port}", f"SERVER_DIR={tmp_path / 'server'}")
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_ready(url)
        args = [a for a in args_for(tmp_path, "sweep.workers=2", "sweep.confirm_seeds=[1,2]", n=16, population=2,
                                    epochs=60) if not a.startswith("tracking.uri")]
        out = run_script("sweep.py", *args, env={"MLFLOW_TRACKING_URI": url})
        assert out.returncode == 0, out.stderr
        client = MlflowClient(url)
        exp = client.get_experiment_by_name("nnexp-sweep")
        assert exp.artifact_location.startswith("mlflow-artifacts:")  # artifacts travel through the server
        found = client.search_runs([exp.experiment_id], max_results=1000)
        trials = [r for r in found if r.data.tags.get("nnexp.kind") == "trial"]
        assert sorted(int(r.data.tags["nnexp.trial_number"]) for r in trials) == list(range(16))
        assert {t.number for t in load(tmp_path).trials if t.state.name in ("COMPLETE", "PRUNED", "FAIL")} == set(
            range(16))
        parent = next(r for r in found if r.data.tags.get("nnexp.kind") == "sweep")
        assert parent.info.status == "FINISHED"
        plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
        assert "plots/optimization_history.png" in plots
        assert (tmp_path / "server" / "artifacts").is_dir()
    finally:
        server.stop()


@pytest.mark.slow
def test_make_ui_serves_runs_curves_and_plots(tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    s = runner.run(config.compose([f"tracking.uri={store}", "trainer.epochs=12", "tracking.log_model=false"]),
                     progress=False)
    port = free_port()
    # started from another directory than the store's: artifact paths must not depend on it
    ui = Served("ui", f"PORT={port}", f"STORE={store}", f"ARTIFACTS={tmp_path / 'mlartifacts'}")
    base = f"http://127.0.0.1:{port}"
    try:
        ui.wait_ready(base)
        status, _, body = get(f"{base}/ajax-api/2.0/mlflow/experiments/search?max_results=100")
        assert status == 200 and "nnexp" in [e["name"] for e in json.loads(body)["experiments"]]
        status, _, body = get(f"{base}/ajax-api/2.0/mlflow/metrics/get-history?run_id={s.run_id}&metric_key=val_mse")
        assert status == 200 and [m["step"] for m in json.loads(body)["metrics"]] == list(range(12))
        status, kind, png = get(f"{base}/get-artifact?path=plots/learning_curves.png&run_uuid={s.run_id}")
        local = Path(MlflowClient(store).download_artifacts(s.run_id, "plots/learning_curves.png", str(tmp_path)))
        assert status == 200 and kind.startswith("image/png") and png == local.read_bytes()
        with pytest.raises(urllib.error.HTTPError) as refused:  # host-header protection stays on
            get(f"{base}/ajax-api/2.0/mlflow/experiments/search?max_results=1", host="evil.example")
        assert refused.value.code == 403
    finally:
        ui.stop()
