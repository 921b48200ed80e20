"""Where an ablation study's results go: an MLflow parent run with a child run per variant, and a
report in the checkout (`experiments/<study>/REPORT.md`, its plots, configs and exact numbers beside
it) that can be read without running anything and re-checked with `make ablation-check`."""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from nnexp import plots, stats
from nnexp.ablations.study import (
    BASELINE,
    METRICS,
    Outcome,
    Row,
    Study,
    analyse,
    compare,
    parse,
    prepare,
    results_json,
    run,
)
from nnexp.config import ConfigCache, compose, flat_params, mapping, without_group
from nnexp.errors import ConfigError
from nnexp.paths import project_root

LABELS = {"test_r2": "test R²", "val_r2": "val R²", "train_mse": "train MSE", "test_mse": "test MSE",
          "gap_mse": "gap (test − train MSE)", "epochs_to_target": "epochs to target"}
PACKAGE_NAMES = {"hydra_version": "hydra-core"}
CLAIM_WORDS = {stats.REAL: "confirmed", stats.NOISE: "not confirmed (within noise)", stats.REVERSED: "reversed"}


def fmt(x: float, metric: str) -> str:
    if not math.isfinite(x):
        return "–"
    return f"{x:.1f}" if metric == "epochs_to_target" else f"{x:.4f}" if metric.endswith("r2") else f"{x:.5f}"


def ci(i: stats.Interval, metric: str) -> str:
    return f"{fmt(i.mean, metric)} ± {fmt((i.hi - i.lo) / 2, metric)}" if i.n > 1 else fmt(i.mean, metric)


def report_dir(study: Study) -> Path:
    d = Path(study.report_dir) if study.report_dir else Path("experiments") / study.name
    return d if d.is_absolute() else project_root() / d


def effects_table(rows: list[Row]) -> list[list[str]]:
    base = rows[0]
    out = []
    for r in rows[1:]:
        assert r.diff is not None
        d = r.diff.diff
        m = r.metric
        out.append([r.variant, LABELS[m], ci(base.summary[m], m), ci(r.summary[m], m),
                    f"{fmt(d.mean, r.metric)} [{fmt(d.lo, r.metric)}, {fmt(d.hi, r.metric)}]",
                    f"{r.diff.t_p:.2g}", f"{r.diff.wilcoxon_p:.2g}", f"{r.p_holm:.2g}", r.verdict])
    return out


EFFECT_HEADER = ["variant", "metric", "baseline", "variant value", "difference [95% CI]", "paired t p", "Wilcoxon p",
                 "Holm p", "verdict"]
SUMMARY_METRICS = ("test_r2", "val_r2", "train_mse", "gap_mse", "epochs_to_target")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def claims_section(study: Study, rows: list[Row]) -> str:
    base = rows[0]
    lines = []
    for r, v in zip(rows[1:], study.variants[1:], strict=True):
        if not v.claim or r.diff is None:
            continue
        b, x = base.summary[r.metric], r.summary[r.metric]
        extra = ""
        if r.metric == "epochs_to_target" and b.mean > 0:
            extra = f" ({'at least ' if r.censored else ''}{x.mean / b.mean:.1f}× the baseline's epochs)"
            if r.censored:
                extra += f"; {r.censored} of {len(study.seeds)} seeds never reached it (counted as epochs + 1)"
        word = CLAIM_WORDS.get(r.verdict, r.verdict)
        label = (f"epochs to reach training MSE ≤ {study.target_mse}" if r.metric == "epochs_to_target"
                 else LABELS[r.metric])
        lines.append(f"- **{v.claim}** — `{r.variant}` ({', '.join(v.overrides)}), {label}: "
                     f"baseline {ci(b, r.metric)}, "
                     f"variant {ci(x, r.metric)}{extra}; difference {fmt(r.diff.diff.mean, r.metric)} "
                     f"[{fmt(r.diff.diff.lo, r.metric)}, {fmt(r.diff.diff.hi, r.metric)}], Holm p = {r.p_holm:.2g}. "
                     f"The claim expects the variant to be {r.expect} → **{word}**.")
    return "\n".join(lines)


