"""Every plot readable: a title, labelled axes (with units where they have any), 900-1200 px wide PNGs,
no text outside the canvas, no overlapping panels, no colour bar over a panel, and no global state
changed (no backend chosen on import, no pyplot figure left open, no style leaked)."""

import os
import subprocess
import sys

import numpy as np
import optuna
import pytest
from conftest import ROOT

from nnexp import plots
from nnexp.sweeps import plots as sweep_plots
from nnexp.sweeps.plots import optuna_plots

SCALED = "target scaled to [0, 1]"
LONG = "sigmoid_hidden_with_xavier_init_and_no_decay_and_full_batch"  # longer than any sane variant name


@pytest.fixture
def drawn(monkeypatch):
    """Every figure that goes through plots.save, checked (`check`) as soon as it is drawn, while its
    canvas is live (closing a pyplot figure detaches it): [(figure, path, labels)]."""
    out = []
    real = plots.save

    def spy(fig, path, **margins):
        written = real(fig, path, **margins)
        out.append((fig, written, check(fig, written)))
        return written

    monkeypatch.setattr(plots, "save", spy)
    monkeypatch.setattr(sweep_plots, "save", spy)
    return out


def png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def suptitle(fig):
    t = fig.get_suptitle() if hasattr(fig, "get_suptitle") else (fig._suptitle.get_text() if fig._suptitle else "")
    return t.strip()


def titles(ax):
    return [ax.get_title(loc).strip() for loc in ("left", "center", "right") if ax.get_title(loc).strip()]


def is_colorbar(ax):
    return ax.get_label() == "<colorbar>"


def data_axes(fig):
    """Axes that show data (Optuna's parallel-coordinate twins only carry tick labels)."""
    return [a for a in fig.axes if a.get_visible() and not is_colorbar(a)
            and (a.lines or a.collections or a.patches or a.images)]


def drawn_texts(fig, renderer):
    """Every visible, non-empty text that was drawn: titles, axis labels, tick labels in view, legends."""
    texts = [t for t in fig.texts if t.get_visible() and t.get_text().strip()]
    if suptitle(fig):
        texts.append(fig._suptitle)
    for a in fig.axes:
        if not a.get_visible():
            continue
        texts += [t for t in (a.title, a._left_title, a._right_title) if t.get_text().strip()]
        texts += [t for t in a.texts if t.get_visible() and t.get_text().strip()]
        for axis in (a.xaxis, a.yaxis):
            if not axis.get_visible():
                continue
            if axis.label.get_visible() and axis.label.get_text().strip():
                texts.append(axis.label)
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks():
                if lo - 1e-9 * abs(hi - lo) <= tick.get_loc() <= hi + 1e-9 * abs(hi - lo):
                    texts += [lab for lab in (tick.label1, tick.label2) if lab.get_visible() and lab.get_text().strip()]
        if a.get_legend() is not None:
            texts += [t for t in a.get_legend().get_texts() if t.get_text().strip()]
    return texts


def check(fig, path, width=(900, 1200), height=(250, 1100)):
    """The readability rules every figure must meet; returns the figure's texts by role for further checks."""
    w, h = png_size(path)
    assert width[0] <= w <= width[1], f"{path.name}: {w} px wide"
    assert height[0] <= h <= height[1], f"{path.name}: {h} px high"
    assert 110 <= fig.dpi <= 130, f"{path.name}: {fig.dpi} dpi"
    axes = data_axes(fig)
    assert axes, f"{path.name}: no axes with data"
    assert suptitle(fig) or any(titles(a) for a in axes), f"{path.name}: no title"
    for a in fig.axes:
        assert len(titles(a)) <= 1, f"{path.name}: titles drawn over each other: {titles(a)}"
    for a in axes:
        assert a.get_xlabel().strip(), f"{path.name}: an x axis without a label"
        shared = a.get_shared_y_axes().get_siblings(a)
        assert any(s.get_ylabel().strip() for s in shared), f"{path.name}: a y axis without a label"
    for a in fig.axes:
        if is_colorbar(a):
            assert a.get_ylabel().strip() or a.get_xlabel().strip(), f"{path.name}: a colour bar without a label"

    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    for t in drawn_texts(fig, renderer):
        bb = t.get_window_extent(renderer)
        assert (bb.x0 >= canvas.x0 - 1 and bb.y0 >= canvas.y0 - 1 and bb.x1 <= canvas.x1 + 1
                and bb.y1 <= canvas.y1 + 1), f"{path.name}: {t.get_text()!r} outside the canvas ({bb} in {canvas})"
    boxes = [(a, a.get_window_extent(renderer)) for a in fig.axes if a.get_visible()
             and (a in axes or is_colorbar(a))]
    for i, (a, bb) in enumerate(boxes):
        for b, other in boxes[i + 1:]:
            twins = b in a.get_shared_x_axes().get_siblings(a) and bb.bounds == other.bounds
            assert twins or not bb.overlaps(other), f"{path.name}: two panels (or a panel and a colour bar) overlap"
    return {"x": [a.get_xlabel() for a in axes], "y": [a.get_ylabel() for a in axes],
            "title": " ".join([suptitle(fig)] + [" ".join(titles(a)) for a in axes])}


