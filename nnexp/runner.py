"""One experiment run (`make train`): a composed config in, a trained model and a fully recorded MLflow
run out. Training never waits for MLflow: the run's records go to the spool, and the recorder (on the
other core) puts them in the store; the command ends once they are there."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from nnexp import schema
from nnexp.config import run_params
from nnexp.console import Progress
from nnexp.engine.data import Dataset
from nnexp.engine.loop import DIVERGED, Callback, ReplicaResult
from nnexp.engine.model import Model
from nnexp.plan import Plan, build_plan
from nnexp.recording import Recording, records

FLUSH_SECONDS = 10.0  # a long run's curves reach MLflow this often, so it can be watched live
PLOT_POINTS = 5000  # predicted-vs-actual and residual plots show at most this many test rows


@dataclass
class RunSummary:
    run_id: str
    status: str  # MLflow status: FINISHED or FAILED
    result: ReplicaResult
    metrics: dict[str, float]
    tracking_uri: str
    experiment: str
    seconds: float


class CurveSpool(Callback):
    """Buffers a run's per-epoch metrics and writes them to the spool every `flush_seconds` (and when the
    run ends), so a long run can be watched in the UI while it trains."""

    def __init__(self, rec: Recording, key: str, experiment: str, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.rec, self.key, self.experiment, self.flush_seconds = rec, key, experiment, flush_seconds
        self.points: list[list[Any]] = []
        self.last = time.monotonic()

    def on_epoch_end(self, epoch: int, replicas: np.ndarray, metrics: dict[str, np.ndarray]) -> None:
        self.rec.check()  # the store cannot be used: stop now, not after training
        self.points += [[k, float(v[0]), epoch] for k, v in metrics.items() if np.isfinite(v[0])]
        if time.monotonic() - self.last > self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self.points:
            self.rec.write(records.run(self.key, self.experiment, metrics=self.points))
            self.points = []
        self.last = time.monotonic()


def outcome_record(plan: Plan, result: ReplicaResult, cfg: DictConfig, model_dir: Path | None,
                   plot_dir: Path | None) -> tuple[str, dict[str, float], dict[str, Any]]:
    """The closing record's fields for a finished replica (curves already spooled): final metrics, status
    and reason, the composed config, the figures (drawn into `plot_dir`) and the model's files."""
    fields: dict[str, Any] = {"texts": {"config.yaml": OmegaConf.to_yaml(cfg, resolve=True)},
                              "end_ms": records.now_ms()}
    if result.status == DIVERGED:
        fields |= {"tags": {"nnexp.status": result.status, "nnexp.failure_reason": result.reason}, "status": "FAILED"}
        return "FAILED", {}, fields
    logged = {k: dict(enumerate(v)) for k, v in result.curves.items()}  # every epoch is spooled
    d = plan.data
    model = Model.from_state(plan.spec, result.state, d.scaler, {"dataset": d.name, "dataset_digest": d.digest()},
                             d.feature_names, d.target_name)
    metrics, points, step = records.final_points(result, plan.spec, logged)
    metrics |= errors_in_units(model, d)
    tags = {"nnexp.status": result.status}
    undefined = [s for s in ("train", "val", "test") if f"{s}_mse" in metrics and f"{s}_r2" not in metrics]
    if undefined:
        tags["nnexp.r2_undefined"] = f"R² is undefined where the target is constant: {', '.join(undefined)}"
    if result.reason:
        tags["nnexp.stop_reason"] = result.reason
    fields |= {"metrics": points + [[k, v, 0] for k, v in errors_in_units(model, plan.data).items()],
               "tags": tags, "status": "FINISHED"}
    if plot_dir is not None:
        fields["files"] = figures(plan, result, model, plot_dir)
    if model_dir is not None:
        model.save(model_dir)
        fields["model"] = {"dir": str(model_dir), "step": step}
    return "FINISHED", metrics, fields


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


def figures(plan: Plan, result: ReplicaResult, model: Model, out: Path) -> list[list[str]]:
    """Learning curves, and predicted against actual and residuals on the test split in the target's units,
    drawn into `out` as the record's files (artifact folder plots/). Drawn here, not in the recorder: after
    training this process only waits, while the recorder is still busy importing MLflow on the other core."""
    from nnexp import plots

    d = plan.data
    rows = np.arange(len(d.x_test))[:: max(1, -(-len(d.x_test) // PLOT_POINTS))]
    y_true = d.scaler.y_inverse(d.y_test[rows, 0])
    y_pred = model.predict(d.scaler.x_mean + d.x_test[rows] * d.scaler.x_std)
    out.mkdir(parents=True, exist_ok=True)
    paths = [plots.learning_curves(result.curves, out / "learning_curves.png"),
             plots.predictions(y_true, y_pred, out / "predicted_vs_actual.png", d.target_name),
             plots.residuals(y_true, y_pred, out / "residuals.png", d.target_name)]
    return [[str(p), "plots"] for p in paths]


def run_name(plan: Plan, seed: bool = True) -> str:
    """What a run is, as its name: `4-6-4-1 sgd_momentum lr=0.1 step_decay seed=0`."""
    sizes = "-".join(str(s) for s in plan.spec.sizes)
    parts = [sizes, plan.optimizer, f"lr={float(plan.lr):g}", plan.schedule]
    return " ".join(parts + ([f"seed={plan.seeds[0]}"] if seed else []))


def run(cfg: DictConfig, progress: bool | None = None) -> RunSummary:
    """Validate `cfg`, train one run of it, and record everything in MLflow.

    Bad values raise ConfigError before anything is recorded. Ctrl-C / SIGTERM end the run as KILLED."""
    t0 = time.perf_counter()
    settings = schema.tracking(cfg.tracking)
    plan = build_plan(cfg)
    rec = Recording(settings["uri"])
    key, exp = records.new_key("run"), settings["experiment"]
    try:
        rec.write(records.run(key, exp, name=settings["run_name"] or run_name(plan), start_ms=records.now_ms(),
                              tags={"nnexp.kind": "run", **records.provenance()}, params=run_params(cfg, plan),
                              dataset=records.dataset(plan.data)))
        curves = CurveSpool(rec, key, exp)
        result = plan.fit(callbacks=[curves, Progress(plan.epochs, enabled=progress)])[0]
        curves.flush()
        model_dir = rec.scratch(key) / "model" if settings["log_model"] else None
        plot_dir = rec.scratch(f"{key}-plots") if settings["plots"] else None
        status, metrics, fields = outcome_record(plan, result, cfg, model_dir, plot_dir)
        rec.write(records.run(key, exp, **fields))
        rec.finish()
    except BaseException as e:
        ended = "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED"
        rec.end_after(key, exp, ended, f"{type(e).__name__}: {e}"[:5000])
        raise
    return RunSummary(rec.run_ids.get(key, "?"), status, result, metrics, rec.uri, exp, time.perf_counter() - t0)


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
        f"  MSE  train {mse('train')}  val {mse('val')}  test {mse('test')}   gap (test - train) {m['gap_mse']:+.5f}"
        "   (on the target scaled to [0, 1])",
        f"  tracking store: {s.tracking_uri}  (experiment {s.experiment}; browse with `make ui`)",
    ]
    return "\n".join(lines)
