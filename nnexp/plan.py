"""From a composed config to a validated training `Plan`.

Every value is checked here, before anything is trained or recorded, and a bad one raises
`ConfigError` naming the field, the value and what is allowed. `Plan` fields may hold one value per
replica (arrays of shape (R,)), which is how a population of sweep trials trains in one pass.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from nnexp import schema
from nnexp.engine import csvfile, datasets, optim, schedules
from nnexp.engine.data import Dataset
from nnexp.engine.loop import Callback, FitResult, check_fit, fit
from nnexp.engine.model import MLPSpec
from nnexp.engine.network import Network
from nnexp.errors import ConfigError, choice
from nnexp.interrupts import check

Array = np.ndarray
Value = Any  # a scalar, or an (R,) array in a population


class Checkpoint(Callback):
    """Calls `check()` after every evaluated epoch: an interrupt that a finaliser swallowed is raised
    between epochs (`Plan.fit` adds it to every training run)."""

    def on_epoch_end(self, epoch: int, replicas: Any, metrics: Any) -> None:
        check()


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


# data.name: (the engine's function, its fields and their kinds); a data config names its set, it never
# names code to run (no `_target_`: a recorded or crafted config cannot make nnexp call anything else)
DATASETS: dict[str, tuple[Any, dict[str, str]]] = {
    "seed_regression": (datasets.seed_regression,
                        {"n_train": "int", "n_test": "int", "noise": "float", "val_fraction": "float", "seed": "int"}),
    "seed_like": (datasets.seed_like, {"n_train": "int", "n_test": "int", "noise": "float", "val_fraction": "float",
                                       "seed": "int", "coef_seed": "int"}),
    "friedman1": (datasets.friedman1, {"n_train": "int", "n_test": "int", "noise": "float", "val_fraction": "float",
                                       "seed": "int", "n_features": "int"}),
    "simple_patterns": (datasets.simple_patterns,
                        {"pattern": "str", "repeats": "int", "noise": "float", "seed": "int"}),
    "csv": (csvfile.load_csv, {"path": "str", "target": "str", "features": "names", "test_fraction": "float",
                                "val_fraction": "float", "seed": "int"}),
}


def _data_value(field: str, kind: str, value: Any) -> Any:
    if kind == "str":
        return schema.text(field, value, "expected a string")
    if kind == "names":
        if value is None:
            return None
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(field, value, "expected a list of column names, or null for every other column")
        return list(value)
    integer = kind == "int"
    return schema.number(field, value, lambda v: True, f"expected {'an integer' if integer else 'a number'}", integer)


def build_data(cfg: DictConfig) -> Dataset:
    """The dataset `cfg.data` names, its fields checked by kind (the engine checks their ranges)."""
    node = _plain(cfg.data, "data")
    name = choice("data.name", node.get("name"), DATASETS)
    fn, fields = DATASETS[name]
    schema.known_keys({k: v for k, v in node.items() if k != "name"}, "data", fields, f"data set {name!r}")
    missing = [k for k, v in node.items() if v == "???"]
    if missing:
        raise ConfigError(f"data.{missing[0]}", "???", f"data set {name!r} needs it: set data.{missing[0]}=...")
    return fn(**{k: _data_value(f"data.{k}", fields[k], v) for k, v in node.items() if k != "name"})


def build_spec(cfg: DictConfig, n_features: int) -> MLPSpec:
    """The network `cfg.model` describes on data of `n_features` inputs: n_features -> hidden... -> 1."""
    node = _plain(cfg.model, "model")
    schema.known_keys(node, "model", schema.MODEL, "model")
    hidden = node.get("hidden")
    if not isinstance(hidden, list) or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1
                                               for h in hidden):
        raise ConfigError("model.hidden", hidden, "expected a list of hidden-layer widths, e.g. [6, 4] (the input "
                          "width comes from the data, the output is the target)")
    kwargs: dict[str, Any] = {k: node[k] for k in ("hidden_activation", "output_activation", "init") if k in node}
    for k in ("dropout", "leaky_relu_alpha"):
        if k in node:
            kwargs[k] = schema.number(f"model.{k}", node[k])
    if "batch_norm" in node:
        kwargs["batch_norm"] = schema.boolean("model.batch_norm", node["batch_norm"])
    return MLPSpec(sizes=(n_features, *hidden, 1), **kwargs)


def _plain(node: Any, where: str) -> dict[str, Any]:
    if not isinstance(node, DictConfig):
        raise ConfigError(where, node, f"expected a {where} config (choose one of conf/{where}/)")
    return {str(k): v for k, v in OmegaConf.to_container(node, resolve=True).items()}  # type: ignore[union-attr]


def _group_args(cfg: DictConfig, group: str, table: dict[str, tuple[str, ...]], names: Any) -> tuple[str, dict]:
    """The option named in `cfg.<group>.name` and its other fields, checked against that option's own."""
    node = _plain(cfg.get(group), group)
    name = choice(f"{group}.name", node.get("name"), names)
    fields = table[name]
    schema.known_keys({k: v for k, v in node.items() if k != "name"}, group, fields, f"{group} {name!r}")
    args = {}
    for k, v in node.items():
        if k == "name":
            continue
        args[k] = schema.boolean(f"{group}.{k}", v) if k == "nesterov" else schema.number(f"{group}.{k}", v)
    return name, args


