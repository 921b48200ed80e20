"""Running a sweep: check the search space, open (or resume) the study and its MLflow parent run, run
this process's worker and any extra worker processes, finish what dead workers left, then report.

    run(cfg, overrides)                   # `make sweep`: the coordinator
    run(cfg, overrides, worker_index=i)   # `make sweep-worker` / a spawned process: trials only
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnexp import faults, schema
from nnexp.config import compose, flat_params, mapping, without_group
from nnexp.errors import ConfigError
from nnexp.interrupts import check
from nnexp.paths import project_root
from nnexp.plan import check_memory
from nnexp.recording import Recording, RecordingError, records, resolve_uri
from nnexp.sweeps import space
from nnexp.sweeps import storage as studies
from nnexp.sweeps.settings import Settings, make_pruner, make_sampler, read_settings
from nnexp.sweeps.trials import Configs
from nnexp.sweeps.view import runs_view, ui_link, view_key
from nnexp.sweeps.worker import SweepError, Worker

SCRIPT = project_root() / "experiments" / "sweep.py"


def check_space(settings: Settings, configs: Configs, choices: dict[str, str]) -> dict[str, Any]:
    """Build the baseline and a trial at every end of every range and every choice, so that a bad
    space fails before any trial, naming the parameter. Returns the baseline's values."""
    base_cfg = configs.composed()
    configs.plan(base_cfg)  # the base config itself first: its own mistakes get their own message
    baseline = space.baseline_values(settings.space, base_cfg, choices)
    by_name = {p.name: p for p in settings.space}

    def build(values: dict[str, Any], p: space.Param | None, v: Any) -> Any:
        try:
            return configs.plan(configs.config(values))
        except ConfigError as e:
            if p is None or e.field.startswith("sweep."):
                raise
            raise ConfigError(f"sweep.space.{p.name}", v, f"gives an invalid {p.path} ({e})") from None

    plan = build(baseline, None, None)
    if settings.metric.startswith("val") and len(plan.data.x_val) == 0:
        raise ConfigError("sweep.metric", settings.metric, "needs a validation split (data.val_fraction > 0)")
    for p in settings.space:
        seen: dict[str, Any] = {}  # a group parameter: each choice's composed group, to find choices made equal
        for v in space.bounds(p):
            values = {**baseline, **{k: allowed[0] for k, allowed in p.when.items()}, p.name: v}
            values = {k: x for k, x in values.items() if by_name[k].active(values)}
            plan = build(values, p, v)
            check_memory(plan, settings.population, "sweep.population")
            if p.group:
                _refuse_masked_choice(p, v, OmegaConf.to_yaml(configs.config(values)[p.path]), seen, configs.base)
    return baseline


def _refuse_masked_choice(p: space.Param, choice: Any, group_yaml: str, seen: dict[str, Any],
                          base: Sequence[str]) -> None:
    """Two choices of a config group that compose to the same config (an override such as
    `model.hidden=[10, 6]` wins over every sampled `model=...`) would label trials with what was not
    trained: refuse before the first trial, naming both."""
    if group_yaml in seen:
        masking = [o for o in base if o.lstrip("+~").split("=", 1)[0].startswith(f"{p.path}.")]
        raise ConfigError(f"sweep.space.{p.name}", [seen[group_yaml], choice],
                          f"these choices of {p.path} compose to the same config"
                          + (f" because the override {', '.join(masking)} replaces what they set" if masking else "")
                          + ": every such trial would train the same thing under another name",
                          f"Remove the override{'s' if len(masking) > 1 else ''} or the parameter "
                          f"(~sweep.space.{p.name}).")
    seen[group_yaml] = choice


def fingerprint_parts(cfg: DictConfig, base_cfg: DictConfig, settings: Settings) -> dict[str, Any]:
    """What makes trials comparable: the search space, the base config and the objective."""
    sp = {k: v for k, v in mapping(cfg.sweep.space).items() if v is not None}
    return {**flat_params(OmegaConf.create({"space": sp})), **flat_params(base_cfg), "objective": settings.metric}


