"""`make ablation`: declarative studies, paired statistics, MLflow runs, the report, reproducibility."""

import json
import math
import shlex
import subprocess

import pytest
from conftest import ROOT, run_script
from helpers import ablation_args as args_for
from mlflow import MlflowClient

from nnexp.ablations import files
from nnexp.ablations import run as ablation_run
from nnexp.ablations import study as ablation
from nnexp.ablations.analysis import DIVERGED, analyse
from nnexp.ablations.report import command
from nnexp.ablations.run import AblationMismatch
from nnexp.config import ConfigCache, compose, with_default_group
from nnexp.errors import ConfigError


def run(args):
    args = with_default_group(args, "ablation", "seed_claims")
    return ablation_run.record(compose(args), args).text


def check(tmp_path, args):
    args = with_default_group(args, "ablation", "seed_claims")
    return ablation_run.check("quick", [a for a in args if not a.startswith("ablation=")],
                              tmp_path / "report" / "results.json")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ablation")
    text = run(args_for(tmp))
    return tmp, text, json.loads((tmp / "report" / "results.json").read_text())


def test_a_study_writes_its_report_beside_its_numbers(study):
    tmp, text, results = study
    names = {p.name for p in (tmp / "report").iterdir()}
    assert {"REPORT.md", "results.json", "configs.yaml", "effects.csv", "effects.md", "effects.png",
            "curves.png"} <= names
    report = (tmp / "report" / "REPORT.md").read_text()
    assert "git commit" in report and "numpy" in report and "hydra-core" in report and "datasets" in report
    assert "## The seed's claims, checked" in report and "Momentum: faster convergence" in report
    assert list(results["variants"]) == ["baseline", "no_momentum", "deeper"]
    assert results["seeds"] == [0, 1, 2] and len(results["variants"]["deeper"]["values"]["test_r2"]) == 3
    assert "no_momentum" in text and "REPORT.md" in text


def test_the_report_numbers_are_the_mlflow_metrics(study):
    tmp, _, results = study
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    exp = client.get_experiment_by_name("nnexp-ablation")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.data.tags.get("nnexp.kind") == "ablation"]
    children = {r.data.tags["ablation.variant"]: r for r in runs if r.data.tags.get("nnexp.kind") == "ablation_variant"}
    assert len(parent) == 1 and parent[0].info.status == "FINISHED" and set(children) == set(results["variants"])
    for name, child in children.items():
        assert child.data.tags["mlflow.parentRunId"] == parent[0].info.run_id
        for metric, values in results["variants"][name]["values"].items():
            hist = sorted(client.get_metric_history(child.info.run_id, f"seed.{metric}"), key=lambda m: m.step)
            assert [m.step for m in hist] == [0, 1, 2] and [m.value for m in hist] == values, (name, metric)
        mean = sum(results["variants"][name]["values"]["test_r2"]) / 3
        assert child.data.metrics["test_r2"] == pytest.approx(mean, rel=1e-12)
    artifacts = {a.path for a in client.list_artifacts(parent[0].info.run_id)}
    assert {"REPORT.md", "effects.csv", "effects.md", "results.json"} <= artifacts
    assert {"effects.png", "curves.png"} <= artifacts  # beside REPORT.md, whose links are relative


def test_running_twice_gives_identical_numbers_and_the_check_passes(study):
    tmp, _, results = study
    extra = [a for a in args_for(tmp) if a.startswith("tracking.")]
    recorded = json.loads((tmp / "report" / "results.json").read_text())
    recorded["args"] = [a for a in recorded["args"] if not a.startswith(("tracking.", "ablation.report_dir"))]
    (tmp / "report" / "results.json").write_text(json.dumps(recorded))
    try:
        assert "reproduced exactly" in check(tmp, extra)
        tampered = json.loads(json.dumps(recorded))
        tampered["variants"]["deeper"]["values"]["test_r2"][1] += 1e-9
        (tmp / "report" / "results.json").write_text(json.dumps(tampered))
        with pytest.raises(AblationMismatch, match=r"deeper test_r2 seed 1"):
            check(tmp, extra)
        last_bits = json.loads(json.dumps(recorded))  # another CPU's kernels: the last bits of a float64
        last_bits["variants"]["deeper"]["values"]["test_r2"][1] *= 1 + 2**-52
        (tmp / "report" / "results.json").write_text(json.dumps(last_bits))
        assert "1 to within" in check(tmp, extra)
    finally:
        (tmp / "report" / "results.json").write_text(json.dumps(results))


@pytest.mark.parametrize("crafted", [["csvfile._target_=shutil.rmtree"], ["hydra.run.dir=/tmp/x"],
                                     ["+model.hidden=[4]"], ["tracking.uri=http://evil"], "not a list"])