def test_importing_plots_chooses_no_backend_and_no_pyplot():
    code = ("import sys, matplotlib, matplotlib.rcsetup as r, nnexp.plots;"
            "print('matplotlib.pyplot' in sys.modules, dict.__getitem__(matplotlib.rcParams, 'backend') is "
            "r._auto_backend_sentinel)")
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", "True"]


def curves(epochs=300, seed=0):
    rng = np.random.default_rng(seed)
    e = np.arange(epochs)
    out = {}
    for i, split in enumerate(("train", "val", "test")):
        mse = (0.004 + 0.0005 * i + 0.03 * np.exp(-e / 25)) * np.exp(rng.normal(0, 0.04, epochs))
        out[f"{split}_mse"], out[f"{split}_r2"] = mse, 1 - mse / 0.036
    return out


def test_run_plots(tmp_path, drawn):
    rng = np.random.default_rng(1)
    y = rng.normal(0.7, 1.2, 400)
    pred = y + rng.normal(0, 0.4, 400)
    plots.learning_curves(curves(), tmp_path / "learning_curves.png")
    plots.predictions(y, pred, tmp_path / "predicted_vs_actual.png", "price")
    plots.residuals(y, pred, tmp_path / "residuals.png", "price")
    (_, _, labels), *scatters = drawn
    assert any(SCALED in y for y in labels["y"]) and "R²" in labels["y"]
    assert labels["x"] == ["epoch", "epoch"]
    for _, _, labels in scatters:
        assert all("price" in x for x in labels["x"]) and all("price" in y for y in labels["y"])
        assert "test" in labels["title"].lower()


def test_mse_curves_have_plain_log_tick_labels(tmp_path, drawn):
    """Tick labels such as 0.004 (the old 4×10⁻³ mathtext labels were cut off at the left edge)."""
    steps = list(range(9, 60, 10))
    runs = {"best (trial 20)": (steps, [0.0045, 0.0032, 0.0027, 0.0024, 0.0023, 0.00225]),
            "baseline (trial 0)": (steps, [0.0085, 0.0062, 0.0051, 0.0049, 0.0046, 0.0045])}
    plots.compare_steps(runs, tmp_path / "best_vs_baseline.png", "val_mse", "Sweep t: the best trial and the baseline")
    fig, _, labels = drawn[0]
    assert labels["y"] == [f"validation MSE ({SCALED})"] and labels["x"] == ["epoch"]
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()]
    assert len(ticks) >= 3 and all("$" not in t and "10^" not in t for t in ticks), ticks


@pytest.mark.parametrize("n", [2, 15])
def test_bands_fit_their_legend(tmp_path, drawn, n):
    rng = np.random.default_rng(2)
    names = ["baseline"] + [LONG if i == 3 else f"variant_{i}" for i in range(1, n)]
    groups = {name: [curves(300, seed=int(rng.integers(1e6)))["val_mse"] for _ in range(10)] for name in names}
    groups[names[-1]][0] = groups[names[-1]][0][:200]  # a seed stopped early: its curve is shorter
    plots.bands(groups, tmp_path / "curves.png", "val_mse", title="Ablation t: validation MSE per epoch")
    fig, _, labels = drawn[0]
    assert labels["y"] == [f"validation MSE ({SCALED})"] and "10 seeds" in labels["title"]
    assert len(fig.axes[0].get_legend().get_texts()) == n


@pytest.mark.parametrize("names", [["no_momentum", "deeper"],
                                   ["no_momentum", "no_decay", "naive_init", "sigmoid_hidden", "tanh_hidden",
                                    "leaky_relu_hidden", "deeper", "l2", "dropout", "batch_norm", "adam", "rmsprop",
                                    "adagrad", LONG]])
