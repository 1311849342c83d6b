"""Standard and adversarial training with class-wise monitoring and exact resume."""

from classwise.train import fairness, longtail  # noqa: F401 - techniques register themselves where defined
from classwise.train.balance import TECHNIQUES, components, technique_options
from classwise.train.config import TrainConfig
from classwise.train.loop import TrainResult, prepare_data, train
from classwise.train.methods import METHODS, MethodOutput
from classwise.train.schedules import SCHEDULES
from classwise.train.selection import SELECTION
from classwise.train.track import Tracking

__all__ = [
    "METHODS",
    "SCHEDULES",
    "SELECTION",
    "TECHNIQUES",
    "MethodOutput",
    "Tracking",
    "TrainConfig",
    "TrainResult",
    "components",
    "prepare_data",
    "technique_options",
    "train",
]
