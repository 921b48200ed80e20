"""A logged nnexp model, served: what MLflow calls to load it, the signature it is logged with, and
`load()`, which checks an artifact against its run before MLflow reads any of it.

Trust model. The artifact holds data only: `data/model/spec.json` and `data/model/weights.npz` (no
pickle) beside MLflow's `MLmodel` and environment files. The code that reads them is this module, from
the installed nnexp package: the `MLmodel` file names it as its `loader_module`, and nothing from the
artifact is imported or run (no `code` paths, no `python_model`, no cloudpickle). When a run logs its
model, the SHA-256 digests of the two data files and the model's id are recorded as tags on the run
(`nnexp.model_sha256`, `nnexp.model_id`): the tracking store is the reference, not a manifest inside the
artifact that whoever rewrites the artifact could rewrite too.

`load(model_uri)` downloads the artifact, checks its `MLmodel` (our loader module, no code, our data
directory, the signature of the spec's columns), its list of files and the data files' digests against
the run, and only then hands the checked copy to `mlflow.pyfunc.load_model`. `Model.load` (the engine)
checks both data files again, field by field, before allocating anything. Plain
`mlflow.pyfunc.load_model(uri)` and `mlflow models serve -m uri` skip the first check: MLflow acts on the
`MLmodel` file (it would put a `code` directory on sys.path) before our loader runs.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from nnexp.engine.model import Model
from nnexp.engine.modelfile import read_spec

LOADER = "nnexp.serving"  # this module: MLflow imports it from the installed package
DATA = "model"  # the data directory's name; MLflow keeps it under data/ in the artifact
DIGESTS_TAG = "nnexp.model_sha256"
MODEL_ID_TAG = "nnexp.model_id"
DATA_FILES = ("spec.json", "weights.npz")
ENV_FILES = ("MLmodel", "conda.yaml", "python_env.yaml", "requirements.txt")
DOWNLOAD_FILES = ("registered_model_meta",)  # written by MLflow into a downloaded copy
MLMODEL_MAX_BYTES = 64 * 1024
# what MLflow 3 writes into MLmodel for a loader_module model without input example; any other field
# (python_model, artifacts, model_config, predict_fn, cloudpickle_version, ...) is refused, and code must be null
MLMODEL_FIELDS = {"artifact_path", "flavors", "is_signature_from_type_hint", "mlflow_version", "model_id",
                  "model_size_bytes", "model_uuid", "prompts", "run_id", "signature", "type_hint_from_example",
                  "utc_time_created"}
PYFUNC_FIELDS = {"loader_module", "data", "env", "python_version", "code", "streamable"}


class Predictor:
    """What MLflow's pyfunc wrapper calls: predict() answers a DataFrame with one column named after the
    target, in the target's units; inputs are taken by column name (see `Model.predict`)."""

    def __init__(self, model: Model) -> None:
        self.model = model

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        y = self.model.predict(model_input)
        index = model_input.index if isinstance(model_input, pd.DataFrame) else None
        return pd.DataFrame({self.model.target_name: y}, index=index)

    def get_raw_model(self) -> Model:
        """The engine's model (MLflow's `PyFuncModel.get_raw_model()` returns it)."""
        return self.model


def _load_pyfunc(data_path: str) -> Predictor:
    """MLflow's loader_module entry: `data_path` is the artifact's data/model directory."""
    return Predictor(Model.load(data_path))


def signature(model: Model) -> Any:
    """Inputs: one double column per feature, named, in the data's order; output: one double column
    named after the target."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("double", f) for f in model.feature_names]),
                          outputs=Schema([ColSpec("double", model.target_name)]))


def sha256(path: Path) -> str:
    """A file's SHA-256, read in 1 MiB blocks (a file of any size costs no more memory)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def digests(directory: str | Path) -> dict[str, str]:
    """SHA-256 of each data file in a saved model's directory."""
    return {name: sha256(Path(directory) / name) for name in DATA_FILES}


