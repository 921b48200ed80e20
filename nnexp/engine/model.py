"""The MLP as a spec (architecture by value), built into a `Network`, and a trained `Model` that
predicts in the data's own units, takes its inputs by column name, and saves/loads without pickle
(spec.json + weights.npz).

Loading trusts neither file: spec.json is read whole (a bounded size) and checked field by field, and
every member of weights.npz is checked against the spec from its .npy header before any array is read,
so a file cannot make `Model.load` allocate or run anything it did not check first. Every refusal is a
ValueError naming the file and the problem.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnexp.engine import activations, init
from nnexp.engine.data import Scaler
from nnexp.engine.layers import Activation, BatchNorm, Dense, Dropout, Layer
from nnexp.engine.network import Network
from nnexp.errors import ConfigError, choice

Array = np.ndarray
FORMAT = "nnexp-mlp/2"  # spec.json with the feature and target names
FORMATS = ("nnexp-mlp/1", FORMAT)  # /1 (before names were kept) loads with features x1..xn and target y
MAX_SPEC_BYTES = 1 << 20  # a spec with 1,000 feature names of 256 characters is ~300 KB
MAX_PARAMS = 10_000_000  # 80 MB of float64 weights; the seed's network has 63
MAX_LAYERS = 64
MAX_NAME = 256
NPY_HEADER_MAX = 10_000  # numpy's own bound on a .npy header


def count_params(sizes: Sequence[int], batch_norm: bool) -> int:
    """Weights and biases of every Dense layer, plus gamma and beta of each hidden batch norm."""
    dense = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=False))
    return dense + (2 * sum(sizes[1:-1]) if batch_norm else 0)


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
        return count_params(self.sizes, self.batch_norm)

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



def state_shapes(spec: MLPSpec) -> dict[str, tuple[int, ...]]:
    """The arrays of `Network.state` for `spec`, by name: the flat parameters, and the running
    statistics of each batch-norm layer (named by its index in `spec.layers()`)."""
    out: dict[str, tuple[int, ...]] = {"params": (spec.n_params,)}
    for i, layer in enumerate(spec.layers()):
        if isinstance(layer, BatchNorm):
            out[f"layer{i}.running_mean"] = out[f"layer{i}.running_var"] = (layer.n, 1)
    return out


def brief(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + " ...]"


def default_feature_names(n: int) -> tuple[str, ...]:
    return tuple(f"x{i + 1}" for i in range(n))


def names_problem(names: Any, n: int) -> str | None:
    """Why `names` cannot be the names of n input columns (None if they can)."""
    if not isinstance(names, (list, tuple)) or len(names) != n:
        return f"expected a list of {n} names (one per input), got {brief(names)}"
    bad = [v for v in names if not isinstance(v, str) or not 0 < len(v) <= MAX_NAME]
    if bad:
        return f"expected names of 1 to {MAX_NAME} characters, got {brief(bad)}"
    twice = sorted(k for k, c in Counter(names).items() if c > 1)
    return f"names must be distinct: {brief(twice)} appear more than once" if twice else None


@dataclass
class Model:
    """A trained single network with the scaler of its data and the names of its input columns and its
    target: predict() takes inputs by name (or an array in training order) and answers in the target's
    units."""

    spec: MLPSpec
    network: Network
    scaler: Scaler
    meta: dict = field(default_factory=dict)
    feature_names: tuple[str, ...] = ()
    target_name: str = "y"

    def __post_init__(self) -> None:
        n = self.spec.sizes[0]
        names = tuple(self.feature_names) or default_feature_names(n)
        problem = names_problem(list(names), n)
        if problem:
            raise ValueError(f"feature names: {problem}")
        if not isinstance(self.target_name, str) or not 0 < len(self.target_name) <= MAX_NAME:
            raise ValueError(f"target name: expected 1 to {MAX_NAME} characters, got {brief(self.target_name)}")
        self.feature_names = names

    @classmethod
    def from_state(cls, spec: MLPSpec, state: dict[str, Array], scaler: Scaler, meta: dict | None = None,
                   feature_names: Sequence[str] | None = None, target_name: str = "y") -> Model:
        net = spec.build(0, batched=False)
        net.load_state(state)
        return cls(spec, net, scaler, meta or {}, tuple(feature_names or ()), target_name)

    def predict(self, x: Any) -> Array:
        """x: the features in the data's units -> (n,) predictions in the target's units.

        Named columns (a mapping of name -> values, or a DataFrame) are taken by name in any order; a
        missing, unknown or repeated column is refused. An unnamed (n, n_features) array is taken in
        the training order. NaN or infinite inputs are refused."""
        x = self.inputs(x)
        with np.errstate(over="ignore"):
            out = self.network.forward(np.ascontiguousarray(self.scaler.x(x).T), train=False)
        return self.scaler.y_inverse(out[0])

    def inputs(self, x: Any) -> Array:
        """x as an (n, n_features) float array in the training order, checked (see predict)."""
        names = column_names(x)
        a = self._by_position(x) if names is None else self._by_name(x, names)
        bad = ~np.isfinite(a)
        if bad.any():
            cols = [self.feature_names[j] for j in np.flatnonzero(bad.any(axis=0))]
            raise ValueError(f"inputs hold NaN or infinite values in column(s) {cols} "
                             f"(first in row {int(np.argwhere(bad)[0][0])})")
        return a

    def _by_position(self, x: Any) -> Array:
        n = self.spec.sizes[0]
        a = np.asarray(x)
        if a.ndim != 2 or a.shape[1] != n:
            raise ValueError(f"expected inputs of shape (n, {n}), got {a.shape}: an unnamed array holds the "
                             f"columns {list(self.feature_names)} in this order (or pass named columns)")
        if a.dtype.kind not in "iuf":
            raise ValueError(f"expected numeric inputs, got an array of {a.dtype}")
        return a.astype(float)

    def _by_name(self, x: Any, names: list[Any]) -> Array:
        features = self.feature_names
        missing = [f for f in features if f not in names]
        unknown = [c for c in names if c not in features]
        twice = [k for k, c in Counter(names).items() if c > 1]
        if missing or unknown or twice:
            parts = [f"{label} {v}" for label, v in (("missing", missing), ("unknown", unknown),
                                                     ("repeated", twice)) if v]
            hint = (" (a table without column names: name its columns, or pass an array in this order)"
                    if names and all(isinstance(c, (int, np.integer)) for c in names) else "")
            raise ValueError(f"input columns do not match the model's: {'; '.join(parts)}. The model takes "
                             f"{len(features)} named columns, in any order: {list(features)}{hint}")
        cols = []
        for f in features:
            v = np.atleast_1d(np.asarray(x[f]))
            if v.ndim != 1 or v.dtype.kind not in "iuf":
                raise ValueError(f"input column {f!r}: expected one number per row, got {v.dtype} values "
                                 f"of shape {v.shape}")
            cols.append(v.astype(float))
        if len({len(c) for c in cols}) > 1:
            lengths = {f: len(c) for f, c in zip(features, cols, strict=True)}
            raise ValueError(f"input columns have different lengths: {lengths}")
        return np.stack(cols, axis=1)

    def save(self, directory: str | Path) -> Path:
        """Write spec.json and weights.npz (no pickle) into `directory`."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        spec = {"format": FORMAT, "spec": asdict(self.spec), "features": list(self.feature_names),
                "target": self.target_name, "scaler": self.scaler.to_dict(), "meta": self.meta}
        (d / "spec.json").write_text(json.dumps(spec, indent=2, default=list))
        np.savez(d / "weights.npz", **self.network.state(0))  # type: ignore[arg-type]
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Model:
        """Read a saved model, checking both files before building anything (see the module's doc)."""
        d = Path(directory)
        from nnexp.engine.modelfile import read_spec, read_weights

        f = read_spec(d / "spec.json")
        state = read_weights(d / "weights.npz", f.spec)
        return cls.from_state(f.spec, state, f.scaler, f.meta, f.features, f.target)


def column_names(x: Any) -> list[Any] | None:
    """The column names of a mapping (its keys) or a table with `columns` (a pandas DataFrame); None for
    anything unnamed (arrays, nested lists)."""
    if isinstance(x, Mapping):
        return list(x.keys())
    columns = getattr(x, "columns", None)
    if columns is not None and not isinstance(x, np.ndarray):
        return list(columns)
    return None
