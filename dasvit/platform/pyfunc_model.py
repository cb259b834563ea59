"""What MLflow runs to rebuild a dasvit pyfunc model (models-from-code: the model is this file, not a pickle)."""

import mlflow

from dasvit.platform.model_store import ImageClassifierModel

mlflow.models.set_model(ImageClassifierModel())
