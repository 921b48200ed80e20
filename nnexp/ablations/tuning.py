"""Tuned ablations: every variant (and the baseline) tuned on each task with the same budget, so that a
verdict is not an artefact of the baseline's hyperparameters (Choi et al. 2019; Sivaprasad et al.
2020).

Each (task, variant) is an Optuna study of `trials` trials drawn by seeded random search from the
variant's space: the learning rate (log-uniform) and the fields of its optimizer and schedule that
apply (momentum for SGD with momentum, decay for step decay, ...), less what the variant itself sets
(`no_momentum` sets the momentum: tuning it would undo the variant), plus what the variant adds
(`tune:`). Random search keeps the draws independent, which the expected-best curves assume (Dodge et
al. 2019, with the unbiased estimator of Tang et al. 2020). Trials train on the tuning seeds (never
used for evaluation) and are judged on the validation split; all studies' trials are packed on the
replica axis by structure. Studies live in an Optuna storage, so an interrupted tuning resumes.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import optuna
from omegaconf import DictConfig, OmegaConf

from nnexp import population, schema
from nnexp.config import mapping
from nnexp.engine.loop import ReplicaResult
from nnexp.errors import ConfigError
from nnexp.plan import Plan
from nnexp.sweeps import space, storage
from nnexp.sweeps.trials import with_values
from nnexp.tuning_stats import expected_best

CHUNK = 1024  # trials trained in one packed pass (replica r is bit-identical however they are packed)
TUNING_KEYS = ("trials", "seeds", "metric", "budgets", "sampler_seed", "storage", "space")
Trial = optuna.trial.FrozenTrial


@dataclass(frozen=True)
class Tuning:
    """`ablation.tuning`, validated."""

    trials: int
    seeds: tuple[int, ...]  # the trials' model seeds: never among the study's evaluation seeds
    metric: str  # on the validation split, maximised (an R²) or minimised (an MSE)
    budgets: tuple[int, ...]  # the study's verdicts are also given at these numbers of trials
    sampler_seed: int
    storage: str | None
    space: tuple[space.Param, ...]

    @property
    def maximize(self) -> bool:
        return self.metric.endswith("r2")


def parse_tuning(node: Any, eval_seeds: Sequence[int]) -> Tuning | None:
    """`ablation.tuning` (null: the study compares variants at the baseline's settings only)."""
    if node is None:
        return None
    raw = mapping(node)
    schema.known_keys(raw, "ablation.tuning", TUNING_KEYS, "tuning")
    trials = schema.number("ablation.tuning.trials", raw.get("trials"), lambda v: 2 <= v <= 10_000,
                           "expected a number of trials per variant and task from 2 to 10,000", True)
    seeds: Any = raw.get("seeds")
    valid = isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**32
                                                      for s in seeds)
    if not valid or len(set(seeds)) != len(seeds):
        raise ConfigError("ablation.tuning.seeds", seeds, "expected a list of distinct integer seeds in [0, 2^32)")
    shared = sorted(set(seeds) & set(eval_seeds))
    if shared:
        raise ConfigError("ablation.tuning.seeds", seeds, f"{shared} are evaluation seeds too (ablation.seeds): a "
                          "setting tuned on a seed would be judged on the same seed; use seeds of their own")
    metric = raw.get("metric", "val_r2")
    if metric not in ("val_r2", "val_mse"):
        raise ConfigError("ablation.tuning.metric", metric, "expected val_r2 or val_mse (tuning never looks at test)")
    budgets: Any = raw.get("budgets") or [trials]
    if not isinstance(budgets, list) or not all(isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= trials
                                                for b in budgets):
        raise ConfigError("ablation.tuning.budgets", budgets, f"expected numbers of trials from 1 to {trials}")
    seed = schema.number("ablation.tuning.sampler_seed", raw.get("sampler_seed", 0), lambda v: 0 <= v < 2**31,
                         "expected an integer in [0, 2^31)", True)
    params = space.parse(raw.get("space"), "ablation.tuning.space")
    return Tuning(trials, tuple(seeds), metric, tuple(sorted({*budgets, trials})), seed, raw.get("storage"),
                  tuple(params))


def variant_space(tuning: Tuning, cfg: DictConfig, overrides: Sequence[str], extra: Mapping[str, Any] | None,
                  where: str) -> list[space.Param]:
    """The parameters tuned for a variant: the study's space where the variant's config has the field and
    the variant does not set that field itself, changed by the variant's own `tune:` (a spec adds or replaces a
    parameter, null removes one)."""
    own = {o.lstrip("+~").split("=", 1)[0] for o in overrides}
    params = {p.name: p for p in tuning.space if OmegaConf.select(cfg, p.path, default=None) is not None
              and p.path not in own}  # a group the variant chooses (optimizer=adam) is tuned within
    for name, spec in (extra or {}).items():
        if spec is None:
            params.pop(name, None)
        else:
            params.update({p.name: p for p in space.parse({name: spec}, f"{where}.tune")})
    if not params:
        raise ConfigError(f"{where}.tune", dict(extra or {}), "leaves nothing to tune for this variant")
    return list(params.values())