def test_effects_fit_long_variant_names(tmp_path, drawn, names):
    d = np.linspace(-0.2, 0.05, len(names))
    plots.effects(names, d, d - 0.03, d + 0.03, tmp_path / "effects.png", "test R², variant − baseline",
                  "Ablation t: test R² of each variant against the baseline")
    fig = drawn[0][0]
    shown = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert shown[:-1] == names[:-1] and len(shown) == len(names)


def test_steps_over_time(tmp_path, drawn):
    rng = np.random.default_rng(3)
    series = {}
    for p, n in ((1, 300), (64, 800)):
        t = np.sort(rng.uniform(2, 60, n))
        series[f"P = {p}"] = (t, np.maximum.accumulate(0.9 + 0.08 * rng.uniform(0.5, 1, n) * (1 - np.exp(-t / 8))))
    plots.steps_over_time(series, tmp_path / "time.png", "best validation R² so far", "Best validation R² over time")
    assert drawn[0][2]["x"] == ["wall-clock time (s)"]


def sweep_like_study(n=40):
    """Parameters like the default and architecture sweeps': log float, float, stepped int, categoricals
    with long names, and a parameter only some trials have."""
    study = optuna.create_study(study_name="t", direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial):
        opt = trial.suggest_categorical("optimizer", ["sgd_momentum", "adam"])
        lr = trial.suggest_float("lr" if opt == "sgd_momentum" else "adam_lr", 0.001, 1.0, log=True)
        momentum = trial.suggest_float("momentum", 0.0, 0.95)
        steps = trial.suggest_int("decay_steps", 25, 300, step=25)
        model = trial.suggest_categorical("model", ["mlp_4_6_4_1", "mlp_4_8_6_4_1", "mlp_4_12_8_1", "mlp_4_16_12_8_1"])
        return 0.9 - 0.05 * abs(np.log10(lr) + 1) - 0.1 * (0.9 - momentum) ** 2 - steps / 1e4 - 0.01 * len(model)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=n)
    return study


def test_optuna_plots(tmp_path, drawn):
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    style = dict(plt.rcParams)
    paths = optuna_plots(sweep_like_study(), tmp_path, "val_r2")
    assert [p.name for p in paths] == ["optimization_history.png", "param_importances.png",
                                       "parallel_coordinate.png", "slice.png"]
    assert set(plt.get_fignums()) == before, "a pyplot figure was left open"
    assert dict(plt.rcParams) == style, "Optuna's ggplot style leaked out"
    history, importances, parallel, slices = (labels for _, _, labels in drawn)
    assert all("Sweep t" in labels["title"] for _, _, labels in drawn)
    assert history["y"] == ["validation R²"] and history["x"] == ["trial number"]
    assert "importance" in importances["x"][0] and importances["y"] == ["parameter"]
    assert parallel["y"] == ["validation R²"]
    slice_fig = drawn[3][0]
    panels = data_axes(slice_fig)
    assert len(panels) == 6  # in a grid, each panel at least 2.2 inches wide (was 6 in a row under a colour bar)
    assert min(a.get_position().width for a in panels) * slice_fig.get_size_inches()[0] > 2.2
    categorical = [t.get_text() for a in panels if a.get_xlabel() == "model" for t in a.get_xticklabels()]
    assert "mlp_4_6_4_1" in categorical  # not Optuna's repr "'mlp_4_6_4_1'"


def test_optuna_plots_skip_what_cannot_be_drawn(tmp_path, drawn):
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    paths = optuna_plots(study, tmp_path, "val_r2")  # each figure drawn is checked by `drawn`
    assert set(plt.get_fignums()) == before
    assert "optimization_history.png" in [p.name for p in paths]


@pytest.mark.parametrize("scale", [1.0, 0.01, 0.0004])
def test_the_parallel_plot_keeps_its_colour_bar_label_on_the_canvas_whatever_the_objective_s_digits(
        tmp_path, drawn, scale):
    """An MSE objective near 0.01 gets colour-bar ticks like 0.00925: the bar moves left to make room (its
    label was cut off at the right edge). `drawn` checks every text is on the canvas."""
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=9))
    study.optimize(lambda t: scale * (1 + t.suggest_float("x", 0, 1) + t.suggest_float("y", 0, 1)), n_trials=12)
    names = [p.name for p in optuna_plots(study, tmp_path, "val_mse")]
    assert "parallel_coordinate.png" in names
