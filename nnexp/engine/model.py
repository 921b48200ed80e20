"""The MLP as a spec (architecture by value), built into a `Network`, and a trained `Model` that
predicts in the data's own units and saves/loads without pickle (weights .npz + spec.json)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from nnexp.engine import activations, init
from nnexp.engine.data import Scaler
from nnexp.engine.layers import Activation, BatchNorm, Dense, Dropout, Layer
from nnexp.engine.network import Network
from nnexp.errors import ConfigError, choice

Array = np.ndarray
FORMAT = "nnexp-mlp/1"


@dataclass(frozen=True)
class MLPSpec:
    """sizes: layer widths, input first ([4, 6, 4, 1] is the seed baseline).

    Each hidden layer is Dense -> [BatchNorm] -> activation -> [Dropout]; the output layer is
    Dense -> output activation."""

    sizes: tuple[int, ...] = (4, 6, 4, 1)
    hidden_activation: str = "relu"
    output_activation: str = "sigmoid"
    init: str = "xavier_uniform"
    dropout: float = 0.0
    batch_norm: bool = False
    leaky_relu_alpha: float = 0.01

    def __post_init__(self) -> None:
        sizes = tuple(self.sizes)
        if len(sizes) < 2 or any(not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 1 for s in sizes):
            raise ConfigError("model.sizes", list(sizes),
                              "expected a list of at least two positive integers, input first (e.g. [4, 6, 4, 1])")
        object.__setattr__(self, "sizes", tuple(int(s) for s in sizes))
        choice("model.hidden_activation", self.hidden_activation, activations.ACTIVATIONS)
        choice("model.output_activation", self.output_activation, activations.ACTIVATIONS)
        choice("model.init", self.init, init.INITS)
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError("model.dropout", self.dropout, "expected a drop probability in [0, 1)")
        if not float(self.leaky_relu_alpha) > 0.0:
            raise ConfigError("model.leaky_relu_alpha", self.leaky_relu_alpha, "expected a slope > 0")

    @property
    def n_params(self) -> int:
        s = self.sizes
        dense = sum((a + 1) * b for a, b in zip(s[:-1], s[1:], strict=False))
        return dense + (2 * sum(s[1:-1]) if self.batch_norm else 0)

    def layers(self, dropout: float | Array | None = None) -> list[Layer]:
        """Fresh layers; `dropout` overrides the rate (one per replica in population training)."""
        rate = self.dropout if dropout is None else dropout
        out: list[Layer] = []
        pairs = list(zip(self.sizes[:-1], self.sizes[1:], strict=False))
        for i, (a, b) in enumerate(pairs):
            out.append(Dense(a, b, self.init))
            if i == len(pairs) - 1:
                out.append(Activation(self.output_activation, self.leaky_relu_alpha, "model.output_activation", True))
                break
            if self.batch_norm:
                out.append(BatchNorm(b))
            out.append(Activation(self.hidden_activation, self.leaky_relu_alpha, "model.hidden_activation", True))
            if np.any(np.asarray(rate) > 0):
                out.append(Dropout(rate))
        return out

    def build(self, seeds: int | Sequence[int] | Array, dropout_seeds: int | Sequence[int] | Array | None = None,
              dropout: float | Array | None = None, batched: bool | None = None) -> Network:
        """A network of len(seeds) replicas, replica r initialised from seeds[r]."""
        return Network(self.layers(dropout), np.atleast_1d(seeds), dropout_seeds, batched)


@dataclass
class Model:
    """A trained single network with the scaler of its data: predict() takes and returns original units."""

    spec: MLPSpec
    network: Network
    scaler: Scaler
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_state(cls, spec: MLPSpec, state: dict[str, Array], scaler: Scaler, meta: dict | None = None) -> Model:
        net = spec.build(0, batched=False)
        net.load_state(state)
        return cls(spec, net, scaler, meta or {})

    def predict(self, x: Array) -> Array:
        """x: (n, n_features) in the data's units -> (n,) predictions in the target's units."""
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.spec.sizes[0]:
            raise ValueError(f"expected inputs of shape (n, {self.spec.sizes[0]}), got {x.shape}")
        with np.errstate(over="ignore"):
            out = self.network.forward(np.ascontiguousarray(self.scaler.x(x).T), train=False)
        return self.scaler.y_inverse(out[0])

    def save(self, directory: str | Path) -> Path:
        """Write spec.json and weights.npz (no pickle) into `directory`."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        spec = {"format": FORMAT, "spec": asdict(self.spec), "scaler": self.scaler.to_dict(), "meta": self.meta}
        (d / "spec.json").write_text(json.dumps(spec, indent=2, default=list))
        np.savez(d / "weights.npz", **self.network.state(0))  # type: ignore[arg-type]
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Model:
        d = Path(directory)
        spec = json.loads((d / "spec.json").read_text())
        if spec.get("format") != FORMAT:
            raise ValueError(f"{d}: not an nnexp model (format {spec.get('format')!r}, expected {FORMAT!r})")
        s = spec["spec"]
        s["sizes"] = tuple(s["sizes"])
        with np.load(d / "weights.npz", allow_pickle=False) as z:
            state = {k: z[k] for k in z.files}
        return cls.from_state(MLPSpec(**s), state, Scaler.from_dict(spec["scaler"]), spec.get("meta", {}))
