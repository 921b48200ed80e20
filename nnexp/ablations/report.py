"""An ablation study's report, rendered: `REPORT.md` (headed by the command and the provenance), its
tables as CSV and Markdown, every number per seed (`results.json`), every composed config, and the
plots. Rendering only: training is in `study`, judging in `analysis`, recording in `run`."""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from nnexp import plots, stats
from nnexp.ablations.analysis import DIVERGED, Row, results_json
from nnexp.ablations.study import BASELINE, Outcome, Study
from nnexp.config import mapping

LABELS = {"test_r2": "test R²", "val_r2": "val R²", "train_mse": "train MSE", "test_mse": "test MSE",
          "gap_mse": "gap (test − train MSE)", "epochs_to_target": "epochs to target"}
PACKAGE_NAMES = {"hydra_version": "hydra-core"}
CLAIM_WORDS = {stats.REAL: "confirmed", stats.NOISE: "not confirmed (within noise)", stats.REVERSED: "reversed",
               DIVERGED: "not testable: the variant diverged on every seed"}
EFFECT_HEADER = ["variant", "metric", "baseline", "variant value", "difference [95% CI]", "bootstrap 95% CI",
                 "paired t p", "Wilcoxon p", "Holm p", "detectable", "verdict"]
SUMMARY_METRICS = ("test_r2", "val_r2", "train_mse", "gap_mse", "epochs_to_target")


def fmt(x: float, metric: str) -> str:
    if not math.isfinite(x):
        return "–"
    return f"{x:.1f}" if metric == "epochs_to_target" else f"{x:.4f}" if metric.endswith("r2") else f"{x:.5f}"


def ci(i: stats.Interval, metric: str) -> str:
    return f"{fmt(i.mean, metric)} ± {fmt((i.hi - i.lo) / 2, metric)}" if i.n > 1 else fmt(i.mean, metric)


def command(study_name: str, args: Sequence[str], record: bool = False) -> str:
    """The command that re-runs the study, quoted so that a shell and make give back `args` exactly."""
    extra = [a for a in args if a != f"ablation={study_name}"]
    target = f"make ablation-record STUDY={study_name}" if record else f"make ablation STUDY={study_name}"
    return target + (f" ARGS={shlex.quote(' '.join(shlex.quote(a) for a in extra))}" if extra else "")


def effects_table(rows: list[Row]) -> list[list[str]]:
    base = rows[0]
    out = []
    for r in rows[1:]:
        assert r.diff is not None
        d, m = r.diff, r.metric
        out.append([r.variant, LABELS[m], ci(base.summary[m], m), ci(r.summary[m], m),
                    f"{fmt(d.diff.mean, m)} [{fmt(d.diff.lo, m)}, {fmt(d.diff.hi, m)}]",
                    f"[{fmt(d.boot_lo, m)}, {fmt(d.boot_hi, m)}]", f"{d.t_p:.2g}", wilcoxon(d), f"{r.p_holm:.2g}",
                    fmt(r.detectable, m), r.verdict])
    return out


def wilcoxon(d: stats.Paired) -> str:
    """The Wilcoxon p, marked when it cannot reach 0.05 at all (its smallest p with these seeds)."""
    if math.isfinite(d.wilcoxon_min_p) and d.wilcoxon_min_p >= 0.05:
        return f"{d.wilcoxon_p:.2g} (≥ {d.wilcoxon_min_p:.2g})"
    return f"{d.wilcoxon_p:.2g}"


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
                     f"baseline {ci(b, r.metric)}, variant {ci(x, r.metric)}{extra}; difference "
                     f"{fmt(r.diff.diff.mean, r.metric)} [{fmt(r.diff.diff.lo, r.metric)}, "
                     f"{fmt(r.diff.diff.hi, r.metric)}], Holm p = {r.p_holm:.2g}. "
                     f"The claim expects the variant to be {r.expect} → **{word}**.")
    return "\n".join(lines)


def head(study: Study, rows: list[Row], prov: dict[str, str], cmd: str, digests: dict[str, str]) -> list[str]:
    seeds = study.seeds
    floor = stats.wilcoxon_min_p([1.0] * len(seeds))
    return [
        f"# Ablation study `{study.name}`", "", study.description, "",
        f"Re-run: `{cmd}` · check against this report: `make ablation-check STUDY={study.name}`", "",
        markdown_table(["", ""], [
            ["git commit", f"`{prov['mlflow.source.git.commit']}`" + (" (uncommitted changes: forced)"
                                                                     if prov["git_dirty"] == "true" else " (clean)")],
            ["recorded", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())],
            ["packages", ", ".join(f"{PACKAGE_NAMES.get(k, k.removesuffix('_version'))} {v}"
                                   for k, v in prov.items() if k.endswith("_version"))],
            ["platform", f"{prov['platform']}, {prov.get('cpu', '?')}"],
            ["datasets", ", ".join(f"{k} `{v}`" for k, v in digests.items())],
            ["seeds", f"{seeds} (K = {len(seeds)}), the same for every variant"],
            ["statistics", f"mean ± half-width of the 95% t interval over seeds; each variant against the baseline "
                           f"seed by seed: paired t test (p Holm-corrected over the {len(rows) - 1} variants, "
                           f"α = {study.alpha}), a seeded bootstrap interval of the mean difference, and the Wilcoxon "
                           f"signed-rank test (exact; with K = {len(seeds)} its smallest two-sided p is {floor:.3g}"
                           + (": it cannot reject at α on its own" if floor >= study.alpha else "") + "); "
                           "*detectable*: the smallest difference the paired t test finds with 80% power at α, "
                           "given the observed spread"],
            ["epochs to target", f"1 + the first epoch whose training MSE ≤ {study.target_mse} (never: "
                                 f"epochs + 1, a censored value)"],
        ]), "",
        "Composed configs: [configs.yaml](configs.yaml) · every number per seed: [results.json](results.json)", "",
    ]


