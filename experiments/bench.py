"""`make bench`: speed figures measured side by side in one run, with ratios against references
measured in the same run (the machine is shared and noisy: only ratios travel).

    python experiments/bench.py            # every section
    python experiments/bench.py engine     # one section

engine: the seed task (4->6->4->1, seed data: 640 train rows after the validation split, 160
validation, 400 test), seconds per epoch at batch 32 and full batch for the nnexp engine, a minimal
hand-written NumPy loop for the same network and the same per-epoch evaluation (the floor for
NumPy), scikit-learn's MLPRegressor, and PyTorch on CPU if it is installed; then R = 1, 8, 32
replicas against R = 1. Targets (at batch 32, the seed's setting): engine <= 1.3x the hand loop,
>= 3x faster than MLPRegressor, 32 replicas <= 4x one. Full-batch figures are printed for information:
there an epoch is one step, so the per-epoch evaluation of three splits (which MLPRegressor does not
do) dominates, and R replicas cost ~R times the elementwise work of one.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small arrays: threads only add overhead

import bench_harness  # noqa: E402
import numpy as np  # noqa: E402

from nnexp.engine import datasets, model, optim, schedules
from nnexp.engine import loop as train  # noqa: E402

SPEC = model.MLPSpec()
EPOCHS = 60


def best_of(fn, repeats=3):
    """Minimum wall time of fn() over `repeats` runs (after one warm-up run)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def engine_epoch(d, batch, seeds, epochs=EPOCHS):
    opt = optim.make("sgd_momentum", momentum=0.9)
    sched = schedules.step_decay(0.1, 0.5, 100)
    return best_of(lambda: train.fit(SPEC.build(seeds), opt, sched, d, epochs=epochs, batch_size=batch,
                                     shuffle_seeds=seeds)) / epochs


def hand_loop(d, batch, epochs, seed=0, lr=0.1, mu=0.9):
    """A minimal, tight NumPy loop for 4->6->4->1 (ReLU, ReLU, sigmoid), momentum SGD, flat parameter
    vector updated in place, and the same per-epoch MSE on train/val/test as the engine computes."""
    rng = np.random.default_rng(seed)
    sizes = SPEC.sizes
    shapes = list(zip(sizes[:-1], sizes[1:], strict=False))
    flat = np.zeros(sum(a * b + b for a, b in shapes))
    grad, vel = np.zeros_like(flat), np.zeros_like(flat)
    ws, bs, gws, gbs, off = [], [], [], [], 0
    for a, b in shapes:
        lim = np.sqrt(6 / (a + b))
        flat[off : off + a * b] = rng.uniform(-lim, lim, a * b)
        ws.append(flat[off : off + a * b].reshape(a, b))
        gws.append(grad[off : off + a * b].reshape(a, b))
        off += a * b
        bs.append(flat[off : off + b])
        gbs.append(grad[off : off + b])
        off += b
    x, y = d.x_train, d.y_train
    x_eval = np.concatenate([d.x_train, d.x_val, d.x_test])
    y_eval = np.concatenate([d.y_train, d.y_val, d.y_test])
    cuts = np.cumsum([0, len(d.x_train), len(d.x_val)])
    n, last = len(x), len(ws) - 1
    for _ in range(epochs):
        order = rng.permutation(n)
        xs, ys = x[order], y[order]
        for s in range(0, n, batch):
            h = xs[s : s + batch]
            acts = [h]
            for i in range(last):
                h = np.maximum(h @ ws[i] + bs[i], 0.0)
                acts.append(h)
            out = 1.0 / (1.0 + np.exp(-(h @ ws[last] + bs[last])))
            dz = (out - ys[s : s + batch]) * (2.0 / len(h)) * out * (1.0 - out)
            for i in range(last, -1, -1):
                np.matmul(acts[i].T, dz, out=gws[i])
                np.sum(dz, axis=0, out=gbs[i])
                if i:
                    dz = (dz @ ws[i].T) * (acts[i] > 0)
            vel *= mu
            vel += lr * grad
            flat -= vel
        h = x_eval
        for i in range(last):
            h = np.maximum(h @ ws[i] + bs[i], 0.0)
        sq = (1.0 / (1.0 + np.exp(-(h @ ws[last] + bs[last]))) - y_eval) ** 2
        np.add.reduceat(sq[:, 0], cuts)
    return flat


