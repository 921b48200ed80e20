"""`make ablation`: a baseline and named variants (sets of Hydra overrides), each trained on the same K
seeds, compared seed by seed with paired statistics.

Every (variant, seed) is one single-replica plan; `population.train` packs the plans that share a
structure into one pass of the replica axis (the baseline, `no_momentum` and `l2` train together), and
a replica's numbers equal its run alone, so the packing never changes a result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from omegaconf import DictConfig

from nnexp import population, stats
from nnexp.config import ConfigCache, mapping
from nnexp.engine.loop import ReplicaResult
from nnexp.errors import ConfigError, choice
from nnexp.plan import Plan

BASELINE = "baseline"
# metric: higher is better?
METRICS = {"test_r2": True, "val_r2": True, "train_mse": False, "test_mse": False, "gap_mse": False,
           "epochs_to_target": False}
EXPECT = ("better", "worse", None)


@dataclass
class Variant:
    name: str
    overrides: list[str]
    claim: str = ""
    metric: str = "test_r2"
    expect: str | None = None  # the claim's prediction for the variant against the baseline
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

    @property
    def baseline(self) -> Variant:
        return self.variants[0]


def _variant(name: str, raw: Any, default_metric: str) -> Variant:
    f = f"ablation.variants.{name}"
    if isinstance(raw, list):
        raw = {"overrides": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f, raw, "expected a list of Hydra overrides, or {overrides: [...], claim: ..., metric: ..., "
                          "expect: better|worse}")
    unknown = sorted(set(raw) - {"overrides", "claim", "metric", "expect"})
    if unknown:
        raise ConfigError(f"{f}.{unknown[0]}", raw[unknown[0]], "not a field of a variant; fields: overrides, claim, "
                          "metric, expect")
    overrides = raw.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
        raise ConfigError(f"{f}.overrides", overrides, "expected a list of key=value overrides, e.g. "
                          "[optimizer.momentum=0]")
    metric = choice(f"{f}.metric", raw.get("metric") or default_metric, METRICS)
    expect = raw.get("expect")
    if expect not in EXPECT:
        raise ConfigError(f"{f}.expect", expect, "expected better, worse or null (no prediction)")
    return Variant(name, list(overrides), str(raw.get("claim") or ""), metric, expect)


def parse(cfg: DictConfig) -> Study:
    a = cfg.get("ablation")
    if a is None:
        raise ConfigError("ablation", None, "choose a study, e.g. ablation=seed_claims (options in conf/ablation/)")
    seeds = list(a.get("seeds") or [])
    valid = all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    if not valid or len(set(seeds)) != len(seeds):
        raise ConfigError("ablation.seeds", seeds, "expected distinct integer seeds >= 0")
    if len(seeds) < 2:
        raise ConfigError("ablation.seeds", seeds, "confidence intervals and paired tests need at least 2 seeds "
                          "(10 make the tests worth reading)")
    metric = choice("ablation.metric", a.get("metric", "test_r2"), METRICS)
    variants = [_variant(BASELINE, list(a.get("baseline") or []), metric)]
    raw = mapping(a.get("variants"))
    if not raw:
        raise ConfigError("ablation.variants", None, "expected at least one variant: name: [overrides]")
    if BASELINE in raw:
        raise ConfigError("ablation.variants.baseline", raw[BASELINE], "the baseline is `ablation.baseline`")
    variants += [_variant(name, v, metric) for name, v in raw.items() if v is not None]
    target = a.get("target_mse", 0.01)
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not target > 0:
        raise ConfigError("ablation.target_mse", target, "expected a training MSE > 0 (for epochs_to_target)")
    alpha = a.get("alpha", 0.05)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ConfigError("ablation.alpha", alpha, "expected a significance level in (0, 1)")
    return Study(str(a.name), seeds, variants, float(target), str(a.get("experiment", "nnexp-ablation")),
                 a.get("report_dir"), bool(a.get("force", False)), alpha, str(a.get("description") or ""))


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


def epochs_to_target(r: ReplicaResult, target: float, epochs: int) -> float:
    """1 + the first epoch whose training MSE is <= target; `epochs` + 1 if never (a censored value)."""
    hit = np.flatnonzero(r.curves["train_mse"] <= target)
    return float(hit[0] + 1) if len(hit) else float(epochs + 1)


def run(study: Study) -> Outcome:
    """Train every variant on every seed (one pass per structure)."""
    results = population.train_seeds([v.plan for v in study.variants], study.seeds)  # type: ignore[misc]
    out = Outcome()
    for v, rs in zip(study.variants, results, strict=True):
        out.status[v.name] = [r.status for r in rs]
        epochs = v.plan.epochs  # type: ignore[union-attr]
        vals: dict[str, list[float]] = {m: [] for m in METRICS}
        for r in rs:
            f = r.final if r.ok else {}
            for m in ("test_r2", "val_r2", "train_mse", "test_mse"):
                vals[m].append(float(f.get(m, math.nan)))
            vals["gap_mse"].append(float(f["test_mse"] - f["train_mse"]) if f else math.nan)
            vals["epochs_to_target"].append(epochs_to_target(r, study.target_mse, epochs) if r.ok else math.nan)
        out.values[v.name] = vals
        out.curves[v.name] = [r.curves["val_mse"] for r in rs if r.ok]
    return out


@dataclass
class Row:
    """One variant against the baseline on its metric."""

    variant: str
    metric: str
    expect: str | None
    summary: dict[str, stats.Interval]  # metric -> mean ± CI over seeds
    diff: stats.Paired | None  # on `metric`, variant - baseline
    p_holm: float
    verdict: str
    diverged: int
    censored: int  # seeds that never reached the target MSE


def analyse(study: Study, out: Outcome) -> list[Row]:
    """Mean ± CI per metric; paired difference on each variant's metric; Holm across variants."""
    base = out.values[BASELINE]
    pairs = {v.name: stats.paired(out.values[v.name][v.metric], base[v.metric]) for v in study.variants[1:]}
    adjusted = dict(zip(pairs, stats.holm([p.t_p for p in pairs.values()]), strict=True))
    rows = []
    for v in study.variants:
        vals = out.values[v.name]
        summary = {m: stats.mean_ci(vals[m]) for m in METRICS}
        diff, p, verdict = None, math.nan, ""
        if v.name != BASELINE:
            diff, p = pairs[v.name], adjusted[v.name]
            higher = METRICS[v.metric]
            if v.expect is None:
                verdict = stats.verdict(diff.diff, p, higher, True, study.alpha)
                verdict = {stats.REAL: "better", stats.REVERSED: "worse"}.get(verdict, verdict)
            else:
                verdict = stats.verdict(diff.diff, p, higher, v.expect == "better", study.alpha)
        epochs = v.plan.epochs  # type: ignore[union-attr]
        censored = sum(1 for e in vals["epochs_to_target"] if e == epochs + 1)
        rows.append(Row(v.name, v.metric, v.expect, summary, diff, p, verdict,
                        sum(s == "diverged" for s in out.status[v.name]), censored))
    return rows


