"""The training loop: mini-batch SGD-style training of R replicas at once, with per-epoch evaluation,
early stopping, divergence detection and callbacks (where logging, progress and pruning plug in).

A replica leaves the pass as soon as it is finished (diverged, stopped early or pruned by a
callback): its rows are dropped from every array, so it costs nothing more, and the others go on
unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from nnexp.engine import losses
from nnexp.engine._alloc import keep_temporaries_on_heap
from nnexp.engine.data import Dataset
from nnexp.engine.metrics import Evaluator
from nnexp.engine.network import SHUFFLE_STREAM, Network, stream
from nnexp.engine.optim import Transform, take_rows
from nnexp.engine.schedules import Schedule
from nnexp.errors import ConfigError

Array = np.ndarray
COMPLETED, STOPPED, DIVERGED, PRUNED = "completed", "early_stopped", "diverged", "pruned"
EXPLODED = 1e6  # a training MSE above this is divergence: targets are scaled to [0, 1], so a sane MSE is < 1


class Callback:
    """Hooks called by `fit`. Metrics arrive per active replica: metrics[name][i] is replica replicas[i]."""

    def on_train_begin(self, n_replicas: int) -> None: ...

    def on_epoch_end(self, epoch: int, replicas: Array, metrics: dict[str, Array]) -> Iterable[int] | None:
        """Return the ids of replicas to stop now (they end as pruned), or None."""

    def on_replica_end(self, replica: int, result: ReplicaResult) -> None: ...

    def on_train_end(self, result: FitResult) -> None: ...


@dataclass
class ReplicaResult:
    """One replica's outcome. `final` holds the metrics of the returned weights; it is empty when the
    replica diverged (a diverged run has no results, only a reason)."""

    replica: int
    status: str
    reason: str
    epochs: int
    best_epoch: int
    curves: dict[str, Array]
    final: dict[str, float]
    state: dict[str, Array] = field(repr=False, default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status != DIVERGED


@dataclass
class FitResult:
    replicas: list[ReplicaResult]

    def __getitem__(self, r: int) -> ReplicaResult:
        return self.replicas[r]

    def __len__(self) -> int:
        return len(self.replicas)


def _quiet_overflow(fn):
    """Run `fn` with NumPy's overflow/invalid warnings off: a sigmoid of a very negative input overflows
    exp to inf and gives the right limit 0, and a run that really diverges is caught and reported by
    the loop itself (status "diverged"), not by a warning."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore"):
            return fn(*args, **kwargs)

    return wrapper


def _check(field: str, value: float, ok: bool, allowed: str) -> None:
    if not ok:
        raise ConfigError(field, value, allowed)


