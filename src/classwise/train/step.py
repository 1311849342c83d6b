"""The training step of one epoch: run eagerly, or on a GPU captured once as a CUDA graph and
replayed for every batch.

At the batch sizes of the field (128), a PGD-AT step of a CIFAR network is bound by Python and
kernel-launch overhead, not arithmetic: the GPU idles between the thousands of small kernels of
its eleven forward/backward passes. Capturing the whole step (attack, loss, backward, optimizer
update and running statistics) and replaying it removes that overhead; ``benchmarks/bench_train.py``
measures both ways on the same GPU.

What capture needs, and the loop provides: a fixed batch shape (``drop_last``), tensors the step
reads already on the device (balancers move theirs once per epoch), no reads back to the host
inside the step, the attack's noise drawn from a generator registered with the graph, and a
learning rate held in a device tensor (fused SGD reads it there), refilled before each replay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType

import torch

from classwise.errors import ClasswiseError

log = logging.getLogger(__name__)

Body = Callable[[torch.Tensor, torch.Tensor], None]


class TrainStep:
    """``step(x, y, lr)`` trains on one batch: the optimizer's gradients cleared, then ``body(x, y)``
    (forward, backward, ``optimizer.step()`` and any running statistics, all on the device).

    With ``graph=True`` (a CUDA device) the first ``warmup`` batches of the epoch run eagerly on a
    side stream, as capture requires; the next batch is captured and every later batch is copied
    into the captured inputs and replayed. Every batch is trained on exactly once either way. Use as
    a context manager around one epoch: the learning rate is a device tensor inside and a float
    again outside, so the optimizer's saved state does not change.

    Example:
        >>> with TrainStep(body, optimizer, generator, graph=True) as step:  # doctest: +SKIP
        ...     for x, y, _ in batches:
        ...         step(x, y, lr)
    """

    def __init__(
        self,
        body: Body,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        *,
        graph: bool,
        warmup: int = 3,
    ) -> None:
        self.body, self.optimizer, self.generator = body, optimizer, generator
        self.graph = graph and _capturable(optimizer)
        self.warmup = warmup
        self.calls = 0
        self.replayed = 0  # steps of this epoch that ran as the captured graph
        self._graph: torch.cuda.CUDAGraph | None = None
        self._inputs: tuple[torch.Tensor, torch.Tensor] | None = None

    def __enter__(self) -> TrainStep:
        if self.graph:
            device = next(p.device for g in self.optimizer.param_groups for p in g["params"])
            for group in self.optimizer.param_groups:
                group["lr"] = torch.tensor(float(group["lr"]), device=device)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"] = float(group["lr"])
        self.optimizer.zero_grad(set_to_none=True)  # the graph's pool holds the gradients: let both go
        self._graph, self._inputs = None, None

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> None:
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        self.calls += 1
        if not self.graph:
            self.optimizer.zero_grad(set_to_none=True)
            self.body(x, y)
        elif self._graph is not None and self._inputs is not None:
            self._inputs[0].copy_(x)
            self._inputs[1].copy_(y)
            self._graph.replay()
            self.replayed += 1
        elif self.calls <= self.warmup:
            self._on_side_stream(x, y)
        else:
            self._capture(x, y)

    def _on_side_stream(self, x: torch.Tensor, y: torch.Tensor) -> None:
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            self.optimizer.zero_grad(set_to_none=True)
            self.body(x, y)
        torch.cuda.current_stream(x.device).wait_stream(side)

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self._inputs = (x.clone(), y.clone())
        self.optimizer.zero_grad(set_to_none=True)  # backward in the graph then writes, not adds
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(self.generator)
        try:
            with torch.cuda.graph(graph):
                self.body(*self._inputs)
        except RuntimeError as exc:
            # No silent fallback: a failed capture can leave the capture stream current, and the
            # step half-run in Python. The epochs already finished are saved; the run resumes.
            raise ClasswiseError(
                f"the training step could not be captured as a CUDA graph ({str(exc).splitlines()[0][:200]}); "
                "resume the run eagerly: classwise train --resume RUN_DIR --no-cuda-graphs "
                "(train(..., resume=True, cuda_graphs=False))"
            ) from exc
        self._graph = graph
        graph.replay()  # capturing records the work without doing it: train on this batch now
        self.replayed += 1


def _capturable(optimizer: torch.optim.Optimizer) -> bool:
    """Fused SGD reads a tensor learning rate on the device; the other implementations would read
    it back to the host inside the graph. (A run resumed from a state saved before the optimizer
    was fused keeps its saved settings, and trains eagerly.)"""
    ok = all(group.get("fused") for group in optimizer.param_groups)
    if not ok:
        log.info("optimizer is not fused: training steps run eagerly, without CUDA graphs")
    return ok