@dataclass
class Tuned:
    """One (task, variant)'s tuning: its trials (number order), the plan each trained, and the best."""

    task: str
    variant: str
    params: list[space.Param]
    base: Plan  # the variant's plan on the task, at the baseline's hyperparameters
    trials: list[Trial] = field(default_factory=list)
    study: Any = None  # its Optuna study, once opened

    def best(self, budget: int, maximize: bool) -> Trial | None:
        """The best trial on validation among the first `budget` (ties: the earliest)."""
        scored = [t for t in self.trials[:budget] if t.value is not None and math.isfinite(t.value)]
        if not scored:
            return None
        return max(scored, key=lambda t: (t.value if maximize else -t.value, -t.number))  # type: ignore[operator]

    def plan(self, trial: Trial | None) -> Plan:
        """The variant's plan with a trial's values (the base plan if nothing finished)."""
        if trial is None:
            return self.base
        return with_values(self.base, {p.path: trial.params[p.name] for p in self.params if p.name in trial.params})

    def curve(self, maximize: bool) -> np.ndarray:
        """Expected best validation score against the number of trials, 1..N (a diverged trial counts as
        the worst score seen: a budget that draws only it gets nothing)."""
        v = np.array([t.value if t.value is not None else np.nan for t in self.trials], dtype=float)
        finite = v[np.isfinite(v)]
        if not len(finite):
            return np.full(len(v), np.nan)
        worst = finite.min() if maximize else finite.max()
        return expected_best(np.where(np.isfinite(v), v, worst), maximize).mean


class NumberedRandom(optuna.samplers.BaseSampler):
    """Random search whose draws depend on the study's seed, the trial's number and the parameter's name
    only: trial n gets the same values whether the study ran in one go or resumed after an interruption
    (a seeded RandomSampler restarts its stream on resume, so the resumed trials would repeat the first)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict:
        return {}

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict:
        return {}

    def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
        seed = int(hashlib.sha256(f"{self.seed}:{trial.number}:{name}".encode()).hexdigest()[:16], 16)
        u = np.random.default_rng(seed).random()  # one uniform draw in [0, 1) per trial and parameter
        d = distribution
        if isinstance(d, optuna.distributions.CategoricalDistribution):
            return d.choices[int(u * len(d.choices))]
        integer = isinstance(d, optuna.distributions.IntDistribution)
        if d.log:  # log-uniform (an integer: rounded, within the bounds)
            value = math.exp(math.log(d.low) + u * (math.log(d.high) - math.log(d.low)))
            return min(max(round(value), d.low), d.high) if integer else value
        if d.step is not None:  # a grid: low, low + step, ..., high
            return d.low + d.step * int(u * (round((d.high - d.low) / d.step) + 1))
        return d.low + u * (d.high - d.low)


def sampler(tuning: Tuning, name: str) -> optuna.samplers.BaseSampler:
    """Seeded random search, one stream per study (the same trials whatever else the storage holds)."""
    digest = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    return NumberedRandom((tuning.sampler_seed + digest) % 2**31)


def tune(studies: list[Tuned], tuning: Tuning, store: Any, fingerprint: Any, names: Mapping[tuple[str, str], str],
         record: Any = None) -> None:
    """Ask every study (named `names[(task, variant)]`) for the rest of its budget, train all those
    trials packed on the replica axis, tell each its validation score (`record(tuned, trial, runs,
    value)` notes each finished trial)."""
    asked: list[tuple[Tuned, optuna.Trial, Plan]] = []
    for s in studies:
        name = names[(s.task, s.variant)]
        study = storage.open_study(store, name, fingerprint(s), create=True, direction="maximize" if tuning.maximize
                                   else "minimize", sampler=sampler(tuning, name), pruner=optuna.pruners.NopPruner())
        done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        storage.put_back(store, storage.id_of_study(store, study), [t.number for t in running])  # an interrupted run
        for _ in range(tuning.trials - len(done)):
            trial = study.ask()
            values = space.suggest(trial, s.params)
            plan = with_values(s.base, {p.path: values[p.name] for p in s.params if p.name in values})
            asked.append((s, trial, replace(plan, eval_every=plan.epochs)))  # only the final epoch is judged
        s.trials = done
        s.study = study
    k = len(tuning.seeds)
    for start in range(0, len(asked), CHUNK):  # bounded memory; each chunk's trials told and flushed
        chunk = asked[start:start + CHUNK]
        results = population.fit([p.with_seeds([seed]) for _, _, p in chunk for seed in tuning.seeds])
        for i, (s, trial, _) in enumerate(chunk):
            runs = results[i * k:(i + 1) * k]
            value = score(runs, tuning.metric)
            state = optuna.trial.TrialState.COMPLETE if value is not None else optuna.trial.TrialState.FAIL
            s.study.tell(trial, value, state=state)
            if record is not None:
                record(s, trial, runs, value)
        storage.flush(store)
    for s in studies:
        s.trials = sorted((t for t in s.study.get_trials(deepcopy=False) if t.state.is_finished()),
                          key=lambda t: t.number)[:tuning.trials]


def score(runs: Sequence[ReplicaResult], metric: str) -> float | None:
    """A trial's validation score: the mean over the tuning seeds (None if any diverged)."""
    values = [r.final.get(metric, math.nan) if r.ok else math.nan for r in runs]
    return float(np.mean(values)) if all(math.isfinite(v) for v in values) else None
