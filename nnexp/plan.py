"""From a composed config to a validated training `Plan`.

Every value is checked here, before anything is trained or recorded, and a bad one raises
`ConfigError` naming the field, the value and what is allowed. `Plan` fields may hold one value per
replica (arrays of shape (R,)), which is how a population of sweep trials trains in one pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from nnexp.engine import optim, schedules
from nnexp.engine.data import Dataset
from nnexp.engine.loop import Callback, FitResult, fit
from nnexp.engine.model import MLPSpec
from nnexp.engine.network import Network
from nnexp.errors import ConfigError, choice
from nnexp.interrupts import Checkpoint

Array = np.ndarray
Value = Any  # a scalar, or an (R,) array in a population


def _number(cfg: DictConfig, path: str, ok, allowed: str, integer: bool = False) -> Any:
    value = OmegaConf.select(cfg, path)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(path, value, allowed)
    if integer and int(value) != value:
        raise ConfigError(path, value, allowed)
    if not ok(value):
        raise ConfigError(path, value, allowed)
    return int(value) if integer else float(value)


OPTIMIZER_FIELDS = {  # field: (check, allowed)
    "lr": (lambda v: v > 0, "expected a learning rate > 0"),
    "momentum": (lambda v: 0 <= v < 1, "expected a momentum in [0, 1)"),
    "beta1": (lambda v: 0 <= v < 1, "expected beta1 in [0, 1)"),
    "beta2": (lambda v: 0 <= v < 1, "expected beta2 in [0, 1)"),
    "rho": (lambda v: 0 <= v < 1, "expected rho in [0, 1)"),
    "eps": (lambda v: v > 0, "expected eps > 0"),
    "l1": (lambda v: v >= 0, "expected an L1 strength >= 0"),
    "l2": (lambda v: v >= 0, "expected an L2 strength >= 0"),
}
SCHEDULE_FIELDS = {
    "decay_rate": (lambda v: 0 < v <= 1, "expected a decay rate in (0, 1]", False),
    "decay_steps": (lambda v: v >= 1, "expected an integer number of epochs >= 1", True),
    "min_lr": (lambda v: v >= 0, "expected a minimum learning rate >= 0", False),
}


@dataclass
class Plan:
    """Everything a training run needs, validated. Hyperparameters may be (R,) arrays."""

    spec: MLPSpec
    data: Dataset
    optimizer: str
    optimizer_args: dict[str, Value]
    lr: Value
    schedule: str
    schedule_args: dict[str, Value]
    epochs: int
    batch_size: int
    patience: int | None
    seeds: list[int]
    dropout: Value = None
    eval_every: int = 1  # evaluate after every k-th epoch (and the last); sweeps thin their curves anyway
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_replicas(self) -> int:
        return len(self.seeds)

    def network(self) -> Network:
        return self.spec.build(self.seeds, dropout=self.dropout)

    def make_optimizer(self, net: Network) -> optim.Transform:
        return optim.make(self.optimizer, decay_mask=net.decay_mask, **self.optimizer_args)

    def make_schedule(self) -> schedules.Schedule:
        args = dict(self.schedule_args)
        if self.schedule == "cosine":
            args["epochs"] = self.epochs
        return schedules.get(self.schedule, lr=self.lr, **args)

    def fit(self, callbacks: Sequence[Callback] = ()) -> FitResult:
        """Train the plan; between epochs an interrupt that a finaliser swallowed is raised (`Checkpoint`)."""
        net = self.network()
        return fit(net, self.make_optimizer(net), self.make_schedule(), self.data, epochs=self.epochs,
                   batch_size=self.batch_size, shuffle_seeds=self.seeds, patience=self.patience,
                   callbacks=[Checkpoint(), *callbacks], eval_every=self.eval_every)

    def with_seeds(self, seeds: Sequence[int]) -> Plan:
        return replace(self, seeds=[int(s) for s in seeds])


def _instantiate(node: DictConfig, group: str) -> Any:
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        if isinstance(cause, TypeError):  # an argument the target does not take
            raise ConfigError(group, OmegaConf.to_container(node), f"{cause}") from None
        raise


def build_plan(cfg: DictConfig, data: Dataset | None = None, spec: MLPSpec | None = None) -> Plan:
    """Validate `cfg` and turn it into a Plan (one replica, seed `cfg.seed`).

    `data` and `spec` skip building them again when the caller already has them for this `cfg.data`
    and `cfg.model`."""
    seed = _number(cfg, "seed", lambda v: v >= 0, "expected an integer seed >= 0", integer=True)
    opt = cfg.optimizer
    name = choice("optimizer.name", opt.get("name"), optim.OPTIMIZERS)
    args: dict[str, Value] = {}
    for key in opt:
        if key in ("name", "lr"):
            continue
        if key == "nesterov":
            if not isinstance(opt.nesterov, bool):
                raise ConfigError("optimizer.nesterov", opt.nesterov, "expected true or false")
            args["nesterov"] = opt.nesterov
            continue
        if key not in OPTIMIZER_FIELDS:
            raise ConfigError(f"optimizer.{key}", opt[key], f"not a setting of optimizer {name!r}")
        check, allowed = OPTIMIZER_FIELDS[key]
        args[key] = _number(cfg, f"optimizer.{key}", check, allowed)
    lr = _number(cfg, "optimizer.lr", *OPTIMIZER_FIELDS["lr"])
    sched = cfg.schedule
    sname = choice("schedule.name", sched.get("name"), schedules.SCHEDULES)
    sargs: dict[str, Value] = {}
    for key in sched:
        if key == "name":
            continue
        if key not in SCHEDULE_FIELDS:
            raise ConfigError(f"schedule.{key}", sched[key], f"not a setting of schedule {sname!r}")
        check, allowed, integer = SCHEDULE_FIELDS[key]
        sargs[key] = _number(cfg, f"schedule.{key}", check, allowed, integer)
    if sname == "cosine" and sargs.get("min_lr", 0.0) >= lr:
        raise ConfigError("schedule.min_lr", sargs["min_lr"], f"expected less than optimizer.lr = {lr}")
    epochs = _number(cfg, "trainer.epochs", lambda v: v >= 1, "expected an integer >= 1", integer=True)
    batch = _number(cfg, "trainer.batch_size", lambda v: v >= 1, "expected an integer >= 1", integer=True)
    patience = cfg.trainer.get("early_stopping_patience")
    if patience is not None:
        patience = _number(cfg, "trainer.early_stopping_patience", lambda v: v >= 1,
                           "expected an integer >= 1, or null to train every epoch", integer=True)
    spec = spec or _instantiate(cfg.model, "model")
    if data is None:
        data = _instantiate(cfg.data, "data")
    if spec.sizes[0] != data.n_features:
        raise ConfigError("model.sizes", list(spec.sizes),
                          f"the input size must match the data's {data.n_features} features "
                          f"({', '.join(data.feature_names)}); use sizes starting with {data.n_features}")
    if spec.sizes[-1] != 1:
        raise ConfigError("model.sizes", list(spec.sizes), "the output size must be 1 (one regression target)")
    if patience is not None and len(data.x_val) == 0:
        raise ConfigError("trainer.early_stopping_patience", patience,
                          "early stopping needs a validation split (data.val_fraction > 0)")
    return Plan(spec, data, name, args, lr, sname, sargs, epochs, batch, patience, [seed])
