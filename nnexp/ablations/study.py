"""`make ablation`: a baseline and named variants (sets of Hydra overrides), each trained on the same K
seeds, compared seed by seed with paired statistics.

Every (variant, seed) is one single-replica plan; `population.fit` packs the plans that share a
structure into one pass of the replica axis (the baseline, `no_momentum` and `l2` train together), and
a replica's numbers equal its run alone, so the packing never changes a result.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig

from nnexp import population, schema
from nnexp.ablations.tuning import Tuning, parse_tuning
from nnexp.config import ConfigCache, mapping
from nnexp.engine.loop import ReplicaResult
from nnexp.errors import ConfigError, choice
from nnexp.paths import group_options
from nnexp.plan import Plan

BASELINE = "baseline"
# metric: higher is better?
METRICS = {"test_r2": True, "val_r2": True, "train_mse": False, "test_mse": False, "gap_mse": False,
           "epochs_to_target": False}
EXPECT = ("better", "worse", None)
STUDY_KEYS = ("name", "description", "seeds", "baseline", "metric", "target_mse", "alpha", "experiment", "report_dir",
              "force", "variants", "tasks", "tuning")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a variant's name is a file and run name


@dataclass
class Variant:
    name: str
    overrides: list[str]
    claim: str = ""
    metric: str = "test_r2"
    expect: str | None = None  # the claim's prediction for the variant against the baseline
    tune: dict[str, Any] | None = None  # parameters it adds to (a spec) or removes from (null) the tuned space
    cfg: DictConfig | None = None
    plan: Plan | None = None


@dataclass
class Study:
    name: str
    seeds: list[int]
    variants: list[Variant]  # the baseline first
    target_mse: float
    experiment: str
    report_dir: str | None
    force: bool
    alpha: float = 0.05
    description: str = ""
    tasks: list[str] = field(default_factory=list)  # data options the claims are tested on ([]: the composed data)
    tuning: Tuning | None = None  # each variant also at its own best settings (both protocols)

    @property
    def baseline(self) -> Variant:
        return self.variants[0]


def _variant(name: str, raw: Any, default_metric: str) -> Variant:
    f = f"ablation.variants.{name}"
    if not NAME.match(name):
        raise ConfigError(f, name, "a variant's name must be 1-64 letters, digits, '_', '.' or '-' (it names files "
                          "and runs)")
    if isinstance(raw, list):
        raw = {"overrides": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f, raw, "expected a list of Hydra overrides, or {overrides: [...], claim: ..., metric: ..., "
                          "expect: better|worse}")
    schema.known_keys(raw, f, ("overrides", "claim", "metric", "expect", "tune"), "a variant")
    overrides = raw.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
        raise ConfigError(f"{f}.overrides", overrides, "expected a list of key=value overrides, e.g. "
                          "[optimizer.momentum=0]")
    metric = choice(f"{f}.metric", raw.get("metric") or default_metric, METRICS)
    expect = raw.get("expect")
    if expect not in EXPECT:
        raise ConfigError(f"{f}.expect", expect, "expected better, worse or null (no prediction)")
    claim = raw.get("claim") or ""
    if not isinstance(claim, str):
        raise ConfigError(f"{f}.claim", claim, "expected the claim as text")
    tune = raw.get("tune")
    if tune is not None and not isinstance(tune, dict):
        raise ConfigError(f"{f}.tune", tune, "expected {param: {path, type, low, high, ...}} to add or replace a "
                          "tuned parameter, {param: null} to remove one")
    return Variant(name, list(overrides), claim, metric, expect, tune)


def parse(cfg: DictConfig) -> Study:
    """`cfg.ablation`, validated before anything trains."""
    a = cfg.get("ablation")
    if a is None:
        raise ConfigError("ablation", None, "choose a study, e.g. ablation=seed_claims (options in conf/ablation/)")
    schema.known_keys(a, "ablation", STUDY_KEYS, "a study")
    seeds = list(a.get("seeds") or [])
    valid = all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**32 for s in seeds)
    if not valid or len(set(seeds)) != len(seeds) or len(seeds) > 1000:
        raise ConfigError("ablation.seeds", seeds, "expected at most 1,000 distinct integer seeds in [0, 2^32)")
    if len(seeds) < 2:
        raise ConfigError("ablation.seeds", seeds, "confidence intervals and paired tests need at least 2 seeds "
                          "(10 make the tests worth reading)")
    metric = choice("ablation.metric", a.get("metric", "test_r2"), METRICS)
    variants = [_variant(BASELINE, list(a.get("baseline") or []), metric)]
    raw = mapping(a.get("variants"))
    if not raw:
        raise ConfigError("ablation.variants", None, "expected at least one variant: name: [overrides]")
    seen = {BASELINE}
    for name, v in raw.items():
        if v is None:
            continue
        if name.lower() in seen:
            raise ConfigError(f"ablation.variants.{name}", v, "another variant (or the baseline, `ablation.baseline`) "
                              "has this name, up to case: names must differ, they name runs and rows")
        seen.add(name.lower())
        variants.append(_variant(name, v, metric))
    target = schema.number("ablation.target_mse", a.get("target_mse", 0.01), lambda v: v > 0,
                           "expected a training MSE > 0 (for epochs_to_target)")
    alpha = schema.number("ablation.alpha", a.get("alpha", 0.05), lambda v: 0 < v < 1,
                          "expected a significance level in (0, 1)")
    tasks = a.get("tasks") or []
    if not isinstance(tasks, (list, ListConfig)) or len(set(tasks)) != len(tasks):
        raise ConfigError("ablation.tasks", tasks, "expected a list of distinct data options (conf/data/)")
    for t in tasks:
        choice("ablation.tasks", t, [o for o in group_options("data") if o != "csv"])
    tuning = parse_tuning(a.get("tuning"), seeds)
    return Study(str(schema.text("ablation.name", a.get("name"))), seeds, variants, float(target),
                 str(schema.text("ablation.experiment", a.get("experiment", "nnexp-ablation"))),
                 schema.text("ablation.report_dir", a.get("report_dir"), "expected a directory path, or null",
                             optional=True),
                 schema.boolean("ablation.force", a.get("force", False)), alpha, str(a.get("description") or ""),
                 [str(t) for t in tasks], tuning)


def prepare(study: Study, cache: ConfigCache) -> None:
    """Compose and validate every variant before anything trains; a bad one is named."""
    for v in study.variants:
        overrides = [*study.baseline.overrides, *(v.overrides if v is not study.baseline else [])]
        f = f"ablation.variants.{v.name}" if v is not study.baseline else "ablation.baseline"
        try:
            v.cfg = cache.composed(overrides)
            v.plan = cache.plan(v.cfg)
        except ConfigError as e:
            raise ConfigError(f, v.overrides, f"{e}") from None
        except Exception as e:  # Hydra: an unknown key or group option, a malformed override
            raise ConfigError(f, v.overrides, " ".join(str(e).split())[:600]) from None


@dataclass
class Outcome:
    """Per variant: per-seed values of every metric (NaN where a seed diverged), and the curves."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # variant -> metric -> per seed
    status: dict[str, list[str]] = field(default_factory=dict)  # variant -> per-seed status
    curves: dict[str, list[np.ndarray]] = field(default_factory=dict)  # variant -> per-seed val_mse curve
    results: dict[str, list[ReplicaResult]] = field(default_factory=dict)  # variant -> per-seed result


