"""The sweep's runs table in the MLflow UI, set up for first sight: its own runs only (filtered on the
study), best first on the objective, with the objective, test R², the sampled values and each
trial's state as columns. MLflow 3 keeps such a view as an experiment tag
`mlflow.sharedViewState.<key>` (what its "Share" button makes) and opens it from the link
`#/experiments/<id>?viewStateShareKey=<key>`, which the sweep prints at its end."""

from __future__ import annotations

import os
import re
from typing import Any

from nnexp.sweeps.settings import Settings


def view_key(study_name: str) -> str:
    return "nnexp-sweep-" + re.sub(r"[^A-Za-z0-9_.-]", "-", study_name)


def runs_view(settings: Settings) -> dict[str, Any]:
    """The view's state: the UI's search facets and table columns (names as the UI spells them)."""
    study = settings.study_name.replace("'", "\\'")
    columns = [f"metrics.`{settings.metric}`", "metrics.`test_r2`", "metrics.`val_mse`",
               *[f"params.`sampled.{p.name}`" for p in settings.space],
               "tags.`nnexp.trial_state`", "tags.`nnexp.trial_number`"]
    return {"searchFilter": f"tags.`optuna.study` = '{study}'", "orderByKey": f"metrics.`{settings.metric}`",
            "orderByAsc": not settings.maximize, "selectedColumns": list(dict.fromkeys(columns))}


def ui_link(experiment_id: str, study_name: str) -> str:
    """Where `make ui` shows the view (its default address; another PORT or server: the same path)."""
    port = os.environ.get("PORT", "5000")
    return f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs?viewStateShareKey={view_key(study_name)}"
