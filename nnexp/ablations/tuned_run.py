"""Running a study on several tasks under both protocols: compose every variant on every task, tune
each (task, variant) with the same budget, evaluate both protocols on the evaluation seeds (everything
packed on the replica axis), judge, and hand the report and the MLflow records back to `run`."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nnexp.ablations import files, protocols, report, tuned_report, tuning
from nnexp.ablations.protocols import Arm, Claim
from nnexp.ablations.study import Study, prepare
from nnexp.ablations.tuning import Tuned, Tuning
from nnexp.config import ConfigCache, run_params, without_group
from nnexp.errors import ConfigError
from nnexp.plan import check_memory
from nnexp.recording import Recording, records
from nnexp.sweeps import storage as studies


@dataclass
class TunedStudy:
    study: Study
    tuning: Tuning
    tasks: list[str]
    per_task: dict[str, Study]
    tuned_by: dict[tuple[str, str], Tuned]
    arms: list[Arm]
    claims: list[Claim]

    @property
    def full(self) -> str:
        return protocols.tuned(self.tuning.trials)


def compose_tasks(study: Study, tasks: Sequence[str], args: Sequence[str]) -> dict[str, Study]:
    """The study with every variant composed and validated on each task (`data=<task>`; a `data=` choice
    in `args` is refused: the study's tasks say which data sets it runs on)."""
    chosen = [a for a in args if a.lstrip("+").startswith("data=")]
    if chosen and study.tasks:
        raise ConfigError("ablation.tasks", study.tasks, f"the study runs on these data sets, so {chosen[-1]} would "
                          "be ignored; set ablation.tasks=[...] instead (data.<field>=... overrides apply to every "
                          "task)")
    base = [a for a in args if a not in chosen]
    out = {}
    for task in tasks:
        copy = replace(study, variants=[replace(v) for v in study.variants])
        prepare(copy, ConfigCache([*base, f"data={task}"]))
        out[task] = copy
    return out


def tuned_studies(per_task: dict[str, Study], settings: Tuning) -> dict[tuple[str, str], Tuned]:
    out = {}
    for task, study in per_task.items():
        for v in study.variants:
            where = "ablation.baseline" if v is study.baseline else f"ablation.variants.{v.name}"
            own = v.overrides if v is not study.baseline else []
            overrides = [*study.baseline.overrides, *own]
            params = tuning.variant_space(settings, v.cfg, overrides, v.tune, where)  # type: ignore[arg-type]
            out[(task, v.name)] = Tuned(task, v.name, params, v.plan)  # type: ignore[arg-type]
    used = {p.name for t in out.values() for p in t.params}
    for p in settings.space:
        if p.name not in used:  # a parameter no variant has: it would tune nothing
            raise ConfigError(f"ablation.tuning.space.{p.name}", p.path, "no variant's config has this field (or "
                              "every variant sets it itself), so tuning it would change nothing")
    return out


def fingerprint(t: Tuned, settings: Tuning) -> dict[str, Any]:
    """What makes a tuning study's trials comparable: its space, the variant's plan, the metric, the seeds."""
    space = {f"space.{p.name}": repr(p) for p in t.params}
    return space | {"metric": settings.metric, "seeds": list(settings.seeds), "epochs": t.base.epochs,
                    "plan": repr((t.base.spec, t.base.optimizer, sorted(t.base.optimizer_args.items()), t.base.lr,
                                  t.base.schedule, sorted(t.base.schedule_args.items()), t.base.batch_size,
                                  t.base.data.digest()))}


def run_tuned(study: Study, settings: Tuning, per_task: dict[str, Study], storage_url: str | None,
              record: Any = None) -> TunedStudy:
    """Tune every (task, variant) (resuming what an earlier run left in the storage), evaluate both
    protocols on the evaluation seeds, judge."""
    tuned_by = tuned_studies(per_task, settings)
    studies.quiet_optuna()
    store = studies.open_storage(storage_url)
    names = {k: f"ablation:{study.name}:{t.task}:{t.variant}:{studies.fingerprint(fingerprint(t, settings))[:8]}"
             for k, t in tuned_by.items()}
    tuning.tune(list(tuned_by.values()), settings, store, lambda t: fingerprint(t, settings), names, record)
    all_arms = protocols.arms(per_task, tuned_by, settings.budgets, settings.maximize)
    protocols.evaluate(all_arms)
    result = TunedStudy(study, settings, list(per_task), per_task, tuned_by, all_arms, [])
    result.claims = protocols.claims(all_arms, result.full)
    return result


def document(r: TunedStudy, args: Sequence[str], prov: dict[str, str], cmd: str) -> tuple[dict[str, str], Any]:
    """The report's texts (REPORT.md, results.json) and its head's dataset digests."""
    digests = {s.baseline.plan.data.name: s.baseline.plan.data.digest() for s in r.per_task.values()}  # type: ignore
    doc = tuned_report.results(r.study, r.tuning, r.arms, r.tuned_by, {"args": list(args), "provenance": prov,
                                                                       "dataset_digests": digests})
    head = report.head(r.study, r.arms[0].rows or [], prov, cmd, digests)
    return tuned_report.texts(tuned_report.render(r.study, r.tuning, r.arms, r.claims, r.tuned_by, head, r.full),
                              doc, r.per_task), digests


def rerun(study: Study, args: Sequence[str]) -> dict[str, Any]:
    """The study tuned again from nothing (a fresh storage) and evaluated: its results document."""
    assert study.tuning is not None
    per_task = composed(study, args)
    with tempfile.TemporaryDirectory(prefix="nnexp-check-") as d:
        r = run_tuned(study, study.tuning, per_task, f"journal:{d}/optuna-journal.log")
    return tuned_report.results(study, study.tuning, r.arms, r.tuned_by, {})


@dataclass(frozen=True)
class Recorded:
    result: TunedStudy
    parent_run: str
    text: str


def record(study: Study, args: Sequence[str], tracking: dict, prov: dict[str, str], cmd: str,
           directory: Path) -> Recorded:
    """Compose every variant on every task (refusing before anything is recorded), then record: the
    parent run, a child per variant and task, the tuning trials below them as they finish; the report
    written after the runs, whole."""
    assert study.tuning is not None
    per_task = composed(study, args)
    rec = Recording(tracking["uri"])
    key = records.new_key("ablation")
    trials = TrialRecords(rec, study.experiment, key)
    try:
        rec.write(records.run(key, study.experiment, name=f"ablation {study.name} (tuned)", start_ms=records.now_ms(),
                              tags={"nnexp.kind": "ablation", "ablation.study": study.name, **prov},
                              params={"ablation.name": study.name, "ablation.seeds": study.seeds,
                                      "ablation.tasks": list(per_task), "ablation.tuning.trials": study.tuning.trials,
                                      "ablation.tuning.seeds": list(study.tuning.seeds),
                                      "ablation.variants": len(study.variants) - 1}))
        trials.open_children(list(per_task), study)
        r = run_tuned(study, study.tuning, per_task, study.tuning.storage, trials)
        with files.staged(directory) as stage:
            texts, _ = document(r, args, prov, cmd)
            for name, text in texts.items():
                (stage / name).write_text(text)
            png = tuned_report.draw_curves(r.tuned_by, r.tuning, stage / "budget_curves.png", study.name)
            trials.close_children(r)
            rec.write(records.run(key, study.experiment, status="FINISHED", end_ms=records.now_ms(), texts=texts,
                                  files=[[str(png), ""]]))
            rec.finish()
    except BaseException as e:
        rec.end_after(key, study.experiment, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED",
                      f"{type(e).__name__}: {e}")
        raise
    parent = rec.run_ids.get(key, "?")
    text = "\n\n".join([f"ablation {study.name}: {len(study.variants) - 1} variants × {len(per_task)} tasks, tuned "
                         f"with {study.tuning.trials} trials each; {len(study.seeds)} evaluation seeds",
                         tuned_report.claims_table(study, list(per_task), r.claims, r.full),
                         f"report: {directory / 'REPORT.md'}", f"MLflow: parent run {parent} in experiment "
                         f"{study.experiment} (browse with `make ui`)"])
    return Recorded(r, parent, text)


def composed(study: Study, args: Sequence[str]) -> dict[str, Study]:
    """The study on each of its tasks (or the command's data), refused here if any part of it is wrong:
    a variant that does not compose, a space parameter that would tune nothing."""
    assert study.tuning is not None
    per_task = compose_tasks(study, study.tasks or [_data_option(args)], without_group(args, "ablation"))
    replicas = min(tuning.CHUNK, study.tuning.trials * len(study.variants)) * len(study.tuning.seeds)
    for t in tuned_studies(per_task, study.tuning).values():  # the largest packed pass must fit in memory
        check_memory(t.base, replicas, "ablation.tuning.trials")
    return per_task


def _data_option(args: Sequence[str]) -> str:
    """The data option the command composed (a study without `tasks` is tested on it alone)."""
    chosen = [a.split("=", 1)[1] for a in args if a.startswith("data=")]
    return chosen[-1] if chosen else "seed_regression"


class TrialRecords:
    """The tuning trials as MLflow runs below their (variant, task) child run: lean (the sampled values,
    the tuning seeds, the validation score), written to the spool as they finish."""

    def __init__(self, rec: Recording, experiment: str, parent: str) -> None:
        self.rec, self.experiment, self.parent = rec, experiment, parent

    def child(self, task: str, variant: str) -> str:
        return f"{self.parent}:{task}:{variant}"

    def __call__(self, t: Tuned, trial: Any, runs: Sequence[Any], value: float | None) -> None:
        status = "FINISHED" if value is not None else "FAILED"
        self.rec.write(records.run(f"{self.child(t.task, t.variant)}:trial:{trial.number}", self.experiment,
                                   parent=self.child(t.task, t.variant), name=f"{t.variant} {t.task} trial "
                                   f"{trial.number:03d}", status=status, tags={"nnexp.kind": "tuning_trial"},
                                   params={f"sampled.{k}": str(v) for k, v in trial.params.items()},
                                   metrics=[["value", value, 0]] if value is not None else []))

    def open_children(self, result_tasks: Sequence[str], study: Study) -> None:
        for task in result_tasks:
            for v in study.variants:
                self.rec.write(records.run(self.child(task, v.name), self.experiment, parent=self.parent,
                                           name=f"{v.name} on {task}", tags={"nnexp.kind": "ablation_variant",
                                                                             "ablation.variant": v.name,
                                                                             "ablation.task": task},
                                           start_ms=records.now_ms()))

    def close_children(self, r: TunedStudy) -> None:
        for (task, name), t in r.tuned_by.items():
            best = t.best(r.tuning.trials, r.tuning.maximize)
            v = next(x for x in r.per_task[task].variants if x.name == name)
            params = {**(run_params(v.cfg, v.plan) if v.cfg is not None else {}),  # type: ignore[arg-type]
                      **{f"tuned.{k}": str(x) for k, x in (best.params if best else {}).items()}}
            claim = next((c for c in r.claims if c.variant == name), None)
            tags = {f"ablation.verdict.{p.replace('@', '_')}": claim.verdicts[(task, p)]
                    for p in (protocols.UNTUNED, r.full)} if claim else {}
            self.rec.write(records.run(self.child(task, name), self.experiment, params=params, tags=tags,
                                       metrics=[["best_value", best.value, 0]] if best else [], status="FINISHED",
                                       end_ms=records.now_ms()))