def results_json(study: Study, out: Outcome) -> dict[str, Any]:
    """Every number the report is made of, per seed, as exact floats (what `ablation-check` compares)."""
    return {"study": study.name, "seeds": study.seeds, "target_mse": study.target_mse,
            "variants": {v.name: {"overrides": v.overrides, "status": out.status[v.name],
                                  "values": {m: [float(x) for x in out.values[v.name][m]] for m in METRICS}}
                         for v in study.variants}}


def compare(recorded: Mapping[str, Any], fresh: Mapping[str, Any]) -> list[str]:
    """Differences between two results_json documents ('' list: identical to the last bit)."""
    diffs = []
    for name, rec in recorded.get("variants", {}).items():
        new = fresh["variants"].get(name)
        if new is None:
            diffs.append(f"{name}: in the report, not in the re-run")
            continue
        if rec["status"] != new["status"]:
            diffs.append(f"{name}: status {rec['status']} -> {new['status']}")
        for m, values in rec["values"].items():
            for i, (a, b) in enumerate(zip(values, new["values"].get(m, []), strict=False)):
                if not (a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))):
                    diffs.append(f"{name} {m} seed {recorded['seeds'][i]}: {a!r} -> {b!r} ({b - a:+.3g})")
    for name in fresh["variants"]:
        if name not in recorded.get("variants", {}):
            diffs.append(f"{name}: in the re-run, not in the report")
    return diffs
