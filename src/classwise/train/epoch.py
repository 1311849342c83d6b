"""One training epoch: the step every method shares (the method's per-example loss under the
technique's ε, β and criterion, the technique's reduction, backward, update) and its running
per-class statistics, run eagerly or as a CUDA graph by :class:`~classwise.train.step.TrainStep`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from classwise.compute import autocast
from classwise.data import BatchIterator, LabeledImages
from classwise.data.dataset import unit_images
from classwise.evaluate.geometry import frozen_eval
from classwise.progress import progress_bar
from classwise.train.balance import Balance
from classwise.train.methods import Knobs, Method
from classwise.train.schedules import learning_rate
from classwise.train.step import Body, TrainStep


@dataclass(frozen=True)
class Compute:
    """How a run's arithmetic runs: ``precision`` (``fp32`` or ``bf16`` autocast) and whether the
    model and batches are channels_last (see ``classwise.compute``)."""

    precision: str
    channels_last: bool

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "channels_last": self.channels_last}


@dataclass(frozen=True)
class EpochTotals:
    """Per-class images seen and correctly classified, the summed predicted probabilities per true
    class (K, K), and the summed loss, of one epoch. They stay on the device: reading them back
    (``.item()``, CUDA ``bincount``) would stall the GPU every step, so they are read only when the
    progress bar refreshes and at the end of the epoch."""

    seen: torch.Tensor
    correct: torch.Tensor
    probs: torch.Tensor
    loss: torch.Tensor

    @classmethod
    def zeros(cls, num_classes: int, device: torch.device) -> EpochTotals:
        return cls(
            torch.zeros(num_classes, device=device),
            torch.zeros(num_classes, device=device),
            torch.zeros(num_classes, num_classes, device=device),
            torch.zeros((), device=device),
        )

    def class_accuracy(self) -> torch.Tensor:
        """Running training accuracy of each class (0 for a class not seen yet)."""
        return self.correct / self.seen.clamp_min(1)

    def class_probs(self) -> torch.Tensor:
        """(K, K): row i is the mean predicted probability vector of the class-i inputs seen."""
        return self.probs / self.seen.clamp_min(1)[:, None]


def step_body(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    method: Method,
    balance: Balance,
    epoch: int,
    generator: torch.Generator,
    totals: EpochTotals,
    precision: str = "fp32",
) -> Body:
    """One training step on a batch: the method's per-example loss under the technique's ε, β and
    criterion, the technique's reduction, backward and the optimizer update, added to ``totals``.
    :class:`TrainStep` runs it eagerly or as a CUDA graph."""
    class_eps = balance.class_eps(epoch, method.eps)
    class_beta = balance.class_beta(epoch, method.beta())
    class_step = balance.class_step_scale(epoch)
    criterion = balance.criterion(epoch)

    def body(x: torch.Tensor, y: torch.Tensor) -> None:
        eps = method.eps if class_eps is None else class_eps[y]
        beta = None if class_beta is None else class_beta[y]
        step_scale = 1.0 if class_step is None else class_step[y]
        with autocast(x.device, precision):
            out = method.loss(model, x, y, generator, Knobs(eps, beta, criterion, step_scale))
        loss = balance.reduce(out.loss, y, out.parts, epoch)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            totals.seen.index_add_(0, y, torch.ones_like(y, dtype=totals.seen.dtype))
            totals.correct.index_add_(0, y, (out.logits.argmax(1) == y).to(totals.correct.dtype))
            totals.probs.index_add_(0, y, out.logits.float().softmax(1))
            totals.loss.add_(loss.detach().float())

    return body


@dataclass(frozen=True)
class EpochSetup:
    """What one epoch runs with."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    method: Method
    balance: Balance
    batches: BatchIterator
    optim: Any  # OptimConfig: epochs and learning-rate schedule
    compute: Compute
    seed: int
    class_names: tuple[str, ...]
    label: str  # the method's name, for the progress bar


def train_epoch(
    setup: EpochSetup, epoch: int, last_val: dict[str, Any] | None, progress: bool, graphs: bool
) -> dict[str, Any]:
    """Train one epoch, let the technique observe it, and return its record (loss, per-class
    training accuracy, time, throughput)."""
    s = setup
    s.batches.set_epoch(epoch)
    g = torch.Generator(device=s.batches.device).manual_seed(s.seed * 1_000_003 + 7919 * (epoch + 1))
    totals = EpochTotals.zeros(len(s.class_names), s.batches.device)
    body = step_body(s.model, s.optimizer, s.method, s.balance, epoch, g, totals, s.compute.precision)
    desc = f"epoch {epoch + 1}/{s.optim.epochs} {s.label}"
    s.model.train()
    start = time.perf_counter()
    n = len(s.batches)
    with (
        TrainStep(body, s.optimizer, g, graph=graphs) as step,
        progress_bar(n, desc, unit="batch", enabled=progress) as bar,
    ):
        for i, (x, y, _) in enumerate(s.batches):
            step(x, y, learning_rate(s.optim, epoch + i / n))
            if progress and i % 10 == 0:
                speed = x.shape[0] * (i + 1) / (time.perf_counter() - start)
                bar.set_postfix(_postfix(speed, float(totals.loss) / (i + 1), totals, last_val, s.class_names))
            bar.update(1)
    acc = totals.class_accuracy().cpu().tolist()  # waits for the device: the time is real
    seconds = time.perf_counter() - start
    s.balance.observe_training(epoch, totals.class_accuracy(), totals.class_probs())
    return {
        "epoch": epoch,
        "lr_end": learning_rate(s.optim, epoch + 1),
        "train_loss": float(totals.loss) / n,
        "train_class_acc": acc,
        "train_acc": float(totals.correct.sum() / totals.seen.sum()),
        "seconds": seconds,
        "images_per_s": n * s.batches.batch_size / seconds,
        "graph_steps": step.replayed,  # steps replayed from a CUDA graph (the rest ran eagerly)
        **s.compute.to_dict(),
    }


def _postfix(
    speed: float, loss: float, totals: EpochTotals, val: dict[str, Any] | None, names: tuple[str, ...]
) -> dict[str, str]:
    acc = totals.class_accuracy().cpu().numpy()
    out = {
        "img/s": f"{speed:.0f}",
        "loss": f"{loss:.3f}",
        "train": f"{acc.mean():.0%} worst {names[acc.argmin()]} {acc.min():.0%}",
    }
    if val is not None:
        out["val clean"] = f"{val['clean_mean']:.0%} worst {val['clean_worst_class']} {val['clean_worst']:.0%}"
        if "robust_mean" in val:
            out["val robust"] = f"{val['robust_mean']:.0%} worst {val['robust_worst_class']} {val['robust_worst']:.0%}"
    return out


def class_losses(
    model: nn.Module,
    method: Method,
    images: LabeledImages,
    num_classes: int,
    batch_size: int,
    seed: int,
    precision: str,
) -> torch.Tensor:
    """(K,): the mean of ``method``'s per-example loss (its attack included) over each class of
    ``images``, with the model in eval mode and its weights untouched (WAT's validation cost)."""
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    total = torch.zeros(num_classes, device=device)
    seen = torch.zeros(num_classes, device=device)
    with frozen_eval(model):
        for i in range(0, len(images), batch_size):
            x = unit_images(images.images[i : i + batch_size].to(device))
            y = images.labels[i : i + batch_size].to(device)
            with autocast(device, precision):
                out = method.loss(model, x, y, g, Knobs(method.eps))
            total.index_add_(0, y, out.loss.detach().float())
            seen.index_add_(0, y, torch.ones_like(total[y]))
    return total / seen.clamp_min(1)
