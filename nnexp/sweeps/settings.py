"""A sweep's own settings (`cfg.sweep`), validated, and the Optuna sampler and pruner they ask for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from nnexp.config import mapping
from nnexp.errors import ConfigError, choice
from nnexp.sweeps import space

METRICS = ("val_r2", "val_mse", "train_r2", "train_mse")


@dataclass
class Settings:
    """`cfg.sweep`, validated."""

    name: str
    study_name: str
    n_trials: int
    population: int
    workers: int
    metric: str
    direction: str
    storage: str | None
    experiment: str
    seed: int
    sampler: dict
    pruner: dict
    max_failures_in_row: int
    confirm_seeds: list[int]
    eval_every: int
    curves: list[str]
    curve_points: int
    heartbeat: dict
    timeout: float | None = None
    space: list[space.Param] = field(default_factory=list)

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"


def _int(node: Any, f: str, low: int = 1) -> int:
    v = OmegaConf.select(node, f.split(".", 1)[1]) if isinstance(node, DictConfig) else node
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ConfigError(f, v, f"expected an integer >= {low}")
    return v


def settings(cfg: DictConfig) -> Settings:
    s = cfg.get("sweep")
    if s is None:
        raise ConfigError("sweep", None, "choose a sweep, e.g. sweep=default (options in conf/sweep/)")
    metric = choice("sweep.metric", s.metric, [*METRICS, "test_r2", "test_mse"])
    if metric.startswith("test"):
        raise ConfigError("sweep.metric", metric, "the test split is for reporting only; select on val_r2 or val_mse "
                          "(or train_* when there is no validation split)")
    natural = "maximize" if metric.endswith("r2") else "minimize"
    direction = choice("sweep.direction", s.get("direction") or natural, ["maximize", "minimize"])
    if direction != natural:
        kind = "a score" if natural == "maximize" else "a loss"
        raise ConfigError("sweep.direction", direction, f"{metric} is {kind}: expected {natural} (or null)")
    sampler = mapping(s.sampler)
    choice("sweep.sampler.name", sampler.get("name"), ["tpe", "random"])
    _int(sampler.get("n_startup_trials"), "sweep.sampler.n_startup_trials", 0)
    pruner = mapping(s.pruner)
    choice("sweep.pruner.name", pruner.get("name"), ["median", "hyperband", "none"])
    for k in ("n_startup_trials", "n_warmup_steps"):
        _int(pruner.get(k), f"sweep.pruner.{k}", 0)
    for k in ("interval", "min_resource", "reduction_factor"):
        _int(pruner.get(k), f"sweep.pruner.{k}", 2 if k == "reduction_factor" else 1)
    eval_every = _int(s, "sweep.eval_every")
    if pruner["name"] != "none" and pruner["interval"] % eval_every:
        raise ConfigError("sweep.pruner.interval", pruner["interval"], f"expected a multiple of sweep.eval_every "
                          f"({eval_every}): trials report to the pruner when they are evaluated")
    seeds = list(s.get("confirm_seeds") or [])
    valid = all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in seeds)
    if seeds and (len(seeds) < 2 or len(set(seeds)) != len(seeds) or not valid):
        raise ConfigError("sweep.confirm_seeds", seeds, "expected [] (skip) or at least 2 distinct integer seeds >= 0")
    curves = list(s.curves)
    for c in curves:
        choice("sweep.curves", c, ["train_mse", "val_mse", "test_mse", "train_r2", "val_r2", "test_r2", "lr"])
    hb = mapping(s.heartbeat)
    for k in ("interval", "grace"):
        if isinstance(hb.get(k), bool) or not isinstance(hb.get(k), (int, float)) or hb[k] <= 0:
            raise ConfigError(f"sweep.heartbeat.{k}", hb.get(k), "expected a number of seconds > 0")
    timeout = s.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ConfigError("sweep.timeout", timeout, "expected a number of seconds > 0, or null for no limit")
    if hb["grace"] <= 2 * hb["interval"]:
        raise ConfigError("sweep.heartbeat.grace", hb["grace"], "expected more than twice sweep.heartbeat.interval")
    return Settings(
        name=str(s.name), study_name=str(s.get("study_name") or s.name), n_trials=_int(s, "sweep.n_trials"),
        population=_int(s, "sweep.population"), workers=_int(s, "sweep.workers"), metric=metric,
        direction=direction, storage=s.get("storage"), experiment=str(s.experiment), seed=_int(s, "sweep.seed", 0),
        sampler=sampler, pruner=pruner, max_failures_in_row=_int(s, "sweep.max_failures_in_row"),
        confirm_seeds=seeds, eval_every=eval_every, curves=curves, curve_points=_int(s, "sweep.curve_points"),
        heartbeat=hb, timeout=timeout, space=space.parse(s.get("space")),
    )


def make_sampler(st: Settings, worker: int) -> optuna.samplers.BaseSampler:
    seed = st.seed + worker  # workers must not replay each other's random start
    if st.sampler["name"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=int(st.sampler["n_startup_trials"]),
                                      constant_liar=True, multivariate=True)


def make_pruner(st: Settings) -> optuna.pruners.BasePruner:
    p = st.pruner
    if p["name"] == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=int(p["n_startup_trials"]),
                                           n_warmup_steps=int(p["n_warmup_steps"]), interval_steps=1)
    if p["name"] == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=int(p["min_resource"]),
                                              reduction_factor=int(p["reduction_factor"]))
    return optuna.pruners.NopPruner()
