"""A study's numbers judged: each variant against the baseline on its metric (paired over seeds, Holm
across variants), and a re-run compared with a recorded report number by number."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnexp import stats
from nnexp.ablations.study import BASELINE, METRICS, Outcome, Study

DIVERGED = "diverged on every seed"
CLOSE = 1e-9  # relative: a re-run on another CPU may differ in the last bits (its SIMD kernels), never more


@dataclass(frozen=True)
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
    detectable: float  # the smallest difference the paired t test detects with 80% power at α (its SD)


def analyse(study: Study, out: Outcome) -> list[Row]:
    """Mean ± CI per metric; paired difference on each variant's metric; Holm across variants. A
    variant that diverged on every seed has no numbers to compare: its verdict says so."""
    base = out.values[BASELINE]
    pairs = {v.name: stats.paired(out.values[v.name][v.metric], base[v.metric]) for v in study.variants[1:]}
    adjusted = dict(zip(pairs, stats.holm([p.t_p for p in pairs.values()]), strict=True))
    rows = []
    k = len(study.seeds)
    for v in study.variants:
        vals = out.values[v.name]
        summary = {m: stats.mean_ci(vals[m]) for m in METRICS}
        diverged = sum(s == "diverged" for s in out.status[v.name])
        diff, p, verdict, detectable = None, math.nan, "", math.nan
        if v.name != BASELINE:
            diff, p = pairs[v.name], adjusted[v.name]
            verdict = judge(v.metric, v.expect, diff, p, study.alpha) if diverged < k else DIVERGED
            d = np.asarray(vals[v.metric], dtype=float) - np.asarray(base[v.metric], dtype=float)
            d = d[np.isfinite(d)]
            if len(d) > 1:
                detectable = stats.min_detectable_effect(float(d.std(ddof=1)), len(d), study.alpha)
        epochs = v.plan.epochs  # type: ignore[union-attr]
        censored = sum(1 for e in vals["epochs_to_target"] if e == epochs + 1)
        rows.append(Row(v.name, v.metric, v.expect, summary, diff, p, verdict, diverged, censored, detectable))
    return rows


def judge(metric: str, expect: str | None, diff: stats.Paired, p: float, alpha: float) -> str:
    higher = METRICS[metric]
    if expect is None:
        word = stats.verdict(diff.diff, p, higher, True, alpha)
        return {stats.REAL: "better", stats.REVERSED: "worse"}.get(word, word)
    return stats.verdict(diff.diff, p, higher, expect == "better", alpha)


def results_json(study: Study, out: Outcome) -> dict[str, Any]:
    """Every number the report is made of, per seed, as exact floats (what `ablation-check` compares)."""
    return {"study": study.name, "seeds": study.seeds, "target_mse": study.target_mse,
            "variants": {v.name: {"overrides": v.overrides, "status": out.status[v.name],
                                  "values": {m: [float(x) for x in out.values[v.name][m]] for m in METRICS}}
                         for v in study.variants}}


@dataclass(frozen=True)
class Comparison:
    """A re-run against a recorded report: numbers equal to the last bit, equal to `CLOSE` (last-bit
    differences of another CPU's kernels), and different (anything else, listed)."""

    total: int
    exact: int
    close: int
    largest: float  # the largest relative difference among the close ones
    different: list[str]


def compare(recorded: Mapping[str, Any], fresh: Mapping[str, Any]) -> Comparison:
    total = exact = close = 0
    largest, diffs = 0.0, []
    for name, rec in recorded.get("variants", {}).items():
        new = fresh["variants"].get(name)
        if new is None:
            diffs.append(f"{name}: in the report, not in the re-run")
            continue
        if rec["status"] != new["status"]:
            diffs.append(f"{name}: status {rec['status']} -> {new['status']}")
        for m, values in rec["values"].items():
            for i, (a, b) in enumerate(zip(values, new["values"].get(m, []), strict=False)):
                total += 1
                if a == b or (math.isnan(a) and math.isnan(b)):
                    exact += 1
                    continue
                rel = abs(a - b) / max(abs(a), abs(b))
                if m != "epochs_to_target" and math.isfinite(rel) and rel <= CLOSE:
                    close, largest = close + 1, max(largest, rel)
                else:
                    at = f"trial {rec['trials'][i]}" if "trials" in rec else f"seed {recorded['seeds'][i]}"
                    diffs.append(f"{name} {m} {at}: {a!r} -> {b!r} ({b - a:+.3g})")
    diffs += [f"{name}: in the re-run, not in the report" for name in fresh["variants"]
              if name not in recorded.get("variants", {})]
    return Comparison(total, exact, close, largest, diffs)
