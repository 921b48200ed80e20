"""Populations: plans grouped by structure, trained together, each member equal to its plan alone."""

import numpy as np
import pytest
from helpers import Prune, assert_same_run

from nnexp import config, population
from nnexp.plan import build_plan as plan_of

EPOCHS = 25


@pytest.fixture(scope="module")
def data():
    return plan_of(config.compose()).data


def plan(data, *overrides):
    return plan_of(config.compose([f"trainer.epochs={EPOCHS}", *overrides]), data=data)


def test_members_equal_their_plans_trained_alone(data):
    plans = [plan(data), plan(data, "optimizer.lr=0.3", "optimizer.momentum=0.5", "seed=3"),
             plan(data, "schedule.decay_rate=0.9", "schedule.decay_steps=5", "optimizer.l2=0.001"),
             plan(data, "optimizer.momentum=0.0", "optimizer.l1=0.0001", "seed=9")]
    assert population.groups(plans) == [[0, 1, 2, 3]]
    together = population.fit(plans)
    for member, p in zip(together, plans, strict=True):
        assert_same_run(member, p.fit()[0])


@pytest.mark.parametrize("model,batch", [("mlp_12_8", 16), ("mlp_8_6_4", 64)])
def test_members_sharing_a_seed_share_each_batch_and_equal_their_runs_alone(data, model, batch):
    """A sweep's trials share the seed, so one shuffle order and one mini-batch per step serve them all."""
    common = [f"model={model}", f"trainer.batch_size={batch}"]
    plans = [plan(data, *common, f"optimizer.lr={lr}", f"optimizer.momentum={m}", f"schedule.decay_rate={d}")
             for lr, m, d in ((0.1, 0.9, 0.5), (0.5, 0.0, 1.0), (0.03, 0.5, 0.8), (0.9, 0.95, 0.2))]
    assert population.groups(plans) == [[0, 1, 2, 3]] and len({s for p in plans for s in p.seeds}) == 1
    for member, p in zip(population.fit(plans), plans, strict=True):
        assert_same_run(member, p.fit()[0])


def test_dropout_rates_and_adam_settings_vary_per_member(data):
    plans = [plan(data, "model.dropout=0.1", "optimizer=adam"),
             plan(data, "model.dropout=0.3", "optimizer=adam", "optimizer.beta1=0.8", "optimizer.lr=0.003")]
    assert population.groups(plans) == [[0, 1]]
    for member, p in zip(population.fit(plans), plans, strict=True):
        assert_same_run(member, p.fit()[0])


def test_mixed_architectures_and_batch_sizes_form_the_right_groups(data):
    plans = [plan(data), plan(data, "model=mlp_8_6_4"), plan(data, "trainer.batch_size=64"),
             plan(data, "optimizer.lr=0.2"), plan(data, "model=mlp_8_6_4", "optimizer.lr=0.05"),
             plan(data, "model=mlp_8_6_4", "trainer.batch_size=64"), plan(data, "optimizer=adam"),
             plan(data, "model.hidden_activation=tanh"), plan(data, "model.dropout=0.2"),
             plan(data, "schedule=constant"), plan(data, "trainer.batch_size=64", "seed=4")]
    assert population.groups(plans) == [[0, 3], [1, 4], [2, 10], [5], [6], [7], [8], [9]]
    together = population.fit(plans)
    for i in (4, 5, 10):
        assert_same_run(together[i], plans[i].fit()[0])


@pytest.mark.parametrize("pruned", [0, 1])
def test_a_pruned_member_leaves_the_others_unchanged(data, pruned):
    plans = [plan(data, f"optimizer.lr={lr}") for lr in (0.05, 0.1, 0.2)]
    res = population.fit(plans, lambda members: [Prune(pruned, 6)])
    assert res[pruned].status == "pruned" and res[pruned].epochs == 7
    for i in {0, 1, 2} - {pruned}:
        assert_same_run(res[i], plans[i].fit()[0])


def test_a_diverging_member_fails_alone(data):
    base = ["model.output_activation=identity", "schedule=constant"]
    plans = [plan(data, *base, "optimizer.lr=0.05"), plan(data, *base, "optimizer.lr=500"),
             plan(data, *base, "optimizer.lr=0.02")]
    res = population.fit(plans)
    assert res[1].status == "diverged" and res[1].final == {}
    assert [res[0].status, res[2].status] == ["completed", "completed"]
    assert_same_run(res[2], plans[2].fit()[0])
    assert np.isfinite(res[0].final["val_r2"])
