"""Tuned ablations (`ablation.tuning`): every variant at its own best settings, on several tasks, at
every budget; tuning on seeds never evaluated on, selection on validation, resumable, checkable."""

import json
import math

import optuna
import pytest
from helpers import mlflow_runs

from nnexp import population, stats
from nnexp.ablations import protocols, tuned_report, tuned_run, tuning
from nnexp.ablations import run as ablation_run
from nnexp.ablations.study import parse
from nnexp.config import compose, without_group
from nnexp.engine.loop import ReplicaResult
from nnexp.errors import ConfigError

DROPPED = ["no_decay", "naive_init", "sigmoid_hidden", "tanh_hidden", "leaky_relu_hidden", "deeper", "l2", "dropout",
           "batch_norm", "rmsprop", "adagrad", "full_batch"]  # kept: no_momentum and adam


def tuned_args(tmp, *extra, trials=6):
    """seed_claims_tuned made small: two variants, two tasks, 3 seeds, 40 epochs, `trials` trials."""
    return ["ablation=seed_claims_tuned", *[f"ablation.variants.{v}=null" for v in DROPPED], "ablation.seeds=[0,1,2]",
            "trainer.epochs=40", f"ablation.tuning.trials={trials}", f"ablation.tuning.budgets=[2,{trials}]",
            "ablation.tasks=[seed_regression,friedman1]", f"ablation.tuning.storage=journal:{tmp}/optuna.log",
            f"ablation.report_dir={tmp}/report", f"tracking.uri=sqlite:///{tmp}/mlflow.db", "ablation.force=true",
            *extra]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One small tuned study, recorded, with the seeds every training call was given."""
    tmp = tmp_path_factory.mktemp("tuned")
    seen = {"tuning": set(), "evaluation": set()}
    fit, fit_seeds = population.fit, population.fit_seeds
    evaluating = []

    def tuning_fit(plans, *a, **k):  # fit_seeds (evaluation) calls fit too
        if not evaluating:
            seen["tuning"] |= {int(s) for p in plans for s in p.seeds}
        return fit(plans, *a, **k)

    def evaluation_fit(plans, seeds):
        seen["evaluation"] |= set(seeds)
        evaluating.append(1)
        try:
            return fit_seeds(plans, seeds)
        finally:
            evaluating.pop()

    with pytest.MonkeyPatch.context() as m:
        m.setattr(tuning.population, "fit", tuning_fit)
        m.setattr(protocols.population, "fit_seeds", evaluation_fit)
        args = tuned_args(tmp)
        result = ablation_run.record(compose(args), args)
    return tmp, result, seen


def test_tuning_seeds_are_never_evaluation_seeds(tuned, tmp_path):
    _, result, seen = tuned
    assert seen["tuning"] == {100} and seen["evaluation"] == {0, 1, 2}
    with pytest.raises(ConfigError, match=r"ablation.tuning.seeds.*\[1\] are evaluation seeds too"):
        parse(compose(tuned_args(tmp_path, "ablation.tuning.seeds=[1,100]")))


def test_the_chosen_setting_is_the_best_on_validation_among_the_variants_trials(tuned):
    _, result, _ = tuned
    r = result.tuned
    full = next(a for a in r.arms if a.protocol == r.full and a.task == "friedman1")
    for v in full.study.variants:
        t = r.tuned_by[("friedman1", v.name)]
        values = [tr.value for tr in t.trials if tr.value is not None]
        best = t.best(r.tuning.trials, True)
        assert len(t.trials) == r.tuning.trials and best.value == max(values)
        assert full.chosen[v.name] == best.params and v.plan.lr == best.params["lr"]
        again = population.fit([v.plan.with_seeds([100])])[0]  # the trial's score is its validation R²
        assert best.value == again.final["val_r2"] != again.final["test_r2"]


def test_selection_reads_validation_only():
    def result(val, test):
        return ReplicaResult(0, "completed", "", 1, 1, {}, {"val_r2": val, "test_r2": test})

    assert tuning.score([result(0.5, 0.99)], "val_r2") == 0.5
    assert tuning.score([result(0.5, 0.9), result(math.nan, 0.9)], "val_r2") is None  # a seed diverged
    trials = [optuna.trial.create_trial(params={"lr": lr}, distributions={"lr": optuna.distributions.FloatDistribution(
        0.001, 3)}, value=v) for lr, v in [(0.1, 0.7), (0.2, 0.9), (0.3, 0.9), (0.4, 0.8)]]
    for i, t in enumerate(trials):
        t.number = i
    t = tuning.Tuned("task", "v", [], None, trials)
    assert t.best(4, True).number == 1 and t.best(1, True).number == 0 and t.best(4, False).number == 0


def test_the_report_gives_both_protocols_per_task_and_across_tasks(tuned):
    tmp, result, _ = tuned
    report = (tmp / "report" / "REPORT.md").read_text()
    assert "seed_regression: untuned → tuned" in report and "friedman1: untuned → tuned" in report
    assert "2 tasks: too few for a test over tasks (it needs 6), counts only" in report
    assert "## The settings each variant was tuned to" in report and "budget_curves.png" in report
    assert "| `no_momentum` | friedman1 | " in report and "## Verdicts at every budget (tuned)" in report
    assert {p.name for p in (tmp / "report").iterdir()} == {"REPORT.md", "results.json", "configs.yaml",
                                                             "budget_curves.png"}
    doc = json.loads((tmp / "report" / "results.json").read_text())
    assert set(doc["arms"]) == {f"{t}/{p}" for t in ("seed_regression", "friedman1")
                                for p in ("untuned", "tuned@2", "tuned@6")}
    momentum = doc["arms"]["friedman1/untuned"]["variants"]["no_momentum"]["overrides"]
    chosen = doc["arms"]["friedman1/tuned@6"]["chosen"]
    assert momentum == ["optimizer.momentum=0.0"] and "momentum" not in chosen["no_momentum"]  # never tuned away
    assert set(chosen["adam"]) == {"lr", "decay_rate", "decay_steps"}  # a chosen group is tuned within


def test_the_study_its_variants_and_trials_are_mlflow_runs(tuned):
    tmp, result, _ = tuned
    _, runs = mlflow_runs(tmp, "nnexp-ablation")
    parent = [r for r in runs if r.data.tags.get("nnexp.kind") == "ablation"]
    children = [r for r in runs if r.data.tags.get("nnexp.kind") == "ablation_variant"]
    trials = [r for r in runs if r.data.tags.get("nnexp.kind") == "tuning_trial"]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED" and len(children) == 6 and len(trials) == 36
    ids = {r.info.run_id for r in children}
    assert all(r.data.tags["mlflow.parentRunId"] == parent[0].info.run_id for r in children)
    assert all(r.data.tags["mlflow.parentRunId"] in ids for r in trials)
    assert all(r.info.status == "FINISHED" for r in children)
    no_momentum = next(r for r in children if r.data.tags["ablation.variant"] == "no_momentum"
                       and r.data.tags["ablation.task"] == "friedman1")
    assert {"ablation.verdict.untuned", "ablation.verdict.tuned_6"} <= set(no_momentum.data.tags)


def test_an_interrupted_tuned_study_resumes_to_the_same_numbers(tuned, tmp_path, monkeypatch):
    tmp, result, _ = tuned
    args = tuned_args(tmp_path)
    study = parse(compose(args))
    per_task = tuned_run.compose_tasks(study, study.tasks, without_group(args, "ablation"))
    told = []

    def interrupt(t, trial, runs, value):  # Ctrl-C after the fifth trial is told
        told.append(trial.number)
        if len(told) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tuned_run.run_tuned(study, study.tuning, per_task, f"journal:{tmp_path}/optuna.log", interrupt)
    again = tuned_run.run_tuned(study, study.tuning, per_task, f"journal:{tmp_path}/optuna.log")
    doc = tuned_report.results(study, study.tuning, again.arms, again.tuned_by, {})
    recorded = json.loads((tmp / "report" / "results.json").read_text())
    assert tuned_report.flat(doc) == tuned_report.flat(recorded)


def test_the_check_reruns_the_tuning_from_nothing_and_finds_a_changed_number(tuned, tmp_path):
    tmp, result, _ = tuned
    recorded = json.loads((tmp / "report" / "results.json").read_text())
    recorded["args"] = [a for a in recorded["args"] if not a.startswith(("tracking.", "ablation.report_dir"))]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(recorded))
    assert "reproduced exactly" in ablation_run.check("seed_claims_tuned", [], path)
    recorded["trials"]["friedman1/adam"][3][1] += 1e-6
    path.write_text(json.dumps(recorded))
    with pytest.raises(ablation_run.AblationMismatch, match="tuning/friedman1/adam score trial 3"):
        ablation_run.check("seed_claims_tuned", [], path)


@pytest.mark.parametrize(("override", "message"), [
    ("ablation.tuning.trials=1", "ablation.tuning.trials"),
    ("ablation.tuning.metric=test_r2", "tuning never looks at test"),
    ("ablation.tuning.budgets=[100]", "ablation.tuning.budgets"),
    ("ablation.tasks=[seed_regression,nope]", "ablation.tasks"),
    ("+ablation.tuning.space.width={path:model.width,type:int,low:1,high:4}", "model.width"),
    ("+ablation.tuning.extra=1", "ablation.tuning.extra"),
])
def test_bad_tuning_settings_are_refused_before_training(tmp_path, override, message):
    args = tuned_args(tmp_path, override)
    with pytest.raises(ConfigError, match=message):
        ablation_run.record(compose(args), args)
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.log").exists()


def test_a_data_choice_beside_the_studys_tasks_is_refused(tmp_path):
    args = tuned_args(tmp_path, "data=friedman1")
    with pytest.raises(ConfigError, match="ablation.tasks.*data=friedman1 would be ignored"):
        ablation_run.record(compose(args), args)


def test_plain_sgd_loses_at_the_baselines_step_and_not_at_its_own(tmp_path):
    """Momentum 0.9 at lr 0.1 takes steps of about 0.1 / (1 - 0.9) = 1: plain SGD at lr 0.1 loses for
    that reason alone, and tuned (it finds a learning rate near 1) it no longer does."""
    args = [*tuned_args(tmp_path, trials=12), "ablation.variants.adam=null", "ablation.tasks=[seed_regression]",
            "ablation.seeds=[0,1,2,3,4,5]", "trainer.epochs=60", "ablation.variants.no_momentum.metric=test_r2",
            "ablation.tuning.budgets=[12]", "ablation.tuning.space.momentum=null",
            "ablation.tuning.space.decay_rate=null", "ablation.tuning.space.decay_steps=null",
            "ablation.tuning.space.lr.low=0.03", "ablation.tuning.space.lr.high=3"]
    r = ablation_run.record(compose(args), args).tuned
    claim = r.claims[0]
    assert claim.verdicts[("seed_regression", "untuned")] == stats.REAL  # worse, as the claim expects
    assert claim.verdicts[("seed_regression", r.full)] in (stats.NOISE, stats.REVERSED), claim.verdicts
    chosen = next(a for a in r.arms if a.protocol == r.full).chosen
    assert chosen["no_momentum"]["lr"] > 0.3  # far above the baseline's 0.1


def test_a_tuning_budget_that_cannot_fit_in_memory_is_refused_before_anything_is_recorded(tmp_path):
    args = tuned_args(tmp_path, "ablation.tuning.trials=10000", "ablation.tuning.budgets=[10000]",
                      "ablation.tuning.seeds=[100,101,102,103,104,105,106,107,108,109,110,111,112,113,114,115]",
                      "model.hidden=[4096,4096]")
    with pytest.raises(ConfigError, match=r"ablation.tuning.trials .*GiB of memory"):
        ablation_run.record(compose(args), args)
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.log").exists()
