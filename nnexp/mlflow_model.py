"""MLflow models-from-code entry for an nnexp model: no pickle anywhere in the logged model.

MLflow runs this file when the model is logged and loaded; the weights and spec come from the
`model` artifact (spec.json + weights.npz, read with allow_pickle=False).
"""

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class NnexpModel(PythonModel):
    # predict() takes arrays or DataFrames and converts them itself: no type-hint based validation
    # (MLflow would otherwise warn on every log and load that predict() has no type hints)
    _skip_type_hint_validation = True

    def load_context(self, context):
        from nnexp.engine.model import Model

        self.model = Model.load(context.artifacts["model"])

    def predict(self, context, model_input, params=None):
        """model_input: (n, n_features) array or DataFrame in the data's units -> (n,) predictions."""
        values = model_input.to_numpy() if hasattr(model_input, "to_numpy") else model_input
        return self.model.predict(np.asarray(values, dtype=float))


mlflow.models.set_model(NnexpModel())
