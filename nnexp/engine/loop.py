"""The training loop: mini-batch SGD-style training of R replicas at once, with per-epoch evaluation,
early stopping, divergence detection and callbacks (where logging, progress and pruning plug in).

A replica leaves the pass as soon as it is finished (diverged, stopped early or pruned by a
callback): its rows are dropped from every array, so it costs nothing more, and the others go on
unchanged. The bookkeeping of a pass is in `nnexp.engine.ledger`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from nnexp.engine import losses
from nnexp.engine._alloc import keep_temporaries_on_heap
from nnexp.engine.data import Dataset
from nnexp.engine.ledger import COMPLETED, DIVERGED, PRUNED, STOPPED, Batches, Ledger, ReplicaResult
from nnexp.engine.metrics import Evaluator
from nnexp.engine.network import Network
from nnexp.engine.optim import Transform, take_rows
from nnexp.engine.schedules import Schedule
from nnexp.errors import ConfigError

Array = np.ndarray
EXPLODED = 1e6  # a training MSE above this is divergence: targets are scaled to [0, 1], so a sane MSE is < 1
__all__ = ["COMPLETED", "DIVERGED", "PRUNED", "STOPPED", "Callback", "FitResult", "ReplicaResult", "check_fit", "fit"]


class Callback:
    """Hooks called by `fit`. Metrics arrive per active replica: metrics[name][i] is replica replicas[i]."""

    def on_train_begin(self, n_replicas: int) -> None: ...

    def on_epoch_end(self, epoch: int, replicas: Array, metrics: dict[str, Array]) -> Iterable[int] | None:
        """Return the ids of replicas to stop now (they end as pruned), or None."""

    def on_replica_end(self, replica: int, result: ReplicaResult) -> None: ...

    def on_train_end(self, result: FitResult) -> None: ...


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


def _integer(field: str, value: object, low: int, allowed: str) -> None:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and \
        np.isfinite(value) and int(value) == value and value >= low
    if not ok:
        raise ConfigError(field, value, allowed)


def check_fit(epochs: object, batch_size: object, patience: object, eval_every: object, has_val: bool) -> None:
    """The one check of a pass's settings, named by their config fields (`build_plan` calls it too)."""
    _integer("trainer.epochs", epochs, 1, "expected an integer >= 1")
    _integer("trainer.batch_size", batch_size, 1, "expected an integer >= 1")
    _integer("eval_every", eval_every, 1, "expected an integer >= 1")
    if patience is not None:
        _integer("trainer.early_stopping_patience", patience, 1, "expected an integer >= 1, or null to train every "
                 "epoch")
        if not has_val:
            raise ConfigError("trainer.early_stopping_patience", patience,
                              "early stopping needs a validation split (data.val_fraction > 0)")


@_quiet_overflow
def fit(net: Network, optimizer: Transform, schedule: Schedule, data: Dataset, *, epochs: int, batch_size: int,
        shuffle_seeds: Sequence[int] | Array, patience: int | None = None, callbacks: Sequence[Callback] = (),
        eval_every: int = 1) -> FitResult:
    """Train every replica of `net` for up to `epochs` epochs of mini-batches of `batch_size` rows.

    Each replica shuffles with its own seed's shuffle stream; `schedule(epoch)` gives the learning rate
    of every replica. With `patience`, a replica stops when its validation MSE has not improved for
    that many epochs and returns its best weights. Returns one `ReplicaResult` per replica.

    `eval_every` = k evaluates (curves, early stopping, callbacks) after every k-th epoch and the last
    one only; the curves hold NaN in between. Weights are checked for NaN/inf after every epoch.
    """
    check_fit(epochs, batch_size, patience, eval_every, len(data.x_val) > 0)
    keep_temporaries_on_heap()
    R = net.R
    batches = Batches(data, batch_size, shuffle_seeds, R)
    evaluate = Evaluator(data)
    names = [*evaluate(net).keys(), "lr"]  # also checks the network fits the data before any training
    ledger = Ledger(names, epochs, R, patience, eval_every, callbacks, net)
    state = optimizer.init(net.flat)
    active = np.arange(R)  # replica ids of the rows now in the pass
    for cb in callbacks:
        cb.on_train_begin(R)
    for epoch in range(epochs):
        lr = np.broadcast_to(schedule(epoch), (R,))[active]
        lr_col = lr.reshape(-1, 1)
        for xb, yb in batches.epoch(active, net.batched):
            net.backward(losses.mse_grad(net.forward(xb, train=True), yb))
            updates, state = optimizer.update(net.grad, state, net.flat, lr_col)
            net.flat -= updates
        ledger.curves["lr"][epoch, active] = lr
        if (epoch + 1) % eval_every and epoch + 1 < epochs:  # not evaluated: only look for NaN/inf weights
            done = _blown_up(ledger, active, epoch)
        else:
            done = _evaluated(ledger, evaluate, active, epoch, lr)
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
        ledger.finish(np.arange(len(active)), active, COMPLETED, "", epochs - 1)
    out = FitResult([ledger.results[r] for r in range(R)])
    for cb in callbacks:
        cb.on_train_end(out)
    return out


def _blown_up(ledger: Ledger, active: Array, epoch: int) -> Array:
    """Between evaluations: the rows whose weights became NaN/inf end as diverged."""
    done = np.asarray(~np.isfinite(ledger.net.flat).all(axis=1))
    if done.any():
        ledger.finish(np.flatnonzero(done), active, DIVERGED,
                      f"training diverged at epoch {epoch}: the weights became NaN/infinite", epoch)
    return done


def _evaluated(ledger: Ledger, evaluate: Evaluator, active: Array, epoch: int, lr: Array) -> Array:
    """Evaluate the active replicas after `epoch`: curves, divergence, early stopping, then the
    callbacks (which may prune). Returns the mask of rows that are done."""
    metrics = evaluate(ledger.net)
    ledger.log(epoch, active, metrics)
    # NaN/inf, or a loss no sane run reaches on targets scaled to [0, 1]: the weights have blown up
    finite = np.isfinite(ledger.net.flat).all(axis=1) & (metrics["train_mse"] <= EXPLODED)
    done = ~finite
    if done.any():
        ledger.forget(epoch, active[done])
        ledger.finish(np.flatnonzero(done), active, DIVERGED, f"training diverged at epoch {epoch}: loss or "
                      f"weights became NaN/infinite (or the training MSE exceeded {EXPLODED:g})", epoch)
    ledger.improved(epoch, active, metrics.get("val_mse", metrics["train_mse"]), finite)
    stop = ~done & ledger.stale(active)
    if stop.any():
        ledger.finish(np.flatnonzero(stop), active, STOPPED,
                      f"validation loss did not improve for {ledger.patience} epochs", epoch)
        done |= stop
    for cb in ledger.callbacks:
        if (~done).any():
            live = {k: v[~done] for k, v in metrics.items()} | {"lr": lr[~done]}
            pruned = set(cb.on_epoch_end(epoch, active[~done], live) or ())  # type: ignore[attr-defined]
            rows = np.flatnonzero(~done & np.isin(active, list(pruned)))
            if len(rows):
                ledger.finish(rows, active, PRUNED, f"pruned at epoch {epoch}", epoch)
                done[rows] = True
    return done
