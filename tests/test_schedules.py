import numpy as np
import pytest

from nnexp.engine import schedules


def test_step_decay_is_the_seed_formula():
    s = schedules.step_decay(0.1, decay_rate=0.5, decay_steps=100)
    for epoch in (0, 1, 99, 100, 101, 199, 200, 299, 300):
        assert s(epoch)[0] == 0.1 * 0.5 ** (epoch // 100)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (schedules.constant(0.3), {0: 0.3, 500: 0.3}),
        (schedules.step_decay(1.0, 0.1, 10), {0: 1.0, 9: 1.0, 10: 0.1, 25: 0.01}),
        (schedules.exponential(1.0, 0.5, 10), {0: 1.0, 5: 0.5**0.5, 10: 0.5, 20: 0.25}),
        (schedules.cosine(1.0, epochs=100), {0: 1.0, 50: 0.5, 100: 0.0, 150: 0.0}),
        (schedules.cosine(1.0, epochs=100, min_lr=0.1), {0: 1.0, 50: 0.55, 100: 0.1}),
    ],
)
def test_values_at_known_epochs(schedule, expected):
    for epoch, lr in expected.items():
        assert schedule(epoch)[0] == pytest.approx(lr, abs=1e-15)


def test_per_replica_parameters():
    s = schedules.step_decay(np.array([0.1, 0.2]), decay_rate=np.array([0.5, 0.9]), decay_steps=np.array([10, 5]))
    assert np.allclose(s(10), [0.1 * 0.5, 0.2 * 0.9**2])


@pytest.mark.parametrize("name,kwargs", [("constant", {}), ("step_decay", {"decay_rate": 0.5, "decay_steps": 3}),
                                         ("exponential", {"decay_rate": 0.5, "decay_steps": 3}),
                                         ("cosine", {"epochs": 10})])
def test_a_caller_changing_a_returned_rate_changes_no_later_one(name, kwargs):
    """Schedules are pure functions of the epoch: the optimizer scales the array it is given, and a
    schedule that handed out its own array (constant's lr) would be changed for every later epoch."""
    s = schedules.get(name, lr=np.array([0.1, 0.2]), **kwargs)
    want = [s(e).copy() for e in range(10)]
    for e in range(10):
        got = s(e)
        np.testing.assert_array_equal(got, want[e])
        got *= 0.0  # what an in-place caller would do


def test_unknown_schedule():
    with pytest.raises(ValueError, match="schedule.name"):
        schedules.get("stepdecay", lr=0.1)