def sklearn_epoch(d, batch):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    def run():
        m = MLPRegressor(hidden_layer_sizes=SPEC.sizes[1:-1], activation="relu", solver="sgd", learning_rate_init=0.1,
                         momentum=0.9, nesterovs_momentum=False, batch_size=batch, max_iter=EPOCHS, tol=0.0,
                         n_iter_no_change=EPOCHS + 1, shuffle=True, random_state=0, alpha=0.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            m.fit(d.x_train, d.y_train[:, 0])

    return best_of(run) / EPOCHS


def torch_epoch(d, batch):
    import torch

    torch.set_num_threads(1)
    x = torch.tensor(d.x_train)
    y = torch.tensor(d.y_train)
    n = len(x)

    def run():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 4), torch.nn.ReLU(),
                                  torch.nn.Linear(4, 1), torch.nn.Sigmoid()).double()
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        for _ in range(EPOCHS):
            perm = torch.randperm(n)
            for s in range(0, n, batch):
                idx = perm[s : s + batch]
                opt.zero_grad()
                torch.nn.functional.mse_loss(net(x[idx]), y[idx]).backward()
                opt.step()

    return best_of(run) / EPOCHS


def row(label, seconds, ref=None, ref_name=""):
    ratio = f"{seconds / ref:6.2f}x {ref_name}" if ref else ""
    print(f"  {label:<34}{seconds * 1e3:9.3f} ms/epoch  {ratio}")


def section_engine():
    d = datasets.seed_regression()
    n = len(d.x_train)
    print(f"== engine: seed task 4->6->4->1, {n} training rows, per-epoch eval of train/val/test ==")
    verdicts = []
    for batch, label in ((32, "batch 32"), (n, "full batch")):
        print(f" {label}")
        hand = best_of(lambda b=batch: hand_loop(d, b, EPOCHS)) / EPOCHS
        eng = engine_epoch(d, batch, 0)
        row("hand-written NumPy loop (floor)", hand)
        row("nnexp engine", eng, hand, "hand loop")
        sk = sklearn_epoch(d, batch)
        row("scikit-learn MLPRegressor (sgd)", sk, eng, "nnexp")
        try:
            row("PyTorch CPU, float64, 1 thread", torch_epoch(d, batch), eng, "nnexp")
        except ImportError:
            print("  PyTorch                           not installed: skipped")
        if batch == 32:
            verdicts += [("engine / hand loop <= 1.3", eng / hand, eng / hand <= 1.3),
                         ("MLPRegressor / engine >= 3", sk / eng, sk / eng >= 3)]
        one = eng
        for r in (8, 32):
            t = engine_epoch(d, batch, list(range(r)), epochs=EPOCHS // 2 if batch == n else EPOCHS)
            row(f"nnexp engine, R = {r} replicas", t, one, "R = 1")
            if r == 32 and batch == 32:
                verdicts.append(("R = 32 / R = 1 <= 4", t / one, t / one <= 4))
    print(" targets (batch 32)")
    for text, value, ok in verdicts:
        print(f"  {'met ' if ok else 'MISS'} {text}: {value:.2f}")


SECTIONS = {"engine": section_engine}
SECTIONS.update(bench_harness.SECTIONS)


def main(argv: list[str]) -> None:
    names = argv or list(SECTIONS)
    for name in names:
        if name not in SECTIONS:
            raise SystemExit(f"unknown bench section {name!r}; choose from {', '.join(SECTIONS)}")
        SECTIONS[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
