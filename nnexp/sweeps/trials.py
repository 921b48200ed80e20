"""A trial's config and plan from its sampled values, without composing a config per trial.

Composing with Hydra costs ~50 ms and copying a composed config and validating it again 3–5 ms a trial
(measured in a 384-trial sweep), so each distinct choice of config groups (and of the sampled values
that change array shapes or code paths, such as an activation) is composed and validated once; the
values that a plan holds per replica — learning rate, optimizer and schedule fields, dropout rate,
seed, batch size, epochs — are checked with the same rules as `build_plan` and set on a copy of that
plan (~0.05 ms). The trial's params are the cached config's flattened params with the sampled values
set. `tests/test_sweep_trials.py` checks that both paths give equal plans and params.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from omegaconf import DictConfig

from nnexp import schema
from nnexp.config import ConfigCache, run_params
from nnexp.errors import ConfigError
from nnexp.plan import Plan, check_decay, check_memory
from nnexp.sweeps import space

Trial = tuple[Plan, dict[str, str]]  # the validated plan and the run params of one trial
FAST_TRAINER = ("trainer.batch_size", "trainer.epochs")


class Configs(ConfigCache):
    """Trial configs and plans: the base overrides plus a trial's group choices composed once per
    distinct choice, the sampled values set by the fast path where a plan holds them."""

    def __init__(self, base_overrides: Sequence[str], params: Sequence[space.Param]) -> None:
        super().__init__(base_overrides)
        self.params = list(params)
        self._trials: dict[tuple, Trial] = {}

    def config(self, values: Mapping[str, Any]) -> DictConfig:
        """The full composed config of a trial (the slow path: reports, confirmation, checks)."""
        return space.apply_values(self.composed(space.group_overrides(self.params, values)), self.params, values)

    def trial(self, values: Mapping[str, Any]) -> Trial:
        """The trial's plan and params; ConfigError if a sampled value is invalid."""
        fast = {p.path: values[p.name] for p in self.params if p.name in values and fast_path(p.path)}
        slow = {k: v for k, v in values.items() if k not in {p.name for p in self.params if p.path in fast}}
        key = tuple(sorted((k, repr(v)) for k, v in slow.items()))
        if key not in self._trials:
            cfg = self.config(slow)
            plan = self.plan(cfg)
            self._trials[key] = (plan, run_params(cfg, plan))
        plan, params = self._trials[key]
        return with_values(plan, fast), params | {path: str(v) for path, v in fast.items()}


def fast_path(path: str) -> bool:
    """Whether the sampled value at `path` is a per-replica value of a plan (no recomposing needed)."""
    group, _, field = path.partition(".")
    if group in ("optimizer", "schedule"):
        return field not in ("name", "nesterov")
    return path in ("model.dropout", "seed", *FAST_TRAINER)


def with_values(plan: Plan, values: Mapping[str, Any]) -> Plan:
    """`plan` with the sampled values at their paths, checked as `build_plan` checks them."""
    if not values:
        return plan
    args, sargs, changes = dict(plan.optimizer_args), dict(plan.schedule_args), {}
    for path, value in values.items():
        group, _, field = path.partition(".")
        if group == "optimizer" and field not in ("lr", *schema.OPTIMIZERS[plan.optimizer]):
            raise ConfigError(path, value, f"not a setting of optimizer {plan.optimizer!r}")
        if group == "schedule" and field not in schema.SCHEDULES[plan.schedule]:
            raise ConfigError(path, value, f"not a setting of schedule {plan.schedule!r}")
        v = schema.number(path, value)
        if path == "optimizer.lr":
            changes["lr"] = v
        elif group == "optimizer":
            args[field] = v
        elif group == "schedule":
            sargs[field] = v
        elif path == "model.dropout":
            changes["spec"] = replace(plan.spec, dropout=v)
        elif path == "seed":
            changes["seeds"] = [v]
        else:
            changes[field] = v
    out = replace(plan, optimizer_args=args, schedule_args=sargs, **changes)
    if out.schedule == "cosine" and sargs.get("min_lr", 0.0) >= out.lr:
        raise ConfigError("schedule.min_lr", sargs["min_lr"], f"expected less than optimizer.lr = {out.lr}")
    check_decay(out.optimizer, out.lr, out.optimizer_args)
    if "epochs" in changes or "batch_size" in changes:
        check_memory(out)
    return out
