"""Model specs, building, and pickle-free persistence."""

import json

import numpy as np
import pytest

from nnexp.engine import data, model, optim, schedules
from nnexp.engine import loop as train
from nnexp.errors import ConfigError


def test_parameter_counts():
    assert model.MLPSpec().n_params == 63  # the seed's ~63
    assert model.MLPSpec(sizes=(2, 2, 1)).n_params == 9
    assert model.MLPSpec(sizes=(4, 8, 6, 4, 1)).n_params == 40 + 54 + 28 + 5
    assert model.MLPSpec().build(0).n_params == 63


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sizes": (4,)}, "model.sizes"),
        ({"sizes": (4, 0, 1)}, "model.sizes"),
        ({"sizes": (4, -6, 1)}, "model.sizes"),
        ({"hidden_activation": "relux"}, "model.hidden_activation.*Did you mean 'relu'"),
        ({"output_activation": "softmax"}, "model.output_activation"),
        ({"init": "xavier"}, "model.init.*xavier_normal"),
        ({"dropout": 1.0}, "model.dropout"),
        ({"leaky_relu_alpha": 0.0}, "model.leaky_relu_alpha"),
    ],
)
def test_bad_specs_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        model.MLPSpec(**kwargs)


def test_initialisers_follow_their_formulas():
    big = model.MLPSpec(sizes=(300, 200, 1), init="xavier_uniform").build(0)
    w = big.layers[0].params["W"]
    limit = np.sqrt(6 / 500)
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
    assert np.all(big.layers[0].params["b"] == 0)
    he = model.MLPSpec(sizes=(300, 200, 1), init="he_normal").build(0).layers[0].params["W"]
    assert he.std() == pytest.approx(np.sqrt(2 / 300), rel=0.02)
    xn = model.MLPSpec(sizes=(300, 200, 1), init="xavier_normal").build(0).layers[0].params["W"]
    assert xn.std() == pytest.approx(np.sqrt(2 / 500), rel=0.02)
    naive = model.MLPSpec(sizes=(300, 200, 1), init="uniform").build(0).layers[0].params["W"]
    assert naive.min() < -0.99 and naive.max() > 0.99


def test_save_and_load_without_pickle(tmp_path):
    d = data.load_csv(_csv(tmp_path), target="y")
    spec = model.MLPSpec(sizes=(2, 5, 1), batch_norm=True, output_activation="sigmoid")
    r = train.fit(spec.build(3), optim.make("adam"), schedules.constant(0.01), d, epochs=20, batch_size=8,
                  shuffle_seeds=3)[0]
    m = model.Model.from_state(spec, r.state, d.scaler, {"run": "x"})
    out = m.save(tmp_path / "m")
    assert sorted(p.name for p in out.iterdir()) == ["spec.json", "weights.npz"]
    assert json.loads((out / "spec.json").read_text())["spec"]["sizes"] == [2, 5, 1]
    with np.load(out / "weights.npz", allow_pickle=False) as z:
        assert all(z[k].dtype == np.float64 for k in z.files)
    loaded = model.Model.load(out)
    x = np.random.default_rng(0).random((6, 2)) * 10
    np.testing.assert_array_equal(loaded.predict(x), m.predict(x))
    assert loaded.meta == {"run": "x"}
    # predict() takes raw features and answers in the target's own units
    scaled = m.network.forward(np.ascontiguousarray(d.scaler.x(x).T))[0]
    np.testing.assert_allclose(m.predict(x), scaled * d.scaler.y_range + d.scaler.y_min)
    assert d.scaler.y_range > 50  # the table's target spans hundreds of units, not [0, 1]


