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
