"""Populations: many validated plans (sweep trials, ablation variants x seeds) trained in as few passes
as the replica axis allows.

Plans that differ only in per-replica values (learning rate, optimizer and schedule parameters, L1/L2,
dropout rate, seed) share a pass; plans that differ in anything that changes array shapes or code
paths (architecture, activations, init, optimizer kind, schedule kind, batch size, epochs, early
stopping, data) train in separate passes. Replica r of a pass gives the numbers of its plan trained
alone, so how plans are grouped never changes a result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from nnexp.engine.loop import Callback, ReplicaResult
from nnexp.plan import Plan

Array = np.ndarray


def structure(plan: Plan) -> tuple:
    """What must be equal for two single-replica plans to share a pass."""
    return (
        replace(plan.spec, dropout=0.0),
        plan.spec.dropout > 0,
        plan.data.digest(),
        plan.optimizer,
        tuple(sorted((k, v) for k, v in plan.optimizer_args.items() if isinstance(v, bool))),
        tuple(sorted(plan.optimizer_args)),
        plan.schedule,
        tuple(sorted(plan.schedule_args)),
        plan.epochs,
        plan.batch_size,
        plan.patience,
        plan.eval_every,
    )


def groups(plans: Sequence[Plan]) -> list[list[int]]:
    """Indices of `plans` grouped by structure, groups in order of first appearance."""
    out: dict[tuple, list[int]] = {}
    for i, p in enumerate(plans):
        if p.n_replicas != 1:
            raise ValueError("population members are single-replica plans")
        out.setdefault(structure(p), []).append(i)
    return list(out.values())


def stack(plans: Sequence[Plan]) -> Plan:
    """One plan of len(plans) replicas; every per-replica value becomes an (R,) array."""
    first = plans[0]
    if any(structure(p) != structure(first) for p in plans[1:]):
        raise ValueError("plans of different structure cannot share a pass")
    if len(plans) == 1:
        return first

    def column(values: list) -> Array:
        return np.asarray(values, dtype=float)

    opt = {k: v if isinstance(v, bool) else column([p.optimizer_args[k] for p in plans])
           for k, v in first.optimizer_args.items()}
    sched = {k: column([p.schedule_args[k] for p in plans]) for k in first.schedule_args}
    return replace(first, optimizer_args=opt, schedule_args=sched, lr=column([p.lr for p in plans]),
                   seeds=[s for p in plans for s in p.seeds], dropout=column([p.spec.dropout for p in plans]))


def fit_seeds(plans: Sequence[Plan], seeds: Sequence[int]) -> list[list[ReplicaResult]]:
    """Every plan on every seed, packed by structure: result[i][j] is plans[i] trained on seeds[j]."""
    flat = fit([p.with_seeds([s]) for p in plans for s in seeds])
    k = len(seeds)
    return [flat[i * k : (i + 1) * k] for i in range(len(plans))]


def fit(plans: Sequence[Plan], callbacks: Callable[[list[int]], Sequence[Callback]] | None = None,
          ) -> list[ReplicaResult]:
    """Train every plan, one pass per group; result i belongs to plans[i].

    `callbacks(members)` gives the callbacks of a pass whose replica r is plans[members[r]]."""
    results: list[ReplicaResult | None] = [None] * len(plans)
    for members in groups(plans):
        fitted = stack([plans[i] for i in members]).fit(callbacks(members) if callbacks else ())
        for r, i in enumerate(members):
            results[i] = fitted[r]
    return [r for r in results if r is not None]
