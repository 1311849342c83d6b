"""Learning-rate schedules as registered functions of the fractional epoch t ∈ [0, epochs]:
``schedule(optim, t) -> lr``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from classwise.registry import Registry

Schedule = Callable[[Any, float], float]  # (OptimConfig, t) -> learning rate
SCHEDULES: Registry[Schedule] = Registry("schedule")


@SCHEDULES.register("piecewise")
def piecewise(o: Any, t: float) -> float:
    """×0.1 at each milestone (Madry; Rice et al. decay at 50% and 75% of the epochs)."""
    return float(o.lr * 0.1 ** sum(t >= m * o.epochs for m in o.milestones))


@SCHEDULES.register("cosine")
def cosine(o: Any, t: float) -> float:
    """Half a cosine from lr to 0."""
    return float(o.lr * 0.5 * (1 + math.cos(math.pi * min(t, o.epochs) / o.epochs)))


@SCHEDULES.register("onecycle")
def onecycle(o: Any, t: float) -> float:
    """Linear 0 → lr at 2/5 of the run → 0 (Wong et al.'s cyclic schedule for fast FGSM)."""
    peak = 0.4 * o.epochs
    return float(o.lr * (t / peak if t <= peak else max(0.0, (o.epochs - t) / (o.epochs - peak))))


@SCHEDULES.register("constant")
def constant(o: Any, t: float) -> float:
    """The same learning rate throughout."""
    return float(o.lr)


def learning_rate(optim: Any, t: float) -> float:
    """The learning rate of ``optim``'s schedule at fractional epoch ``t``."""
    return SCHEDULES.get(optim.schedule)(optim, t)
