"""A sweep's settings (`cfg.sweep`) and search space accept nothing wrong: every hostile value is a
ConfigError naming the field, the value and what is allowed, raised before any study, run or trial.

The table calls the validation directly (no training); a few cases go through `run` and the command
line to show that nothing is created or recorded."""

import re

import optuna
import pytest
from conftest import run_script
from helpers import mlflow_runs, run_sweep
from helpers import sweep_args as args_for
from omegaconf import OmegaConf

from nnexp.config import compose, with_default_group
from nnexp.errors import ConfigError
from nnexp.sweeps import space
from nnexp.sweeps.settings import make_sampler, read_settings
from nnexp.sweeps.space import Param
from nnexp.sweeps.storage import open_storage

TOO_MANY_SEEDS = "sweep.confirm_seeds=[" + ",".join(map(str, range(1, 10_001))) + "]"


@pytest.fixture
def tmp(tmp_path):
    """tmp_path with a plain file (`afile`) and a text file that is not a journal (`notes.txt`)."""
    (tmp_path / "afile").write_text("x")
    (tmp_path / "notes.txt").write_text("my notes\n")
    return tmp_path


def validate(tmp_path, *args):
    """What `make sweep` checks before the first trial, short of building the trials' plans: the
    settings, the space, and the baseline's place in it. An arg is an override, or a (key, value)
    pair set after composing (for values the command line cannot spell, such as control characters)."""
    overrides = [a.replace("{tmp}", str(tmp_path)) for a in args if isinstance(a, str)]
    if not any(o.startswith("sweep.storage=") for o in overrides):
        overrides.insert(0, f"sweep.storage=journal:{tmp_path / 'optuna.log'}")
    cfg = compose(with_default_group(overrides, "sweep", "default"), hydra_node=True)
    for key, value in (a for a in args if not isinstance(a, str)):
        OmegaConf.update(cfg, key, value, merge=False)
    st = read_settings(cfg)
    space.baseline_values(st.space, cfg, dict(cfg.hydra.runtime.choices))
    return st