def render(study: Study, rows: list[Row], prov: dict[str, str], command: str, digests: dict[str, str]) -> str:
    seeds = study.seeds
    summary_rows = [[r.variant, ", ".join(v.overrides) or "(the baseline)",
                     *[ci(r.summary[m], m) for m in SUMMARY_METRICS], f"{r.diverged}/{len(seeds)}"]
                    for r, v in zip(rows, study.variants, strict=True)]
    head = [
        f"# Ablation study `{study.name}`", "",
        study.description, "",
        f"Re-run: `{command}` · check against this report: `make ablation-check STUDY={study.name}`", "",
        markdown_table(["", ""], [
            ["command", f"`{command}`"],
            ["git commit", f"`{prov['mlflow.source.git.commit']}`" + (" (uncommitted changes: forced)"
                                                                     if prov["git_dirty"] == "true" else " (clean)")],
            ["recorded", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())],
            ["packages", ", ".join(f"{PACKAGE_NAMES.get(k, k.removesuffix('_version'))} {v}"
                                   for k, v in prov.items() if k.endswith("_version"))],
            ["platform", prov["platform"]],
            ["datasets", ", ".join(f"{k} `{v}`" for k, v in digests.items())],
            ["seeds", f"{seeds} (K = {len(seeds)}), the same for every variant"],
            ["statistics", f"mean ± half-width of the 95% t interval over seeds; each variant against the baseline "
                           f"seed by seed (paired t test, Wilcoxon signed-rank beside it), p-values Holm-corrected "
                           f"over the {len(rows) - 1} variants, α = {study.alpha}"],
            ["epochs to target", f"1 + the first epoch whose training MSE ≤ {study.target_mse} (never: "
                                 f"epochs + 1, a censored value)"],
        ]), "",
        "Composed configs: [configs.yaml](configs.yaml) · every number per seed: [results.json](results.json)", "",
    ]
    claims = claims_section(study, rows)
    body = ([f"## The seed's claims, checked\n\n{claims}\n"] if claims else []) + [
        "## Every variant (mean ± 95% CI half-width over seeds)\n",
        markdown_table(["variant", "overrides", *[LABELS[m] for m in SUMMARY_METRICS], "diverged"], summary_rows), "",
        "## Each variant against the baseline, on its metric\n",
        "Verdict: for a variant whose claim predicts a direction, *real* (the predicted effect, significant "
        "after correction), *within noise*, or *reversed* (significant, the other way); without a prediction, "
        "*better*, *worse* or *within noise*.\n",
        markdown_table(EFFECT_HEADER, effects_table(rows)), "",
        "![test R² against the baseline](effects.png)", "", "![validation MSE per variant](curves.png)", "",
    ]
    return "\n".join(head + body)


