"""A sweep's search space, read from `sweep.space` in the config, checked before any trial, and turned
into each trial's config.

    space:
      lr:       {path: optimizer.lr, type: float, low: 0.01, high: 1.0, log: true}
      steps:    {path: schedule.decay_steps, type: int, low: 25, high: 300, step: 25}
      model:    {path: model, type: categorical, choices: [mlp_6_4, mlp_8_6_4]}
      momentum: {path: optimizer.momentum, type: float, low: 0, high: 0.95, when: {optimizer: [sgd_momentum]}}

A `path` naming a config group (`model`, `optimizer`, ...) chooses among that group's options; any
other path sets one config value. `when` samples a parameter only for some values of another
(categorical) parameter. The Optuna parameter is called by its key (`lr`).

Refused rather than left to Optuna to quietly change: a step that does not divide its range (Optuna
cuts the range) or a baseline off the grid, choices of mixed types or equal as Optuna compares them,
a field the parameter's type does not read, a `when` naming an unknown choice or a conditional
parameter (chains and cycles), two parameters setting one path in the same trial, a path under the
harness settings (sweep, tracking, ...), which no trial reads.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnexp.config import HARNESS_KEYS, mapping
from nnexp.errors import ConfigError, choice
from nnexp.paths import CONF_DIR, group_options
from nnexp.schema import boolean, known_keys
from nnexp.sweeps.validate import decimal_number, grid_neighbours, on_grid

KINDS = ("float", "int", "categorical")
FIELDS = ("path", "type", "low", "high", "log", "step", "choices", "when")
KIND_FIELDS = {"categorical": ("path", "type", "choices", "when"),
               "float": ("path", "type", "low", "high", "log", "step", "when"),
               "int": ("path", "type", "low", "high", "log", "step", "when")}
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,99}")  # the Optuna parameter and the MLflow param sampled.<name>
SEGMENT = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True)
class Param:
    name: str
    path: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()
    when: Mapping[str, tuple] = field(default_factory=dict)

    @property
    def group(self) -> bool:
        """True if the path names a config group, whose options are the choices."""
        return "." not in self.path and (CONF_DIR / self.path).is_dir()

    def active(self, values: Mapping[str, Any]) -> bool:
        return all(values.get(k) in allowed for k, allowed in self.when.items())


def _scalar(f: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f, v, "expected a finite number")
    return v


def parse(node: DictConfig | Mapping | None, where: str = "sweep.space") -> list[Param]:
    """Read and check the space: each parameter's shape (types, ranges, grids, choices), that no two
    set the same path in the same trial, and that every `when` names a choice of an unconditional
    categorical parameter. Paths are checked against the config by `run.check_space`."""
    if node is not None and not isinstance(node, (DictConfig, Mapping)):
        raise ConfigError(where, node, "expected a mapping of parameters (name: {path, type, ...})")
    params = [_param(f"{where}.{k}", str(k), spec) for k, spec in mapping(node).items()
              if spec is not None]  # `name: null` removes a parameter inherited from another sweep
    if not params:
        raise ConfigError(where, None, "expected at least one parameter to search (name: {path, type, ...})")
    _refuse_shared_paths(params, where)
    _check_conditions(params, where)
    return params


def _param(f: str, name: str, spec: Any) -> Param:
    if not NAME.fullmatch(name):
        raise ConfigError(f, name, "expected a parameter name of at most 100 letters, digits, _ and -, starting with "
                          "a letter or _ (it names the Optuna parameter and the MLflow param sampled.<name>)")
    if not isinstance(spec, dict):
        raise ConfigError(f, spec, "expected a mapping such as {path: optimizer.lr, type: float, low: 0.01, high: 1}")
    known_keys(spec, f, FIELDS, "a search parameter")
    path = _path(f, spec.get("path"))
    kind = choice(f"{f}.type", spec.get("type"), KINDS)
    known_keys(spec, f, KIND_FIELDS[kind], f"a {kind} parameter")
    when = _when(f, spec.get("when"))
    if kind == "categorical":
        return _categorical(f, Param(name, path, kind, when=when), spec.get("choices"))
    if "." not in path and (CONF_DIR / path).is_dir():
        raise ConfigError(f"{f}.type", kind, f"{path} is a config group: its options are searched with "
                          f"type: categorical and choices (options in conf/{path}/)")
    return _range(f, Param(name, path, kind, when=when), spec)


def _path(f: str, path: Any) -> str:
    if not isinstance(path, str) or not path or not all(SEGMENT.fullmatch(s) for s in path.split(".")):
        raise ConfigError(f"{f}.path", path, "expected the config path it sets, e.g. optimizer.lr or model")
    if path.split(".")[0] in HARNESS_KEYS:
        raise ConfigError(f"{f}.path", path, f"{path.split('.')[0]} settings say how a sweep runs and records, not "
                          "what a trial trains: sampling them would have no effect on the trials")
    return path


def _when(f: str, when: Any) -> dict[str, tuple]:
    if when is None or when == {}:
        return {}
    scalar = (str, int, float, bool)
    if not isinstance(when, dict) or not all(
            isinstance(v, scalar) or (isinstance(v, list) and v and all(isinstance(x, scalar) for x in v))
            for v in when.values()):
        raise ConfigError(f"{f}.when", when, "expected {other_param: [values]}, a non-empty list of its choices")
    return {str(k): tuple(v) if isinstance(v, list) else (v,) for k, v in when.items()}


def _same(a: Any, b: Any) -> bool:
    """Equal as Optuna tells choices apart (1 and 1.0 are one choice; true and 1 are not compared)."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _kind(c: Any) -> str:
    return "boolean" if isinstance(c, bool) else "number" if isinstance(c, (int, float)) else type(c).__name__


