"""The report of a study on several tasks under both protocols: each claim's verdict at the baseline's
settings and at each variant's own best settings, side by side per task and across tasks, flagged
where tuning flips it; the settings each variant was tuned to; verdicts at small and large budgets;
the expected best validation score against the budget; every arm's table in detail."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from nnexp import plots, stats
from nnexp.ablations.analysis import results_json
from nnexp.ablations.protocols import UNTUNED, Arm, Claim
from nnexp.ablations.report import EFFECT_HEADER, LABELS, effects_table, markdown_table
from nnexp.ablations.study import Study
from nnexp.ablations.tuning import Tuned, Tuning
from nnexp.config import mapping

FLIP = "⚑"
SHORT = {stats.REAL: "confirmed", stats.NOISE: "noise", stats.REVERSED: "reversed"}


def word(verdict: str) -> str:
    return SHORT.get(verdict, verdict)


def claims_table(study: Study, tasks: Sequence[str], claims: list[Claim], full: str) -> str:
    header = ["variant", "claim", "metric", *[f"{t}: untuned → tuned" for t in tasks], "across tasks: untuned",
              "across tasks: tuned"]
    rows = []
    for c, v in zip(claims, study.variants[1:], strict=True):
        cells = [f"{word(c.verdicts[(t, UNTUNED)])} → {word(c.verdicts[(t, full)])}" + (f" {FLIP}" if t in c.flips
                                                                                         else "") for t in tasks]
        rows.append([f"`{c.variant}`", v.claim or "–", LABELS[v.metric], *cells, counts(c.across[UNTUNED]),
                     counts(c.across[full])])
    return markdown_table(header, rows)


def counts(o: stats.OverTasks) -> str:
    test = f"; Wilcoxon over tasks p = {o.p:.2g}" if np.isfinite(o.p) else ""
    return f"{o.confirm} confirm / {o.noise} noise / {o.reverse} reverse{test}"


def budget_table(study: Study, tasks: Sequence[str], claims: list[Claim], protocols: Sequence[str]) -> str:
    tuned = [p for p in protocols if p != UNTUNED]
    rows = [[f"`{c.variant}`", t, *[word(c.verdicts[(t, p)]) for p in tuned]] for c in claims for t in tasks]
    return markdown_table(["variant", "task", *[f"{p.split('@')[1]} trials" for p in tuned]], rows)


def chosen_table(study: Study, tasks: Sequence[str], tuned_by: dict[tuple[str, str], Tuned], tuning: Tuning) -> str:
    names = sorted({p.name for t in tuned_by.values() for p in t.params})
    rows = []
    for v in study.variants:
        for task in tasks:
            t = tuned_by[(task, v.name)]
            best = t.best(tuning.trials, tuning.maximize)
            values = best.params if best else {}
            rows.append([f"`{v.name}`", task, *[_fmt(values.get(n, "–")) for n in names],
                         f"{best.value:.4f}" if best else "– (every trial diverged)"])
    return markdown_table(["variant", "task", *names, f"best {tuning.metric} of {tuning.trials}"], rows)


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def render(study: Study, tuning: Tuning, all_arms: list[Arm], claims: list[Claim], tuned_by: dict, head: list[str],
           full: str) -> str:
    tasks = list(dict.fromkeys(a.task for a in all_arms))
    protocols = list(dict.fromkeys(a.protocol for a in all_arms))
    o = claims[0].across[full] if claims else None
    body = [
        "## The claims under both protocols\n",
        f"Each cell: the verdict with every variant at the baseline's settings → at its own best settings after "
        f"{tuning.trials} trials of random search on the validation split (tuning seeds {list(tuning.seeds)}, never "
        f"evaluated on); {FLIP} where they differ. Verdicts: {', '.join(f'*{w}*' for w in SHORT.values())} (see "
        f"the detail tables for the numbers). {o.note if o else ''}.\n",
        claims_table(study, tasks, claims, full), "",
        "## Verdicts at every budget (tuned)\n", budget_table(study, tasks, claims, protocols), "",
        "## The settings each variant was tuned to\n", chosen_table(study, tasks, tuned_by, tuning), "",
        "## Expected best validation score against the tuning budget\n",
        "The expected best of n trials drawn from each variant's search (Dodge et al. 2019; the unbiased "
        "estimator of Tang et al. 2020): where two curves cross, the verdict depends on the budget.\n",
        "![expected best validation score against the number of tuning trials](budget_curves.png)", "",
        "## Every task and protocol in detail\n"]
    for a in all_arms:
        body += [f"### {a.task}, {a.protocol}\n", markdown_table(EFFECT_HEADER, effects_table(a.rows or [])), ""]
    return "\n".join(head + body)


def results(study: Study, tuning: Tuning, all_arms: list[Arm], tuned_by: dict, extra: dict) -> dict[str, Any]:
    """Every number: per arm, per variant, per seed; the chosen settings; every tuning trial's score."""
    settings = {"trials": tuning.trials, "seeds": list(tuning.seeds), "metric": tuning.metric,
                "budgets": list(tuning.budgets)}
    return {"study": study.name, "seeds": study.seeds, "tuning": settings,
            "arms": {f"{a.task}/{a.protocol}": results_json(a.study, a.out) | {"chosen": a.chosen}  # type: ignore[arg-type]
                     for a in all_arms},
            "trials": {f"{t.task}/{t.variant}": [[tr.number, tr.value, tr.params] for tr in t.trials]
                       for t in tuned_by.values()}} | extra


def flat(doc: dict[str, Any]) -> dict[str, Any]:
    """A tuned report's numbers in the shape `analysis.compare` reads (arm/variant as the variant)."""
    variants = {f"{arm}/{name}": v for arm, r in doc.get("arms", {}).items() for name, v in r["variants"].items()}
    trials = {f"tuning/{k}": {"status": [], "trials": [t[0] for t in v],
                              "values": {"score": [float("nan") if t[1] is None else t[1] for t in v]}}
              for k, v in doc.get("trials", {}).items()}
    return {"seeds": doc["seeds"], "variants": variants | trials}


def draw_curves(tuned_by: dict[tuple[str, str], Tuned], tuning: Tuning, path: Path, study: str) -> Path:
    curves: dict[str, dict[str, np.ndarray]] = {}
    for (task, variant), t in tuned_by.items():
        curves.setdefault(task, {})[variant] = t.curve(tuning.maximize)
    return plots.budget_curves(curves, path, tuning.metric, f"Ablation {study}: expected best {tuning.metric} "
                                                            "against the number of tuning trials", tuning.budgets)


def texts(report: str, doc: dict[str, Any], per_task: dict[str, Study]) -> dict[str, str]:
    """REPORT.md, results.json, and configs.yaml (every variant's composed config per task, untuned)."""
    configs = {task: {v.name: {k: x for k, x in mapping(v.cfg).items() if k != "tracking"} for v in s.variants}
               for task, s in per_task.items()}
    return {"REPORT.md": report + "\n", "results.json": json.dumps(doc, indent=1, allow_nan=True) + "\n",
            "configs.yaml": OmegaConf.to_yaml(configs)}