class Sweep:
    """One process's view of a sweep: settings, study, its recording, and its worker."""

    def __init__(self, cfg: DictConfig, overrides: Sequence[str], worker_index: int | None = None) -> None:
        self.cfg = cfg
        self.coordinator = worker_index is None
        settings = self.settings = read_settings(cfg)
        tracking = schema.tracking(cfg.tracking)
        base = without_group(overrides, "sweep")  # what shapes every trial's config
        choices = dict(compose(base, hydra_node=True).hydra.runtime.choices)
        self.configs = Configs(base, settings.space)
        self.baseline = check_space(settings, self.configs, choices)
        self.base_cfg = self.configs.composed()
        self.storage = studies.open_storage(settings.storage)
        self.parts = fingerprint_parts(cfg, self.base_cfg, settings)
        self.study = studies.open_study(
            self.storage, settings.study_name, self.parts, create=self.coordinator, direction=settings.direction,
            sampler=make_sampler(settings, worker_index or 0), pruner=make_pruner(settings), baseline=self.baseline,
            base_overrides=base)
        self.parent_key = str(self.study.user_attrs.get("nnexp.parent_key") or f"sweep:{self.study.study_name}")
        self.rec = Recording(tracking["uri"])
        if self.coordinator:
            self.rec.write(self.parent_record())
        self.worker = Worker(settings, self.configs, self.storage, self.study, self.rec, self.parent_key)
        if settings.timeout:
            self.worker.deadline = time.monotonic() + settings.timeout

    def settings_tags(self) -> dict[str, str]:
        settings = self.settings
        return {"sweep.n_trials": str(settings.n_trials), "sweep.population": str(settings.population),
                "sweep.workers": str(settings.workers),
                "sweep.sampler": f"{settings.sampler['name']} (seed {settings.seed})",
                "sweep.pruner": settings.pruner["name"], "optuna.storage": studies.describe(settings.storage),
                "optuna.study": settings.study_name, "sweep.metric": f"{settings.metric} ({settings.direction})"}

    def parent_record(self) -> dict[str, Any]:
        """The sweep's MLflow parent run, created on the first start and reopened on every resume (by its
        key, kept in the study): the base config, the space and the objective as params."""
        text = OmegaConf.to_yaml(OmegaConf.create({"sweep": mapping(self.cfg.sweep), **mapping(self.base_cfg)}))
        return records.run(self.parent_key, self.settings.experiment, name=f"sweep {self.settings.study_name}",
                           tags={"nnexp.kind": "sweep", **self.settings_tags(), **records.provenance()},
                           params=self.parts, texts={"sweep.yaml": text}, start_ms=records.now_ms(), resume=True,
                           figures_later=True,
                           view={"key": view_key(self.settings.study_name), "state": runs_view(self.settings)})

    def end_parent(self, status: str, reason: str = "", **fields: Any) -> None:
        tags = {**fields.pop("tags", {}), **({"nnexp.failure_reason": reason[:5000]} if reason else {})}
        self.rec.write(records.run(self.parent_key, self.settings.experiment, tags=tags, status=status,
                                   end_ms=records.now_ms(), **fields))

    def unfinished(self) -> dict[str, int]:
        c = studies.counts(self.study, self.settings.n_trials)
        c["NOT_ASKED"] = self.settings.n_trials - sum(c.values())
        return c

    def finish_leftovers(self, poll: float = 1.0) -> None:
        """Run what is left of the budget: trials put back by interrupted or dead workers, trials not
        asked yet; wait for trials other live workers (other machines) are still running, saying so."""
        said = False
        while not self.worker.out_of_time():
            check()
            studies.reclaim_stale(self.storage, self.study, self.settings.heartbeat["grace"])
            c = self.unfinished()
            if c["WAITING"] or c["NOT_ASKED"]:
                self.worker.run()
            elif c["RUNNING"]:
                if not said:
                    said = True
                    sys.stderr.write(studies.waiting_message(self.study, self.settings.heartbeat["grace"]) + "\n")
                time.sleep(poll)
            else:
                return


def spawn_workers(n: int, overrides: Sequence[str], rec: Recording) -> list[subprocess.Popen]:
    """n worker processes sharing the study (threads would not help NumPy on arrays this small); their
    records go to this command's recorder."""
    env = {**rec.env(), "CI": os.environ.get("CI", "1")}  # workers stay quiet; the coordinator reports
    return [subprocess.Popen([sys.executable, str(SCRIPT), f"--worker={i}", *overrides], env=env)
            for i in range(1, n + 1)]


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()


STOPPED = ("Trials in progress went back to WAITING (any the Optuna storage refused are re-run once "
           "sweep.heartbeat.grace seconds have passed); their records wait in the spool and are recorded by the "
           "next nnexp command once the store takes them.")


def stores(cfg: DictConfig) -> dict[str, tuple[str, str]]:
    """The sweep's stores by library, for a StoreError: (config field, store)."""
    return {"optuna": ("sweep.storage", studies.describe(cfg.sweep.get("storage"))),
            "mlflow": ("tracking.uri", resolve_uri(cfg.tracking.get("uri")))}


def run(cfg: DictConfig, overrides: Sequence[str], worker_index: int | None = None,
        on_population: Callable[[Worker], None] | None = None):
    """A whole sweep (coordinator) or one worker's share of it. Returns the coordinator's summary. A store
    that refuses writes (full, read-only) ends it with one paragraph naming the store (StoreError)."""
    studies.quiet_optuna()
    try:
        return _run(cfg, overrides, worker_index, on_population)
    except Exception as e:
        faults.explain(e, stores(cfg), STOPPED)
        raise


def _run(cfg: DictConfig, overrides: Sequence[str], worker_index: int | None,
         on_population: Callable[[Worker], None] | None):
    sweep = Sweep(cfg, overrides, worker_index)
    sweep.worker.on_population = on_population
    if not sweep.coordinator:
        try:
            sweep.worker.run()
        finally:
            sweep.rec.finish()
        return None
    procs = spawn_workers(sweep.settings.workers - 1, overrides, sweep.rec) if sweep.settings.workers > 1 else []
    try:
        sweep.worker.run()
        for p in procs:
            p.wait()
        sweep.finish_leftovers()
        from nnexp.sweeps.report import summarize

        summary = summarize(sweep)
        sweep.rec.finish()
        summary.parent_run = sweep.rec.run_ids.get(sweep.parent_key, "")
        experiment = sweep.rec.experiment_ids.get(sweep.parent_key)
        if experiment:
            link = ui_link(experiment, sweep.settings.study_name)
            summary.text += f"\n\nin the MLflow UI (make ui): {link}  (this sweep's runs, best first)"
        return summary
    except BaseException as e:
        status = "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED"
        reason = str(e) if isinstance(e, SweepError) else "interrupted" if status == "KILLED" else \
            f"{type(e).__name__}: {e}"
        stop_workers(procs)
        if sweep.rec.error and not sweep.worker.log.ready:  # no trial was told: nothing of it may be recorded
            sweep.rec.discard()
            raise
        sweep.end_parent(status, reason)
        with contextlib.suppress(RecordingError):
            sweep.rec.finish()
        raise