def _csv(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((60, 2)) * 10
    y = 300 + 20 * x[:, 0] - 5 * x[:, 1]
    p = tmp_path / "d.csv"
    p.write_text("a,b,y\n" + "".join(f"{a},{b},{c}\n" for (a, b), c in zip(x, y, strict=True)))
    return p


def test_predict_checks_input_shape(tmp_path):
    m = model.Model.from_state(model.MLPSpec(), model.MLPSpec().build(0).state(0), data.seed_regression().scaler)
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        m.predict(np.zeros((3, 5)))


# ---- names: kept in spec.json, used by predict ----


def _named(tmp_path):
    """A model trained on a table with features a, b and target y, saved to tmp_path / 'm'."""
    d = data.load_csv(_csv(tmp_path), target="y")
    spec = model.MLPSpec(sizes=(2, 5, 1), batch_norm=True)
    r = train.fit(spec.build(3), optim.make("adam"), schedules.constant(0.01), d, epochs=5, batch_size=8,
                  shuffle_seeds=3)[0]
    m = model.Model.from_state(spec, r.state, d.scaler, {}, d.feature_names, d.target_name)
    return m, m.save(tmp_path / "m")


def test_feature_and_target_names_are_saved_and_loaded(tmp_path):
    m, out = _named(tmp_path)
    doc = json.loads((out / "spec.json").read_text())
    assert doc["format"] == "nnexp-mlp/2" and doc["features"] == ["a", "b"] and doc["target"] == "y"
    loaded = model.Model.load(out)
    assert loaded.feature_names == ("a", "b") and loaded.target_name == "y"


def test_files_without_names_still_load_with_default_names(tmp_path):
    m, out = _named(tmp_path)
    doc = json.loads((out / "spec.json").read_text())
    doc["format"] = "nnexp-mlp/1"
    del doc["features"], doc["target"]
    (out / "spec.json").write_text(json.dumps(doc))
    loaded = model.Model.load(out)
    assert loaded.feature_names == ("x1", "x2") and loaded.target_name == "y"
    x = np.random.default_rng(0).random((4, 2))
    np.testing.assert_array_equal(loaded.predict(x), m.predict(x))


def test_predict_takes_named_columns_by_name_in_any_order(tmp_path):
    import pandas as pd

    m, _ = _named(tmp_path)
    x = np.random.default_rng(0).random((6, 2)) * 10
    expected = m.predict(x)
    np.testing.assert_array_equal(m.predict({"b": x[:, 1], "a": x[:, 0]}), expected)
    np.testing.assert_array_equal(m.predict(pd.DataFrame({"b": x[:, 1], "a": x[:, 0]})), expected)
    np.testing.assert_array_equal(m.predict(pd.DataFrame(x, columns=["a", "b"])[["b", "a"]]), expected)
    assert not np.allclose(m.predict(x[:, ::-1]), expected)  # the same values by position are another input


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"b": [1.0]}, r"missing \['a'\]\. The model takes 2 named columns, in any order: \['a', 'b'\]"),
        ({"a": [1.0], "b": [2.0], "c": [3.0]}, r"unknown \['c'\]\..*\['a', 'b'\]"),
        ({"A": [1.0], "b": [2.0]}, r"missing \['a'\]; unknown \['A'\]"),
        ({"a": [1.0], "b": ["x"]}, r"input column 'b': expected one number per row"),
        ({"a": [1.0, 2.0], "b": [2.0]}, r"different lengths"),
        ({"a": [1.0], "b": [float("nan")]}, r"NaN or infinite values in column\(s\) \['b'\]"),
    ],
)
def test_predict_refuses_columns_that_do_not_match(tmp_path, columns, message):
    m, _ = _named(tmp_path)
    with pytest.raises(ValueError, match=message):
        m.predict(columns)


def test_predict_refuses_unnamed_or_repeated_table_columns(tmp_path):
    import pandas as pd

    m, _ = _named(tmp_path)
    with pytest.raises(ValueError, match=r"unknown \[0, 1\].*without column names"):
        m.predict(pd.DataFrame(np.zeros((3, 2))))
    with pytest.raises(ValueError, match=r"repeated \['a'\]"):
        m.predict(pd.DataFrame(np.zeros((3, 3)), columns=["a", "b", "a"]))
    with pytest.raises(ValueError, match=r"shape \(n, 2\).*\['a', 'b'\]"):
        m.predict(np.zeros((3, 3)))