def write(study: Study, out: Outcome, rows: list[Row], directory: Path, prov: dict[str, str], command: str,
          args: Sequence[str]) -> list[Path]:
    """REPORT.md, results.json, configs.yaml, effects.csv/.md and the two plots, in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    digests = {v.plan.data.name: v.plan.data.digest() for v in study.variants}  # type: ignore[union-attr]
    doc = results_json(study, out) | {"args": list(args), "provenance": prov, "dataset_digests": digests}
    files = {"results.json": json.dumps(doc, indent=1, allow_nan=True) + "\n",
             "configs.yaml": OmegaConf.to_yaml({v.name: {k: x for k, x in mapping(v.cfg).items() if k != "tracking"}
                                                for v in study.variants}),
             "REPORT.md": render(study, rows, prov, command, digests) + "\n",
             "effects.md": markdown_table(EFFECT_HEADER, effects_table(rows)) + "\n"}
    buf = io.StringIO()
    csv.writer(buf).writerows([EFFECT_HEADER, *effects_table(rows)])
    files["effects.csv"] = buf.getvalue()
    paths = []
    for name, text in files.items():
        (directory / name).write_text(text)
        paths.append(directory / name)
    base = out.values[BASELINE]["test_r2"]
    test = [stats.paired(out.values[v.name]["test_r2"], base).diff for v in study.variants[1:]]
    paths.append(plots.effects([v.name for v in study.variants[1:]], [d.mean for d in test], [d.lo for d in test],
                               [d.hi for d in test], directory / "effects.png",
                               "test R², variant − baseline (seed by seed; mean and 95% CI)",
                               f"Ablation {study.name}: test R² of each variant against the baseline, "
                               f"{len(study.seeds)} seeds"))
    curves = {v.name: out.curves[v.name] for v in study.variants if out.curves[v.name]}
    paths.append(plots.bands(curves, directory / "curves.png", "val_mse",
                             title=f"Ablation {study.name}: validation MSE per epoch of each variant"))
    return paths


def record(study: Study, out: Outcome, rows: list[Row], files: list[Path], uri: str | None) -> str:
    """The parent run (report, tables, plots) and one child run per variant (per-seed values with
    step = seed index under `seed.<metric>`, the aggregates as final metrics)."""
    from nnexp.tracking import Tracker, curve_metrics

    tracker = Tracker(uri, study.experiment)
    parent = tracker.start(f"ablation-{study.name}", {"nnexp.kind": "ablation", "ablation.study": study.name})
    try:
        tracker.log(parent, params={"ablation.name": study.name, "ablation.seeds": study.seeds,
                                    "ablation.target_mse": study.target_mse, "ablation.variants": len(rows) - 1})
        for r, v in zip(rows, study.variants, strict=True):
            child = tracker.start(r.variant, {"nnexp.kind": "ablation_variant", "ablation.variant": r.variant,
                                              "ablation.verdict": r.verdict, "ablation.claim": v.claim[:5000]},
                                  parent=parent)
            per_seed = {f"seed.{m}": out.values[r.variant][m] for m in METRICS}
            final: dict[str, float] = {}
            for m, i in r.summary.items():
                final |= {m: i.mean, f"{m}_ci_low": i.lo, f"{m}_ci_high": i.hi}
            final["diverged_seeds"] = r.diverged
            if r.diff is not None:
                final |= {f"diff_{r.metric}": r.diff.diff.mean, f"diff_{r.metric}_ci_low": r.diff.diff.lo,
                          f"diff_{r.metric}_ci_high": r.diff.diff.hi, "p_t": r.diff.t_p,
                          "p_wilcoxon": r.diff.wilcoxon_p, "p_holm": r.p_holm}
            tracker.log(child, params={**flat_params(v.cfg), "variant.overrides": v.overrides},  # type: ignore[arg-type]
                        metrics=curve_metrics(per_seed) + curve_metrics({k: [x] for k, x in final.items()}))
            tracker.end(child)
        for f in files:
            tracker.log_artifact(parent, f, "plots" if f.suffix == ".png" else None)
        tracker.end(parent)
    except BaseException:
        tracker.end(parent, "KILLED")
        raise
    return parent


def main(cfg: Any, args: Sequence[str], check: bool = False) -> str:
    """`make ablation` (train, record, report) or, with `check`, `make ablation-check` (re-run and diff
    the numbers against the recorded report). Returns the text to print."""
    from nnexp.tracking import provenance

    study = parse(cfg)
    prov = provenance()
    directory = report_dir(study)
    if check:
        recorded_path = directory / "results.json"
        if not recorded_path.is_file():
            raise ConfigError("STUDY", study.name, f"no recorded report at {recorded_path} (record one with "
                              f"`make ablation ARGS=\"ablation={study.name}\"`)")
        recorded = json.loads(recorded_path.read_text())
        study = parse(compose(recorded["args"]))
    elif prov["git_dirty"] == "true" and not study.force:
        raise ConfigError("ablation.force", False, "the working tree has uncommitted changes, so the commit in the "
                          "report would not reproduce its numbers; commit first, or force with ablation.force=true")
    base = without_group(recorded["args"] if check else args, "ablation")
    cache = ConfigCache(base)
    prepare(study, cache)
    out = run(study)
    rows = analyse(study, out)
    if check:
        diffs = compare(recorded, results_json(study, out))
        n = sum(len(v) for var in recorded["variants"].values() for v in var["values"].values())
        if diffs:
            raise AblationMismatch(f"{len(diffs)} of {n} recorded numbers differ from the re-run:\n  "
                                   + "\n  ".join(diffs[:30]))
        return (f"ablation-check {study.name}: all {n} numbers of {recorded_path} reproduced exactly "
                f"(recorded at commit {recorded['provenance']['mlflow.source.git.commit'][:12]}, now "
                f"{prov['mlflow.source.git.commit'][:12]})")
    command = "make ablation" + (f' ARGS="{" ".join(args)}"' if list(args) != ["ablation=seed_claims"] else "")
    files = write(study, out, rows, directory, prov, command, args)
    parent = record(study, out, rows, files, cfg.tracking.uri)
    lines = [f"ablation {study.name}: {len(study.variants) - 1} variants × {len(study.seeds)} seeds",
             markdown_table(EFFECT_HEADER, effects_table(rows)),
             f"report: {directory / 'REPORT.md'}", f"MLflow: parent run {parent} in experiment {study.experiment} "
             "(browse with `make ui`)"]
    return "\n\n".join(lines)


class AblationMismatch(RuntimeError):
    """A re-run that does not reproduce the recorded numbers."""