@_quiet_overflow
def fit(
    net: Network,
    optimizer: Transform,
    schedule: Schedule,
    data: Dataset,
    *,
    epochs: int,
    batch_size: int,
    shuffle_seeds: Sequence[int] | Array,
    patience: int | None = None,
    callbacks: Sequence[Callback] = (),
    eval_every: int = 1,
) -> FitResult:
    """Train every replica of `net` for up to `epochs` epochs of mini-batches of `batch_size` rows.

    Each replica shuffles with its own seed's shuffle stream; `schedule(epoch)` gives the learning rate
    of every replica. With `patience`, a replica stops when its validation MSE has not improved for
    that many epochs and returns its best weights. Returns one `ReplicaResult` per replica.

    `eval_every` = k evaluates (curves, early stopping, callbacks) after every k-th epoch and the last
    one only; the curves hold NaN in between. Weights are checked for NaN/inf after every epoch.
    """
    _check("trainer.epochs", epochs, int(epochs) == epochs and epochs >= 1, "expected an integer >= 1")
    _check("trainer.batch_size", batch_size, int(batch_size) == batch_size and batch_size >= 1,
           "expected an integer >= 1")
    _check("eval_every", eval_every, int(eval_every) == eval_every and eval_every >= 1, "expected an integer >= 1")
    if patience is not None:
        _check("trainer.early_stopping_patience", patience, int(patience) == patience and patience >= 1,
               "expected an integer >= 1, or null to train every epoch")
        if len(data.x_val) == 0:
            raise ConfigError("trainer.early_stopping_patience", patience,
                              "early stopping needs a validation split (data.val_fraction > 0)")
    keep_temporaries_on_heap()
    R = net.R
    shuffle_seeds = np.broadcast_to(np.atleast_1d(shuffle_seeds), (R,))
    shared = len(set(shuffle_seeds.tolist())) == 1  # e.g. a sweep's trials: same seed, other hyperparameters
    shufflers = [stream(s, SHUFFLE_STREAM) for s in (shuffle_seeds[:1] if shared else shuffle_seeds)]
    x, y = np.ascontiguousarray(data.x_train.T), np.ascontiguousarray(data.y_train.T)  # feature-major
    n = x.shape[1]
    batch = min(int(batch_size), n)
    evaluate = Evaluator(data)
    names = [*evaluate(net).keys(), "lr"]  # also checks the network fits the data before any training
    curves = {k: np.full((epochs, R), np.nan) for k in names}
    state = optimizer.init(net.flat)
    active = np.arange(R)  # replica ids of the rows now in the pass
    best = np.full(R, np.inf)
    best_epoch = np.zeros(R, dtype=int)
    wait = np.zeros(R, dtype=int)
    best_state: dict[int, dict[str, Array]] = {}
    results: dict[int, ReplicaResult] = {}
    for cb in callbacks:
        cb.on_train_begin(R)

    def finish(rows: Array, status: str, reason: str, epoch: int) -> None:
        for i in rows:
            r = int(active[i])
            n_ep = epoch if status == DIVERGED else epoch + 1
            restore = status == STOPPED or (patience is not None and status == COMPLETED)
            at = int(best_epoch[r]) if restore else n_ep - 1
            res = ReplicaResult(
                r, status, reason, n_ep, int(best_epoch[r]),
                {k: curves[k][:n_ep, r].copy() for k in names},
                {} if status == DIVERGED else {k: float(curves[k][at, r]) for k in names},
                best_state[r] if restore and r in best_state else net.state(int(i)),
            )
            results[r] = res
            for cb in callbacks:
                cb.on_replica_end(r, res)

    def evaluated(epoch: int, lr: Array) -> Array:
        """Evaluate the active replicas after `epoch`: curves, divergence, early stopping, callbacks.
        Returns the mask of rows that are done."""
        metrics = evaluate(net)
        for k, v in metrics.items():
            curves[k][epoch, active] = v
        # NaN/inf, or a loss no sane run reaches on targets scaled to [0, 1]: the weights have blown up
        finite = np.isfinite(net.flat).all(axis=1) & (metrics["train_mse"] <= EXPLODED)
        done = np.zeros(len(active), dtype=bool)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            for k in names:
                curves[k][epoch, active[bad]] = np.nan
            finish(bad, DIVERGED, f"training diverged at epoch {epoch}: loss or weights became NaN/infinite "
                   f"(or the training MSE exceeded {EXPLODED:g})", epoch)
            done[bad] = True
        watch = metrics.get("val_mse", metrics["train_mse"])
        improved = finite & (watch < best[active])
        best[active[improved]] = watch[improved]
        best_epoch[active[improved]] = epoch
        wait[active] = np.where(improved, 0, wait[active] + eval_every)
        if patience is not None:
            for i in np.flatnonzero(improved):
                best_state[int(active[i])] = net.state(int(i))
            stop = ~done & (wait[active] >= patience)
            if stop.any():
                finish(np.flatnonzero(stop), STOPPED,
                       f"validation loss did not improve for {patience} epochs", epoch)
                done |= stop
        for cb in callbacks:
            if (~done).any():
                live = {k: v[~done] for k, v in metrics.items()} | {"lr": lr[~done]}
                pruned = set(cb.on_epoch_end(epoch, active[~done], live) or ())
                rows = np.flatnonzero(~done & np.isin(active, list(pruned)))
                if len(rows):
                    finish(rows, PRUNED, f"pruned at epoch {epoch}", epoch)
                    done[rows] = True
        return done

    for epoch in range(epochs):
        lr = np.broadcast_to(schedule(epoch), (R,))[active]
        lr_col = lr.reshape(-1, 1)
        if batch < n:
            if net.batched and not shared:
                order = np.stack([shufflers[r].permutation(n) for r in active])
                # (features, R, n) gathered in one call, seen as (R, features, n): rows stay contiguous
                xs, ys = np.take(x, order, axis=1).swapaxes(0, 1), np.take(y, order, axis=1).swapaxes(0, 1)
            else:  # one replica, or replicas with one shuffle seed: one order, one (features, n) batch for all
                order = shufflers[0].permutation(n)  # the one stream all replicas would draw
                # np.take keeps rows contiguous; x[:, order] would come out column-major and send BLAS
                # down a transposed kernel, whose rounding differs from the batched pass
                xs, ys = np.take(x, order, axis=1), np.take(y, order, axis=1)
        else:
            xs, ys = x, y
        for start in range(0, n, batch):
            xb, yb = xs[..., start : start + batch], ys[..., start : start + batch]
            net.backward(losses.mse_grad(net.forward(xb, train=True), yb))
            updates, state = optimizer.update(net.grad, state, net.flat, lr_col)
            net.flat -= updates
        curves["lr"][epoch, active] = lr
        done = np.zeros(len(active), dtype=bool)
        if (epoch + 1) % eval_every and epoch + 1 < epochs:  # not evaluated: only look for NaN/inf weights
            finite = np.isfinite(net.flat).all(axis=1)
            if not finite.all():
                done = np.logical_not(finite)
                finish(np.flatnonzero(done), DIVERGED,
                       f"training diverged at epoch {epoch}: the weights became NaN/infinite", epoch)
        else:
            done = evaluated(epoch, lr)
        if done.all():
            active = active[:0]
            break
        if done.any():
            keep = np.flatnonzero(~done)
            if net.batched:
                net.take(keep)
                state = take_rows(state, keep, len(active))
            active = active[keep]
    if len(active):
        finish(np.arange(len(active)), COMPLETED, "", epochs - 1)
    out = FitResult([results[r] for r in range(R)])
    for cb in callbacks:
        cb.on_train_end(out)
    return out