@dataclass
class VerifiedModel:
    """A logged model checked against its run and loaded by MLflow. predict() is the model's own, strict
    by name: named columns in any order, a missing, unknown or repeated column refused; an unnamed array
    only if its width matches. (`pyfunc.predict` applies MLflow's schema enforcement instead, which
    ignores unknown columns with a warning.)"""

    pyfunc: Any  # mlflow.pyfunc.PyFuncModel
    run_id: str
    model_id: str

    @property
    def model(self) -> Model:
        return self.pyfunc.get_raw_model()

    def predict(self, data: Any) -> pd.DataFrame:
        return Predictor(self.model).predict(data)


def load(model_uri: str, tracking_uri: str | None = None) -> VerifiedModel:
    """Load `runs:/<run id>/model` or `models:/<model id>` after checking the artifact against the run
    that logged it (see the module's doc). Refusals are ValueErrors naming the URI and the problem.

    tracking_uri: the store holding the run (default: MLFLOW_TRACKING_URI, else the project's own)."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        local, run_id, model_id = _checked_copy(model_uri, tmp, tracking_uri)
        pyfunc = mlflow.pyfunc.load_model(str(local))
    return VerifiedModel(pyfunc, run_id, model_id)


def fetch(model_uri: str, destination: str | Path, tracking_uri: str | None = None) -> Path:
    """Download a logged model into `destination` and check it as `load` does, without loading it: the
    checked copy can then be served (`mlflow models serve -m <copy>`)."""
    Path(destination).mkdir(parents=True, exist_ok=True)
    return _checked_copy(model_uri, destination, tracking_uri)[0]


def _checked_copy(model_uri: str, destination: str | Path, tracking_uri: str | None) -> tuple[Path, str, str]:
    """The model's artifact downloaded from its own location in the given store (not through
    `models:/<id>`, which MLflow resolves against the process's global tracking URI) and checked."""
    import mlflow

    from nnexp.recording import resolve_uri

    uri = resolve_uri(tracking_uri)
    client = mlflow.MlflowClient(uri)
    run_id, model_id, sums = recorded(client, model_uri)
    location = client.get_logged_model(model_id).artifact_location
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(destination),
                                                     tracking_uri=uri))
    verify(local, sums, run_id, model_id, where=model_uri)
    return local, run_id, model_id


def recorded(client: Any, model_uri: str) -> tuple[str, str, dict[str, str]]:
    """(run id, model id, data-file digests) that the tracking store recorded for `model_uri`."""
    from mlflow.exceptions import MlflowException

    m = re.fullmatch(r"runs:/([0-9a-f]{32})/model/?|models:/(m-[0-9a-f]{32})/?", model_uri.strip())
    if not m:
        raise ValueError(f"{model_uri}: expected runs:/<run id>/model or models:/<model id> (nnexp checks a "
                         "model against the run that logged it; registered-model names are not supported)")
    try:
        run_id = m.group(1) or client.get_logged_model(m.group(2)).source_run_id
        tags = client.get_run(run_id).data.tags
    except MlflowException as e:
        raise ValueError(f"{model_uri}: not found in the tracking store {client.tracking_uri} ({e.message})") from e
    if DIGESTS_TAG not in tags or MODEL_ID_TAG not in tags:
        raise ValueError(f"{model_uri}: run {run_id} records no model digests (tags {DIGESTS_TAG}, {MODEL_ID_TAG}); "
                         "its model was not logged by this nnexp and cannot be checked")
    model_id = tags[MODEL_ID_TAG]
    if m.group(2) and m.group(2) != model_id:
        raise ValueError(f"{model_uri}: run {run_id} logged model {model_id}, not this one")
    try:
        sums = json.loads(tags[DIGESTS_TAG])
    except ValueError:
        sums = None
    if (not isinstance(sums, dict) or sorted(sums) != sorted(DATA_FILES)
            or not all(isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) for v in sums.values())):
        raise ValueError(f"{model_uri}: run {run_id} has a malformed {DIGESTS_TAG} tag")
    return run_id, model_id, sums


