"""The training loop's helpers: the mini-batches of an epoch, and the per-replica bookkeeping of a pass
(curves, best value and epoch, epochs without improvement, best weights, finished results).

Replica ids stay fixed for the whole pass; `active` lists the ids of the rows still in it (row i of the
network's arrays is replica active[i]), so a replica that leaves the pass keeps its place in every
record.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from nnexp.engine.data import Dataset
from nnexp.engine.network import SHUFFLE_STREAM, Network, stream

Array = np.ndarray
COMPLETED, STOPPED, DIVERGED, PRUNED = "completed", "early_stopped", "diverged", "pruned"


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


class Batches:
    """The training split feature-major, and each epoch's mini-batches. Each replica shuffles with its
    own seed's shuffle stream; replicas that share a seed (a sweep's trials) share one order and one
    gathered (features, batch) array per step."""

    def __init__(self, data: Dataset, batch_size: int, shuffle_seeds: Sequence[int] | Array, replicas: int) -> None:
        seeds = np.broadcast_to(np.atleast_1d(shuffle_seeds), (replicas,))
        self.shared = len(set(seeds.tolist())) == 1
        self.shufflers = [stream(s, SHUFFLE_STREAM) for s in (seeds[:1] if self.shared else seeds)]
        self.x, self.y = np.ascontiguousarray(data.x_train.T), np.ascontiguousarray(data.y_train.T)
        self.n = self.x.shape[1]
        self.size = min(int(batch_size), self.n)

    def epoch(self, active: Array, batched: bool) -> Iterator[tuple[Array, Array]]:
        """The (x, y) mini-batches of one epoch for the replicas `active`."""
        x, y = self.x, self.y
        if self.size < self.n:
            if batched and not self.shared:
                order = np.stack([self.shufflers[r].permutation(self.n) for r in active])
                # (features, R, n) gathered in one call, seen as (R, features, n): rows stay contiguous
                x, y = np.take(x, order, axis=1).swapaxes(0, 1), np.take(y, order, axis=1).swapaxes(0, 1)
            else:  # one replica, or replicas with one shuffle seed: one order, one (features, n) batch for all
                order = self.shufflers[0].permutation(self.n)  # the one stream all replicas would draw
                # np.take keeps rows contiguous; x[:, order] would come out column-major and send BLAS
                # down a transposed kernel, whose rounding differs from the batched pass
                x, y = np.take(x, order, axis=1), np.take(y, order, axis=1)
        for start in range(0, self.n, self.size):
            yield x[..., start : start + self.size], y[..., start : start + self.size]


class Ledger:
    """Per-replica bookkeeping of a pass of R replicas over `epochs` epochs."""

    def __init__(self, names: Sequence[str], epochs: int, replicas: int, patience: int | None, eval_every: int,
                 callbacks: Sequence[object], net: Network) -> None:
        self.names, self.patience, self.eval_every, self.callbacks, self.net = list(names), patience, eval_every, \
            callbacks, net
        self.curves = {k: np.full((epochs, replicas), np.nan) for k in self.names}
        self.best = np.full(replicas, np.inf)
        self.best_epoch = np.zeros(replicas, dtype=int)
        self.wait = np.zeros(replicas, dtype=int)  # epochs since the watched loss last improved
        self.best_state: dict[int, dict[str, Array]] = {}
        self.results: dict[int, ReplicaResult] = {}

    def log(self, epoch: int, active: Array, metrics: dict[str, Array]) -> None:
        for k, v in metrics.items():
            self.curves[k][epoch, active] = v

    def forget(self, epoch: int, replicas: Array) -> None:
        """A diverged epoch's values are no values."""
        for k in self.names:
            self.curves[k][epoch, replicas] = np.nan

    def improved(self, epoch: int, active: Array, watch: Array, finite: Array) -> Array:
        """Update best / best epoch / wait from the watched loss; keep the best weights (early stopping).
        Returns the rows that improved."""
        better = finite & (watch < self.best[active])
        self.best[active[better]] = watch[better]
        self.best_epoch[active[better]] = epoch
        self.wait[active] = np.where(better, 0, self.wait[active] + self.eval_every)
        if self.patience is not None:
            for i in np.flatnonzero(better):
                self.best_state[int(active[i])] = self.net.state(int(i))
        return better

    def stale(self, active: Array) -> Array:
        """Rows whose watched loss has not improved for `patience` epochs."""
        if self.patience is None:
            return np.zeros(len(active), dtype=bool)
        return self.wait[active] >= self.patience

    def finish(self, rows: Array, active: Array, status: str, reason: str, epoch: int) -> None:
        """End the replicas at `rows` with `status` after `epoch` and tell the callbacks."""
        for i in rows:
            r = int(active[i])
            n_ep = epoch if status == DIVERGED else epoch + 1
            restore = status == STOPPED or (self.patience is not None and status == COMPLETED)
            at = int(self.best_epoch[r]) if restore else n_ep - 1
            res = ReplicaResult(
                r, status, reason, n_ep, int(self.best_epoch[r]),
                {k: self.curves[k][:n_ep, r].copy() for k in self.names},
                {} if status == DIVERGED else {k: float(self.curves[k][at, r]) for k in self.names},
                self.best_state[r] if restore and r in self.best_state else self.net.state(int(i)),
            )
            self.results[r] = res
            for cb in self.callbacks:
                cb.on_replica_end(r, res)  # type: ignore[attr-defined]
