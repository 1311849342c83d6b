"""Standard and adversarial training with class-wise monitoring and exact resume."""

from classwise.train.config import TrainConfig
from classwise.train.loop import TrainResult, prepare_data, train
from classwise.train.methods import METHODS, MethodOutput

__all__ = ["METHODS", "MethodOutput", "TrainConfig", "TrainResult", "prepare_data", "train"]