BAD = {
    # ranges on a grid: Optuna cuts a range that is not a whole number of steps; the baseline must be on it
    "int step does not divide": (["sweep.space.decay_steps.step=40"],
                                 r"sweep.space.decay_steps.high = 300 is not valid: the range \[25, 300\] is not a "
                                 r"whole number of steps of 40: Optuna would silently cut it to \[25, 265\]. "
                                 r"Use high: 305 \(or 265\), or a step that divides 275"),
    "float step does not divide": (["+sweep.space.momentum.step=0.25"], r"sweep.space.momentum.high = 0.95 .*steps "
                                   r"of 0.25: Optuna would silently cut it to \[0.0, 0.75\]. Use high: 1 \(or 0.75\)"),
    "baseline off the int grid": (["sweep.space.decay_steps.low=30", "sweep.space.decay_steps.high=305"],
                                  r"sweep.space.decay_steps = .*the baseline's schedule.decay_steps = 100 is not on "
                                  r"the grid low \+ k \* step \(80 and 105 are\)"),
    "baseline off the float grid": (["+sweep.space.decay_rate.step=0.2"],
                                    r"the baseline's schedule.decay_rate = 0.5 is not on the grid .*0.4 and 0.6"),
    "step on a log scale": (["+sweep.space.lr.step=0.01"], r"sweep.space.lr.step = 0.01 .*no step on a log scale"),
    "step wider than the range": (["+sweep.space.momentum.step=2"], r"sweep.space.momentum.step = 2 .*step <= high"),
    "step zero": (["sweep.space.decay_steps.step=0"], r"sweep.space.decay_steps.step = 0 .*0 < step"),
    "float bound on an int": (["sweep.space.decay_steps.low=25.0"], r"decay_steps.low = 25.0 .*integer low, high"),
    "float step on an int": (["sweep.space.decay_steps.step=2.5"], r"decay_steps.step = 2.5 .*integer low, high"),
    "infinite high": (["sweep.space.lr.high=inf"], r"sweep.space.lr.high = inf .*expected a finite number"),
    "nan low": (["sweep.space.momentum.low=nan"], r"sweep.space.momentum.low = nan .*expected a finite number"),
    "infinite width": (["sweep.space.momentum.low=-1e308", "sweep.space.momentum.high=1e308"],
                       r"momentum.high = 1e\+308 .*width is a finite number"),
    "string bound": (["sweep.space.momentum.high='0.9'"], r"momentum.high = '0.9' .*expected a finite number"),
    "log 'yes'": (["sweep.space.lr.log=yes"], r"sweep.space.lr.log = 'yes' is not valid: expected true or false"),
    "log on a categorical": (["+sweep.space.model.log=true"],
                             r"sweep.space.model.log = True .*not a setting of a categorical parameter"),
    "step on a categorical": (["+sweep.space.batch_size.step=16"], r"batch_size.step = 16 .*categorical parameter"),
    "choices on a float": (["+sweep.space.lr.choices=[0.1,0.2]"], r"lr.choices = .*not a setting of a float"),
    "misspelt field": (["+sweep.space.lr.hihg=2"], r"sweep.space.lr.hihg = 2 .*Did you mean 'high'"),
    "group searched as a number": (["+sweep.space.sched={path:schedule,type:int,low:0,high:3}"],
                                   r"sweep.space.sched.type = 'int' .*schedule is a config group"),
    # choices
    "mixed types": (["sweep.space.batch_size.choices=[16,'32']"], r"batch_size.choices = \[16, '32'\] .*of one type"),
    "boolean among numbers": (["sweep.space.batch_size.choices=[16,true]"], r"batch_size.choices .*of one type"),
    "1 and 1.0": (["sweep.space.batch_size.choices=[16,16.0]"], r"batch_size.choices .*distinct scalar choices"),
    "nan choice": (["sweep.space.batch_size.choices=[16,nan]"], r"batch_size.choices .*expected finite numbers"),
    "one choice": (["sweep.space.batch_size.choices=[32]"], r"batch_size.choices = \[32\] .*at least two"),
    "choices not a list": (["sweep.space.batch_size.choices=32"], r"batch_size.choices = 32 .*non-empty list"),
    # conditions
    "when names an unknown option": (["sweep=architecture", "sweep.space.momentum.when={optimizer:[adamw]}"],
                                     r"sweep.space.momentum.when.optimizer = 'adamw' is not valid: not a choice of "
                                     r"optimizer; its choices: 'sgd_momentum', 'adam'. Did you mean 'adam'\?"),
    "when with a string for a number": (["+sweep.space.lr.when={batch_size:['16']}"],
                                        r"lr.when.batch_size = '16' .*its choices: 16, 32, 64. Did you mean 16\?"),
    "when with no value": (["+sweep.space.lr.when={batch_size:[]}"], r"lr.when = .*non-empty list"),
    "when naming every choice": (["+sweep.space.lr.when={batch_size:[16,32,64]}"],
                                 r"lr.when.batch_size = \[16, 32, 64\] .*names every choice .*no effect"),
    "when on itself": (["+sweep.space.model.when={model:[mlp_6_4]}"], r"model.when .*condition on itself"),
    "when on a conditional parameter": (["sweep=architecture", "+sweep.space.hidden_activation.when={model:[mlp_6_4]}",
                                         "+sweep.space.model.when={hidden_activation:[relu]}"],
                                        r"'hidden_activation' is itself sampled only when \{'model': \['mlp_6_4'\]\}"),
    "when on a float parameter": (["+sweep.space.momentum.when={lr:[0.1]}"], r"'lr' is not a categorical parameter"),
    "when not a mapping": (["+sweep.space.lr.when=[model]"], r"sweep.space.lr.when = \['model'\] .*other_param"),
    # paths
    "two parameters, one path": (["+sweep.space.lr2={path:optimizer.lr,type:float,low:0.01,high:1.0}"],
                                 r"sweep.space.lr2.path = 'optimizer.lr' is not valid: parameter 'lr' sets "
                                 r"optimizer.lr too, in the same trials: one would overwrite the other"),
    "two parameters, one group": (["sweep=architecture",
                                   "+sweep.space.opt2={path:optimizer,type:categorical,choices:[sgd_momentum,adam]}"],
                                  r"sweep.space.opt2.path = 'optimizer' .*parameter 'optimizer' sets optimizer too"),
    "overlapping conditions": (["sweep=architecture", "sweep.space.lr.when=null"],
                               r"sweep.space.adam_lr.path = 'optimizer.lr' .*parameter 'lr' sets optimizer.lr too"),
    "a harness setting": (["sweep.space.lr.path=tracking.uri"], r"lr.path = 'tracking.uri' .*no effect on the trials"),
    "the sweep's own setting": (["sweep.space.lr.path=sweep.n_trials"], r"lr.path = 'sweep.n_trials' .*no effect"),
    "malformed path": (["sweep.space.lr.path=optimizer..lr"], r"lr.path = 'optimizer..lr' .*config path it sets"),
    "no parameter left": ([f"sweep.space.{k}=null" for k in ("lr", "momentum", "decay_rate", "decay_steps",
                                                              "batch_size", "model")],
                          r"sweep.space = None .*at least one parameter"),
    # names
    "empty experiment": (["sweep.experiment=''"], r"sweep.experiment = '' is not valid: expected a non-empty name"),
    "experiment too long": (["sweep.experiment=" + "e" * 257], r"sweep.experiment = 'e{24}\.\.\. \(257 characters\)' "
                            r".*at most 256 characters"),
    "experiment with a newline": ([("sweep.experiment", "nnexp\nsweep")], r"sweep.experiment .*printable"),
    "blank study name": (["sweep.study_name='  '"], r"sweep.study_name = '  ' is not valid: expected a non-empty name"),
    "empty study name": (["sweep.study_name=''"], r"sweep.study_name = '' is not valid"),
    "study name too long": (["sweep.study_name=" + "s" * 245], r"sweep.study_name .*at most 244 characters"),
    "study name with a control character": ([("sweep.study_name", "a\x00b")], r"sweep.study_name .*control char"),
    "study name with surrounding spaces": ([("sweep.study_name", " t ")], r"sweep.study_name = ' t ' .*surrounding"),
    "study name a number": (["sweep.study_name=123"], r"sweep.study_name = 123 .*Quote a number"),
    "empty sweep name": (["sweep.name=''"], r"sweep.name = '' is not valid"),
    # storage
    "journal under a file": (["sweep.storage=journal:{tmp}/afile/x.log"], r"sweep.storage = '.*afile/x.log' is not "
                             r"valid: .*afile is a file, so the journal cannot be created under it"),
    "journal deep under a file": (["sweep.storage=journal:{tmp}/afile/a/b/x.log"], r"afile is a file"),
    "journal is a directory": (["sweep.storage=journal:{tmp}"], r"is a directory; name a file in it"),
    "journal in a directory that cannot be made": (["sweep.storage=journal:/proc/nnexp/x.log"],
                                                   r"cannot create files in /proc"),
    "journal in a directory that cannot be written": (["sweep.storage=journal:/sys/x.log"],
                                                      r"cannot create files in /sys"),
    "journal is another file": (["sweep.storage=journal:{tmp}/notes.txt"], r"notes.txt is not an Optuna journal"),
    "journal with no path": (["sweep.storage=journal:"], r"sweep.storage = 'journal:' .*journal:<path"),
    "empty storage": (["sweep.storage=''"], r"sweep.storage = '' is not valid: expected null"),
    "storage a number": (["sweep.storage=5"], r"sweep.storage = 5 is not valid"),
    # numbers
    "nan grace": (["sweep.heartbeat.grace=nan"], r"sweep.heartbeat.grace = nan is not valid: expected a finite"),
    "inf grace": (["sweep.heartbeat.grace=inf"], r"sweep.heartbeat.grace = inf is not valid"),
    "nan interval": (["sweep.heartbeat.interval=nan"], r"sweep.heartbeat.interval = nan is not valid"),
    "inf interval": (["sweep.heartbeat.interval=inf"], r"sweep.heartbeat.interval = inf is not valid"),
    "busy heartbeat": (["sweep.heartbeat.interval=1e-9"], r"heartbeat.interval = 1e-09 .*>= 0.1"),
    "grace a boolean": (["sweep.heartbeat.grace=true"], r"sweep.heartbeat.grace = True is not valid"),
    "grace too short": (["sweep.heartbeat.grace=15"], r"sweep.heartbeat.grace = 15 .*more than twice"),
    "nan timeout": (["sweep.timeout=nan"], r"sweep.timeout = nan is not valid: expected a finite number of seconds"),
    "inf timeout": (["sweep.timeout=inf"], r"sweep.timeout = inf is not valid"),
    "zero timeout": (["sweep.timeout=0"], r"sweep.timeout = 0 is not valid"),
    "timeout 'off'": (["sweep.timeout=off"], r"sweep.timeout = 'off' is not valid"),
    "negative seed": (["sweep.seed=-1"], r"sweep.seed = -1 is not valid: expected an integer in \[0, 4294836223\]"),
    "seed beyond numpy": (["sweep.seed=1099511627776"], r"sweep.seed = 1099511627776 .*2\*\*32 - 1"),
    "seed at the edge, less a worker's index": (["sweep.seed=4294967295"], r"sweep.seed = 4294967295 is not valid"),
    "fractional seed": (["sweep.seed=1.5"], r"sweep.seed = 1.5 is not valid"),
    "absurd n_trials": (["sweep.n_trials=1000000000000"], r"sweep.n_trials = 1000000000000 .*\[1, 100000\]"),
    "float n_trials": (["sweep.n_trials=8.0"], r"sweep.n_trials = 8.0 is not valid"),
    "no population": (["sweep.population=0"], r"sweep.population = 0 is not valid"),
    "absurd population": (["sweep.population=1000000000"], r"sweep.population = 1000000000 is not valid"),
    "no workers": (["sweep.workers=0"], r"sweep.workers = 0 is not valid"),
    "a million workers": (["sweep.workers=1000000"], r"sweep.workers = 1000000 .*at most 4 per core"),
    "no curve points": (["sweep.curve_points=0"], r"sweep.curve_points = 0 is not valid"),
    "absurd curve points": (["sweep.curve_points=1000000000"], r"sweep.curve_points = 1000000000 is not valid"),
    "no failures allowed": (["sweep.max_failures_in_row=0"], r"sweep.max_failures_in_row = 0 is not valid"),
    "eval_every beyond the epochs": (["trainer.epochs=5"], r"sweep.eval_every = 10 is not valid: expected at most "
                                     r"the epochs a trial trains \(5\).*Use sweep.eval_every=5 or less"),
    "eval_every beyond sampled epochs": (["+sweep.space.epochs={path:trainer.epochs,type:int,low:5,high:300}"],
                                         r"sweep.eval_every = 10 .*trains \(5\)"),
    "eval_every zero": (["sweep.eval_every=0"], r"sweep.eval_every = 0 is not valid"),
    # sampler and pruner
    "negative startup trials": (["sweep.sampler.n_startup_trials=-1"], r"sampler.n_startup_trials = -1 is not valid"),
    "startup trials of a random sampler": (["sweep.sampler.name=random", "sweep.sampler.n_startup_trials=10"],
                                           r"sampler.n_startup_trials = 10 .*no effect with sweep.sampler.name=random"),
    "unknown sampler": (["sweep.sampler.name=grid"], r"sweep.sampler.name = 'grid' .*random, tpe"),
    "interval not a multiple of eval_every": (["sweep.pruner.interval=25"], r"pruner.interval = 25 .*a multiple"),
    "warmup beyond the epochs": (["sweep.pruner.n_warmup_steps=400"], r"sweep.pruner.n_warmup_steps = 400 is not "
                                 r"valid: no trial could be pruned: .*last reports at step 299.*Use at most 299"),
    "interval beyond the epochs": (["sweep.pruner.interval=600"], r"pruner.interval = 600 .*none would ever report"),
    "min_resource beyond the epochs": (["sweep.pruner.name=hyperband", "sweep.pruner.min_resource=400"],
                                       r"sweep.pruner.min_resource = 400 .*no trial could be pruned"),
    "median waiting for every trial": (["sweep.pruner.n_startup_trials=384"],
                                       r"pruner.n_startup_trials = 384 .*the study has 384"),
    "reduction factor on the median pruner": (["sweep.pruner.reduction_factor=4"], r"sweep.pruner.reduction_factor = "
                                              r"4 is not valid: has no effect with sweep.pruner.name=median: only "
                                              r"hyperband reads it"),
    "warmup on hyperband": (["sweep.pruner.name=hyperband", "sweep.pruner.n_warmup_steps=10"],
                            r"n_warmup_steps = 10 .*no effect with sweep.pruner.name=hyperband"),
    "interval with no pruner": (["sweep.pruner.name=none", "sweep.pruner.interval=20"],
                                r"pruner.interval = 20 .*no effect with sweep.pruner.name=none"),
    "reduction factor 1": (["sweep.pruner.name=hyperband", "sweep.pruner.reduction_factor=1"],
                           r"reduction_factor = 1 .*>= 2"),
    "negative warmup": (["sweep.pruner.n_warmup_steps=-1"], r"n_warmup_steps = -1 is not valid"),
    "unknown pruner": (["sweep.pruner.name=medain"], r"sweep.pruner.name = 'medain' .*Did you mean 'median'"),
    # confirmation seeds and curves
    "duplicate confirm seeds": (["sweep.confirm_seeds=[1,1,2]"], r"sweep.confirm_seeds = \[1, 1, 2\] .*distinct"),
    "101 confirm seeds": (["sweep.confirm_seeds=[" + ",".join(map(str, range(1, 102))) + "]"],
                          r"sweep.confirm_seeds .*2 to 100 distinct"),
    "10,000 confirm seeds (too long for Hydra's parser)": ([TOO_MANY_SEEDS], r"sweep.confirm_seeds = '<48,915 "
                                                                             r"characters>' .*at most 8,000"),
    "one confirm seed": (["sweep.confirm_seeds=[1]"], r"sweep.confirm_seeds = \[1\] is not valid"),
    "confirm seeds not a list": (["sweep.confirm_seeds=1"], r"sweep.confirm_seeds = 1 is not valid"),
    "negative confirm seed": (["sweep.confirm_seeds=[-1,2]"], r"sweep.confirm_seeds = \[-1, 2\] is not valid"),
    "confirm on the trials' seed": (["sweep.confirm_seeds=[0,1]"], r"seed 0 is the trials' own seed .*not be on fresh"),
    "duplicate curves": (["sweep.curves=[val_mse,val_mse]"], r"sweep.curves = \['val_mse', 'val_mse'\] .*once"),
    "curves not a list": (["sweep.curves=val_mse"], r"sweep.curves = 'val_mse' .*a list of curves"),
    "unknown curve": (["sweep.curves=[val_mae]"], r"sweep.curves = 'val_mae' .*Did you mean 'val_mse'"),
    # keys
    "unknown sweep key": (["+sweep.n_trial=5"], r"sweep.n_trial = 5 is not valid: not a setting of sweep.*"
                          r"Did you mean 'n_trials'"),
    "unknown sampler key": (["+sweep.sampler.n_startup=5"], r"sweep.sampler.n_startup = 5 .*'n_startup_trials'"),
    "unknown pruner key": (["+sweep.pruner.intervall=30"], r"sweep.pruner.intervall = 30 .*Did you mean 'interval'"),
    "unknown heartbeat key": (["+sweep.heartbeat.gracee=60"], r"sweep.heartbeat.gracee = 60 .*Did you mean 'grace'"),
    "missing heartbeat": (["~sweep.heartbeat"], r"sweep.heartbeat = None is not valid: missing"),
    "heartbeat not a mapping": ([("sweep.heartbeat", 10)], r"sweep.heartbeat = 10 .*a mapping of interval, grace"),
    "direction against the metric": (["sweep.direction=minimize"], r"val_r2 is a score: expected maximize"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_hostile_setting_is_refused_naming_the_field_and_value(tmp, case):
    args, message = BAD[case]
    with pytest.raises(ConfigError, match=message):
        validate(tmp, *args)
    assert not (tmp / "optuna.log").exists()


GOOD = {
    "default": [],
    "architecture (lr and adam_lr share a path under exclusive conditions)": ["sweep=architecture"],
    "a float grid through the baseline": ["+sweep.space.decay_rate.step=0.1"],
    "an int grid that divides": ["sweep.space.decay_steps.step=5"],
    "hyperband with the defaults beside it": ["sweep.pruner.name=hyperband"],
    "no pruner, its fields at their defaults": ["sweep.pruner.name=none"],
    "a random sampler": ["sweep.sampler.name=random"],
    "short trials under the default pruner": ["trainer.epochs=20", "sweep.eval_every=2"],
    "no curves, no confirmation, a time limit": ["sweep.curves=[]", "sweep.confirm_seeds=[]", "sweep.timeout=3600"],
    "a named study": ["sweep.study_name=lr-study_2", "sweep.experiment='team/nnexp sweeps'"],
    "a condition on some choices": ["+sweep.space.lr.when={batch_size:[16,32]}"],
    "the largest seed": ["sweep.seed=4294836223"],
    "a journal in a new directory": ["sweep.storage=journal:{tmp}/new/dir/optuna.log"],
    "an empty journal file": ["sweep.storage=journal:{tmp}/empty.log"],
}


@pytest.mark.parametrize("case", list(GOOD))
def test_valid_settings_pass_and_create_nothing(tmp, case):
    (tmp / "empty.log").write_text("")
    validate(tmp, *GOOD[case])
    assert not (tmp / "new").exists() and not (tmp / "optuna.log").exists()


@pytest.mark.parametrize(("extra", "sizes"), [
    ((), {}),
    (("sweep.pruner.n_warmup_steps=4", "sweep.pruner.interval=4", "sweep.pruner.n_startup_trials=2"),
     {"n": 12, "epochs": 24}),
    (("sweep.workers=2", "sweep.heartbeat.interval=0.5", "sweep.heartbeat.grace=3", "sweep.confirm_seeds=[]",
      "sweep.pruner.name=none"), {"n": 16, "population": 2, "epochs": 800}),
    (("sweep.confirm_seeds=[]",), {"n": 3, "population": 3, "epochs": 15}),
    (("sweep.confirm_seeds=[]",), {"n": 1, "population": 2, "epochs": 300}),
    (("sweep.workers=2", "sweep.confirm_seeds=[1,2]"), {"n": 16, "population": 2}),
])
def test_the_sweeps_the_other_tests_run_pass(tmp, extra, sizes):
    """Short trials under the default pruner, a budget smaller than the population: valid, as before."""
    validate(tmp, *args_for(tmp, *extra, **sizes))


def test_the_default_sweep_reads_as_before(tmp):
    """What the sampler, the pruner and the space receive for the default sweep is unchanged."""
    st = validate(tmp)
    assert (st.study_name, st.n_trials, st.population, st.workers, st.seed, st.eval_every) == ("default", 384, 64,
                                                                                                1, 0, 10)
    assert st.sampler == {"name": "tpe", "n_startup_trials": 64}
    assert st.pruner == {"name": "median", "n_startup_trials": 16, "n_warmup_steps": 60, "interval": 30,
                         "min_resource": 60, "reduction_factor": 3}
    assert (st.heartbeat, st.confirm_seeds, st.timeout) == ({"interval": 10, "grace": 120}, [1, 2, 3, 4, 5], None)
    assert st.space == [Param("lr", "optimizer.lr", "float", 0.01, 1.0, True),
                        Param("momentum", "optimizer.momentum", "float", 0.0, 0.95),
                        Param("decay_rate", "schedule.decay_rate", "float", 0.2, 1.0),
                        Param("decay_steps", "schedule.decay_steps", "int", 25, 300, step=25),
                        Param("batch_size", "trainer.batch_size", "categorical", choices=(16, 32, 64)),
                        Param("model", "model", "categorical", choices=("mlp_6_4", "mlp_8_6_4", "mlp_8_4", "mlp_12_8"))]


def test_a_journal_that_exists_is_accepted(tmp):
    journal = tmp / "optuna.log"
    optuna.create_study(study_name="x", storage=open_storage(f"journal:{journal}"))
    validate(tmp, f"sweep.storage=journal:{journal}")


@pytest.mark.parametrize(("name", "spec", "message"), [
    ("bad!name", {"path": "optimizer.l2", "type": "float", "low": 0, "high": 1}, r"sweep.space.bad!name = 'bad!name'"),
    ("x" * 101, {"path": "optimizer.l2", "type": "float", "low": 0, "high": 1}, r"at most 100 letters"),
    ("lr", ["optimizer.lr", 0.1, 1], r"sweep.space.lr = \['optimizer.lr', 0.1, 1\] .*expected a mapping"),
])
def test_a_parameter_name_optuna_and_mlflow_can_keep(name, spec, message):
    with pytest.raises(ConfigError, match=message):
        space.parse({name: spec})


def test_a_space_that_is_not_a_mapping():
    with pytest.raises(ConfigError, match=r"sweep.space = \['lr'\] .*mapping of parameters"):
        space.parse(["lr"])


def test_a_worker_index_that_takes_the_seed_out_of_range(tmp):
    st = validate(tmp, "sweep.seed=4294836223")
    make_sampler(st, 131072)
    with pytest.raises(ConfigError, match=r"sweep.seed = 4294836223 .*would be 4294967296, outside numpy's range"):
        make_sampler(st, 131073)


THROUGH_RUN = {
    "step": ("sweep.space.decay_steps.step=40", r"cut it to \[25, 265\]"),
    "nan grace": ("sweep.heartbeat.grace=nan", r"sweep.heartbeat.grace = nan"),
    "unknown when": ("sweep.space.momentum.when={optimizer:[adamw]}", r"'adamw' .*Did you mean 'adam'"),
    "journal under a file": ("sweep.storage=journal:{tmp}/afile/x.log", r"afile is a file"),
    "seed": ("sweep.seed=-1", r"sweep.seed = -1"),
    "experiment": ("sweep.experiment=''", r"sweep.experiment = ''"),
}


def hostile_args(tmp_path, override, *extra):
    """The test sweep's arguments with `override` (its own storage replacing the test journal)."""
    override = override.replace("{tmp}", str(tmp_path))
    own_storage = override.startswith("sweep.storage=")
    return [a for a in args_for(tmp_path, *extra) if not (own_storage and a.startswith("sweep.storage="))] + [override]


@pytest.mark.parametrize("case", list(THROUGH_RUN))
def test_a_hostile_sweep_records_nothing(tmp, case):
    override, message = THROUGH_RUN[case]
    with pytest.raises(ConfigError, match=message):
        run_sweep(hostile_args(tmp, override, *(["sweep=architecture"] if "optimizer:" in override else [])))
    assert not (tmp / "optuna.log").exists() and (tmp / "afile").is_file()
    assert mlflow_runs(tmp)[1] == []


@pytest.mark.parametrize(("override", "message"), [
    ("sweep.storage=journal:{tmp}/afile/x.log", r"sweep.storage = '.*afile/x.log' is not valid: .*afile is a file"),
    ("sweep.space.decay_steps.step=40", r"sweep.space.decay_steps.high = 300 is not valid: .*Use high: 305"),
])
def test_the_command_line_reports_a_hostile_sweep_in_one_paragraph(tmp, override, message):
    out = run_script("sweep.py", *hostile_args(tmp, override))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert re.search(message, " ".join(out.stderr.split())), out.stderr
    assert not (tmp / "optuna.log").exists() and not (tmp / "mlflow.db").exists()
