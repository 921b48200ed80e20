"""The config tree: experiment files override everything they state, models apply to data of any
width, and fields that belong to no option are refused (see also test_tracking's table of bad values)."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT

from nnexp.config import compose
from nnexp.plan import build_plan

EXPERIMENTS = sorted((ROOT / "conf" / "experiment").glob("*.yaml"))


def stated(node, prefix=""):
    """(dotted path, value) of every leaf a YAML file states, its defaults list left out."""
    for k, v in node.items():
        if k == "defaults":
            continue
        if isinstance(v, dict):
            yield from stated(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_an_experiment_composes_to_everything_it_states(path: Path):
    from omegaconf import OmegaConf

    raw = yaml.safe_load(path.read_text())
    cfg = compose([f"experiment={path.stem}"], hydra_node=True)
    leaves = list(stated(raw))
    assert leaves or raw.get("defaults"), f"{path.name} states nothing"
    for key, value in leaves:
        assert OmegaConf.select(cfg, key) == value, f"{path.name} states {key}: {value}"
    for entry in raw.get("defaults", []):
        (group, option), = entry.items()
        group = group.removeprefix("override ").strip("/")
        assert cfg.hydra.runtime.choices[group] == option, f"{path.name} chooses {group}={option}"
    build_plan(cfg)  # and it is a valid plan


def test_the_xor_experiment_learns_xor_from_its_seed():
    from nnexp import population

    plan = build_plan(compose(["experiment=phase1_xor"]))
    assert plan.seeds == [1]
    result = population.fit([plan])[0]
    assert result.final["test_r2"] > 0.99


@pytest.mark.parametrize("model", sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml")))
def test_every_model_applies_to_data_of_any_width(tmp_path, model):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 7))
    rows = "\n".join(",".join(f"{v:.4f}" for v in (*r, r[0] - r[3])) for r in x)
    (tmp_path / "seven.csv").write_text("a,b,c,d,e,f,g,y\n" + rows + "\n")
    cfg = compose([f"model={model}", "data=csv", f"data.path={tmp_path / 'seven.csv'}", "data.target=y"])
    plan = build_plan(cfg)
    hidden = list(cfg.model.hidden)
    assert plan.spec.sizes == (7, *hidden, 1)
    assert plan.network().n_params == plan.spec.n_params == sum(
        (a + 1) * b for a, b in zip((7, *hidden), (*hidden, 1), strict=True)) + (
        2 * sum(hidden) if cfg.model.batch_norm else 0)
