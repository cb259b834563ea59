"""Trained networks as MLflow models: logged with each retraining run, the sweep's champion in the Model Registry.

The MLflow model is a ``pyfunc`` wrapper around the dasvit model folder (``dasvit.saved_model``) rather than the
``mlflow.pytorch`` flavour: that flavour pickles the whole module and serves its raw ``forward``, so every caller
would have to normalise images itself; the wrapper keeps the safetensors weights, genotype and card as they are,
and takes images as pixels in [0, 1], which a REST client of ``mlflow models serve`` can send.
"""

from __future__ import annotations

import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException

with warnings.catch_warnings():  # its import warns about the type hints of MLflow's own model classes
    warnings.simplefilter("ignore", UserWarning)
    import mlflow.pyfunc
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from dasvit.data import ImageData
from dasvit.io import ModelError
from dasvit.saved_model import CARD, Classifier, load_model

MODEL_ARTIFACT = "model"  # the retraining run's artifact folder holding the MLflow model
FOLDER_KEY = "dasvit_model"  # the pyfunc artifact holding the dasvit model folder
CHAMPION = "champion"
SWEEP_TAG = "sweep_run_id"


class ImageClassifierModel(mlflow.pyfunc.PythonModel):
    """``predict``: a batch of images as float pixels in [0, 1], shape (N, C, H, W) at the trained size ->
    one row per image with the class ``label``, its ``class_index`` and its ``probability``."""

    def load_context(self, context: Any) -> None:
        self.classifier = load_model(context.artifacts[FOLDER_KEY])

    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return predictions(self.classifier, model_input)


def predictions(classifier: Classifier, pixels: np.ndarray) -> pd.DataFrame:
    """The pyfunc's answer for a batch of pixels in [0, 1]: each image's best class and its probability."""
    batch = classifier.preprocess.from_pixels(torch.as_tensor(np.asarray(pixels, dtype=np.float32)))
    best, index = classifier.probabilities(batch).max(-1)
    return pd.DataFrame({"label": [classifier.card.class_names[int(i)] for i in index],
                         "class_index": index.numpy().astype(np.int64), "probability": best.numpy().astype(np.float64)})


def _requirements() -> list[str]:
    """What loading the model needs besides dasvit itself (which a model cannot pin: it is not on PyPI)."""
    return [f"{name}=={metadata.version(name)}" for name in ("mlflow", "torch", "torchvision", "safetensors", "pandas")]


def example_pixels(data: ImageData, image_size: int, count: int = 4) -> np.ndarray:
    """The first ``count`` test images as the model takes them: pixels in [0, 1] at the trained size."""
    from torchvision.transforms import v2  # here, not at import: see dasvit.data

    pixels = torch.stack([data.test[i][0] for i in range(min(count, len(data.test)))])
    return v2.functional.resize(pixels, [image_size, image_size], antialias=True).numpy()


def log_model(client: MlflowClient, run_id: str, folder: str | Path, example_pixels: np.ndarray) -> str:
    """Log the model folder as the run's MLflow model (signature and input example from ``example_pixels``, a few
    real images); return its ``runs:/`` URI."""
    example = example_pixels.astype(np.float32)
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        # MLflow's advice on type hints and on integer columns that may hold missing values: the signature comes
        # from real images here, and a class index is never missing
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(example, predictions(load_model(folder), example))
        local = Path(tmp) / MODEL_ARTIFACT
        mlflow.pyfunc.save_model(local, python_model=str(Path(__file__).with_name("pyfunc_model.py")),
                                 artifacts={FOLDER_KEY: str(folder)}, signature=signature, input_example=example,
                                 pip_requirements=_requirements())
        client.log_artifacts(run_id, str(local), MODEL_ARTIFACT)
    return f"runs:/{run_id}/{MODEL_ARTIFACT}"


def _registry_source(uri: str, tracking_uri: str | None) -> str:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> where that version's files are, read from the registry
    of ``tracking_uri`` (MLflow's own resolution would use the process-wide registry URI instead)."""
    name, at, ref = uri.removeprefix("models:/").partition("@")
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if at:
        version = client.get_model_version_by_alias(name, ref).version
    else:
        name, _, version = name.rpartition("/")
        if not version.isdigit():
            raise ModelError(f"model {uri!r}: give models:/<name>@<alias> or models:/<name>/<version>")
    return client.get_model_version_download_uri(name, version)


def download_model(uri: str, tracking_uri: str | None = None) -> Path:
    """The dasvit model folder inside an MLflow model (``runs:/ID/model``, ``models:/NAME@ALIAS``, ...), downloaded."""
    try:
        source = _registry_source(uri, tracking_uri) if uri.startswith("models:/") else uri
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=tracking_uri))
    except (MlflowException, OSError) as err:
        raise ModelError(f"model {uri!r} cannot be fetched from MLflow: {err}") from None
    cards = sorted(local.rglob(CARD))
    if not cards:
        raise ModelError(f"model {uri!r} holds no dasvit model folder (no {CARD})")
    return cards[0].parent


def register_champion(client: MlflowClient, name: str, retrain_run_id: str, tags: dict[str, Any]) -> int:
    """Register the retraining run's model as a new version of ``name`` with the alias ``champion``; return the
    version. A sweep that already registered one (``tags[SWEEP_TAG]``: a resumed sweep) gets that version back."""
    for version in client.search_model_versions(f"name = '{name}'"):
        if version.tags.get(SWEEP_TAG) == str(tags[SWEEP_TAG]):
            return int(version.version)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Retrained DASViT genotypes; alias champion: the latest "
                                                         "sweep's best by its objective")
    source = f"{client.get_run(retrain_run_id).info.artifact_uri.rstrip('/')}/{MODEL_ARTIFACT}"
    version = client.create_model_version(name, source, run_id=retrain_run_id, tags={k: str(v) for k, v in tags.items()})
    client.set_registered_model_alias(name, CHAMPION, version.version)
    return int(version.version)
