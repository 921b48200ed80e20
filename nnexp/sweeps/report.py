"""What a finished sweep reports, on the console and on its MLflow parent run: trial counts, the best
trial against the baseline, Optuna's plots, every trial as a table, the winner as overrides ready to
train again, and the winner confirmed on fresh seeds (those runs recorded with their models)."""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from typing import Any

import yaml
from optuna.trial import FrozenTrial, TrialState

from nnexp import stats
from nnexp.console import table
from nnexp.recording import records
from nnexp.sweeps import storage as studies
from nnexp.sweeps.confirm import Arm, Confirmation, confirm


@dataclass
class SweepSummary:
    study_name: str
    parent_key: str
    counts: dict[str, int]
    best: FrozenTrial | None
    baseline: FrozenTrial | None
    confirmation: Confirmation | None
    text: str
    parent_run: str = ""  # the MLflow run id, once the recorder has made it


def attrs(t: FrozenTrial | None) -> dict[str, Any]:
    return t.user_attrs.get("nnexp", {}) if t else {}


def trial_metric(t: FrozenTrial | None, name: str) -> float:
    return float(attrs(t).get("metrics", {}).get(name, math.nan))


def best_overrides(sweep: Any, t: FrozenTrial) -> list[str]:
    """The Hydra overrides that give trial `t`'s config: the sweep's base overrides (less where it was
    recorded: `tracking.*`) and its values."""
    values = [f"{p.path}={t.params[p.name]}" for p in sweep.settings.space if p.name in t.params]
    base = [o for o in sweep.study.user_attrs.get("nnexp.base_overrides", [])
            if not o.lstrip("+~").startswith("tracking.")]
    return [*base, *values]


