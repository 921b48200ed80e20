"""A study on several tasks under two protocols: every variant at the baseline's settings ("untuned"),
and every variant at its own best settings after tuning ("tuned", at each budget); each (task, protocol)
is an arm, compared with its baseline seed by seed on the evaluation seeds. All arms' runs are packed
on the replica axis together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from nnexp import population, stats
from nnexp.ablations.analysis import DIVERGED, Row, analyse
from nnexp.ablations.study import METRICS, Outcome, Study, outcome
from nnexp.ablations.tuning import Tuned
from nnexp.plan import Plan

UNTUNED = "untuned"


def tuned(budget: int) -> str:
    return f"tuned@{budget}"


@dataclass
class Arm:
    """One task under one protocol: the study with each variant's plan, its outcome and rows."""

    task: str
    protocol: str
    study: Study
    chosen: dict[str, dict[str, object]]  # variant -> the tuned values (empty untuned)
    out: Outcome | None = None
    rows: list[Row] | None = None


def arms(studies: dict[str, Study], tuned_by: dict[tuple[str, str], Tuned], budgets: Sequence[int],
         maximize: bool) -> list[Arm]:
    """Untuned and tuned arms for every task (`studies`: task -> the study with that task's plans)."""
    out = []
    for task, study in studies.items():
        out.append(Arm(task, UNTUNED, study, {v.name: {} for v in study.variants}))
        for b in budgets if tuned_by else ():
            variants, chosen = [], {}
            for v in study.variants:
                t = tuned_by[(task, v.name)]
                best = t.best(b, maximize)
                variants.append(replace(v, plan=t.plan(best)))
                chosen[v.name] = dict(best.params) if best else {}
            out.append(Arm(task, tuned(b), replace(study, variants=variants), chosen))
    return out


def evaluate(all_arms: list[Arm]) -> None:
    """Train every arm's variants on the evaluation seeds (one packed call; a plan two arms share, e.g.
    a variant whose best of 8 trials is its best of 64, trains once), then judge each arm."""
    plans = [judged(v.plan, v is a.study.baseline or v.metric == "epochs_to_target", a.study)  # type: ignore[arg-type]
             for a in all_arms for v in a.study.variants]
    keys = [key(p) for p in plans]
    distinct = list(dict.fromkeys(keys))
    first = {k: keys.index(k) for k in distinct}
    results = dict(zip(distinct, population.fit_seeds([plans[first[k]] for k in distinct], all_arms[0].study.seeds),
                       strict=True))
    i = 0
    for a in all_arms:
        n = len(a.study.variants)
        a.out = outcome(a.study, [results[k] for k in keys[i:i + n]])
        a.rows = analyse(a.study, a.out)
        i += n


def judged(plan: Plan, compared_on_epochs: bool, study: Study) -> Plan:
    """A plan as its arm needs it: evaluated after every epoch only where the epochs to a target are
    compared (that variant and the baseline); the others read the final epoch's metrics, and train
    the same either way."""
    if plan.patience or (compared_on_epochs and any(v.metric == "epochs_to_target" for v in study.variants)):
        return plan
    return replace(plan, eval_every=plan.epochs)


def key(plan: Plan) -> tuple:
    """What makes two plans train the same runs."""
    return (id(plan.data), plan.spec, plan.optimizer, repr(sorted(plan.optimizer_args.items())), repr(plan.lr),
            plan.schedule, repr(sorted(plan.schedule_args.items())), plan.epochs, plan.batch_size, plan.patience,
            repr(plan.dropout), plan.eval_every)


@dataclass(frozen=True)
class Claim:
    """One variant's verdicts: per task and protocol, and across tasks per protocol."""

    variant: str
    verdicts: dict[tuple[str, str], str]  # (task, protocol) -> verdict
    across: dict[str, stats.OverTasks]  # protocol -> the test (or count) over tasks
    flips: list[str]  # tasks where the untuned and the fully tuned verdicts differ


def claims(all_arms: list[Arm], full: str) -> list[Claim]:
    """Every non-baseline variant's verdicts, and where tuning flips them (`full`: the full budget)."""
    names = [v.name for v in all_arms[0].study.variants[1:]]
    protocols = list(dict.fromkeys(a.protocol for a in all_arms))
    out = []
    for name in names:
        verdicts: dict[tuple[str, str], str] = {}
        across: dict[str, stats.OverTasks] = {}
        for protocol in protocols:
            rows = [(a, next(r for r in a.rows or [] if r.variant == name)) for a in all_arms if a.protocol == protocol]
            verdicts |= {(a.task, protocol): r.verdict for a, r in rows}
            v = next(x for x in rows[0][0].study.variants if x.name == name)
            diffs = [r.diff.diff.mean if r.diff and r.verdict != DIVERGED else float("nan") for _, r in rows]
            across[protocol] = stats.over_tasks(diffs, [r.p_holm for _, r in rows], METRICS[v.metric],
                                                v.expect != "worse", rows[0][0].study.alpha)
        tasks = list(dict.fromkeys(a.task for a in all_arms))
        flips = [t for t in tasks if full in protocols and verdicts.get((t, UNTUNED)) != verdicts.get((t, full))]
        out.append(Claim(name, verdicts, across, flips))
    return out
