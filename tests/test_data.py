"""Datasets: the seed set as a pure function, the phase-1 patterns, and the CSV loader's errors."""

import numpy as np
import pytest

from nnexp.engine import data
from nnexp.errors import ConfigError


def test_seed_regression_shapes_split_and_scaling():
    d = data.seed_regression()
    assert d.x_train.shape == (640, 4) and d.x_val.shape == (160, 4) and d.x_test.shape == (400, 4)
    assert d.y_train.shape == (640, 1)
    assert d.y_train.min() == 0.0 and d.y_train.max() == 1.0  # min-max on the training split
    assert np.allclose(d.x_train.mean(axis=0), 0.0) and np.allclose(d.x_train.std(axis=0), 1.0)
    # the raw target mixes every term of the seed's recipe: far from linear in the features
    x, y = data.seed_regression_raw(2000, seed=0)
    lin = np.linalg.lstsq(np.hstack([x, np.ones((2000, 1))]), y, rcond=None)[0]
    resid = y - np.hstack([x, np.ones((2000, 1))]) @ lin
    assert 0.2 < 1 - resid.var() / y.var() < 0.8


def test_seed_regression_is_a_pure_function_of_its_arguments():
    a, b = data.seed_regression(seed=3, noise=0.1), data.seed_regression(seed=3, noise=0.1)
    assert a.digest() == b.digest()
    assert data.seed_regression(seed=4).digest() != a.digest()
    assert data.seed_regression(seed=3, noise=0.0).digest() != a.digest()
    assert data.seed_regression(n_train=100, n_test=50).x_test.shape == (50, 4)


def test_validation_split_is_carved_from_train_only():
    d = data.seed_regression(val_fraction=0.25)
    full = data.seed_regression(val_fraction=0.0)
    assert len(d.x_train) + len(d.x_val) == 800 and len(full.x_val) == 0
    np.testing.assert_array_equal(d.x_test.shape, full.x_test.shape)
    # the scaler is fitted on the training rows only, so validation targets may leave [0, 1]
    assert d.y_train.min() == 0.0 and d.y_train.max() == 1.0


def test_simple_patterns():
    d = data.simple_patterns("xor")
    assert d.x_test.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert d.y_test[:, 0].tolist() == [0, 1, 1, 0]
    assert data.simple_patterns("or").y_test[:, 0].tolist() == [0, 1, 1, 1]
    with pytest.raises(ConfigError, match="data.pattern.*Did you mean 'xor'"):
        data.simple_patterns("xr")


def write(tmp_path, text, name="t.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def table(n=30, seed=0):
    rng = np.random.default_rng(seed)
    rows = ["a,b,price"] + [f"{x:.4f},{z:.4f},{1000 + 500 * x - 30 * z:.3f}" for x, z in rng.random((n, 2))]
    return "\n".join(rows) + "\n"


def test_csv_loads_scales_and_maps_back(tmp_path):
    p = write(tmp_path, table())
    d = data.load_csv(p, target="price")
    assert d.feature_names == ["a", "b"] and d.target_name == "price"
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == 30
    assert d.y_train.min() == 0.0 and d.y_train.max() == 1.0
    raw = d.scaler.y_inverse(d.y_test[:, 0])
    assert 990 < raw.min() and raw.max() < 1510  # back in the table's units
    only_a = data.load_csv(p, target="price", features=["a"])
    assert only_a.n_features == 1


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        (None, {}, "no such file"),
        ("", {}, "empty"),
        ("a,b,price\n1,2,3\n", {}, "too few"),
        ("a,b,price\n" + "1,x,3\n" * 10, {}, "'x' is not a number"),
        ("a,b,price\n" + "1,2,3\n" * 5 + "1,nan,3\n" + "1,2,3\n" * 5, {}, "NaN or infinite"),
        ("a,b,price\n" + "1,2\n" * 10, {}, "has 2 cells"),
        ("a,b,price\n" + "1,2,3\n" * 10, {"target": "cost"}, "data.target.*columns: a, b, price"),
        ("a,b,price\n" + "1,2,3\n" * 10, {"features": ["a", "zz"]}, "data.features"),
        ("a,b,price\n" + "1,2,3\n" * 5 + "1,2,1e200\n" + "1,2,3\n" * 5, {}, "1e.200 is too large to scale"),
    ],
    ids=["missing", "empty", "one_row", "non_numeric", "nan", "ragged", "wrong_target", "wrong_feature", "huge"],
)
def test_csv_errors_name_the_problem(tmp_path, text, kwargs, message):
    path = tmp_path / "missing.csv" if text is None else write(tmp_path, text)
    with pytest.raises(ConfigError, match=message):
        data.load_csv(path, **{"target": "price", **kwargs})


def test_zero_variance_feature_and_constant_target_do_not_divide_by_zero(tmp_path):
    rows = "a,b,y\n" + "".join(f"1.0,{i},{5.0}\n" for i in range(20))
    d = data.load_csv(write(tmp_path, rows), target="y")
    assert np.isfinite(d.x_train).all() and np.isfinite(d.y_train).all()