def render(study: Study, rows: list[Row], prov: dict[str, str], cmd: str, digests: dict[str, str]) -> str:
    seeds = study.seeds
    summary_rows = [[r.variant, ", ".join(v.overrides) or "(the baseline)",
                     *[ci(r.summary[m], m) for m in SUMMARY_METRICS], f"{r.diverged}/{len(seeds)}"]
                    for r, v in zip(rows, study.variants, strict=True)]
    claims = claims_section(study, rows)
    body = ([f"## The seed's claims, checked\n\n{claims}\n"] if claims else []) + [
        "## Every variant (mean ± 95% CI half-width over seeds)\n",
        markdown_table(["variant", "overrides", *[LABELS[m] for m in SUMMARY_METRICS], "diverged"], summary_rows), "",
        "## Each variant against the baseline, on its metric\n",
        "Verdict: for a variant whose claim predicts a direction, *real* (the predicted effect, significant "
        "after correction), *within noise*, or *reversed* (significant, the other way); without a prediction, "
        f"*better*, *worse* or *within noise*; *{DIVERGED}* when there is nothing to compare.\n",
        markdown_table(EFFECT_HEADER, effects_table(rows)), "",
        "![each variant's test R² minus the baseline's, 95% CI](effects.png)", "",
        "![validation MSE per variant over epochs](curves.png)", "",
    ]
    return "\n".join(head(study, rows, prov, cmd, digests) + body)


def texts(study: Study, out: Outcome, rows: list[Row], prov: dict[str, str], cmd: str,
          args: Sequence[str]) -> dict[str, str]:
    """REPORT.md, results.json, configs.yaml, effects.csv and effects.md."""
    digests = {v.plan.data.name: v.plan.data.digest() for v in study.variants}  # type: ignore[union-attr]
    doc = results_json(study, out) | {"args": list(args), "provenance": prov, "dataset_digests": digests}
    buf = io.StringIO()
    csv.writer(buf).writerows([EFFECT_HEADER, *effects_table(rows)])
    return {"REPORT.md": render(study, rows, prov, cmd, digests) + "\n",
            "results.json": json.dumps(doc, indent=1, allow_nan=True) + "\n",
            "configs.yaml": OmegaConf.to_yaml({v.name: {k: x for k, x in mapping(v.cfg).items() if k != "tracking"}
                                               for v in study.variants}),
            "effects.md": markdown_table(EFFECT_HEADER, effects_table(rows)) + "\n", "effects.csv": buf.getvalue()}


def draw(study: Study, out: Outcome, directory: Path) -> list[Path]:
    """effects.png (test R² against the baseline) and curves.png (validation MSE per variant)."""
    base = out.values[BASELINE]["test_r2"]
    test = [stats.paired(out.values[v.name]["test_r2"], base).diff for v in study.variants[1:]]
    paths = [plots.effects(names=[v.name for v in study.variants[1:]], diffs=[d.mean for d in test],
                           lo=[d.lo for d in test], hi=[d.hi for d in test], path=directory / "effects.png",
                           xlabel="test R², variant − baseline (seed by seed; mean and 95% CI)",
                           title=f"Ablation {study.name}: test R² of each variant against the baseline, "
                                 f"{len(study.seeds)} seeds")]
    curves = {v.name: out.curves[v.name] for v in study.variants if out.curves[v.name]}
    paths.append(plots.bands(groups=curves, path=directory / "curves.png", ylabel="val_mse",
                             title=f"Ablation {study.name}: validation MSE per epoch of each variant"))
    return paths


def variant_fields(study: Study, out: Outcome, r: Row) -> dict[str, Any]:
    """A variant's child run: per-seed values (step = seed index) and the aggregates as final metrics."""
    per_seed = [[f"seed.{m}", x, i] for m, xs in out.values[r.variant].items() for i, x in enumerate(xs)]
    final: dict[str, float] = {}
    for m, i in r.summary.items():
        final |= {m: i.mean, f"{m}_ci_low": i.lo, f"{m}_ci_high": i.hi}
    final["diverged_seeds"] = r.diverged
    if r.diff is not None:
        final |= {f"diff_{r.metric}": r.diff.diff.mean, f"diff_{r.metric}_ci_low": r.diff.diff.lo,
                  f"diff_{r.metric}_ci_high": r.diff.diff.hi, "p_t": r.diff.t_p, "p_wilcoxon": r.diff.wilcoxon_p,
                  "p_wilcoxon_min": r.diff.wilcoxon_min_p, "p_holm": r.p_holm, "detectable": r.detectable}
    return {"metrics": per_seed + [[k, v, 0] for k, v in final.items()]}
