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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnexp.config import mapping
from nnexp.errors import ConfigError, choice
from nnexp.paths import CONF_DIR, group_options

KINDS = ("float", "int", "categorical")
FIELDS = ("path", "type", "low", "high", "log", "step", "choices", "when")


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
    """Read and check the space's shape (types, ranges, choices); paths are checked by `check_paths`."""
    if not node:
        raise ConfigError(where, None, "expected at least one parameter to search (name: {path, type, ...})")
    raw = mapping(node)
    params = []
    for name, spec in raw.items():
        f = f"{where}.{name}"
        if spec is None:  # `name: null` removes a parameter inherited from another sweep
            continue
        if not isinstance(spec, dict):
            raise ConfigError(f, spec, "expected a mapping such as "
                              "{path: optimizer.lr, type: float, low: 0.01, high: 1}")
        unknown = sorted(set(spec) - set(FIELDS))
        if unknown:
            raise ConfigError(f"{f}.{unknown[0]}", spec[unknown[0]],
                              f"not a field of a search parameter; fields: {', '.join(FIELDS)}")
        path = spec.get("path")
        if not isinstance(path, str) or not path:
            raise ConfigError(f"{f}.path", path, "expected the config path it sets, e.g. optimizer.lr or model")
        kind = choice(f"{f}.type", spec.get("type"), KINDS)
        when = spec.get("when") or {}
        if not isinstance(when, dict) or not all(isinstance(v, (list, str, int, float)) for v in when.values()):
            raise ConfigError(f"{f}.when", when, "expected {other_param: [values]}")
        when = {k: tuple(v) if isinstance(v, list) else (v,) for k, v in when.items()}
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ConfigError(f"{f}.choices", choices, "expected a non-empty list of choices")
            if any(isinstance(c, (list, dict)) for c in choices) or len({repr(c) for c in choices}) != len(choices):
                raise ConfigError(f"{f}.choices", choices, "expected distinct scalar choices (name a config "
                                  "option for structured values, e.g. a model variant in conf/model/)")
            param = Param(name, path, kind, choices=tuple(choices), when=when)
            options = group_options(path) if param.group else []  # a config group's choices: files in conf/<group>/
            for c in choices if options else ():
                if c not in options:
                    raise ConfigError(f"{f}.choices", c,
                                      f"no such option in conf/{path}/; options: {', '.join(options)}")
            params.append(param)
            continue
        low, high = _scalar(f"{f}.low", spec.get("low")), _scalar(f"{f}.high", spec.get("high"))
        if not low < high:
            raise ConfigError(f"{f}.high", high, f"expected a range with low < high (low is {low}): the range is empty")
        log, step = bool(spec.get("log", False)), spec.get("step")
        if log and low <= 0:
            raise ConfigError(f"{f}.low", low, "a log-scale range needs low > 0")
        if step is not None:
            step = _scalar(f"{f}.step", step)
            if step <= 0 or step > high - low or log:
                raise ConfigError(f"{f}.step", step, "expected 0 < step <= high - low, and no step on a log scale")
        if kind == "int" and any(v is not None and int(v) != v for v in (low, high, step)):
            raise ConfigError(f, spec, "an int parameter needs integer low, high and step")
        params.append(Param(name, path, kind, low, high, log, step, when=when))
    names = {p.name for p in params}
    for p in params:
        for other in p.when:
            if other not in names or next(q for q in params if q.name == other).kind != "categorical":
                raise ConfigError(f"{where}.{p.name}.when", dict(p.when), f"{other!r} is not a categorical parameter "
                                  f"of this space ({', '.join(sorted(names))})")
    return params


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


def baseline_values(params: Sequence[Param], cfg: DictConfig, choices: Mapping[str, str]) -> dict[str, Any]:
    """The base config's own value of every active parameter (its group choice for group parameters),
    checked to lie in the space: the baseline is enqueued as a trial of the search."""
    values: dict[str, Any] = {}
    for p in sorted(params, key=lambda q: len(q.when)):
        if not p.active(values):
            continue
        v = choices.get(p.path) if p.group else OmegaConf.select(cfg, p.path, default=_MISSING)
        if v is _MISSING:
            raise ConfigError(f"sweep.space.{p.name}.path", p.path, "no such setting in the base config; remove the "
                              f"parameter (~sweep.space.{p.name}) or sample it only `when` its group has it")
        ok = v in p.choices if p.kind == "categorical" else (
            isinstance(v, (int, float)) and not isinstance(v, bool) and (p.low or 0) <= v <= (p.high or 0))
        if not ok:
            allowed = f"one of {list(p.choices)}" if p.kind == "categorical" else f"[{p.low}, {p.high}]"
            raise ConfigError(f"sweep.space.{p.name}", allowed,
                              f"the baseline's {p.path} = {v!r} must lie in the space, since the baseline runs "
                              "as the sweep's first trial; widen the range or add the choice")
        values[p.name] = v
    return values
