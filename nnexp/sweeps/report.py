"""What a finished sweep reports, on its MLflow parent run and on the console: trial counts, the best
trial against the baseline, Optuna's plots, and the winner confirmed on fresh seeds."""

from __future__ import annotations

import math
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from nnexp import plots, population, stats
from nnexp.console import table
from nnexp.sweeps import storage as studies
from nnexp.tracking import curve_metrics

CONFIRM_METRIC = "test_r2"


@dataclass
class SweepSummary:
    study_name: str
    parent_run: str
    counts: dict[str, int]
    best: FrozenTrial | None
    baseline: FrozenTrial | None
    confirmation: dict[str, Any] = field(default_factory=dict)
    text: str = ""


def trial_metric(t: FrozenTrial | None, name: str) -> float:
    return float((t.user_attrs.get("nnexp", {}).get("metrics", {}) if t else {}).get(name, math.nan))


def confirm(sw, best: FrozenTrial, baseline: FrozenTrial) -> dict[str, Any]:
    """Re-train the best config and the baseline on the confirmation seeds (one pass per structure)
    and compare their test R² seed by seed."""
    seeds = sw.st.confirm_seeds
    best_runs, base_runs = population.train_seeds([sw.configs.plan(sw.configs.config(t.params))
                                                   for t in (best, baseline)], seeds)

    def values(rs):
        return np.array([r.final.get(CONFIRM_METRIC, math.nan) if r.ok else math.nan for r in rs])

    b, a = values(best_runs), values(base_runs)
    pair = stats.paired(b, a)
    verdict = stats.verdict(pair.diff, pair.t_p, higher_is_better=True)
    return {"seeds": seeds, "best": stats.mean_ci(b), "baseline": stats.mean_ci(a), "diff": pair.diff,
            "t_p": pair.t_p, "wilcoxon_p": pair.wilcoxon_p, "verdict": verdict, "best_values": b.tolist(),
            "baseline_values": a.tolist(), "curves": {
                f"best (trial {best.number})": np.array([r.curves["val_mse"] for r in best_runs if r.ok]),
                "baseline": np.array([r.curves["val_mse"] for r in base_runs if r.ok])}}


def confirmation_text(c: dict[str, Any]) -> str:
    rows = [["best", str(c["best"]), f"[{c['best'].lo:.4f}, {c['best'].hi:.4f}]"],
            ["baseline", str(c["baseline"]), f"[{c['baseline'].lo:.4f}, {c['baseline'].hi:.4f}]"],
            ["best - baseline", str(c["diff"]), f"[{c['diff'].lo:.4f}, {c['diff'].hi:.4f}]"]]
    plain = {stats.REAL: "the improvement is real (paired t test p < 0.05)",
             stats.NOISE: "the difference is within noise",
             stats.REVERSED: "the baseline is better: the sweep's winner does not hold up on fresh seeds"}[c["verdict"]]
    return (f"Confirmation on seeds {c['seeds']}: test R², mean ± 95% CI half-width\n"
            + table(rows, ["config", "test R²", "95% CI"])
            + f"\npaired t test p = {c['t_p']:.3g}, Wilcoxon p = {c['wilcoxon_p']:.3g}: {plain}.")


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


