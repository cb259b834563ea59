"""dasvit: Differentiable Architecture Search for Vision Transformers (DASViT, Wu, Neri & Feng, IJCNN 2025)."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dasvit.saved_model import Classifier

__version__ = "0.1.0"


def is_mlflow_uri(source: str | os.PathLike) -> bool:
    """``runs:/...``, ``models:/...``, ``s3://...``: a scheme of two letters or more (``C:/`` is a path)."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:/", str(source)) is not None


def load(source: str | os.PathLike, tracking_uri: str | None = None) -> Classifier:
    """A trained network, ready to classify: from a model folder (what ``dasvit retrain --out`` writes) or an MLflow
    model URI (``runs:/<run id>/model``, ``models:/<name>@champion``; the store is ``tracking_uri``, else
    ``$MLFLOW_TRACKING_URI``, else ``./mlflow.db``). The network is in eval mode; ``model.preprocess(image)`` turns a
    PIL image or an image file into its input, ``model.classify(images, top_k)`` names the classes.

    The ``dasvit`` core never needs MLflow: only an MLflow URI loads the platform (and MLflow) to fetch the model.
    """
    from dasvit.saved_model import load_model

    if is_mlflow_uri(source):
        from dasvit.platform.model_store import download_model
        from dasvit.platform.tracking import resolve_uri

        source = download_model(str(source), resolve_uri(tracking_uri))
    return load_model(source)
