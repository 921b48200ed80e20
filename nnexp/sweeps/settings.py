"""A sweep's own settings (`cfg.sweep`), validated, and the Optuna sampler and pruner they ask for.

Every field is checked before anything is created or recorded: strict types (an integer is an int, a
number is finite), bounds on what Optuna, numpy and MLflow accept, no unknown key (a typo gets its close
match), names and a journal file the stores can take, and no setting that would have no effect.

The config lists every pruner's fields side by side; each pruner reads only its own (`PRUNER_FIELDS`).
A field another pruner reads, set to anything but conf/sweep/default.yaml's value, is refused; so is a
pruner field changed from that default that cannot act on these trials (a warmup or an interval longer
than the trials, more startup trials than the study). The defaults themselves are never refused: they
are sized for the default 300-epoch trials, and on shorter trials the pruner simply never acts.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nnexp.config import mapping
from nnexp.errors import ConfigError, choice
from nnexp.paths import CONF_DIR
from nnexp.schema import known_keys
from nnexp.sweeps import space
from nnexp.sweeps.validate import (
    EXPERIMENT_NAME_MAX,
    MAX_TRIALS,
    SEED_MAX,
    STUDY_NAME_MAX,
    WORKER_INDEX_MAX,
    epochs,
    integer,
    name,
    seconds,
    storage,
)

METRICS = ("val_r2", "val_mse", "train_r2", "train_mse")
CURVES = ("train_mse", "val_mse", "test_mse", "train_r2", "val_r2", "test_r2", "lr")
KEYS = ("name", "study_name", "n_trials", "population", "workers", "timeout", "metric", "direction", "storage",
        "experiment", "seed", "sampler", "pruner", "max_failures_in_row", "confirm_seeds", "eval_every", "curves",
        "curve_points", "heartbeat", "space")
OPTIONAL = ("study_name", "direction", "storage", "timeout", "confirm_seeds")  # absent means null
SAMPLER = ("name", "n_startup_trials")
PRUNER = ("name", "n_startup_trials", "n_warmup_steps", "interval", "min_resource", "reduction_factor")
PRUNER_FIELDS = {"median": ("n_startup_trials", "n_warmup_steps", "interval"),
                 "hyperband": ("min_resource", "reduction_factor", "interval"), "none": ()}
HEARTBEAT = ("interval", "grace")
MAX_WORKERS = 4 * (os.cpu_count() or 1)  # worker processes on this machine: more only compete for the cores
MAX_CONFIRM_SEEDS = 100
MAX_CURVE_POINTS = 10_000


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


def read_settings(cfg: DictConfig) -> Settings:
    s = _sweep(cfg)
    n_trials = integer("sweep.n_trials", s["n_trials"], 1, MAX_TRIALS)
    metric, direction = _objective(s)
    why = "numpy seeds the sampler with sweep.seed + the worker's index, in [0, 2**32 - 1]; a worker started " \
          f"by hand takes an index below {WORKER_INDEX_MAX}"
    seed = integer("sweep.seed", s["seed"], 0, SEED_MAX - WORKER_INDEX_MAX, why)
    own = str(name("sweep.name", s["name"], STUDY_NAME_MAX, "the parent run is named sweep-<name>; MLflow keeps 250"))
    study = name("sweep.study_name", s.get("study_name"), STUDY_NAME_MAX, "the parent run is named "
                 "sweep-<study_name>; MLflow keeps 250", optional=True) or own
    timeout = seconds("sweep.timeout", s.get("timeout"), optional=True)
    params = space.parse(s["space"])
    span = epochs(cfg, params)
    eval_every = _eval_every(s["eval_every"], span)
    return Settings(
        name=own, study_name=study, n_trials=n_trials, population=integer(
            "sweep.population", s["population"], 1, MAX_TRIALS), workers=integer(
            "sweep.workers", s["workers"], 1, MAX_WORKERS, "worker processes on this machine: at most 4 per core"),
        metric=metric, direction=direction, storage=storage("sweep.storage", s.get("storage")),
        experiment=str(name("sweep.experiment", s["experiment"], EXPERIMENT_NAME_MAX, "MLflow's limit")),
        seed=seed, sampler=_sampler(s["sampler"]), pruner=_pruner(s["pruner"], eval_every, span, n_trials),
        max_failures_in_row=integer("sweep.max_failures_in_row", s["max_failures_in_row"], 1, MAX_TRIALS),
        confirm_seeds=_confirm_seeds(s.get("confirm_seeds"), OmegaConf.select(cfg, "seed", default=None)),
        eval_every=eval_every, curves=_curves(s["curves"]),
        curve_points=integer("sweep.curve_points", s["curve_points"], 1, MAX_CURVE_POINTS),
        heartbeat=_heartbeat(s["heartbeat"]), timeout=timeout, space=params,
    )


def _sweep(cfg: DictConfig) -> dict[str, Any]:
    """`cfg.sweep` as a plain dict with every key known and every required key present."""
    s = cfg.get("sweep")
    if s is None:
        raise ConfigError("sweep", None, "choose a sweep, e.g. sweep=default (options in conf/sweep/)")
    if not isinstance(s, DictConfig):
        raise ConfigError("sweep", s, "expected a sweep's settings (a mapping), e.g. sweep=default")
    try:
        raw = mapping(s)
    except OmegaConfBaseException as e:
        raise ConfigError("sweep", "...", f"cannot resolve a setting ({' '.join(str(e).split())})") from None
    known_keys(raw, "sweep", KEYS)
    for k in KEYS:
        if k not in raw and k not in OPTIONAL:
            raise ConfigError(f"sweep.{k}", None, "missing: every sweep states it (see conf/sweep/default.yaml, "
                              "which a sweep file can extend with `defaults: [default, _self_]`)")
    return raw


def _section(node: Any, where: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise ConfigError(where, node, f"expected a mapping of {', '.join(keys)}")
    known_keys(node, where, keys)
    return dict(node)


@functools.lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    """conf/sweep/default.yaml: its sampler and pruner fields are never refused for having no effect."""
    return mapping(OmegaConf.load(CONF_DIR / "sweep" / "default.yaml"))


def _objective(s: dict[str, Any]) -> tuple[str, str]:
    metric = choice("sweep.metric", s["metric"], [*METRICS, "test_r2", "test_mse"])
    if metric.startswith("test"):
        raise ConfigError("sweep.metric", metric, "the test split is for reporting only; select on val_r2 or val_mse "
                          "(or train_* when there is no validation split)")
    natural = "maximize" if metric.endswith("r2") else "minimize"
    direction = choice("sweep.direction", natural if s.get("direction") is None else s["direction"],
                       ["maximize", "minimize"])
    if direction != natural:
        kind = "a score" if natural == "maximize" else "a loss"
        raise ConfigError("sweep.direction", direction, f"{metric} is {kind}: expected {natural} (or null)")
    return metric, direction


def _eval_every(value: Any, span: tuple[int, int] | None) -> int:
    every = integer("sweep.eval_every", value, 1)
    if span and every > span[0]:
        raise ConfigError("sweep.eval_every", every, f"expected at most the epochs a trial trains ({span[0]}): a "
                          "trial is evaluated after every eval_every-th epoch and the last, so it would be evaluated "
                          "once and its curves, pruning and early stopping would see one point",
                          f"Use sweep.eval_every={span[0]} or less.")
    return every


def _sampler(node: Any) -> dict[str, Any]:
    s = _section(node, "sweep.sampler", SAMPLER)
    kind = choice("sweep.sampler.name", s.get("name"), ["tpe", "random"])
    n = integer("sweep.sampler.n_startup_trials", s.get("n_startup_trials"), 0, MAX_TRIALS)
    default = _defaults()["sampler"]["n_startup_trials"]
    if kind == "random" and n != default:
        raise ConfigError("sweep.sampler.n_startup_trials", n, "has no effect with sweep.sampler.name=random: "
                          "every trial is random", f"Remove the override (the default is {default}) or choose "
                          "sweep.sampler.name=tpe.")
    return s


def _pruner(node: Any, eval_every: int, span: tuple[int, int] | None, n_trials: int) -> dict[str, Any]:
    p = _section(node, "sweep.pruner", PRUNER)
    kind = choice("sweep.pruner.name", p.get("name"), list(PRUNER_FIELDS))
    for k in PRUNER[1:]:
        integer(f"sweep.pruner.{k}", p.get(k), {"interval": 1, "min_resource": 1, "reduction_factor": 2}.get(k, 0))
    defaults = _defaults()["pruner"]
    changed = {k for k in PRUNER[1:] if p[k] != defaults[k]}
    for k in sorted(changed - set(PRUNER_FIELDS[kind])):
        users = [n for n, fields in PRUNER_FIELDS.items() if k in fields]
        raise ConfigError(f"sweep.pruner.{k}", p[k], f"has no effect with sweep.pruner.name={kind}: only "
                          f"{' and '.join(users)} read{'s' if len(users) == 1 else ''} it",
                          f"Remove the override (the default is {defaults[k]}) or choose sweep.pruner.name={users[0]}.")
    if kind != "none" and p["interval"] % eval_every:
        raise ConfigError("sweep.pruner.interval", p["interval"], f"expected a multiple of sweep.eval_every "
                          f"({eval_every}): trials report to the pruner when they are evaluated")
    if kind != "none" and span:
        _pruner_can_act(p, kind, changed, span[1], n_trials)
    return p


def _pruner_can_act(p: dict[str, Any], kind: str, changed: set[str], longest: int, n_trials: int) -> None:
    """Refuse a changed pruner setting under which no trial could be pruned. Trials report after every
    interval-th epoch, at steps interval - 1, 2 * interval - 1, ... (steps count epochs from 0)."""
    interval = p["interval"]
    last = longest // interval * interval - 1  # the last step a trial reports at; -1: none
    if "interval" in changed and last < 0:
        raise ConfigError("sweep.pruner.interval", interval, f"no trial trains that long (at most {longest} "
                          "epochs), so none would ever report to the pruner",
                          f"Use an interval <= {longest} (a multiple of sweep.eval_every), or sweep.pruner.name=none.")
    first = {"median": "n_warmup_steps", "hyperband": "min_resource"}[kind]  # the first step it may prune at
    if first in changed and last < p[first]:
        raise ConfigError(f"sweep.pruner.{first}", p[first], f"no trial could be pruned: pruning starts at step "
                          f"{p[first]} and a trial of at most {longest} epochs last reports at step {last} (every "
                          f"{interval} epochs, counted from 0)",
                          f"Use at most {max(last, 0)}, or sweep.pruner.name=none.")
    if kind == "median" and "n_startup_trials" in changed and p["n_startup_trials"] >= n_trials:
        raise ConfigError("sweep.pruner.n_startup_trials", p["n_startup_trials"], f"no trial could be pruned: the "
                          f"pruner waits for this many complete trials and the study has {n_trials}",
                          "Use fewer, or sweep.pruner.name=none.")


def _confirm_seeds(value: Any, model_seed: Any) -> list[int]:
    if value is None or value == []:
        return []
    valid = isinstance(value, list) and 2 <= len(value) <= MAX_CONFIRM_SEEDS and all(
        isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in value) and len(set(value)) == len(value)
    if not valid:
        raise ConfigError("sweep.confirm_seeds", value, f"expected [] (skip) or 2 to {MAX_CONFIRM_SEEDS} distinct "
                          "integer seeds >= 0 (each re-trains the best config and the baseline)")
    if isinstance(model_seed, int) and not isinstance(model_seed, bool) and model_seed in value:
        raise ConfigError("sweep.confirm_seeds", value, f"seed {model_seed} is the trials' own seed (the top-level "
                          "seed): the winner was chosen on it, so the confirmation would not be on fresh seeds",
                          f"Drop {model_seed} from sweep.confirm_seeds.")
    return list(value)


def _curves(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ConfigError("sweep.curves", value, "expected a list of curves, e.g. [train_mse, val_mse]; [] for none")
    for c in value:
        choice("sweep.curves", c, CURVES)
    if len(set(value)) != len(value):
        raise ConfigError("sweep.curves", value, "expected each curve once")
    return list(value)


def _heartbeat(node: Any) -> dict[str, Any]:
    hb = _section(node, "sweep.heartbeat", HEARTBEAT)
    interval = seconds("sweep.heartbeat.interval", hb.get("interval"), least=0.1, most=3600)
    grace = seconds("sweep.heartbeat.grace", hb.get("grace"))
    if grace <= 2 * interval:  # type: ignore[operator]
        raise ConfigError("sweep.heartbeat.grace", hb["grace"], "expected more than twice sweep.heartbeat.interval")
    return hb


def make_sampler(st: Settings, worker: int) -> optuna.samplers.BaseSampler:
    seed = st.seed + worker  # workers must not replay each other's random start
    if not 0 <= seed <= SEED_MAX:
        raise ConfigError("sweep.seed", st.seed, f"with this worker's index {worker} the sampler's seed would be "
                          f"{seed}, outside numpy's range [0, 2**32 - 1]")
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