def epochs_to_target(r: ReplicaResult, target: float, epochs: int) -> float:
    """1 + the first epoch whose training MSE is <= target; `epochs` + 1 if never (a censored value)."""
    hit = np.flatnonzero(r.curves["train_mse"] <= target)
    return float(hit[0] + 1) if len(hit) else float(epochs + 1)


def run(study: Study) -> Outcome:
    """Train every variant on every seed (one pass per structure)."""
    return outcome(study, population.fit_seeds([v.plan for v in study.variants], study.seeds))  # type: ignore[misc]


def outcome(study: Study, results: list[list[ReplicaResult]]) -> Outcome:
    """Every variant's per-seed values from its results (`results[i][j]`: variant i on seed j)."""
    out = Outcome()
    for v, rs in zip(study.variants, results, strict=True):
        out.status[v.name] = [r.status for r in rs]
        out.results[v.name] = rs
        epochs = v.plan.epochs  # type: ignore[union-attr]
        vals: dict[str, list[float]] = {m: [] for m in METRICS}
        for r in rs:
            f = r.final if r.ok else {}
            for m in ("test_r2", "val_r2", "train_mse", "test_mse"):
                vals[m].append(float(f.get(m, math.nan)))
            vals["gap_mse"].append(float(f["test_mse"] - f["train_mse"]) if f else math.nan)
            dense = v.plan.eval_every == 1  # type: ignore[union-attr]  # else not measured (a tuned study's arms)
            vals["epochs_to_target"].append(epochs_to_target(r, study.target_mse, epochs) if r.ok and dense
                                            else math.nan)
        out.values[v.name] = vals
        out.curves[v.name] = [r.curves["val_mse"] for r in rs if r.ok]
    return out