def _categorical(f: str, p: Param, choices: Any) -> Param:
    if not isinstance(choices, list) or len(choices) < 2:
        raise ConfigError(f"{f}.choices", choices, "expected a list of at least two choices (one choice searches "
                          "nothing: set the value in the config instead)" if isinstance(choices, list) and choices
                          else "expected a non-empty list of choices")
    duplicate = any(_same(c, d) for i, c in enumerate(choices) for d in choices[:i])
    if any(isinstance(c, (list, dict)) for c in choices) or duplicate:
        raise ConfigError(f"{f}.choices", choices, "expected distinct scalar choices (name a config option for "
                          "structured values, e.g. a model variant in conf/model/)")
    if any(isinstance(c, float) and not math.isfinite(c) for c in choices):
        raise ConfigError(f"{f}.choices", choices, "expected finite numbers")
    if len({_kind(c) for c in choices if c is not None}) > 1:
        raise ConfigError(f"{f}.choices", choices, "expected choices of one type: numbers, strings, or true/false "
                          "(null may join them)")
    options = group_options(p.path) if p.group else []  # a config group's choices: files in conf/<group>/
    for c in choices if options else ():
        if c not in options:
            raise ConfigError(f"{f}.choices", c, f"no such option in conf/{p.path}/; options: {', '.join(options)}")
    return replace(p, choices=tuple(choices))


def _range(f: str, p: Param, spec: dict[str, Any]) -> Param:
    low, high = _scalar(f"{f}.low", spec.get("low")), _scalar(f"{f}.high", spec.get("high"))
    step = None if spec.get("step") is None else _scalar(f"{f}.step", spec.get("step"))
    for k, v in (("low", low), ("high", high), ("step", step)):
        if p.kind == "int" and isinstance(v, float):
            raise ConfigError(f"{f}.{k}", v, "an int parameter needs integer low, high and step")
    if not low < high or not math.isfinite(high - low):
        raise ConfigError(f"{f}.high", high, f"expected a range with low < high (low is {low}): the range is empty"
                          if not low < high else "expected a range whose width is a finite number")
    log = boolean(f"{f}.log", spec.get("log", False))
    if log and low <= 0:
        raise ConfigError(f"{f}.low", low, "a log-scale range needs low > 0")
    if step is not None and (step <= 0 or step > high - low or log):
        raise ConfigError(f"{f}.step", step, "expected 0 < step <= high - low, and no step on a log scale")
    if step is not None and not on_grid(high, low, step):
        below, above = grid_neighbours(high, low, step)
        fits = sorted((above, below), key=lambda h: abs(Decimal(str(h)) - Decimal(str(high))))
        width = decimal_number(Decimal(str(high)) - Decimal(str(low)))
        raise ConfigError(f"{f}.high", high, f"the range [{low}, {high}] is not a whole number of steps of {step}: "
                          f"Optuna would silently cut it to [{low}, {below}]",
                          f"Use high: {fits[0]} (or {fits[1]}), or a step that divides {width}.")
    return replace(p, low=low, high=high, log=log, step=step)


def _refuse_shared_paths(params: Sequence[Param], where: str) -> None:
    """Two parameters setting one path in the same trial would overwrite each other: only parameters
    whose conditions exclude each other (lr for SGD, adam_lr for Adam) may share a path."""
    for i, p in enumerate(params):
        for q in params[:i]:
            exclusive = any(k in q.when and not any(_same(a, b) for a in v for b in q.when[k])
                            for k, v in p.when.items())
            if p.path == q.path and not exclusive:
                raise ConfigError(f"{where}.{p.name}.path", p.path, f"parameter {q.name!r} sets {p.path} too, in "
                                  "the same trials: one would overwrite the other", "Remove one, or sample them under "
                                  "`when` conditions that exclude each other (as lr and adam_lr in "
                                  "conf/sweep/architecture.yaml).")


