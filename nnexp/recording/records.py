"""What a record holds, built from the engine's results (plain data: no MLflow here).

    {"op": "run", "key": ..., "experiment": ..., "name": ..., "parent": <key> | None,
     "tags": {...}, "params": {...}, "metrics": [[name, value, step], ...], "ts": <ms>,
     "start_ms": ..., "end_ms": ..., "status": "FINISHED" | "FAILED" | "KILLED" | None (left running),
     "texts": {artifact path: text}, "figures": [{"kind": ..., "path": ..., "args": {...}}],
     "files": [[local path, artifact dir]], "dataset": {...}, "model": {"dir": ..., "step": ...},
     "fresh": bool (replace a run an earlier attempt left), "resume": bool (reopen a finished run),
     "figures_later": bool (its end will carry figures: the recorder imports the figure code when idle)}
"""

from __future__ import annotations

import functools
import math
import platform
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

import numpy as np

from nnexp import __version__
from nnexp.engine.data import Dataset
from nnexp.engine.loop import ReplicaResult
from nnexp.engine.model import MLPSpec
from nnexp.paths import project_root

SUMMARY = ("gap_mse", "best_epoch", "epochs", "n_params")
PACKAGES = {"numpy": "numpy", "scipy": "scipy", "mlflow": "mlflow", "optuna": "optuna", "hydra": "hydra-core"}


def now_ms() -> int:
    return int(time.time() * 1000)


def new_key(kind: str) -> str:
    return f"{kind}:{uuid.uuid4().hex}"


def run(key: str, experiment: str, **fields: Any) -> dict[str, Any]:
    """A run record; fields as in the module docstring."""
    return {"op": "run", "key": key, "experiment": experiment, "ts": now_ms(), **fields}


def curve_points(curves: Mapping[str, Sequence[float] | np.ndarray | Mapping[int, float]],
                 first_epoch: int = 0) -> list[list[Any]]:
    """[name, value, epoch] for every finite point of every curve (a sequence from `first_epoch`, or a
    mapping epoch -> value for a thinned curve)."""
    return [[k, float(v), int(e)] for k, arr in curves.items()
            for e, v in (arr.items() if isinstance(arr, Mapping) else enumerate(arr, first_epoch)) if math.isfinite(v)]


def final_metrics(result: ReplicaResult, spec: MLPSpec) -> dict[str, float]:
    """The returned model's metrics under the curves' names, plus gap_mse, best_epoch, epochs, n_params."""
    f = {k: v for k, v in result.final.items() if np.isfinite(v)}
    f["gap_mse"] = result.final["test_mse"] - result.final["train_mse"]
    f["best_epoch"] = float(result.best_epoch)
    f["epochs"] = float(result.epochs)
    f["n_params"] = float(spec.n_params)
    return f


def final_points(result: ReplicaResult, spec: MLPSpec, logged: Mapping[str, Mapping[int, float]]
                 ) -> tuple[dict[str, float], list[list[Any]], int]:
    """The returned model's final metrics, the points that record them beside the curves already
    `logged` (summary values at step 0, the others at the last epoch where a curve does not hold them
    already, values of weights restored by early stopping one step after the last epoch), and the
    step at which the final values of the curves stand (for linking them to the logged model)."""
    metrics = final_metrics(result, spec)
    last = result.epochs - 1
    restored = False
    points = []
    for k, v in metrics.items():
        if k in SUMMARY:
            points.append([k, v, 0])
        elif k in result.curves and result.curves[k][-1] != v:
            points.append([k, v, result.epochs])
            restored = True
        elif logged.get(k, {}).get(last) != v:
            points.append([k, v, last])
    return metrics, points, result.epochs if restored else last


@functools.cache
def provenance() -> dict[str, str]:
    """Git commit (and whether the tree has uncommitted changes), package versions, platform, CPU."""
    root = project_root()

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no")) if commit else False
    out = {"mlflow.source.git.commit": commit or "unknown", "git_dirty": str(dirty).lower(),
           "nnexp_version": __version__, "python_version": platform.python_version()}
    for short, dist in PACKAGES.items():
        try:
            out[f"{short}_version"] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[f"{short}_version"] = "not installed"
    return out | {"platform": platform.platform(), "cpu": cpu()}


def cpu() -> str:
    """The CPU's vector extensions NumPy dispatches to: its results can differ in the last bits
    between machines that differ here (e.g. AVX512F against AVX2)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # another NumPy layout
        return platform.machine()
    top = [f for f in ("AVX512F", "AVX2", "FMA3", "SSE42", "ASIMD", "NEON") if features.get(f)]
    return f"{platform.machine()} {' '.join(top) or 'baseline'}"


def dataset(data: Dataset, context: str = "training") -> dict[str, Any]:
    """A dataset input: name, digest and shape (never the rows)."""
    return {"name": data.name, "digest": data.digest(), "context": context, "source": {"features": data.feature_names,
            "target": data.target_name}, "profile": {"train_rows": len(data.x_train), "val_rows": len(data.x_val),
                                                     "test_rows": len(data.x_test), "features": data.n_features}}
