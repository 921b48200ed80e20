"""Reading a saved model's files, everything checked before anything is allocated: spec.json (size,
schema, names, bounded sizes) and weights.npz (each member's .npy header against the spec before any
array is read, float64, finite). Every refusal is a ValueError naming the file and the problem."""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from nnexp.engine import activations, init
from nnexp.engine.data import Scaler
from nnexp.engine.model import (
    FORMAT,
    FORMATS,
    MAX_LAYERS,
    MAX_NAME,
    MAX_PARAMS,
    MAX_SPEC_BYTES,
    NPY_HEADER_MAX,
    MLPSpec,
    brief,
    count_params,
    default_feature_names,
    names_problem,
    state_shapes,
)
from nnexp.errors import ConfigError

Array = np.ndarray



@dataclass(frozen=True)
class ModelFile:
    """The checked contents of a spec.json."""

    spec: MLPSpec
    scaler: Scaler
    features: tuple[str, ...]
    target: str
    meta: dict


def _refuse(path: Path, problem: str) -> NoReturn:
    raise ValueError(f"{path}: {problem}")


def _finite(v: Any) -> bool:
    """A JSON number (not a boolean) that is a finite float."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _keys(path: Path, where: str, obj: Any, required: set[str], allowed: set[str]) -> dict:
    if not isinstance(obj, dict):
        _refuse(path, f"{where}: expected an object, got {type(obj).__name__}")
    missing, unknown = sorted(required - obj.keys()), sorted(obj.keys() - allowed)
    if missing or unknown:
        _refuse(path, f"{where}: " + "; ".join(f"{label} field(s) {v}" for label, v in
                                              (("missing", missing), ("unknown", unknown)) if v))
    return obj


def _read_json(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except OSError as e:
        _refuse(path, f"cannot read it ({e.strerror or e})")
    if len(raw) > MAX_SPEC_BYTES:
        _refuse(path, f"larger than {MAX_SPEC_BYTES:,} bytes, far more than a model spec needs")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as e:
        _refuse(path, f"not valid JSON ({type(e).__name__}: {str(e)[:200]})")
    return _keys(path, "the file", doc, {"format"}, {"format", "spec", "scaler", "meta", "features", "target"})


def read_spec(path: str | Path) -> ModelFile:
    """spec.json, checked whole: format tag, field names and types, activation and init names, layer
    sizes (small positive integers, at most MAX_PARAMS parameters in all), scaler vectors of the input
    width with finite values, and distinct feature names, one per input."""
    path = Path(path)
    doc = _read_json(path)
    fmt = doc["format"]
    if fmt not in FORMATS:
        _refuse(path, f"not an nnexp model: format {brief(fmt)}, expected {FORMAT!r}")
    named = {"features", "target"} if fmt == FORMAT else set()
    _keys(path, "the file", doc, {"format", "spec", "scaler"} | named, {"format", "spec", "scaler", "meta"} | named)
    spec = _spec(path, doc["spec"])
    n = spec.sizes[0]
    scaler = _scaler(path, doc["scaler"], n)
    features, target = default_feature_names(n), "y"
    if named:
        features, target = doc["features"], doc["target"]
        problem = names_problem(features, n)
        if problem:
            _refuse(path, f"features: {problem}")
        if not isinstance(target, str) or not 0 < len(target) <= MAX_NAME:
            _refuse(path, f"target: expected a name of 1 to {MAX_NAME} characters, got {brief(target)}")
    meta = doc.get("meta", {})
    if not isinstance(meta, dict):
        _refuse(path, f"meta: expected an object, got {type(meta).__name__}")
    return ModelFile(spec, scaler, tuple(features), target, meta)


def _spec(path: Path, s: Any) -> MLPSpec:
    names = {f.name for f in fields(MLPSpec)}
    s = _keys(path, "spec", s, names, names)
    sizes = s["sizes"]
    if (not isinstance(sizes, list) or not 2 <= len(sizes) <= MAX_LAYERS + 1
            or not all(type(v) is int and 1 <= v <= MAX_PARAMS for v in sizes)):
        _refuse(path, f"spec.sizes: expected 2 to {MAX_LAYERS + 1} layer widths, each an integer from 1 to "
                      f"{MAX_PARAMS:,}; got {brief(sizes)}")
    for key, options in (("hidden_activation", activations.ACTIVATIONS), ("output_activation", activations.ACTIVATIONS),
                         ("init", init.INITS)):
        if not isinstance(s[key], str) or s[key] not in options:
            _refuse(path, f"spec.{key}: {brief(s[key])} is not one of {', '.join(sorted(options))}")
    if type(s["batch_norm"]) is not bool:
        _refuse(path, f"spec.batch_norm: expected true or false, got {brief(s['batch_norm'])}")
    if not _finite(s["dropout"]) or not 0 <= s["dropout"] < 1:
        _refuse(path, f"spec.dropout: expected a probability in [0, 1), got {brief(s['dropout'])}")
    if not _finite(s["leaky_relu_alpha"]) or not s["leaky_relu_alpha"] > 0:
        _refuse(path, f"spec.leaky_relu_alpha: expected a number > 0, got {brief(s['leaky_relu_alpha'])}")
    n_params = count_params(sizes, s["batch_norm"])
    if n_params > MAX_PARAMS:
        _refuse(path, f"spec.sizes {brief(sizes)} make {n_params:,} parameters, more than the {MAX_PARAMS:,} "
                      "a model file may hold")
    try:
        return MLPSpec(**{**s, "sizes": tuple(sizes)})
    except ConfigError as e:
        _refuse(path, f"spec: {e}")


def _scaler(path: Path, sc: Any, n: int) -> Scaler:
    keys = {"x_mean", "x_std", "y_min", "y_range"}
    sc = _keys(path, "scaler", sc, keys, keys)
    for key in ("x_mean", "x_std"):
        v = sc[key]
        if not isinstance(v, list) or len(v) != n or not all(_finite(e) for e in v):
            _refuse(path, f"scaler.{key}: expected {n} finite numbers (one per input), got {brief(v)}")
    if not all(e > 0 for e in sc["x_std"]):
        _refuse(path, f"scaler.x_std: expected standard deviations > 0, got {brief(sc['x_std'])}")
    if not _finite(sc["y_min"]):
        _refuse(path, f"scaler.y_min: expected a finite number, got {brief(sc['y_min'])}")
    if not _finite(sc["y_range"]) or not sc["y_range"] > 0:
        _refuse(path, f"scaler.y_range: expected a finite number > 0, got {brief(sc['y_range'])}")
    return Scaler.from_dict(sc)


def read_weights(path: str | Path, spec: MLPSpec) -> dict[str, Array]:
    """weights.npz as `Network.state` arrays for `spec`: the archive's size, its member names, and each
    member's .npy header (shape, float64) are checked against the spec before any array is read
    (allow_pickle=False); then every value must be finite and running variances >= 0."""
    path = Path(path)
    want = state_shapes(spec)
    limit = sum(8 * math.prod(s) + NPY_HEADER_MAX + 1024 for s in want.values())
    try:
        size = path.stat().st_size
    except OSError as e:
        _refuse(path, f"cannot read it ({e.strerror or e})")
    if size > limit:
        _refuse(path, f"{size:,} bytes, more than the {spec.n_params:,} parameters of the spec can take")
    try:
        with zipfile.ZipFile(path) as zf:
            members = _members(path, zf, want)
            state = {key: _read_member(path, zf, info, want[key]) for key, info in members.items()}
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError) as e:
        _refuse(path, f"not a readable .npz archive ({type(e).__name__}: {str(e)[:200]})")
    negative = [k for k, a in state.items() if k.endswith("running_var") and (a < 0).any()]
    if negative:
        _refuse(path, f"{negative}: negative running variances")
    return state


def _members(path: Path, zf: zipfile.ZipFile, want: dict[str, tuple[int, ...]]) -> dict[str, zipfile.ZipInfo]:
    infos = zf.infolist()
    names = [i.filename for i in infos]
    expected = {f"{k}.npy" for k in want}
    missing, unexpected = sorted(expected - set(names)), sorted(set(names) - expected)
    if missing or unexpected or len(names) != len(set(names)):
        _refuse(path, f"members {brief(sorted(names))} do not match the spec's arrays {sorted(expected)}")
    members = {}
    for info in infos:
        key = info.filename[: -len(".npy")]
        shape, dtype, header = _header(path, zf, info)
        if shape != want[key] or dtype.kind != "f" or dtype.itemsize != 8:
            _refuse(path, f"{info.filename}: {dtype} values of shape {brief(shape)}; the spec needs float64 "
                          f"values of shape {want[key]}")
        if info.file_size != header + 8 * math.prod(shape):
            _refuse(path, f"{info.filename}: {info.file_size:,} bytes, expected {header + 8 * math.prod(shape):,}")
        members[key] = info
    return members


def _header(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype, int]:
    """A member's .npy header (shape, dtype, header length), read without reading the array."""
    fmt = np.lib.format
    with zf.open(info) as f:
        try:
            version = fmt.read_magic(f)
            read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
            if read is None:
                raise ValueError(f".npy format version {version} is not supported")
            shape, _, dtype = read(f, max_header_size=NPY_HEADER_MAX)
        except (ValueError, SyntaxError, TypeError) as e:
            _refuse(path, f"{info.filename}: not a readable .npy array ({str(e)[:200]})")
        return tuple(shape), np.dtype(dtype), f.tell()


def _read_member(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, shape: tuple[int, ...]) -> Array:
    with zf.open(info) as f:
        a = np.lib.format.read_array(f, allow_pickle=False, max_header_size=NPY_HEADER_MAX)
    if a.shape != shape or a.dtype.kind != "f" or a.dtype.itemsize != 8:
        _refuse(path, f"{info.filename}: changed while it was read")
    if not np.isfinite(a).all():
        _refuse(path, f"{info.filename}: NaN or infinite values")
    return a.astype(np.float64, copy=False)
