"""Model specs, building, and pickle-free persistence."""

import json

import numpy as np
import pytest

from nnexp.engine import csvfile, datasets, model, optim, schedules
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
    d = csvfile.load_csv(_csv(tmp_path), target="y")
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
    m = model.Model.from_state(model.MLPSpec(), model.MLPSpec().build(0).state(0), datasets.seed_regression().scaler)
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        m.predict(np.zeros((3, 5)))


# ---- names: kept in spec.json, used by predict ----


def _named(tmp_path):
    """A model trained on a table with features a, b and target y, saved to tmp_path / 'm'."""
    d = csvfile.load_csv(_csv(tmp_path), target="y")
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


# ---- loading trusts neither file ----


def _tamper_spec(out, change):
    doc = json.loads((out / "spec.json").read_text())
    change(doc)
    (out / "spec.json").write_text(json.dumps(doc))


def _set(path, value):
    def change(doc):
        *parents, leaf = path.split(".")
        node = doc
        for p in parents:
            node = node[p]
        node[leaf] = value
    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("format", "nnexp-mlp/9"), "not an nnexp model: format 'nnexp-mlp/9'"),
        (_set("extra", 1), r"the file: unknown field\(s\) \['extra'\]"),
        (lambda d: d.pop("scaler"), r"the file: missing field\(s\) \['scaler'\]"),
        (_set("spec.sizes", [2, True, 1]), "spec.sizes: expected 2 to 65 layer widths"),
        (_set("spec.sizes", [2, 5.0, 1]), "spec.sizes"),
        (_set("spec.sizes", [2, 0, 1]), "spec.sizes"),
        (_set("spec.sizes", [2, 5, 1] * 30), "spec.sizes"),
        (_set("spec.sizes", "[2, 5, 1]"), "spec.sizes"),
        (_set("spec.sizes", [2, 5000, 5000, 1]), "25,045,001 parameters, more than the 10,000,000"),
        (_set("spec.hidden_activation", "__import__('os')"), "spec.hidden_activation: .* is not one of"),
        (_set("spec.init", ["xavier_uniform"]), "spec.init"),
        (_set("spec.batch_norm", "yes"), "spec.batch_norm: expected true or false"),
        (_set("spec.dropout", 1.5), r"spec.dropout: expected a probability in \[0, 1\)"),
        (_set("spec.leaky_relu_alpha", float("nan")), "spec.leaky_relu_alpha"),
        (_set("spec.surprise", 1), r"spec: unknown field\(s\) \['surprise'\]"),
        (_set("scaler.x_mean", [0.0]), r"scaler.x_mean: expected 2 finite numbers"),
        (_set("scaler.x_mean", [0.0, float("inf")]), "scaler.x_mean"),
        (_set("scaler.x_std", [1.0, 0.0]), r"scaler.x_std: expected standard deviations > 0"),
        (_set("scaler.y_range", -1.0), "scaler.y_range"),
        (_set("scaler.y_min", "0"), "scaler.y_min"),
        (_set("features", ["a"]), r"features: expected a list of 2 names"),
        (_set("features", ["a", "a"]), r"features: names must be distinct"),
        (_set("features", ["a", 3]), r"features: expected names of 1 to 256 characters"),
        (_set("target", ""), "target: expected a name"),
        (_set("meta", []), "meta: expected an object"),
    ],
)
def test_load_refuses_a_bad_spec_naming_the_file_and_the_problem(tmp_path, change, message):
    _, out = _named(tmp_path)
    _tamper_spec(out, change)
    with pytest.raises(ValueError, match=r"spec\.json: .*" + message):
        model.Model.load(out)


def test_load_refuses_unreadable_specs(tmp_path):
    _, out = _named(tmp_path)
    (out / "spec.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"spec\.json: not valid JSON"):
        model.Model.load(out)
    (out / "spec.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"spec\.json: not valid JSON"):
        model.Model.load(out)
    (out / "spec.json").write_text(" " * (2 << 20) + "{}")
    with pytest.raises(ValueError, match=r"spec\.json: larger than 1,048,576 bytes"):
        model.Model.load(out)


def _peak_bytes(fn):
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_an_oversized_spec_is_refused_before_anything_is_allocated(tmp_path):
    _, out = _named(tmp_path)
    _tamper_spec(out, _set("spec.sizes", [4, 20000, 20000, 1]))  # 400 million parameters: 3.2 GB a copy
    _tamper_spec(out, _set("scaler.x_mean", [0.0] * 4))
    _tamper_spec(out, _set("scaler.x_std", [1.0] * 4))
    _tamper_spec(out, _set("features", ["a", "b", "c", "d"]))

    def load():
        with pytest.raises(ValueError, match=r"spec\.json: spec\.sizes \[4, 20000, 20000, 1\] make 400,220,001 "
                                             r"parameters, more than the 10,000,000"):
            model.Model.load(out)

    assert (out / "spec.json").stat().st_size < 3000
    assert _peak_bytes(load) < 5_000_000


def _write_npz(path, arrays, header_shape=None):
    """An .npz written member by member; `header_shape` makes params.npy's header claim another shape."""
    import io
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for name, a in arrays.items():
            buf = io.BytesIO()
            if name == "params" and header_shape is not None:
                np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False,
                                                           "shape": header_shape})
                buf.write(np.asarray(a, "<f8").tobytes())
            else:
                np.lib.format.write_array(buf, np.asanyarray(a), allow_pickle=True)
            zf.writestr(f"{name}.npy", buf.getvalue())


def _state(out):
    with np.load(out / "weights.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("layer1.running_var"), r"members .* do not match the spec's arrays"),
        (lambda s: s.update(extra=np.zeros(2)), r"members .* do not match the spec's arrays"),
        (lambda s: s.update(params=s["params"][:-1]), r"params\.npy: float64 values of shape \(30,\); the spec "
                                                       r"needs float64 values of shape \(31,\)"),
        (lambda s: s.update(params=s["params"].astype(np.float32)), r"params\.npy: float32 values"),
        (lambda s: s.update(params=np.array([{"x": 1}] * 31, dtype=object)), r"params\.npy: object values"),
        (lambda s: s.update(params=np.full(31, np.nan)), r"params\.npy: NaN or infinite values"),
        (lambda s: s.update({"layer1.running_var": -np.ones((5, 1))}),
         r"\['layer1.running_var'\]: negative running variances"),
    ],
)
def test_load_refuses_weights_that_do_not_match_the_spec(tmp_path, change, message):
    _, out = _named(tmp_path)
    state = _state(out)
    change(state)
    _write_npz(out / "weights.npz", state)
    with pytest.raises(ValueError, match=r"weights\.npz: " + message):
        model.Model.load(out)


def test_a_weights_header_is_checked_before_its_array_is_read(tmp_path):
    _, out = _named(tmp_path)
    state = _state(out)
    _write_npz(out / "weights.npz", state, header_shape=(10**10,))  # 80 GB claimed in a 1 KB file

    def load():
        with pytest.raises(ValueError, match=r"params\.npy: float64 values of shape \(10000000000,\)"):
            model.Model.load(out)

    assert _peak_bytes(load) < 5_000_000
    (out / "weights.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match=r"weights\.npz: not a readable \.npz archive"):
        model.Model.load(out)
    (out / "weights.npz").write_bytes(b"\0" * 200_000)
    with pytest.raises(ValueError, match=r"weights\.npz: 200,000 bytes, more than the 31 parameters"):
        model.Model.load(out)
