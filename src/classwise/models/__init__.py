"""Architectures that take [0,1] images (normalisation inside), their registry and checkpoints."""

from classwise.models.base import MODELS, Backbone, ImageClassifier, ModelSpec, Normalize, Preprocessed
from classwise.models.checkpoint import (
    atomic_torch_save,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    torch_file,
)
from classwise.models.factory import count_parameters, create_model, model_from_spec, model_rows
from classwise.models.leaderboard import published

__all__ = [
    "MODELS",
    "Backbone",
    "ImageClassifier",
    "ModelSpec",
    "Normalize",
    "Preprocessed",
    "atomic_torch_save",
    "count_parameters",
    "create_model",
    "load_checkpoint",
    "model_from_spec",
    "model_rows",
    "published",
    "read_checkpoint",
    "save_checkpoint",
    "torch_file",
]
