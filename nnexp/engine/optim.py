"""Optimizers as composable gradient transformations (in the style of optax).

A transformation is a pair `init(params) -> state` and
`update(grads, state, params, lr) -> (updates, state)`; the caller applies `params -= updates`.
`params` and `grads` are (R, P) arrays, one row per replica, and `lr` is the current learning rate
as an (R, 1) array (it comes from a schedule, a pure function of the epoch). Every hyperparameter may
be a scalar or one value per replica; it is broadcast to (R, 1) in the state, so dropping replicas
from a pass (`take_rows`) keeps each replica's own settings.

    sgd with momentum = chain(scale_by_lr(), trace(momentum))   # v = mu v + lr g; w -= v (the seed)
    adam              = chain(scale_by_adam(b1, b2, eps), scale_by_lr())
    + L2              = chain(add_l2(l2, mask), <any of the above>)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from nnexp.engine import losses
from nnexp.errors import choice

Array = np.ndarray
State = Any


class Transform(NamedTuple):
    init: Callable[[Array], State]
    update: Callable[[Array, State, Array, Array], tuple[Array, State]]


def _hyper(value: float | Array, n: int) -> Array:
    """A scalar or (n,) hyperparameter as an (n, 1) array."""
    a = np.asarray(value, dtype=float).reshape(-1, 1)
    return np.broadcast_to(a, (n, 1)).copy()


def chain(*transforms: Transform) -> Transform:
    """Apply transformations in order, each to the updates of the previous one."""

    def init(params: Array) -> State:
        return tuple(t.init(params) for t in transforms)

    def update(grads: Array, state: State, params: Array, lr: Array) -> tuple[Array, State]:
        new_state = []
        for t, s in zip(transforms, state, strict=True):
            grads, s = t.update(grads, s, params, lr)
            new_state.append(s)
        return grads, tuple(new_state)

    return Transform(init, update)


def scale_by_lr() -> Transform:
    """u = lr * g."""
    return Transform(lambda params: (), lambda g, s, p, lr: (lr * g, s))


def trace(momentum: float | Array, nesterov: bool = False) -> Transform:
    """v = momentum * v + u; the update is v, or momentum * v + u with Nesterov."""

    def init(params: Array) -> State:
        return {"v": np.zeros_like(params), "mu": _hyper(momentum, len(params))}

    def update(u: Array, s: State, params: Array, lr: Array) -> tuple[Array, State]:
        v = s["mu"] * s["v"] + u
        out = s["mu"] * v + u if nesterov else v
        return out, {"v": v, "mu": s["mu"]}

    return Transform(init, update)


def scale_by_adam(b1: float | Array = 0.9, b2: float | Array = 0.999, eps: float | Array = 1e-8) -> Transform:
    """m = b1 m + (1 - b1) g; s = b2 s + (1 - b2) g^2; u = m_hat / (sqrt(s_hat) + eps) with bias correction."""

    def init(params: Array) -> State:
        n = len(params)
        return {"m": np.zeros_like(params), "s": np.zeros_like(params), "t": 0,
                "b1": _hyper(b1, n), "b2": _hyper(b2, n), "eps": _hyper(eps, n)}

    def update(g: Array, state: State, params: Array, lr: Array) -> tuple[Array, State]:
        t = state["t"] + 1
        m = state["b1"] * state["m"] + (1.0 - state["b1"]) * g
        s = state["b2"] * state["s"] + (1.0 - state["b2"]) * (g * g)
        m_hat, s_hat = m / (1.0 - state["b1"] ** t), s / (1.0 - state["b2"] ** t)
        return m_hat / (np.sqrt(s_hat) + state["eps"]), {**state, "m": m, "s": s, "t": t}

    return Transform(init, update)


def scale_by_rms(rho: float | Array = 0.9, eps: float | Array = 1e-8) -> Transform:
    """RMSprop: s = rho s + (1 - rho) g^2; u = g / (sqrt(s) + eps)."""

    def init(params: Array) -> State:
        n = len(params)
        return {"s": np.zeros_like(params), "rho": _hyper(rho, n), "eps": _hyper(eps, n)}

    def update(g: Array, state: State, params: Array, lr: Array) -> tuple[Array, State]:
        s = state["rho"] * state["s"] + (1.0 - state["rho"]) * (g * g)
        return g / (np.sqrt(s) + state["eps"]), {**state, "s": s}

    return Transform(init, update)


def scale_by_adagrad(eps: float | Array = 1e-8) -> Transform:
    """AdaGrad: s = s + g^2; u = g / (sqrt(s) + eps)."""

    def init(params: Array) -> State:
        return {"s": np.zeros_like(params), "eps": _hyper(eps, len(params))}

    def update(g: Array, state: State, params: Array, lr: Array) -> tuple[Array, State]:
        s = state["s"] + g * g
        return g / (np.sqrt(s) + state["eps"]), {**state, "s": s}

    return Transform(init, update)


def add_l2(strength: float | Array, mask: Array) -> Transform:
    """g + l2 * w on the weights (mask = 1), the gradient of (l2 / 2) * sum(w^2)."""
    return Transform(
        lambda params: {"l2": _hyper(strength, len(params))},
        lambda g, s, p, lr: (g + losses.l2_penalty(p, s["l2"], mask)[1], s),
    )


def add_l1(strength: float | Array, mask: Array) -> Transform:
    """g + l1 * sign(w) on the weights (mask = 1), the (sub)gradient of l1 * sum(|w|)."""
    return Transform(
        lambda params: {"l1": _hyper(strength, len(params))},
        lambda g, s, p, lr: (g + losses.l1_penalty(p, s["l1"], mask)[1], s),
    )


def _nonzero(x: float | Array) -> bool:
    return bool(np.any(np.asarray(x, dtype=float) != 0.0))


OPTIMIZERS = ("sgd", "sgd_momentum", "adam", "rmsprop", "adagrad")


def make(
    name: str,
    *,
    momentum: float | Array = 0.0,
    nesterov: bool = False,
    beta1: float | Array = 0.9,
    beta2: float | Array = 0.999,
    rho: float | Array = 0.9,
    eps: float | Array = 1e-8,
    l1: float | Array = 0.0,
    l2: float | Array = 0.0,
    decay_mask: Array | None = None,
) -> Transform:
    """Build a named optimizer with optional L1/L2 penalties on the weights (decay_mask marks them)."""
    choice("optimizer.name", name, OPTIMIZERS)
    if name in ("sgd", "sgd_momentum"):
        core = [scale_by_lr()] + ([trace(momentum, nesterov)] if _nonzero(momentum) or nesterov else [])
    else:
        scale = {"adam": lambda: scale_by_adam(beta1, beta2, eps), "rmsprop": lambda: scale_by_rms(rho, eps),
                 "adagrad": lambda: scale_by_adagrad(eps)}[name]()
        core = [scale, scale_by_lr()]
    links = []
    if _nonzero(l1) or _nonzero(l2):
        if decay_mask is None:
            raise ValueError("L1/L2 penalties need decay_mask (which parameters are weights)")
        links += [add_l1(l1, decay_mask)] if _nonzero(l1) else []
        links += [add_l2(l2, decay_mask)] if _nonzero(l2) else []
    return chain(*links, *core)


def take_rows(state: State, rows: Array, n: int) -> State:
    """Keep the replicas `rows` of every per-replica array (leading axis of length n) in a state."""
    if isinstance(state, dict):
        return {k: take_rows(v, rows, n) for k, v in state.items()}
    if isinstance(state, tuple):
        return tuple(take_rows(v, rows, n) for v in state)
    if isinstance(state, np.ndarray) and state.ndim and state.shape[0] == n:
        return state[rows]
    return state
