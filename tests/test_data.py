"""Datasets: the seed set as a pure function, the phase-1 patterns, and the CSV loader's errors."""

import os
import re
import time

import numpy as np
import pytest

from nnexp.engine import csvfile, csvlines, datasets
from nnexp.errors import ConfigError


def test_seed_regression_shapes_split_and_scaling():
    d = datasets.seed_regression()
    assert d.x_train.shape == (640, 4) and d.x_val.shape == (160, 4) and d.x_test.shape == (400, 4)
    assert d.y_train.shape == (640, 1)
    assert d.y_train.min() == 0.0 and d.y_train.max() == 1.0  # min-max on the training split
    assert np.allclose(d.x_train.mean(axis=0), 0.0) and np.allclose(d.x_train.std(axis=0), 1.0)
    # the raw target mixes every term of the seed's recipe: far from linear in the features
    x, y = datasets.seed_regression_raw(2000, seed=0)
    lin = np.linalg.lstsq(np.hstack([x, np.ones((2000, 1))]), y, rcond=None)[0]
    resid = y - np.hstack([x, np.ones((2000, 1))]) @ lin
    assert 0.2 < 1 - resid.var() / y.var() < 0.8


def test_seed_regression_is_a_pure_function_of_its_arguments():
    a, b = datasets.seed_regression(seed=3, noise=0.1), datasets.seed_regression(seed=3, noise=0.1)
    assert a.digest() == b.digest()
    assert datasets.seed_regression(seed=4).digest() != a.digest()
    assert datasets.seed_regression(seed=3, noise=0.0).digest() != a.digest()
    assert datasets.seed_regression(n_train=100, n_test=50).x_test.shape == (50, 4)


def test_validation_split_is_carved_from_train_only():
    d = datasets.seed_regression(val_fraction=0.25)
    full = datasets.seed_regression(val_fraction=0.0)
    assert len(d.x_train) + len(d.x_val) == 800 and len(full.x_val) == 0
    np.testing.assert_array_equal(d.x_test.shape, full.x_test.shape)
    # the scaler is fitted on the training rows only, so validation targets may leave [0, 1]
    assert d.y_train.min() == 0.0 and d.y_train.max() == 1.0


def linear_r2(x, y):
    """R² of the least-squares linear fit of y on x (with an intercept)."""
    design = np.hstack([x, np.ones((len(x), 1))])
    resid = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    return 1 - resid.var() / y.var()


SYNTHETIC = {  # the synthetic regression sets: their default shapes and names
    "seed_regression": (datasets.seed_regression, 4, "seed_regression"),
    "seed_like": (datasets.seed_like, 4, "seed_like_c1"),
    "friedman1": (datasets.friedman1, 5, "friedman1_d5"),
}


@pytest.mark.parametrize("name", list(SYNTHETIC))
def test_synthetic_sets_shapes_scaling_names_and_purity(name):
    make, n_features, label = SYNTHETIC[name]
    d = make()
    assert d.name == label and d.feature_names == [f"x{i + 1}" for i in range(n_features)]
    assert d.x_train.shape == (640, n_features) and d.x_val.shape == (160, n_features)
    assert d.x_test.shape == (400, n_features) and d.y_train.shape == (640, 1) and d.y_test.shape == (400, 1)
    assert d.y_train.min() == 0.0 and d.y_train.max() == 1.0  # min-max on the training split
    assert np.allclose(d.x_train.mean(axis=0), 0.0) and np.allclose(d.x_train.std(axis=0), 1.0)
    assert make(seed=3, noise=0.1).digest() == make(seed=3, noise=0.1).digest()  # a pure function of its arguments
    assert make(seed=4, noise=0.1).digest() != make(seed=3, noise=0.1).digest()
    assert make(seed=3, noise=0.0).digest() != make(seed=3, noise=0.1).digest()
    assert make(n_train=100, n_test=50).x_test.shape == (50, n_features)