def build_plan(cfg: DictConfig, data: Dataset | None = None, spec: MLPSpec | None = None) -> Plan:
    """Validate `cfg` and turn it into a Plan (one replica, seed `cfg.seed`).

    `data` and `spec` skip building them again when the caller already has them for this `cfg.data`
    and `cfg.model`."""
    schema.known_keys(cfg, "", schema.TOP_LEVEL, "the config (top level)")
    seed = schema.number("seed", cfg.get("seed"))
    name, args = _group_args(cfg, "optimizer", schema.OPTIMIZERS, optim.OPTIMIZERS)
    lr = args.pop("lr", None)
    if lr is None:
        raise ConfigError("optimizer.lr", None, "expected a learning rate > 0")
    sname, sargs = _group_args(cfg, "schedule", schema.SCHEDULES, schedules.SCHEDULES)
    if sname == "cosine" and sargs.get("min_lr", 0.0) >= lr:
        raise ConfigError("schedule.min_lr", sargs["min_lr"], f"expected less than optimizer.lr = {lr}")
    trainer = _plain(cfg.trainer, "trainer")
    schema.known_keys(trainer, "trainer", schema.TRAINER)
    epochs = schema.number("trainer.epochs", trainer.get("epochs"))
    batch = schema.number("trainer.batch_size", trainer.get("batch_size"))
    patience = trainer.get("early_stopping_patience")
    if patience is not None:
        patience = schema.number("trainer.early_stopping_patience", patience)
    check_decay(name, lr, args)
    data = data if data is not None else build_data(cfg)
    spec = spec if spec is not None else build_spec(cfg, data.n_features)
    if spec.sizes[0] != data.n_features:
        raise ValueError(f"a model for {spec.sizes[0]} inputs cannot train on {data.n_features} features")
    check_fit(epochs, batch, patience, 1, len(data.x_val) > 0)
    plan = Plan(spec, data, name, args, lr, sname, sargs, epochs, batch, patience, [seed])
    check_memory(plan)
    return plan


def check_decay(name: str, lr: float, args: dict[str, Any]) -> None:
    """Weight decay alone multiplies every weight by (1 - lr l2) a step (heavy ball: a root of
    z^2 - (1 + mu - lr l2) z + mu): at lr l2 >= 2 (1 + mu) the weights grow geometrically whatever the data,
    so the run can only diverge."""
    if name in ("sgd", "sgd_momentum") and lr * args.get("l2", 0.0) >= 2 * (1 + args.get("momentum", 0.0)):
        limit = 2 * (1 + args.get("momentum", 0.0)) / lr
        raise ConfigError("optimizer.l2", args["l2"], f"with optimizer.lr = {lr} the weight decay alone makes the "
                          f"weights grow without bound (lr x l2 must stay below 2 (1 + momentum)): expected l2 < "
                          f"{limit:.4g}")


def memory_estimate(plan: Plan, replicas: int | None = None) -> dict[str, float]:
    """Bytes a pass of `replicas` copies of `plan` allocates, by what drives it (float64 arrays)."""
    r = replicas or plan.n_replicas
    widths = sum(plan.spec.sizes)
    d = plan.data
    state = {"sgd": 0, "sgd_momentum": 1, "adam": 2, "rmsprop": 1, "adagrad": 1}[plan.optimizer]
    copies = 2 + state + (1 if plan.patience is not None else 0)  # weights, gradients, optimizer state, best
    n_eval = len(d.x_train) + len(d.x_val) + len(d.x_test)
    return {
        "trainer.epochs": 8.0 * 7 * plan.epochs * r,  # seven curves a replica
        "model.hidden": 8.0 * r * (copies * plan.spec.n_params
                                   + 3 * widths * min(plan.batch_size, len(d.x_train)) + 2 * widths * n_eval),
    }


def available_memory() -> float:
    """Bytes of memory this machine has free now (Linux), else its physical memory, else no limit."""
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return math.inf


def check_memory(plan: Plan, replicas: int | None = None, field: str = "") -> None:
    """Refuse a plan whose arrays cannot fit in memory before anything is created, naming the field
    that drives the size (or `field`, e.g. sweep.population) and the estimate."""
    parts = memory_estimate(plan, replicas)
    need, free = sum(parts.values()), available_memory()
    if need <= 0.8 * free:
        return
    worst = field or max(parts, key=lambda k: parts[k])
    value = {"trainer.epochs": plan.epochs, "model.hidden": list(plan.spec.sizes[1:-1])}.get(worst, replicas)
    raise ConfigError(worst, value, f"training needs about {need / 2**30:.1f} GiB of memory "
                      f"({', '.join(f'{k}: {v / 2**30:.1f} GiB' for k, v in parts.items())}) and this machine has "
                      f"{free / 2**30:.1f} GiB free; make it smaller")
