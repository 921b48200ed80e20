"""The end of a sweep's search: its winner and the baseline re-trained on fresh seeds and compared seed
by seed (a winner picked among hundreds of trials on one seed is partly luck; fresh seeds say how much).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from optuna.trial import FrozenTrial

from nnexp import population, stats
from nnexp.engine.loop import ReplicaResult
from nnexp.plan import Plan
from nnexp.sweeps.trials import Configs

METRIC = "test_r2"


@dataclass(frozen=True)
class Arm:
    """One side of the comparison: a trial's config trained on every confirmation seed."""

    label: str  # "best (trial 123)" / "baseline (trial 0)"
    trial: int
    plan: Plan
    params: dict[str, str]
    runs: tuple[ReplicaResult, ...]

    @property
    def values(self) -> np.ndarray:
        return np.array([r.final.get(METRIC, math.nan) if r.ok else math.nan for r in self.runs])

    @property
    def curves(self) -> np.ndarray:
        return np.array([r.curves["val_mse"] for r in self.runs if r.ok])


@dataclass(frozen=True)
class Confirmation:
    """The winner against the baseline on `seeds`: mean ± CI of test R² each, the paired difference."""

    seeds: tuple[int, ...]
    best: Arm
    baseline: Arm
    pair: stats.Paired
    verdict: str  # stats.REAL / NOISE / REVERSED (higher test R² is better)

    @property
    def best_ci(self) -> stats.Interval:
        return stats.mean_ci(self.best.values)

    @property
    def baseline_ci(self) -> stats.Interval:
        return stats.mean_ci(self.baseline.values)


def confirm(configs: Configs, best: FrozenTrial, baseline: FrozenTrial, seeds: list[int]) -> Confirmation:
    """Re-train the best trial's config and the baseline's on `seeds` (one pass per structure)."""
    trials = (best, baseline)
    built = [configs.trial(t.params) for t in trials]
    results = population.fit_seeds([plan for plan, _ in built], seeds)
    arms = [Arm(f"{'best' if t is best else 'baseline'} (trial {t.number})", t.number, plan, params, tuple(rs))
            for t, (plan, params), rs in zip(trials, built, results, strict=True)]
    pair = stats.paired(arms[0].values, arms[1].values)
    return Confirmation(tuple(seeds), arms[0], arms[1], pair, stats.verdict(pair.diff, pair.t_p, True))