@pytest.mark.parametrize("name", list(SYNTHETIC))
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_train": 1}, r"data.n_train = 1 is not valid: expected an integer from 2 to 10,000,000"),
        ({"n_test": 2.5}, r"data.n_test = 2.5 is not valid: expected an integer"),
        ({"n_train": 10**9}, r"data.n_train = 1000000000 is not valid"),
        ({"n_test": "many"}, r"data.n_test = 'many' is not valid"),
        ({"noise": -0.1}, r"data.noise = -0.1 is not valid: expected a finite number >= 0"),
        ({"noise": float("nan")}, r"data.noise = nan is not valid"),
        ({"seed": -1}, r"data.seed = -1 is not valid: expected an integer of at least 0"),
        ({"val_fraction": 1.0}, r"data.val_fraction = 1.0 is not valid: expected a fraction in \[0, 1\)"),
        ({"val_fraction": "0.2"}, r"data.val_fraction = '0.2' is not valid"),
    ],
    ids=["n_train", "n_test", "n_train_huge", "n_test_text", "noise", "noise_nan", "seed", "val_fraction",
         "val_fraction_text"],
)
def test_synthetic_sets_refuse_bad_arguments(name, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SYNTHETIC[name][0](**kwargs)


@pytest.mark.parametrize(
    ("make", "kwargs", "message"),
    [
        (datasets.seed_like, {"coef_seed": -1}, r"data.coef_seed = -1 is not valid: expected an integer of at least 0"),
        (datasets.seed_like, {"coef_seed": 0.5}, r"data.coef_seed = 0.5 is not valid"),
        (datasets.friedman1, {"n_features": 4},
         r"data.n_features = 4 is not valid: expected an integer from 5 to 10,000"),
        (datasets.friedman1, {"n_features": 5.5}, r"data.n_features = 5.5 is not valid"),
        (datasets.friedman1, {"n_features": 10_000, "n_train": 3000},
         r"data.n_features = 10000 is not valid: 3,400 rows of 10,000 features are more than 20,000,000 values"),
    ],
    ids=["coef_seed", "coef_seed_fraction", "n_features", "n_features_fraction", "n_features_too_many_values"],
)
def test_synthetic_sets_refuse_their_own_bad_arguments(make, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make(**kwargs)


def test_seed_like_is_a_task_of_the_seeds_family_but_not_the_seeds():
    xs, ys = datasets.seed_regression_raw(4000, seed=0)
    r2 = []
    for coef_seed in range(10):
        x, y = datasets.seed_like_raw(4000, seed=0, coef_seed=coef_seed)
        np.testing.assert_array_equal(x, xs)  # the same inputs: only the formula differs
        assert abs(np.corrcoef(y, ys)[0, 1]) < 0.95  # a different task
        r2.append(linear_r2(x, y))
    assert all(0.1 < r < 0.9 for r in r2), r2  # every task mixes the nonlinear terms with the linear ones
    assert 0.2 < linear_r2(*datasets.seed_like_raw(4000, seed=0)) < 0.8  # the default task, as the seed's
    assert datasets.seed_like(seed=0).digest() != datasets.seed_regression(seed=0).digest()
    assert datasets.seed_like(coef_seed=2).digest() != datasets.seed_like(coef_seed=1).digest()
    assert datasets.seed_like(coef_seed=2).name == "seed_like_c2"
    # the coefficients are a pure function of coef_seed, drawn within the documented ranges
    c = datasets.seed_like_coefficients(7)
    assert c == datasets.seed_like_coefficients(7) and c != datasets.seed_like_coefficients(8)
    assert all(0.5 <= c[k] <= 1.5 for k in "awbuve") and 0.05 <= c["q1"] <= 0.2 and 0.1 <= abs(c["p"]) <= 0.5
    assert 0.7 <= c["s"] <= 1.4 and all(-1 <= c[k] <= 1 for k in ("c3", "c4"))
    assert all(0.1 <= abs(c[f"l{i}"]) <= 0.5 for i in range(1, 5))


def test_friedman1_follows_its_formula():
    x, y = datasets.friedman1_raw(20_000, seed=0, noise=0.0, n_features=7)
    assert x.shape == (20_000, 7) and 0 <= x.min() and x.max() < 1
    x1, x2, x3, x4, x5 = x[:, :5].T
    formula = 10 * np.sin(np.pi * x1 * x2) + 20 * (x3 - 0.5) ** 2 + 10 * x4 + 5 * x5
    np.testing.assert_allclose(y, formula, rtol=0, atol=1e-12)
    _, noisy = datasets.friedman1_raw(20_000, seed=0, noise=1.0, n_features=7)
    assert abs((noisy - formula).mean()) < 0.03 and abs((noisy - formula).std() - 1.0) < 0.02
    # far from linear: the sine and the square carry about a quarter of the variance
    assert 0.65 < linear_r2(x, y) < 0.85
    # features beyond the fifth are irrelevant, and the Dataset holds the raw rows, scaled
    d = datasets.friedman1(n_features=7, noise=0.0)
    assert d.name == "friedman1_d7" and d.feature_names[-1] == "x7"
    raw_x, raw_y = datasets.friedman1_raw(1200, seed=0, noise=0.0, n_features=7)
    np.testing.assert_allclose(d.scaler.y_inverse(d.y_test[:, 0]), raw_y[800:], atol=1e-9)
    np.testing.assert_allclose(d.x_test * d.scaler.x_std + d.scaler.x_mean, raw_x[800:], atol=1e-12)


def test_friedman1_agrees_with_scikit_learn():
    sklearn = pytest.importorskip("sklearn.datasets")
    x, y = sklearn.make_friedman1(n_samples=2000, n_features=6, noise=0.0, random_state=0)
    np.testing.assert_allclose(datasets.friedman1_formula(x), y, rtol=1e-12)  # the same definition
    # the same distribution (not the same random stream): moments of y and its linear part
    theirs_x, theirs = sklearn.make_friedman1(n_samples=20_000, n_features=6, noise=1.0, random_state=1)
    ours_x, ours = datasets.friedman1_raw(20_000, seed=1, noise=1.0, n_features=6)
    assert abs(ours.mean() - theirs.mean()) < 0.15 and abs(ours.std() - theirs.std()) < 0.1
    assert abs(linear_r2(ours_x, ours) - linear_r2(theirs_x, theirs)) < 0.02


def test_simple_patterns():
    d = datasets.simple_patterns("xor")
    assert d.x_test.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert d.y_test[:, 0].tolist() == [0, 1, 1, 0]
    assert datasets.simple_patterns("or").y_test[:, 0].tolist() == [0, 1, 1, 1]
    with pytest.raises(ConfigError, match="data.pattern.*Did you mean 'xor'"):
        datasets.simple_patterns("xr")


def write(tmp_path, text, name="t.csv"):
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


def table(n=30, seed=0):
    rng = np.random.default_rng(seed)
    rows = ["a,b,price"] + [f"{x:.4f},{z:.4f},{1000 + 500 * x - 30 * z:.3f}" for x, z in rng.random((n, 2))]
    return "\n".join(rows) + "\n"


def test_csv_loads_scales_and_maps_back(tmp_path):
    p = write(tmp_path, table())
    d = csvfile.load_csv(p, target="price")
    assert d.feature_names == ["a", "b"] and d.target_name == "price"
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == 30
    assert d.y_train.min() == 0.0 and d.y_train.max() == 1.0
    raw = d.scaler.y_inverse(d.y_test[:, 0])
    assert 990 < raw.min() and raw.max() < 1510  # back in the table's units
    only_a = csvfile.load_csv(p, target="price", features=["a"])
    assert only_a.n_features == 1


OK = "1,2,3\n" * 10  # ten good data rows for the header a,b,y
MULTILINE = 'a,b,note,y\n1,2,"two\nlines",3\n' + "1,2,n,3\n" * 8


# The loader's table of bad files: (file content, load_csv arguments, what the message must say). Every
# message is also checked to be one printable line of bounded length (see the test below). The target is
# "y" unless the arguments say otherwise; None means no file at all.
BAD_CSV = {
    # the file itself
    "missing": (None, {}, r"no such file"),
    "directory": ("<dir>", {}, r"is a directory"),
    "empty": ("", {}, r"the file is empty"),
    "only_blank_lines": ("\n\n   \n\r\n", {}, r"the file is empty"),
    "header_only": ("a,b,y\n", {}, r"line 1 is a header row \(columns 'a', 'b', 'y'\) but no data rows follow"),
    "header_then_blank_lines": ("a,b,y\n\n\n", {}, r"no data rows follow"),
    "one_row": ("a,b,y\n1,2,3\n", {}, r"too few to split"),
    # encodings and line structure
    "latin1": (b"a,b,y\n" + OK.encode() + b"1,2,caf\xe9\n" + OK.encode(), {},
               r"line 12 \(byte 73 of the file, 0xe9\) is not UTF-8.*save the file as UTF-8"),
    "utf16": (("a,b,y\n" + OK).encode("utf-16"), {}, r"line 1 \(byte 0 .*UTF-16.*save the file as UTF-8"),
    "huge_field": ('a,b,y\n' + OK + '1,"' + "9" * 200_000 + '",3\n', {},
                   r"line 12: a cell is longer than 131,072 characters"),
    "unclosed_quote": ("a,b,y\n" + OK + '1,"2,3\n' + OK, {}, r"line 12: a quoted cell opened on this line is never "
                       r"closed"),
    "junk_after_quote": ("a,b,y\n" + OK + '1,"2"x,3\n', {}, r"line 12 is not valid CSV \(',' expected after '\"'\)"),
    "ragged": ("a,b,y\n" + OK + "1,2\n", {}, r"line 12 has 2 cells, the header \(line 1\) has 3"),
    "trailing_comma_in_rows": ("a,b,y\n" + "1,2,3,\n" * 10, {}, r"line 2 has 4 cells, the header \(line 1\) has 3"),
    "semicolons": ("a;b;y\n" + OK.replace(",", ";"), {}, r"line 1: the header is one column 'a;b;y': it looks like "
                   r"';'-separated; nnexp reads comma-separated files"),
    "excel_sep_line": ("sep=,\na,b,y\n" + OK, {}, r"line 1 is a spreadsheet's separator line 'sep=,', not a "
                       r"header; delete it"),
    "tabs": ("a\tb\ty\n" + OK.replace(",", "\t"), {}, r"it looks like tab-separated"),
    # physical line numbers: blank lines, \r\n, a lone \r (classic Mac) and quoted line breaks all count
    "blank_lines_counted": ("\na,b,y\n\n1,2,3\n\n1,x,3\n" + OK, {}, r"line 6, column 'b': 'x' is not a number"),
    "crlf_counted": ("a,b,y\r\n1,2,3\r\n\r\n1,x,3\r\n" + OK.replace("\n", "\r\n"), {}, r"line 4, column 'b'"),
    "cr_counted": ("a,b,y\r1,2,3\r\r1,x,3\r" + OK.replace("\n", "\r"), {}, r"line 4, column 'b'"),
    "quoted_newline_counted": (MULTILINE + "1,x,n,3\n", {"features": ["a", "b"]},
                               r"line 12, column 'b': 'x' is not a number"),
    # the header
    "duplicate_column": ("a,a,y\n" + OK, {}, r"the header names 'a' twice \(columns 1 and 2\)"),
    "duplicate_after_strip": ("a, a ,y\n" + OK, {}, r"names 'a' twice \(columns 1 and 2\)"),
    "duplicate_target": ("a,y,y\n" + OK, {}, r"names 'y' twice \(columns 2 and 3\)"),
    "duplicate_unicode_forms": ("caf\u00e9,cafe\u0301,y\n" + OK, {}, r"names 'café' twice \(columns 1 and 2\)"),
    "empty_column_name": ("a,,y\n" + OK, {}, r"column 2 of the header \(line 1\) has no name"),
    "trailing_comma_header": ("a,b,y,\n" + OK, {}, r"column 4 of the header \(line 1\) has no name"),
    "wrong_target": ("a,b,price\n" + OK, {}, r"data.target = 'y'.*no such column in 't.csv'; columns: 'a', 'b', "
                     r"'price'"),
    "invisible_name": ("a\u200b,b,y\n" + OK, {"features": ["a"]}, r"data.features.*columns: 'a\\u200b', 'b', 'y'"),
    "many_columns_listed": (",".join(f"c{i}" for i in range(100)) + "\n" + ",".join("1" * 100) + "\n", {},
                            r"columns: 'c0', 'c1', .*, \.\.\. \(100 columns\)\.$"),
    # features and target
    "wrong_feature": ("a,b,y\n" + OK, {"features": ["a", "zz"]}, r"data.features = \['a', 'zz'\].*no such column"),
    "target_in_features": ("a,b,y\n" + OK, {"features": ["a", "y"]},
                           r"data.features = \['a', 'y'\].*includes the target column 'y'"),
    "target_in_features_spaced": ("a,b,y\n" + OK, {"features": ["a", " y"]}, r"includes the target column 'y'"),
    "feature_twice": ("a,b,y\n" + OK, {"features": ["a", "b", "a"]}, r"names column 'a' twice"),
    "features_a_string": ("a,b,y\n" + OK, {"features": "ab"}, r"data.features = 'ab'.*expected a list of column"),
    "features_empty": ("a,b,y\n" + OK, {"features": []}, r"expected at least one feature column"),
    "only_the_target": ("y\n" + "1\n" * 10, {}, r"expected at least one feature column besides the target"),
    "target_empty": ("a,b,y\n" + OK, {"target": " "}, r"data.target = ' ' is not valid: expected a column name"),
    "path_not_a_path": (None, {"path": 2024}, r"data.path = 2024 is not valid: expected a path"),
    "target_not_a_name": ("a,b,y\n" + OK, {"target": ["y"]}, r"data.target = \['y'\].*expected a column name"),
    # cells
    "non_numeric": ("a,b,y\n" + OK + "1,x,3\n", {}, r"line 12, column 'b': 'x' is not a number"),
    "empty_cell": ("a,b,y\n" + OK + "1,,3\n", {}, r"line 12, column 'b' is empty \(missing values"),
    "blank_cell": ("a,b,y\n" + OK + "1,  ,3\n", {}, r"line 12, column 'b' is empty"),
    "na_text": ("a,b,y\n" + OK + "1,N/A,3\n", {}, r"line 12, column 'b': 'N/A' is not a number"),
    "nan": ("a,b,y\n" + OK + "1,nan,3\n", {}, r"line 12, column 'b': 'nan' .*NaN or infinite"),
    "nan_in_target": ("a,b,y\n" + OK + "1,2,NaN\n", {}, r"line 12, column 'y': 'NaN' .*NaN or infinite"),
    "minus_infinity": ("a,b,y\n" + OK + "1,-Infinity,3\n", {}, r"'-Infinity' .*NaN or infinite"),
    "plus_inf": ("a,b,y\n" + OK + "1,+INF,3\n", {}, r"'\+INF' .*NaN or infinite"),
    "underscore": ("a,b,y\n" + OK + "1,1_000,3\n", {}, r"line 12, column 'b': '1_000' is not a plain decimal number "
                   r"\(Python would read it as 1000.0"),
    "arabic_digits": ("a,b,y\n" + OK + "1,\u0661\u0662,3\n", {}, r"'١٢' is not a plain decimal number"),
    "fullwidth_digit": ("a,b,y\n" + OK + "1,\uff11,3\n", {}, r"'１' is not a plain decimal number"),
    "thousands_separator": ("a,b,y\n" + OK + '1,"1,000",3\n', {}, r"'1,000' is not a number"),
    "decimal_comma": ("a,b,y\n" + OK + '1,"1,5",3\n', {}, r"'1,5' is not a number"),
    "hex": ("a,b,y\n" + OK + "1,0x10,3\n", {}, r"'0x10' is not a number"),
    "overflow": ("a,b,y\n" + OK + "1,1e999,3\n", {}, r"line 12, column 'b': '1e999' is too large"),
    "huge": ("a,b,y\n" + OK + "1,2,1e200\n", {}, r"line 12, column 'y': '1e200' is too large to scale"),
    "long_cell_shown_short": ("a,b,y\n" + OK + "1," + "z" * 5000 + ",3\n", {}, r"'z{40}'\.\.\. \(5,000 characters\) is "
                              r"not a number"),
    "control_character": ("a,b,y\n" + OK + "1,2\x00,3\n", {}, r"'2\\x00' is not a number"),
    # the other arguments, checked before the file is read
    "test_fraction": ("a,b,y\n" + OK, {"test_fraction": 1.0}, r"data.test_fraction = 1.0.*\(0, 1\)"),
    "test_fraction_text": ("a,b,y\n" + OK, {"test_fraction": "half"}, r"data.test_fraction = 'half'"),
    "val_fraction": ("a,b,y\n" + OK, {"val_fraction": -0.1}, r"data.val_fraction = -0.1"),
    "seed": ("a,b,y\n" + OK, {"seed": -1}, r"data.seed = -1.*integer"),
}


@pytest.mark.parametrize("case", list(BAD_CSV))
def test_bad_csv_files_are_refused_with_a_message_naming_the_problem(tmp_path, case):
    text, kwargs, message = BAD_CSV[case]
    if text is None:
        path = tmp_path / "t.csv"
    elif text == "<dir>":
        path = tmp_path / "t.csv"
        path.mkdir()
    else:
        path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        csvfile.load_csv(**{"path": path, "target": "y", **kwargs})
    msg = str(info.value)
    assert re.search(message, msg), msg
    # one paragraph: no line breaks, no invisible characters shown raw, never the whole file
    assert msg.isprintable() and len(msg) < 800, msg


def render(eol="\n", quote="", pad="", bom="", blank=""):
    """One small table written the ways real files differ."""
    cells = [["a", "b", "y"]] + [[str(i), f"{i % 3 + 2.0}", f"{i / 2 + 3:g}"] for i in range(10)]
    lines = [",".join(f"{pad}{quote}{c}{quote}{pad}" for c in row) + eol + blank for row in cells]
    return bom + blank + "".join(lines)


@pytest.mark.parametrize(
    "variant",
    [
        {"bom": "\ufeff"},  # Excel's "CSV UTF-8" starts with a byte-order mark
        {"eol": "\r\n"},  # Windows
        {"eol": "\r"},  # classic Mac OS
        {"quote": '"'},  # quoted names and numbers
        {"pad": " "},  # spaces around names and numbers
        {"blank": "\n"},  # blank lines
        {"blank": ",,\n"},  # rows of empty cells
        {"eol": "\r\n", "quote": '"', "bom": "\ufeff", "blank": "\r\n"},
    ],
    ids=["bom", "crlf", "cr", "quoted", "spaces", "blank_lines", "empty_rows", "all"],
)
def test_real_world_variants_of_one_table_load_the_same(tmp_path, variant):
    want = csvfile.load_csv(write(tmp_path, render(), "plain.csv"), target="y", features=["a", "b"])
    got = csvfile.load_csv(write(tmp_path, render(**variant), "variant.csv"), target="y", features=["a", "b"])
    assert got.feature_names == ["a", "b"] and got.digest() == want.digest()


def test_numbers_are_read_as_a_spreadsheet_shows_them(tmp_path):
    cells = ["1e3", "1E+03", ".5", "5.", "+2", "-0", "007", " 1.5 ", "-2.5e-3"]
    rows = "a,b,y\n" + "".join(f"{c},{i},{i}\n" for i, c in enumerate(cells))
    d = csvfile.load_csv(write(tmp_path, rows), target="y", test_fraction=0.2, val_fraction=0.0)
    raw = np.concatenate([d.x_train, d.x_test])[:, 0] * d.scaler.x_std[0] + d.scaler.x_mean[0]
    assert sorted(np.round(raw, 9)) == sorted([1000, 1000, 0.5, 5, 2, 0, 7, 1.5, -0.0025])


def test_unused_columns_may_hold_text_and_quoted_line_breaks(tmp_path):
    d = csvfile.load_csv(write(tmp_path, MULTILINE), target="y", features=["a", "b"])
    assert d.feature_names == ["a", "b"] and len(d.x_train) + len(d.x_val) + len(d.x_test) == 9


def test_zero_variance_feature_and_constant_target_do_not_divide_by_zero(tmp_path):
    rows = "a,b,y\n" + "".join(f"1.0,{i},{5.0}\n" for i in range(20))
    d = csvfile.load_csv(write(tmp_path, rows), target="y")
    assert np.isfinite(d.x_train).all() and np.isfinite(d.y_train).all()


def test_limits_are_checked_while_reading_not_after(tmp_path, monkeypatch):
    """Files are data: the loader stops at its bounds (bytes, columns, one row's size, rows, values) and
    says which bound with the numbers, instead of reading the file into memory first."""
    monkeypatch.setattr(csvlines, "MAX_BYTES", 1000)
    with pytest.raises(ConfigError, match=r"the file is 1,206 bytes; nnexp reads CSV files of at most 1,000 bytes"):
        csvfile.load_csv(write(tmp_path, "a,b,y\n" + "1,2,3\n" * 200), target="y")
    monkeypatch.setattr(csvlines, "MAX_BYTES", 2 * 1024**3)
    monkeypatch.setattr(csvfile, "MAX_ROWS", 50)
    with pytest.raises(ConfigError, match=r"line 52: more than 50 data rows; nnexp reads at most 50"):
        csvfile.load_csv(write(tmp_path, "a,b,y\n" + "1,2,3\n" * 200), target="y")
    monkeypatch.setattr(csvfile, "MAX_VALUES", 90)  # 30 rows of 3 columns
    with pytest.raises(ConfigError, match=r"line 32: more than 30 data rows of 3 columns used; nnexp reads at most "
                                          r"90 values"):
        csvfile.load_csv(write(tmp_path, "a,b,y\n" + "1,2,3\n" * 40), target="y")
    assert csvfile.load_csv(write(tmp_path, "a,b,c,y\n" + "1,2,x,3\n" * 40), target="y", features=["a"]).n_features == 1
    monkeypatch.setattr(csvfile, "MAX_COLUMNS", 5)
    with pytest.raises(ConfigError, match=r"line 1: the header has 6 columns; nnexp reads at most 5"):
        csvfile.load_csv(write(tmp_path, "a,b,c,d,e,y\n" + "1,2,3,4,5,6\n" * 10), target="y")
    monkeypatch.setattr(csvlines, "MAX_ROW_CHARS", 100)
    for text, line in [("a,b,y\n" + "1,2,3\n" * 10 + "1,2," + "3" * 200 + "\n", 12),
                       ("a,b,y\n" + "1,2,3\n" * 10 + '1,2,"' + "\n" * 200 + '"\n', 12),  # short lines, one long row
                       ("a,b,y\n" + "," * 500 + "\n", 2)]:
        with pytest.raises(ConfigError, match=rf"line {line}: a row of the file is longer than 100 characters"):
            csvfile.load_csv(write(tmp_path, text), target="y")


def test_a_long_cell_is_refused_in_linear_time(tmp_path):
    """The number pattern has one way to match a run of digits: a cell of 120,000 digits and a letter took
    minutes with a pattern that had several (backtracking)."""
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"\(120,001 characters\) is not a number"):
        csvfile.load_csv(write(tmp_path, "a,b,y\n" + OK + "1," + "1" * 120_000 + "x,3\n"), target="y")
    assert time.perf_counter() - started < 5


def test_files_that_cannot_be_read(tmp_path, monkeypatch):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    with pytest.raises(ConfigError, match=r"is not a regular file"):
        csvfile.load_csv(fifo, target="y")
    p = write(tmp_path, "a,b,y\n" + OK)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(csvlines, "open", denied, raising=False)
    with pytest.raises(ConfigError, match=r"data.path = '.*t.csv' is not valid: cannot be read \(Permission denied\)"):
        csvfile.load_csv(p, target="y")