def test_a_check_never_composes_what_a_crafted_report_asks_for(tmp_path, crafted):
    (tmp_path / "report").mkdir()
    doc = {"study": "quick", "args": crafted, "seeds": [0, 1], "variants": {}, "provenance": {}}
    (tmp_path / "report" / "results.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="is not a recorded report of study 'quick'"):
        check(tmp_path, [])


def test_the_report_says_how_to_run_it_again_in_a_line_a_shell_parses(tmp_path):
    args = ["ablation=quick", "ablation.variants.deeper.overrides=['model=mlp_8_6_4', 'trainer.epochs=30']",
            "trainer.batch_size=16"]
    line = command("quick", args)
    words = shlex.split(line)
    assert words[:3] == ["make", "ablation", "STUDY=quick"] and words[3].startswith("ARGS=")
    assert shlex.split(words[3].removeprefix("ARGS=")) == args[1:]
    dry = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0 and "ablation.variants.deeper.overrides" in dry.stdout, dry.stderr


def test_make_ablation_writes_no_tracked_file(tmp_path):
    study = ablation.parse(compose(with_default_group([], "ablation", "seed_claims")))
    default = files.report_dir(study.name, study.report_dir, record=False)
    assert default.relative_to(ROOT).parts[:2] == ("outputs", "ablation")
    ignored = subprocess.run(["git", "check-ignore", "-q", str(default / "REPORT.md")], cwd=ROOT)
    assert ignored.returncode == 0, "the default report directory is ignored by git"
    assert files.report_dir(study.name, study.report_dir, record=True) == ROOT / "experiments" / "seed_claims"


def test_a_variant_diverging_on_some_seeds_is_counted_not_averaged(tmp_path):
    cfg = compose(with_default_group(args_for(tmp_path, "+ablation.variants.hot=['model.output_activation=identity',"
                                              "'optimizer.lr=1.9','schedule=constant']",
                                              "+ablation.variants.melt=['model.output_activation=identity',"
                                              "'optimizer.lr=900','schedule=constant']",
                                              "ablation.seeds=[0,1,2,3,4,5]"), "ablation", "seed_claims"))
    study = ablation.parse(cfg)
    ablation.prepare(study, ConfigCache([]))
    out = ablation.run(study)
    rows = {r.variant: r for r in analyse(study, out)}
    hot = rows["hot"]
    assert 0 < hot.diverged < 6, out.status["hot"]
    assert math.isfinite(hot.summary["test_r2"].mean) and hot.summary["test_r2"].n == 6 - hot.diverged
    assert rows["melt"].diverged == 6 and rows["melt"].verdict == DIVERGED  # not "within noise"


@pytest.mark.parametrize(
    ("override", "message"),
    [("ablation.seeds=[0]", r"ablation.seeds = \[0\] is not valid: confidence intervals and paired tests need"),
     ("ablation.variants.deeper.overrides=['model=mlp_9']", r"ablation.variants.deeper .*mlp_9"),
     ("ablation.variants.deeper.overrides=['optimizer.lrr=0.1']", r"ablation.variants.deeper .*optimizer.lrr"),
     ("ablation.variants.deeper.overrides=['optimizer.momentum=1.5']",
      r"ablation.variants.deeper .*optimizer.momentum = 1.5 is not valid"),
     ("ablation.variants.no_momentum.metric=accuracy", r"ablation.variants.no_momentum.metric = 'accuracy'"),
     ("ablation.variants.deeper.expect=sideways", r"ablation.variants.deeper.expect = 'sideways'"),
     ("+ablation.variants.Deeper=['model=mlp_8_4']", r"ablation.variants.Deeper .*has this name, up to case"),
     ("+ablation.variants." + "a" * 70 + "=['model=mlp_8_4']", r"a variant's name must be"),
     ("ablation.experiment=''", r"ablation.experiment = '' is not valid"),
     ("ablation.report_dir=/etc/hostname/report", r"ablation.report_dir = '/etc/hostname/report' .*not a directory"),
     ("ablation.force=maybe", r"ablation.force = 'maybe' is not valid: expected true or false"),
     ("+ablation.seed=[1,2]", r"ablation.seed = .*Did you mean 'seeds'")],
)
def test_bad_studies_fail_before_training_naming_the_variant(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        run(args_for(tmp_path, override))
    assert not (tmp_path / "report").exists()


def test_recording_into_the_repository_refuses_a_dirty_tree_unless_forced(tmp_path, monkeypatch):
    from nnexp.recording import records

    monkeypatch.setattr(records, "provenance", lambda: {"git_dirty": "true"})
    args = with_default_group(args_for(tmp_path, "ablation.force=false"), "ablation", "seed_claims")
    with pytest.raises(ConfigError, match="uncommitted changes"):
        ablation_run.record(compose(args), args, into_repo=True)


def test_the_cli_reports_a_bad_study_in_one_paragraph(tmp_path):
    out = run_script("ablation.py", *args_for(tmp_path, "ablation.seeds=[3]"))
    assert out.returncode == 2 and "Traceback" not in out.stderr and "at least 2" in out.stderr


@pytest.mark.slow
def test_the_committed_seed_claims_report_reproduces_exactly():
    out = run_script("ablation.py", "--check", "ablation=seed_claims", timeout=600)
    assert out.returncode == 0, out.stderr
    assert "all 900 numbers" in out.stdout and "reproduced" in out.stdout
