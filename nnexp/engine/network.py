"""A stack of layers trained as R replicas at once, its parameters packed in one flat buffer.

`flat` has shape (R, P): row r holds every parameter of replica r, and each layer's `params[k]` is a
view into it (likewise `grad` and `grads[k]`). Optimizers then update all parameters of all replicas
with a handful of NumPy calls on (R, P) arrays, whatever the depth of the network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import numpy as np

from nnexp.engine.layers import Layer

Array = np.ndarray

INIT_STREAM, SHUFFLE_STREAM, DROPOUT_STREAM = 0, 1, 2


def stream(seed: int, kind: int) -> np.random.Generator:
    """The random stream `kind` (init, shuffle or dropout) of a replica with seed `seed`."""
    return np.random.default_rng([int(seed), kind])


class Network:
    """Layers applied in order; R replicas, each initialised from its own seed's init stream.

    `batched=False` (the default for R = 1) drops the replica axis from every array, so a single
    run pays nothing for the replica machinery.
    """

    def __init__(
        self,
        layers: list[Layer],
        init_seeds: int | Sequence[int] | Array,
        dropout_seeds: int | Sequence[int] | Array | None = None,
        batched: bool | None = None,
    ) -> None:
        init_seeds = [int(s) for s in np.atleast_1d(init_seeds)]
        dropout_seeds = init_seeds if dropout_seeds is None else [int(s) for s in np.atleast_1d(dropout_seeds)]
        if len(dropout_seeds) != len(init_seeds):
            raise ValueError("dropout_seeds: expected one per replica")
        self.layers = layers
        self.R = len(init_seeds)
        self.batched = self.R > 1 if batched is None else batched
        self.entries = [(layer, k, shape) for layer in layers for k, shape in layer.shapes.items()]
        self.n_params = sum(math.prod(shape) for _, _, shape in self.entries)
        self.flat = np.empty((self.R, self.n_params))
        for r, seed in enumerate(init_seeds):
            rng = stream(seed, INIT_STREAM)
            values = [layer.initial(rng) for layer in layers]
            self.flat[r] = np.concatenate([v.ravel() for d in values for v in d.values()] or [np.empty(0)])
        self.grad = np.zeros_like(self.flat)
        self.decay_mask = np.concatenate(
            [np.full(math.prod(shape), float(k in layer.decayed)) for layer, k, shape in self.entries] or [np.empty(0)]
        )
        self._bind()
        rngs = [stream(s, DROPOUT_STREAM) for s in dropout_seeds]
        for layer in layers:
            layer.bind(self.R, self.batched, rngs)

    def _bind(self) -> None:
        """Point every layer's params/grads at views of the flat buffers."""
        offset = 0
        for layer, k, shape in self.entries:
            size = math.prod(shape)
            layer.params[k] = self._view(self.flat, offset, size, shape)
            layer.grads[k] = self._view(self.grad, offset, size, shape)
            offset += size

    def _view(self, buf: Array, offset: int, size: int, shape: tuple[int, ...]) -> Array:
        block = buf[:, offset : offset + size]
        view = block.reshape((self.R, *shape)) if self.batched else block[0].reshape(shape)
        assert np.shares_memory(view, buf), "parameter view must alias the flat buffer"
        return view

    def forward(self, x: Array, train: bool = False) -> Array:
        """x: (n_in, batch), or (R, n_in, batch) when batched -> (R, n_out, batch) / (n_out, batch).

        An unbatched x of shape (n_in, batch) is shared by every replica of a batched network."""
        for layer in self.layers:
            x = layer.forward(x, train)
        return x

    def backward(self, dout: Array) -> None:
        """Write d loss / d params into `grad`, given d loss / d output."""
        for layer in self.layers[:0:-1]:
            dout = cast(Array, layer.backward(dout))
        self.layers[0].backward(dout, need_dx=False)  # nothing upstream needs d loss / d input

    def take(self, rows: Sequence[int] | Array) -> None:
        """Keep only the replicas `rows` (in that order), e.g. to drop finished ones from the pass."""
        rows = np.asarray(rows, dtype=int)
        if not self.batched:
            if rows.tolist() != [0]:
                raise ValueError("an unbatched network holds one replica")
            return
        self.flat, self.grad = self.flat[rows], self.grad[rows]
        self.R = len(rows)
        self._bind()
        for layer in self.layers:
            layer.take(rows)

    def state(self, r: int) -> dict[str, Array]:
        """Replica r's parameters and running statistics, by name (no replica axis)."""
        out = {"params": self.flat[r].copy()}
        for i, layer in enumerate(self.layers):
            for name in ("running_mean", "running_var"):
                if hasattr(layer, name):
                    value = getattr(layer, name)
                    out[f"layer{i}.{name}"] = (value[r] if self.batched else value).copy()
        return out

    def load_state(self, state: dict[str, Array], r: int = 0) -> None:
        """Write a `state()` dict into replica r."""
        self.flat[r] = state["params"]
        for i, layer in enumerate(self.layers):
            for name in ("running_mean", "running_var"):
                key = f"layer{i}.{name}"
                if key in state:
                    target = getattr(layer, name)
                    if self.batched:
                        target[r] = state[key]
                    else:
                        target[...] = state[key]