def summarize(sweep: Any) -> SweepSummary:
    """Render the sweep's end and record it on the parent run (the recorder draws and logs)."""
    settings, study = sweep.settings, sweep.study
    trials = [t for t in study.get_trials(deepcopy=False) if t.number < settings.n_trials]
    counts = studies.counts(study, settings.n_trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best_first = sorted(complete, key=lambda t: t.value, reverse=settings.maximize)  # type: ignore[arg-type,return-value]
    best = best_first[0] if best_first else None
    baseline = next((t for t in trials if t.user_attrs.get("nnexp.baseline")), None)
    confirmation = confirm(sweep.configs, best, baseline, settings.confirm_seeds) if best and baseline and \
        settings.confirm_seeds else None
    if best is not None:  # for `make train-best SWEEP=<study>`
        study.set_user_attr("nnexp.best_overrides", best_overrides(sweep, best))
    text = render(sweep, trials, best_first, baseline, counts, confirmation)
    summary = SweepSummary(settings.study_name, sweep.parent_key, counts, best, baseline, confirmation, text)
    if confirmation is not None:
        for arm in (confirmation.best, confirmation.baseline):
            record_arm(sweep, arm, confirmation.seeds)
    sweep.end_parent("FINISHED", **parent_fields(sweep, trials, best, baseline, confirmation, text))
    return summary


def parent_fields(sweep: Any, trials: list[FrozenTrial], best: FrozenTrial | None, baseline: FrozenTrial | None,
                  c: Confirmation | None, text: str) -> dict[str, Any]:
    """Metrics, tags, texts, figures and files the parent run gets at the sweep's end."""
    settings = sweep.settings
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    full = int(sweep.base_cfg.trainer.epochs)
    m = {"trials_complete": sum(t.state == TrialState.COMPLETE for t in trials), "trials_pruned": len(pruned),
         "trials_failed": sum(t.state == TrialState.FAIL for t in trials),
         "epochs_trained": sum(attrs(t).get("epochs", 0) for t in trials),
         "epochs_saved_by_pruning": full * len(pruned) - sum(attrs(t).get("epochs", full) for t in pruned),
         "best_value": best.value if best else math.nan, "best_trial": best.number if best else math.nan,
         "baseline_value": baseline.value if baseline and baseline.value is not None else math.nan,
         "best_test_r2": trial_metric(best, "test_r2"), "baseline_test_r2": trial_metric(baseline, "test_r2")}
    m["best_minus_baseline"] = m["best_value"] - m["baseline_value"]
    tags = {f"best.{k}": str(v) for k, v in (best.params if best else {}).items()}
    texts = {"summary.txt": text + "\n"}
    figures = []
    if best:
        overrides = best_overrides(sweep, best)
        texts["best_overrides.txt"] = " ".join(overrides) + "\n"
        texts["best.yaml"] = yaml.safe_dump({"study": settings.study_name, "trial": best.number,
                                             settings.metric: best.value, "overrides": overrides}, sort_keys=False)
        figures.append(best_against_baseline(best, baseline, settings.metric, settings.study_name))
    if c is not None:
        m |= {f"confirm_{k}_test_r2_{s}": getattr(i, a) for k, i in (("best", c.best_ci), ("baseline", c.baseline_ci),
              ("diff", c.pair.diff)) for s, a in (("mean", "mean"), ("ci_low", "lo"), ("ci_high", "hi"))}
        m |= {"confirm_t_p": c.pair.t_p, "confirm_wilcoxon_p": c.pair.wilcoxon_p,
              "confirm_wilcoxon_min_p": c.pair.wilcoxon_min_p}
        tags["confirm.verdict"] = c.verdict
        if len(c.best.curves) and len(c.baseline.curves):
            figures.append({"kind": "bands", "path": "plots/confirmation_curves.png", "args": {
                "groups": {c.best.label: c.best.curves.tolist(), c.baseline.label: c.baseline.curves.tolist()},
                "ylabel": "val_mse", "title": f"Sweep {settings.study_name}: best and baseline re-trained on seeds "
                                              f"{list(c.seeds)}"}})
    files = sweep_files(sweep)
    return {"metrics": [[k, v, 0] for k, v in m.items()], "tags": tags, "texts": texts, "figures": figures,
            "files": files}


def best_against_baseline(best: FrozenTrial, baseline: FrozenTrial | None, metric: str, study: str
                          ) -> dict[str, Any]:
    """The objective as each trial reported it (its thinned curve), best against baseline."""
    runs = {}
    pairs = [(f"best (trial {best.number})", best)]
    if baseline is not None:
        pairs.append((f"baseline (trial {baseline.number})", baseline))
    for label, t in pairs:
        curve = attrs(t).get("curve") or {str(k): v for k, v in (t.intermediate_values if t else {}).items()}
        if curve:
            steps = sorted(int(k) for k in curve)
            runs[label] = [steps, [curve[str(s)] for s in steps]]
    return {"kind": "compare_steps", "path": "plots/best_vs_baseline.png", "args": {
        "runs": runs, "metric": metric, "title": f"Sweep {study}: the best trial against the baseline"}}


def sweep_files(sweep: Any) -> list[list[str]]:
    """Optuna's plots and every trial as a table (Optuna's own dataframe), written beside the spool."""
    from nnexp.sweeps.plots import optuna_plots

    out = sweep.rec.scratch(f"{sweep.parent_key}-end")
    out.mkdir(parents=True, exist_ok=True)
    files = [[str(p), "plots"] for p in optuna_plots(sweep.study, out, sweep.settings.metric)]
    frame = sweep.study.trials_dataframe()
    frame = frame[frame["number"] < sweep.settings.n_trials]
    frame.to_csv(out / "trials.csv", index=False)
    return [*files, [str(out / "trials.csv"), ""]]


def record_arm(sweep: Any, arm: Arm, seeds: tuple[int, ...]) -> None:
    """Each confirmation run as a child run of the sweep, with its curves, final metrics and model."""
    from nnexp.engine.model import Model

    for seed, r in zip(seeds, arm.runs, strict=True):
        key = f"confirm:{sweep.study.user_attrs.get('nnexp.uid', sweep.settings.study_name)}:{arm.trial}:{seed}"
        fields: dict[str, Any] = {"tags": {"nnexp.kind": "confirmation", "nnexp.trial_number": arm.trial,
                                           "optuna.study": sweep.settings.study_name, **records.provenance()},
                                  "params": {**arm.params, "seed": str(seed)}, "status": "FAILED" if not r.ok else
                                  "FINISHED", "metrics": records.curve_points(r.curves)}
        if r.ok:
            _, points, step = records.final_points(r, arm.plan.spec, {k: dict(enumerate(v)) for k, v in
                                                                      r.curves.items()})
            model_dir = sweep.rec.scratch(key) / "model"
            d = arm.plan.data
            Model.from_state(arm.plan.spec, r.state, d.scaler, {"dataset": d.name}, d.feature_names,
                             d.target_name).save(model_dir)
            fields |= {"model": {"dir": str(model_dir), "step": step}}
            fields["metrics"] += points
        sweep.rec.write(records.run(key, sweep.settings.experiment, parent=sweep.parent_key, fresh=True,
                                 name=f"{sweep.settings.study_name} confirm {arm.label} seed {seed}", **fields))


def render(sweep: Any, trials: list[FrozenTrial], best_first: list[FrozenTrial], baseline: FrozenTrial | None,
           counts: dict[str, int], c: Confirmation | None) -> str:
    settings = sweep.settings
    text = [f"sweep {settings.study_name}: {counts['COMPLETE']} complete, {counts['PRUNED']} pruned, "
            f"{counts['FAIL']} failed of {settings.n_trials} trials",
            top_table(trials, best_first, baseline, settings.metric)]
    best = best_first[0] if best_first else None
    if best and best.value is not None and baseline and baseline.value is not None:
        word = "beats" if (best.value - baseline.value) * (1 if settings.maximize else -1) > 0 else "does not beat"
        text.append(f"best trial {best.number} {word} the baseline on {settings.metric}: "
                    f"{best.value:.4f} vs {baseline.value:.4f} ({best.value - baseline.value:+.4f})")
        where = f" ARGS={shlex.quote('sweep.storage=' + settings.storage)}" if settings.storage else ""
        quoted = " ".join(shlex.quote(o) for o in best_overrides(sweep, best))
        text.append(f"train it again, recorded with its model and plots:\n  make train-best "
                    f"SWEEP={shlex.quote(settings.study_name)}{where}\n  (the same as make train "
                    f"ARGS={shlex.quote(quoted)})")
    if c is not None:
        text.append(confirmation_text(c))
    return "\n\n".join(text)


def confirmation_text(c: Confirmation) -> str:
    rows = [[c.best.label, str(c.best_ci), f"[{c.best_ci.lo:.4f}, {c.best_ci.hi:.4f}]"],
            [c.baseline.label, str(c.baseline_ci), f"[{c.baseline_ci.lo:.4f}, {c.baseline_ci.hi:.4f}]"],
            ["best - baseline", str(c.pair.diff), f"[{c.pair.diff.lo:.4f}, {c.pair.diff.hi:.4f}]"]]
    plain = {stats.REAL: "the improvement is real (paired t test p < 0.05)",
             stats.NOISE: "the difference is within noise",
             stats.REVERSED: "the baseline is better: the sweep's winner does not hold up on fresh seeds"}[c.verdict]
    floor = c.pair.wilcoxon_min_p
    note = (f" (with {len(c.seeds)} seeds the smallest Wilcoxon p is {floor:.3g}: it cannot reach 0.05; the t test "
            "decides)") if math.isfinite(floor) and floor >= 0.05 else ""
    return (f"Confirmation on seeds {list(c.seeds)}: test R², mean ± 95% CI half-width\n"
            + table(rows, ["config", "test R²", "95% CI"])
            + f"\npaired t test p = {c.pair.t_p:.3g}, Wilcoxon p = {c.pair.wilcoxon_p:.3g}{note}: {plain}.")


def top_table(trials: list[FrozenTrial], best_first: list[FrozenTrial], baseline: FrozenTrial | None,
              metric: str, n: int = 5) -> str:
    rows = []
    names = sorted({k for t in trials for k in t.params})
    shown = best_first[:n] + ([baseline] if baseline is not None and baseline not in best_first[:n] else [])
    for t in shown:
        tag = " (baseline)" if t is baseline else ""
        value = f"{t.value:.4f}" if t.value is not None else t.state.name.lower()
        rows.append([f"{t.number}{tag}", value, f"{trial_metric(t, 'test_r2'):.4f}",
                     *[_fmt(t.params.get(k, "-")) for k in names]])
    return table(rows, ["trial", metric, "test_r2", *names])


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