def _check_conditions(params: Sequence[Param], where: str) -> None:
    """Every `when` names another, unconditional, categorical parameter and some but not all of its choices."""
    by_name = {p.name: p for p in params}
    for p in params:
        for other, allowed in p.when.items():
            f, q, shown = f"{where}.{p.name}.when", by_name.get(other), {k: list(v) for k, v in p.when.items()}
            if q is p:
                raise ConfigError(f, shown, "a parameter cannot be sampled on a condition on itself")
            if q is None or q.kind != "categorical":
                raise ConfigError(f, shown, f"{other!r} is not a categorical parameter of this space "
                                  f"({', '.join(sorted(by_name))})")
            if q.when:
                raise ConfigError(f, shown, f"{other!r} is itself sampled only when "
                                  f"{ {k: list(v) for k, v in q.when.items()} }: a condition may name only a "
                                  "parameter every trial samples")
            for v in allowed:
                if not any(_same(v, c) for c in q.choices):
                    close = difflib.get_close_matches(str(v), [str(c) for c in q.choices], n=2)
                    guess = [repr(c) for c in q.choices if str(c) in close]
                    raise ConfigError(f"{f}.{other}", v, f"not a choice of {other}; its choices: "
                                      f"{', '.join(map(repr, q.choices))}",
                                      f"Did you mean {' or '.join(guess)}?" if guess else "")
            if all(any(_same(v, c) for v in allowed) for c in q.choices):
                raise ConfigError(f"{f}.{other}", list(allowed), f"names every choice of {other}, so the condition "
                                  "has no effect", f"Remove the condition (~{f}).")


def suggest(trial, params: Sequence[Param]) -> dict[str, Any]:
    """Sample every active parameter on an Optuna trial (parameters it already holds are kept)."""
    values: dict[str, Any] = {}
    for p in sorted(params, key=lambda q: len(q.when)):  # conditions refer to unconditional choices
        if not p.active(values):
            continue
        if p.kind == "categorical":
            values[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        elif p.kind == "int":
            values[p.name] = trial.suggest_int(p.name, int(p.low or 0), int(p.high or 0), step=int(p.step or 1),
                                               log=p.log)
        else:
            values[p.name] = trial.suggest_float(p.name, float(p.low or 0), float(p.high or 0), step=p.step, log=p.log)
    return values


def group_overrides(params: Sequence[Param], values: Mapping[str, Any]) -> tuple[str, ...]:
    """The Hydra overrides choosing config group options (`model=mlp_8_6_4`)."""
    return tuple(f"{p.path}={values[p.name]}" for p in params if p.group and p.name in values)


def apply_values(cfg: DictConfig, params: Sequence[Param], values: Mapping[str, Any]) -> DictConfig:
    """A copy of `cfg` with every sampled value (not group choice) set at its path."""
    out = cfg.copy()
    for p in params:
        if not p.group and p.name in values:
            if OmegaConf.select(out, p.path, default=_MISSING) is _MISSING:
                parent, _, leaf = p.path.rpartition(".")
                raise ConfigError(f"sweep.space.{p.name}.path", p.path,
                                  f"no such setting in the trial's config{f' (under {parent})' if parent else ''}")
            OmegaConf.update(out, p.path, values[p.name], merge=False)
    return out


_MISSING = object()


def bounds(p: Param) -> list[Any]:
    """The values worth checking against the config's own validation: both ends, or every choice."""
    return list(p.choices) if p.kind == "categorical" else [p.low, p.high]


def _in_range(p: Param, v: Any) -> bool:
    if p.kind == "categorical":
        return any(_same(v, c) for c in p.choices)
    number = (int,) if p.kind == "int" else (int, float)
    return isinstance(v, number) and not isinstance(v, bool) and (p.low or 0) <= v <= (p.high or 0)


def baseline_values(params: Sequence[Param], cfg: DictConfig, choices: Mapping[str, str]) -> dict[str, Any]:
    """The base config's own value of every active parameter (its group choice for group parameters),
    checked to lie in the space: the baseline is enqueued as a trial of the search."""
    values: dict[str, Any] = {}
    for p in sorted(params, key=lambda q: len(q.when)):
        if not p.active(values):
            continue
        v: Any = choices.get(p.path) if p.group else OmegaConf.select(cfg, p.path, default=_MISSING)
        if v is _MISSING:
            raise ConfigError(f"sweep.space.{p.name}.path", p.path, "no such setting in the base config; remove the "
                              f"parameter (~sweep.space.{p.name}) or sample it only `when` its group has it")
        if not _in_range(p, v):
            allowed = f"one of {list(p.choices)}" if p.kind == "categorical" else f"[{p.low}, {p.high}]"
            raise ConfigError(f"sweep.space.{p.name}", allowed,
                              f"the baseline's {p.path} = {v!r} must lie in the space, since the baseline runs "
                              "as the sweep's first trial; widen the range or add the choice")
        if p.step is not None and not on_grid(v, p.low or 0, p.step):
            below, above = grid_neighbours(v, p.low or 0, p.step)
            raise ConfigError(f"sweep.space.{p.name}", f"[{p.low}, {p.high}] in steps of {p.step}",
                              f"the baseline's {p.path} = {v!r} is not on the grid low + k * step ({below} and "
                              f"{above} are): the baseline runs as the sweep's first trial, at a value the search "
                              "could never sample", "Change low or step so that the grid passes through it.")
        values[p.name] = v
    return values