def verify(directory: Path, sums: Mapping[str, str], run_id: str, model_id: str, where: str = "") -> None:
    """Check a downloaded artifact before anything reads it as a model: only the expected files (no
    links), an MLmodel naming our loader and nothing to run, the ids of the run and model, the data
    files' digests, and a signature that is the spec's."""
    where = where or str(directory)
    _check_files(directory, where)
    doc = _read_mlmodel(directory / "MLmodel", where)
    _check_mlmodel(doc, run_id, model_id, where)
    for name in DATA_FILES:
        path = directory / "data" / DATA / name
        if sha256(path) != sums[name]:
            raise ValueError(f"{where}: {path.name} is not the file run {run_id} logged (its SHA-256 differs "
                             f"from the tag {DIGESTS_TAG}); refusing to load it")
    spec = read_spec(directory / "data" / DATA / "spec.json")
    expected = {"inputs": [{"type": "double", "name": f, "required": True} for f in spec.features],
                "outputs": [{"type": "double", "name": spec.target, "required": True}]}
    got = doc.get("signature") or {}
    try:
        found = {k: json.loads(got.get(k) or "null") for k in ("inputs", "outputs")}
    except (ValueError, TypeError, AttributeError):
        found = None
    if found != expected or got.get("params") is not None:
        raise ValueError(f"{where}: the MLmodel signature is not the one of spec.json's features "
                         f"{list(spec.features)} and target {spec.target!r}")


def _check_files(directory: Path, where: str) -> None:
    allowed = {*ENV_FILES, *DOWNLOAD_FILES, *(f"data/{DATA}/{n}" for n in DATA_FILES)}
    found = set()
    for p in directory.rglob("*"):
        rel = p.relative_to(directory).as_posix()
        if p.is_symlink() or not (p.is_dir() or p.is_file()):
            raise ValueError(f"{where}: {rel} is a link or a special file; the model holds plain files only")
        if p.is_file():
            found.add(rel)
    unexpected, missing = sorted(found - allowed), sorted(allowed - set(DOWNLOAD_FILES) - found)
    if unexpected or missing:
        raise ValueError(f"{where}: the artifact should hold {sorted(allowed - set(DOWNLOAD_FILES))}; "
                         + "; ".join(f"{label} {v}" for label, v in (("unexpected", unexpected),
                                                                    ("missing", missing)) if v))


def _read_mlmodel(path: Path, where: str) -> dict:
    import yaml

    with path.open("rb") as f:
        raw = f.read(MLMODEL_MAX_BYTES + 1)
    if len(raw) > MLMODEL_MAX_BYTES:
        raise ValueError(f"{where}: MLmodel is larger than {MLMODEL_MAX_BYTES:,} bytes")
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ValueError(f"{where}: MLmodel is not valid YAML ({str(e)[:200]})") from e
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: MLmodel is not a mapping")
    return doc


def _check_mlmodel(doc: dict, run_id: str, model_id: str, where: str) -> None:
    problems = [f"unexpected field {k!r}" for k in sorted(set(doc) - MLMODEL_FIELDS, key=str)]
    flavors = doc.get("flavors")
    if not isinstance(flavors, dict) or set(flavors) != {"python_function"}:
        problems.append(f"flavors {sorted(flavors or {}, key=str)} (expected python_function only)")
    conf = flavors.get("python_function") if isinstance(flavors, dict) else None
    if not isinstance(conf, dict):
        conf = {}
        problems.append("no python_function flavor")
    problems += [f"unexpected python_function field {k!r}" for k in sorted(set(conf) - PYFUNC_FIELDS, key=str)]
    for key, want in (("loader_module", LOADER), ("data", f"data/{DATA}"), ("code", None), ("streamable", False)):
        if conf.get(key) != want:
            problems.append(f"python_function.{key} = {conf.get(key)!r} (expected {want!r})")
    for key in ("is_signature_from_type_hint", "type_hint_from_example", "prompts"):
        if doc.get(key):
            problems.append(f"{key} = {doc.get(key)!r}")
    for key, want in (("run_id", run_id), ("model_id", model_id)):
        if doc.get(key) != want:
            problems.append(f"{key} = {doc.get(key)!r} (the run recorded {want!r})")
    if problems:
        raise ValueError(f"{where}: refusing an MLmodel that is not the one nnexp logs: {'; '.join(problems)}")