def optuna_plots(study: optuna.Study, out: Path, metric: str = "") -> list[Path]:
    """Optuna's own figures (matplotlib backend), titled and labelled with the objective `metric` and laid
    out for about 1100 px (plots.DPI, fixed margins); one that cannot be drawn (too few trials) is skipped.
    Optuna draws on pyplot figures: every figure opened here is closed here."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ov

    target, what = (plots.axis_label(metric), plots.metric_name(metric)) if metric else ("objective value",) * 2
    paths = []
    for name, fn in (("optimization_history", ov.plot_optimization_history),
                     ("param_importances", ov.plot_param_importances),
                     ("parallel_coordinate", ov.plot_parallel_coordinate), ("slice", ov.plot_slice)):
        opened = set(plt.get_fignums())
        try:
            with warnings.catch_warnings(), plt.rc_context():  # Optuna sets the ggplot style globally
                warnings.simplefilter("ignore")
                ax = fn(study, target_name=target)
                fig: Any = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
                margins = plots.optuna_layout(name, fig, ax, target, f"Sweep {study.study_name}", what)
                paths.append(plots.save(fig, out / f"{name}.png", **margins))
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue
        finally:
            for n in set(plt.get_fignums()) - opened:
                plt.close(n)
    return paths


def summarize(sw) -> SweepSummary:
    st, study, tracker, parent = sw.st, sw.study, sw.tracker, sw.parent
    trials = [t for t in study.get_trials(deepcopy=False) if t.number < st.n_trials]
    counts = studies.counts(study, st.n_trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best_first = sorted(complete, key=lambda t: t.value, reverse=st.maximize)  # type: ignore[arg-type,return-value]
    best = best_first[0] if best_first else None
    baseline = next((t for t in trials if t.user_attrs.get("nnexp.baseline")), None)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    epochs = [t.user_attrs.get("nnexp", {}).get("epochs", 0) for t in trials]
    full = int(sw.base_cfg.trainer.epochs)
    summary_metrics = {
        "trials_complete": counts["COMPLETE"], "trials_pruned": counts["PRUNED"], "trials_failed": counts["FAIL"],
        "epochs_trained": sum(epochs), "epochs_saved_by_pruning": full * len(pruned) - sum(
            t.user_attrs.get("nnexp", {}).get("epochs", full) for t in pruned),
        "best_value": best.value if best else math.nan, "best_trial": best.number if best else math.nan,
        "baseline_value": baseline.value if baseline and baseline.value is not None else math.nan,
        "best_test_r2": trial_metric(best, "test_r2"), "baseline_test_r2": trial_metric(baseline, "test_r2"),
    }
    summary_metrics["best_minus_baseline"] = summary_metrics["best_value"] - summary_metrics["baseline_value"]
    tags = {f"best.{k}": str(v) for k, v in (best.params if best else {}).items()}
    if best:
        tags["nnexp.best_run_id"] = best.user_attrs.get("nnexp", {}).get("mlflow_run_id", "")
    out = SweepSummary(st.study_name, parent, counts, best, baseline)
    with tempfile.TemporaryDirectory() as tmp:
        pngs = optuna_plots(study, Path(tmp), st.metric)
        if best and baseline:
            curves = {}
            for name, t in ((f"best (trial {best.number})", best), ("baseline (trial 0)", baseline)):
                rid = t.user_attrs.get("nnexp", {}).get("mlflow_run_id")
                hist = sorted(tracker.client.get_metric_history(rid, "val_mse"), key=lambda m: m.step) if rid else []
                if hist:
                    curves[name] = ([m.step for m in hist], [m.value for m in hist])
            if curves:
                pngs.append(plots.compare_steps(curves, Path(tmp) / "best_vs_baseline.png", "val_mse",
                                                f"Sweep {st.study_name}: the best trial against the baseline"))
        if best and baseline and st.confirm_seeds:
            c = out.confirmation = confirm(sw, best, baseline)
            for key in ("best", "baseline", "diff"):
                summary_metrics[f"confirm_{key}_test_r2_mean"] = c[key].mean
                summary_metrics[f"confirm_{key}_test_r2_ci_low"] = c[key].lo
                summary_metrics[f"confirm_{key}_test_r2_ci_high"] = c[key].hi
            summary_metrics["confirm_t_p"], summary_metrics["confirm_wilcoxon_p"] = c["t_p"], c["wilcoxon_p"]
            tags["confirm.verdict"] = c["verdict"]
            if all(len(v) for v in c["curves"].values()):
                pngs.append(plots.bands(c["curves"], Path(tmp) / "confirmation_curves.png", "val_mse", title=(
                    f"Sweep {st.study_name}: best and baseline re-trained on seeds {c['seeds']}")))
        tracker.log(parent, metrics=curve_metrics({k: [v] for k, v in summary_metrics.items()}), tags=tags)
        for png in pngs:
            tracker.log_artifact(parent, png, "plots")
        text = [f"sweep {st.study_name}: {counts['COMPLETE']} complete, {counts['PRUNED']} pruned, "
                f"{counts['FAIL']} failed of {st.n_trials} trials",
                top_table(trials, best_first, baseline, st.metric)]
        if best and baseline and baseline.value is not None:
            word = "beats" if (best.value - baseline.value) * (1 if st.maximize else -1) > 0 else "does not beat"
            text.append(f"best trial {best.number} {word} the baseline on {st.metric}: "
                        f"{best.value:.4f} vs {baseline.value:.4f} ({best.value - baseline.value:+.4f})")
        if out.confirmation:
            text.append(confirmation_text(out.confirmation))
        out.text = "\n\n".join(text)
        tracker.log_text(parent, out.text + "\n", "summary.txt")
    return out
