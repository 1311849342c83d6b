"""Datasets as uint8 tensors with class names; official loaders, splits, and device-side batching."""

from classwise.data.catalog import dataset_rows, load_dataset, locate
from classwise.data.dataset import (
    Dataset,
    LabeledImages,
    class_subset,
    long_tail_counts,
    long_tailed,
    per_class_subset,
    validation_split,
    without_classes,
)
from classwise.data.files import data_root
from classwise.data.loader import Augment, BatchIterator, augment_batch
from classwise.data.official import DATASETS, DatasetSpec

__all__ = [
    "DATASETS",
    "Augment",
    "BatchIterator",
    "Dataset",
    "DatasetSpec",
    "LabeledImages",
    "augment_batch",
    "class_subset",
    "data_root",
    "dataset_rows",
    "load_dataset",
    "locate",
    "long_tail_counts",
    "long_tailed",
    "per_class_subset",
    "validation_split",
    "without_classes",
]
