"""Nonlinearity functions by name. Each is a pair: f(z) -> a, and df/dz written in terms of the output a,
plus the same two written in place (`fn_(z)` overwrites z with f(z); `backward_(dout, a)` overwrites
dout with dout * f'(z)), which a network uses on the arrays it owns: fewer passes over memory and no
allocation, with bit-for-bit the same results.

Writing the derivative from the output alone means an activation layer caches one array.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from nnexp.errors import choice

Array = np.ndarray


class Nonlinearity(NamedTuple):
    name: str
    fn: Callable[[Array], Array]  # a = f(z)
    grad: Callable[[Array], Array]  # df/dz as a function of a = f(z)
    fn_: Callable[[Array], Array]  # f(z) written into z
    backward_: Callable[[Array, Array], Array]  # dout * f'(z) written into dout, given a = f(z)


def _sigmoid_(z: Array) -> Array:
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1.0
    return np.reciprocal(z, out=z)


def _sigmoid_backward_(dout: Array, a: Array) -> Array:
    t = 1.0 - a
    t *= a
    dout *= t
    return dout


def _tanh_backward_(dout: Array, a: Array) -> Array:
    t = a * a
    np.subtract(1.0, t, out=t)
    dout *= t
    return dout


def _sigmoid(z: Array) -> Array:
    """sigma(z) = 1 / (1 + exp(-z)). exp overflows to inf for z < -709, giving the right limit 0; the
    training loop silences that warning once rather than paying for np.errstate on every call."""
    e = np.exp(np.negative(z))
    e += 1.0
    return np.reciprocal(e, out=e)


def relu() -> Nonlinearity:
    return Nonlinearity("relu", lambda z: np.maximum(z, 0.0), lambda a: a > 0.0,
                      lambda z: np.maximum(z, 0.0, out=z), lambda d, a: np.multiply(d, a > 0.0, out=d))


def leaky_relu(alpha: float = 0.01) -> Nonlinearity:
    """f(z) = z for z > 0, alpha * z otherwise (alpha > 0, so the sign of a is the sign of z)."""
    fn = lambda z: np.where(z > 0.0, z, alpha * z)  # noqa: E731
    grad = lambda a: np.where(a > 0.0, 1.0, alpha)  # noqa: E731
    return Nonlinearity("leaky_relu", fn, grad, fn, lambda d, a: np.multiply(d, grad(a), out=d))


def sigmoid() -> Nonlinearity:
    return Nonlinearity("sigmoid", _sigmoid, lambda a: a * (1.0 - a), _sigmoid_, _sigmoid_backward_)


def tanh() -> Nonlinearity:
    return Nonlinearity("tanh", np.tanh, lambda a: 1.0 - a * a, lambda z: np.tanh(z, out=z), _tanh_backward_)


def identity() -> Nonlinearity:
    return Nonlinearity("identity", lambda z: z, lambda a: np.ones_like(a), lambda z: z, lambda d, a: d)


ACTIVATIONS: dict[str, Callable[..., Nonlinearity]] = {
    "relu": relu,
    "leaky_relu": leaky_relu,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "identity": identity,
}


def get(name: str, *, alpha: float = 0.01, field: str = "activation") -> Nonlinearity:
    """Look an activation up by name; `alpha` is the leaky ReLU slope."""
    choice(field, name, ACTIVATIONS)
    return leaky_relu(alpha) if name == "leaky_relu" else ACTIVATIONS[name]()
