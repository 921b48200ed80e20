"""Layers with a replica axis. Each layer keeps `params` and `grads` dicts with the same keys;
`forward(x, train)` caches what `backward(dout)` needs; `backward` writes the grads and returns dx.

Activations are feature-major: (R, features, batch) when the network is batched, (features, batch)
when it trains one replica alone; the code is the same for both (axes count from the end). With the
batch on the last axis, biases broadcast along long contiguous rows, which keeps R replicas cheap.
Dense weights are (fan_in, fan_out) per replica, used transposed. Parameter arrays are views into
the network's flat buffers (see `Network`).
"""

from __future__ import annotations

import numpy as np

from nnexp.engine import activations as acts
from nnexp.engine import init as inits

Array = np.ndarray


def _transposed(a: Array) -> Array:
    """Transpose the last two axes (a view)."""
    return a.swapaxes(-1, -2)


_ONES: dict[int, Array] = {}


def _batch_sum(a: Array, out: Array | None = None) -> Array:
    """Sum over the batch axis (-1), keeping it: (..., k, n) -> (..., k, 1).

    Written as a @ ones(n, 1): on the small stacked arrays of replica training a matmul is several
    times cheaper than a reduction.
    """
    n = a.shape[-1]
    ones = _ONES.get(n)
    if ones is None:
        ones = _ONES[n] = np.ones((n, 1))
    return np.matmul(a, ones, out=out)


class Layer:
    """Base: `shapes` names the per-replica parameter shapes; `decayed` the ones L1/L2 act on."""

    shapes: dict[str, tuple[int, ...]] = {}
    decayed: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}

    def initial(self, rng: np.random.Generator) -> dict[str, Array]:
        """Initial parameter values for one replica, drawn from that replica's init stream."""
        return {}

    def bind(self, n_replicas: int, batched: bool, dropout_rngs: list[np.random.Generator]) -> None:
        """Set up per-replica state (running statistics, random streams)."""

    def take(self, rows: Array) -> None:
        """Keep only the replicas in `rows` of the per-replica state."""

    def forward(self, x: Array, train: bool = False) -> Array:
        raise NotImplementedError

    def backward(self, dout: Array, need_dx: bool = True) -> Array | None:
        raise NotImplementedError


class Dense(Layer):
    """z = W^T x + b, with W of shape (fan_in, fan_out) and b of shape (fan_out, 1) per replica."""

    decayed = ("W",)

    def __init__(self, fan_in: int, fan_out: int, init: str = "xavier_uniform") -> None:
        super().__init__()
        self.shapes = {"W": (fan_in, fan_out), "b": (fan_out, 1)}
        self.init = inits.get(init, field="model.init")
        self.x: Array = np.empty(0)

    def initial(self, rng: np.random.Generator) -> dict[str, Array]:
        fan_in, fan_out = self.shapes["W"]
        return {"W": self.init(fan_in, fan_out, rng), "b": np.zeros((fan_out, 1))}

    def forward(self, x: Array, train: bool = False) -> Array:
        self.x = x
        z = np.matmul(_transposed(self.params["W"]), x)
        z += self.params["b"]
        return z

    def backward(self, dout: Array, need_dx: bool = True) -> Array | None:
        np.matmul(self.x, _transposed(dout), out=self.grads["W"])
        _batch_sum(dout, out=self.grads["b"])
        return np.matmul(self.params["W"], dout) if need_dx else None


class Activation(Layer):
    """a = f(z) elementwise; backward multiplies by f'(z), written in terms of a.

    `inplace=True` overwrites its input in forward and its dout in backward: for a network whose
    layers hand over arrays nobody else holds (a Dense output, a fresh gradient)."""

    def __init__(self, name: str, alpha: float = 0.01, field: str = "activation", inplace: bool = False) -> None:
        super().__init__()
        self.act = acts.get(name, alpha=alpha, field=field)
        self.inplace = inplace
        self.a: Array = np.empty(0)

    def forward(self, x: Array, train: bool = False) -> Array:
        self.a = self.act.fn_(x) if self.inplace else self.act.fn(x)
        return self.a

    def backward(self, dout: Array, need_dx: bool = True) -> Array:
        return self.act.backward_(dout, self.a) if self.inplace else dout * self.act.grad(self.a)


