"""The ablation commands: `make ablation` (train, record in MLflow, write the report to `outputs/`),
`make ablation-record` (the same into `experiments/<study>/`, from a clean working tree: recording a
report into the repository is an explicit step) and `make ablation-check` (re-run a recorded study and
compare every number with its report).

The MLflow record comes first; the report's files are written after it, all at once (into a staging
directory renamed into place), so an interrupted study leaves neither a report without its runs nor
a half-written report.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from nnexp import schema
from nnexp.ablations import files, report, tuned_report, tuned_run
from nnexp.ablations.analysis import Row, analyse, compare, results_json
from nnexp.ablations.study import Outcome, Study, parse, prepare, run
from nnexp.config import ConfigCache, compose, without_group
from nnexp.errors import ConfigError
from nnexp.paths import project_root
from nnexp.recording import Recording, records

OVERRIDE = re.compile(r"^(model|data|optimizer|schedule|trainer|seed|ablation)(\.[A-Za-z0-9][A-Za-z0-9_]*)*=")


class AblationMismatch(RuntimeError):
    """A re-run that does not reproduce the recorded numbers."""


@dataclass
class Trained:
    study: Study
    out: Outcome
    rows: list[Row]


def train(cfg: DictConfig, args: Sequence[str]) -> Trained:
    """Parse, compose and validate every variant, train them all, judge them."""
    study = parse(cfg)
    prepare(study, ConfigCache(without_group(args, "ablation")))
    out = run(study)
    return Trained(study, out, analyse(study, out))


@dataclass(frozen=True)
class StudyResult:
    """A recorded study: its rows (each variant against the baseline), every number, where it went."""

    study: Study
    rows: list[Row]
    outcome: Outcome
    report_dir: Path
    parent_run: str
    text: str
    tuned: tuned_run.TunedStudy | None = None  # a study with `tuning`: both protocols' arms and claims


def record(cfg: DictConfig, args: Sequence[str], into_repo: bool = False) -> StudyResult:
    """Train, record in MLflow, then write the report (a study with `tuning`: both protocols, `tuned_run`)."""
    study = parse(cfg)
    prov = records.provenance()
    if into_repo and prov["git_dirty"] == "true" and not study.force:
        raise ConfigError("ablation.force", False, "the working tree has uncommitted changes, so the commit in the "
                          "report would not reproduce its numbers; commit first, or force with ablation.force=true")
    directory = files.report_dir(study.name, study.report_dir, into_repo)
    files.writable(directory)
    tracking = schema.tracking(cfg.tracking)
    cmd = report.command(study.name, args, into_repo)
    if study.tuning is not None:
        r = tuned_run.record(study, args, tracking, prov, cmd, directory)
        return StudyResult(study, [], Outcome(), directory, r.parent_run, r.text, r.result)
    t = train(cfg, args)
    with files.staged(directory) as stage:
        texts = report.texts(t.study, t.out, t.rows, prov, cmd, args)
        for name, text in texts.items():
            (stage / name).write_text(text)
        pngs = report.draw(t.study, t.out, stage)
        parent = mlflow_record(t, tracking, texts, pngs)
    text = "\n\n".join([f"ablation {study.name}: {len(study.variants) - 1} variants × {len(study.seeds)} seeds",
                         report.markdown_table(report.EFFECT_HEADER, report.effects_table(t.rows)),
                         f"report: {directory / 'REPORT.md'}", f"MLflow: parent run {parent} in experiment "
                         f"{study.experiment} (browse with `make ui`)"])
    return StudyResult(t.study, t.rows, t.out, directory, parent, text)


def mlflow_record(t: Trained, tracking: dict, texts: dict[str, str], pngs: list[Path]) -> str:
    """The parent run (report, tables, plots beside REPORT.md) and a child run per variant; waits until
    the recorder has them all."""
    study = t.study
    rec = Recording(tracking["uri"])
    key = records.new_key("ablation")
    try:
        rec.write(records.run(key, study.experiment, name=f"ablation {study.name}", start_ms=records.now_ms(),
                              tags={"nnexp.kind": "ablation", "ablation.study": study.name, **records.provenance()},
                              params={"ablation.name": study.name, "ablation.seeds": study.seeds,
                                      "ablation.target_mse": study.target_mse, "ablation.variants": len(t.rows) - 1}))
        for r, v in zip(t.rows, study.variants, strict=True):
            rec.write(records.run(f"{key}:{v.name}", study.experiment, parent=key, name=v.name, status="FINISHED",
                                  tags={"nnexp.kind": "ablation_variant", "ablation.variant": v.name,
                                        "ablation.verdict": r.verdict, "ablation.claim": v.claim[:5000]},
                                  params={**_params(v), "variant.overrides": v.overrides},
                                  **report.variant_fields(study, t.out, r)))
        rec.write(records.run(key, study.experiment, status="FINISHED", end_ms=records.now_ms(),
                              texts=texts, files=[[str(p), ""] for p in pngs]))
        rec.finish()
    except BaseException as e:
        rec.end_after(key, study.experiment, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED",
                      f"{type(e).__name__}: {e}")
        raise
    return rec.run_ids.get(key, "?")


def _params(v) -> dict[str, str]:
    from nnexp.config import run_params

    return run_params(v.cfg, v.plan)


def check(study_name: str, args: Sequence[str], path: Path | None = None) -> str:
    """Re-run the study recorded in experiments/<study>/ (or `path`) and compare every number with it."""
    path = path or project_root() / "experiments" / study_name / "results.json"
    if not path.is_file():
        raise ConfigError("STUDY", study_name, f"no recorded report at {path} (record one with "
                          f"`make ablation-record STUDY={study_name}`)")
    recorded = _read(path, study_name)
    recorded_args = [f"ablation={study_name}", *[a for a in recorded["args"] if not a.startswith("ablation=")]]
    cfg = compose([*recorded_args, *args])
    if parse(cfg).tuning is not None:  # tuned again from nothing, in a storage of its own
        c = compare(tuned_report.flat(recorded), tuned_report.flat(tuned_run.rerun(parse(cfg), recorded_args)))
    else:
        t = train(cfg, recorded_args)
        c = compare(recorded, results_json(t.study, t.out))
    where = (f"recorded at commit {recorded['provenance']['mlflow.source.git.commit'][:12]} on "
             f"{recorded['provenance'].get('cpu', 'an unrecorded CPU')}; this run on {records.cpu()}")
    if c.different:
        raise AblationMismatch(f"{len(c.different)} of {c.total} recorded numbers differ from the re-run ({where}):"
                               "\n  " + "\n  ".join(c.different[:30]))
    if not c.close:
        return f"ablation-check {study_name}: all {c.total} numbers of {path} reproduced exactly ({where})"
    return (f"ablation-check {study_name}: all {c.total} numbers of {path} reproduced: {c.exact} exactly, {c.close} "
            f"to within {c.largest:.1g} relative, the last bits of float64 ({where}; NumPy's vector kernels differ "
            "between CPUs: on the recording's CPU every number is bit-identical)")


def _read(path: Path, study_name: str) -> dict:
    """A recorded report is data: its overrides are only ever keys of the config schema, never code."""
    try:
        recorded = json.loads(path.read_text())
        args = recorded["args"]
        assert isinstance(args, list) and all(isinstance(a, str) and OVERRIDE.match(a) for a in args)
        assert recorded["study"] == study_name and isinstance(recorded.get("variants", recorded.get("arms")), dict)
    except (ValueError, KeyError, AssertionError, TypeError):
        raise ConfigError("STUDY", study_name, f"{path} is not a recorded report of study {study_name!r} (its args "
                          "may only set model, data, optimizer, schedule, trainer, seed or ablation fields)") from None
    return recorded
