"""One experiment run: a composed config in, a trained model and a fully recorded MLflow run out."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nnexp import plots, schema
from nnexp.config import run_params
from nnexp.console import Progress
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
    metrics, points = final_points(result, plan.spec, logged)
    tags = {"nnexp.status": result.status}
    undefined = [s for s in ("train", "val", "test") if f"{s}_mse" in metrics and f"{s}_r2" not in metrics]
    if undefined:
        tags["nnexp.r2_undefined"] = f"R² is undefined where the target is constant: {', '.join(undefined)}"
    if result.reason:
        tags["nnexp.stop_reason"] = result.reason
    tracker.log(run_id, metrics=points, tags=tags)
    model = Model.from_state(plan.spec, result.state, plan.data.scaler,
                             {"run_id": run_id, "dataset": plan.data.name, "dataset_digest": plan.data.digest()})
    if make_plots:
        with tempfile.TemporaryDirectory() as tmp:
            d = plan.data
            y_true = d.scaler.y_inverse(d.y_test[:, 0])
            y_pred = model.predict(d.scaler.x_mean + d.x_test * d.scaler.x_std)
            for png in (plots.learning_curves(result.curves, Path(tmp) / "learning_curves.png"),
                        plots.predictions(y_true, y_pred, Path(tmp) / "predicted_vs_actual.png", d.target_name),
                        plots.residuals(y_true, y_pred, Path(tmp) / "residuals.png", d.target_name)):
                tracker.log_artifact(run_id, png, "plots")
    if log_model:
        tracker.log_model(run_id, model, "FINISHED")
    else:
        tracker.end(run_id, "FINISHED")
    return "FINISHED", metrics


def run_name(plan: Plan, seed: bool = True) -> str:
    """What a run is, as its name: `4-6-4-1 sgd_momentum lr=0.1 step_decay seed=0`."""
    sizes = "-".join(str(s) for s in plan.spec.sizes)
    parts = [sizes, plan.optimizer, f"lr={float(plan.lr):g}", plan.schedule]
    return " ".join(parts + ([f"seed={plan.seeds[0]}"] if seed else []))


def train(cfg: DictConfig, progress: bool | None = None) -> RunSummary:
    """Validate `cfg`, train one run of it, and record everything in MLflow.

    Bad values raise ConfigError before any run is created. Ctrl-C / SIGTERM end the run as KILLED."""
    t0 = time.perf_counter()
    settings = schema.tracking(cfg.tracking)
    plan = build_plan(cfg)
    tracker = Tracker(settings["uri"], settings["experiment"])
    run_id = tracker.start(settings["run_name"] or run_name(plan), {"nnexp.kind": "run"})
    status = "KILLED"
    try:
        tracker.log(run_id, params=run_params(cfg, plan))
        tracker.log_dataset(run_id, plan.data)
        logger = CurveLogger(tracker, {0: run_id})
        result = plan.fit(callbacks=[logger, Progress(plan.epochs, enabled=progress)])[0]
        status, metrics = log_outcome(tracker, run_id, plan, result, cfg, settings["log_model"], settings["plots"])
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