class Dropout(Layer):
    """Inverted dropout: in training y = x * keep / (1 - p) with keep ~ Bernoulli(1 - p); identity in evaluation.

    `p` is a scalar or one rate per replica; each replica draws its mask from its own dropout stream.
    Setting `fixed_mask` replaces the random draw (for gradient checks).
    """

    def __init__(self, p: float | Array) -> None:
        super().__init__()
        self.p0 = np.asarray(p, dtype=float)
        self.fixed_mask: Array | None = None
        self.mask: Array = np.empty(0)

    def bind(self, n_replicas: int, batched: bool, dropout_rngs: list[np.random.Generator]) -> None:
        self.rngs, self.batched = dropout_rngs, batched
        p = np.broadcast_to(self.p0.reshape(-1), (n_replicas,)).copy()
        self.p = p.reshape(-1, 1, 1) if batched else p.reshape(1, 1)

    def take(self, rows: Array) -> None:
        self.rngs = [self.rngs[i] for i in rows]
        self.p = self.p[rows]

    def forward(self, x: Array, train: bool = False) -> Array:
        if not train:
            return x
        if self.fixed_mask is not None:
            self.mask = self.fixed_mask
        else:
            if self.batched:
                u = np.stack([g.random(x.shape[-2:]) for g in self.rngs])
            else:
                u = self.rngs[0].random(x.shape)
            self.mask = (u >= self.p) / (1.0 - self.p)
        return x * self.mask

    def backward(self, dout: Array, need_dx: bool = True) -> Array:
        return dout * self.mask


class BatchNorm(Layer):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta over the batch axis in training;
    running statistics (momentum-weighted) in evaluation."""

    def __init__(self, n: int, momentum: float = 0.9, eps: float = 1e-5) -> None:
        super().__init__()
        self.shapes = {"gamma": (n, 1), "beta": (n, 1)}
        self.momentum, self.eps, self.n = momentum, eps, n

    def initial(self, rng: np.random.Generator) -> dict[str, Array]:
        return {"gamma": np.ones((self.n, 1)), "beta": np.zeros((self.n, 1))}

    def bind(self, n_replicas: int, batched: bool, dropout_rngs: list[np.random.Generator]) -> None:
        shape = (n_replicas, self.n, 1) if batched else (self.n, 1)
        self.running_mean, self.running_var = np.zeros(shape), np.ones(shape)

    def take(self, rows: Array) -> None:
        self.running_mean, self.running_var = self.running_mean[rows], self.running_var[rows]

    def forward(self, x: Array, train: bool = False) -> Array:
        if train:
            n = x.shape[-1]
            mean = _batch_sum(x) / n
            xc = x - mean
            var = _batch_sum(xc * xc) / n
            m = self.momentum
            self.running_mean = m * self.running_mean + (1.0 - m) * mean
            self.running_var = m * self.running_var + (1.0 - m) * var
        else:
            xc, var = x - self.running_mean, self.running_var
        self.inv_std = 1.0 / np.sqrt(var + self.eps)
        self.xhat = xc * self.inv_std
        return self.xhat * self.params["gamma"] + self.params["beta"]

    def backward(self, dout: Array, need_dx: bool = True) -> Array:
        xhat = self.xhat
        _batch_sum(dout * xhat, out=self.grads["gamma"])
        _batch_sum(dout, out=self.grads["beta"])
        dxhat = dout * self.params["gamma"]
        n = dout.shape[-1]
        return self.inv_std * (dxhat - _batch_sum(dxhat) / n - xhat * (_batch_sum(dxhat * xhat) / n))
