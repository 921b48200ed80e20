"""One experiment run: a composed config in, a trained model and a fully recorded MLflow run out."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from nnexp import plots
from nnexp.config import flat_params
from nnexp.console import Progress
from nnexp.engine.data import Dataset
from nnexp.engine.loop import DIVERGED, ReplicaResult
from nnexp.engine.model import Model
from nnexp.plan import Plan, build_plan
from nnexp.tracking import CurveLogger, Tracker, final_points


@dataclass
class RunSummary:
    run_id: str
    status: str  # MLflow status: FINISHED or FAILED
    result: ReplicaResult
    metrics: dict[str, float]
    tracking_uri: str
    experiment_id: str
    seconds: float


def log_outcome(tracker: Tracker, run_id: str, plan: Plan, result: ReplicaResult, cfg: DictConfig,
                log_model: bool = True, make_plots: bool = True) -> tuple[str, dict[str, float]]:
    """Record a finished replica on its run (curves already sent): final metrics, status and reason,
    the composed config, plots and the model. Ends the run; returns (status, final metrics)."""
    tracker.log_text(run_id, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
    if result.status == DIVERGED:
        tracker.log(run_id, tags={"nnexp.status": result.status, "nnexp.failure_reason": result.reason})
        tracker.end(run_id, "FAILED")
        return "FAILED", {}
    logged = {k: dict(enumerate(v)) for k, v in result.curves.items()}  # CurveLogger sent every epoch
    d = plan.data
    model = Model.from_state(plan.spec, result.state, d.scaler,
                             {"run_id": run_id, "dataset": d.name, "dataset_digest": d.digest()},
                             d.feature_names, d.target_name)
    metrics, points = final_points(result, plan.spec, logged, extra=errors_in_units(model, d))
    tags = {"nnexp.status": result.status}
    undefined = [s for s in ("train", "val", "test") if f"{s}_mse" in metrics and f"{s}_r2" not in metrics]
    if undefined:
        tags["nnexp.r2_undefined"] = f"R² is undefined where the target is constant: {', '.join(undefined)}"
    if result.reason:
        tags["nnexp.stop_reason"] = result.reason
    tracker.log(run_id, metrics=points, tags=tags)
    if make_plots:
        with tempfile.TemporaryDirectory() as tmp:
            y_true = d.scaler.y_inverse(d.y_test[:, 0])
            y_pred = model.predict(d.scaler.x_mean + d.x_test * d.scaler.x_std)
            for png in (plots.learning_curves(result.curves, Path(tmp) / "learning_curves.png"),
                        plots.predictions(y_true, y_pred, Path(tmp) / "predicted_vs_actual.png", d.target_name),
                        plots.residuals(y_true, y_pred, Path(tmp) / "residuals.png", d.target_name)):
                tracker.log_artifact(run_id, png, "plots")
    if log_model:  # the model's step: the last epoch, or the one after it if early stopping restored weights
        restored = any(p.step == result.epochs for p in points)
        tracker.log_model(run_id, model, "FINISHED", step=result.epochs if restored else result.epochs - 1)
    else:
        tracker.end(run_id, "FINISHED")
    return "FINISHED", metrics


def errors_in_units(model: Model, data: Dataset) -> dict[str, float]:
    """RMSE and MAE of the returned model on each split, in the target's own units (the *_mse metrics are
    on the target scaled to [0, 1]): the model's predictions against the targets mapped back with the
    scaler. Empty splits are left out."""
    out = {}
    s = data.scaler
    for split, x, y in (("train", data.x_train, data.y_train), ("val", data.x_val, data.y_val),
                        ("test", data.x_test, data.y_test)):
        if len(y):
            err = model.predict(s.x_mean + x * s.x_std) - s.y_inverse(y[:, 0])
            out[f"{split}_rmse"] = float(np.sqrt(np.mean(err * err)))
            out[f"{split}_mae"] = float(np.mean(np.abs(err)))
    return {k: v for k, v in out.items() if np.isfinite(v)}


def train(cfg: DictConfig, progress: bool | None = None) -> RunSummary:
    """Validate `cfg`, train one run of it, and record everything in MLflow.

    Bad values raise ConfigError before any run is created. Ctrl-C / SIGTERM end the run as KILLED."""
    t0 = time.perf_counter()
    plan = build_plan(cfg)
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment)
    run_id = tracker.start(cfg.tracking.get("run_name"), {"nnexp.kind": "run"})
    status = "KILLED"
    try:
        tracker.log(run_id, params=flat_params(cfg))
        tracker.log_dataset(run_id, plan.data)
        logger = CurveLogger(tracker, {0: run_id})
        result = plan.fit(callbacks=[logger, Progress(plan.epochs, enabled=progress)])[0]
        status, metrics = log_outcome(tracker, run_id, plan, result, cfg, cfg.tracking.log_model, cfg.tracking.plots)
    except BaseException as e:
        status = "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED"
        tracker.log(run_id, tags={"nnexp.failure_reason": f"{type(e).__name__}: {e}"[:5000]})
        tracker.end(run_id, status)
        raise
    return RunSummary(run_id, status, result, metrics, tracker.uri, tracker.experiment_id, time.perf_counter() - t0)


def summary_text(s: RunSummary) -> str:
    r = s.result
    if s.status == "FAILED":
        return f"run {s.run_id} FAILED: {r.reason}\n  tracking store: {s.tracking_uri}"
    m = s.metrics

    def r2(split: str) -> str:
        if f"{split}_r2" in m:
            return f"{m[f'{split}_r2']:.4f}"
        return "undefined" if f"{split}_mse" in m else "-"  # R² of a constant target has no meaning

    def mse(split: str) -> str:
        return f"{m[f'{split}_mse']:.5f}" if f"{split}_mse" in m else "-"

    lines = [
        f"run {s.run_id}: {r.status} after {r.epochs} epochs (best epoch {r.best_epoch}) in {s.seconds:.1f} s",
        f"  R2   train {r2('train')}   val {r2('val')}   test {r2('test')}",
        f"  MSE  train {mse('train')}  val {mse('val')}  test {mse('test')}   gap (test - train) {m['gap_mse']:+.5f}",
        f"  tracking store: {s.tracking_uri}  (experiment id {s.experiment_id}; browse with `make ui`)",
    ]
    return "\n".join(lines)
