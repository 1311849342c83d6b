"""How the arithmetic runs: numeric precision and memory layout, per device.

Training runs in bf16 autocast where the hardware has native bf16 (CUDA GPUs; CPUs with
AVX512-BF16 or AMX, where a bf16 matmul runs about 4× faster than fp32) and in fp32 elsewhere;
``precision`` chooses explicitly. Evaluation stays fp32 unless asked: attacks are
precision-sensitive.

Convolutions run in channels_last (NHWC) on CUDA, and on the CPU too except for one case:
torch 2.13's CPU kernel for the *weight gradient* of a 1×1 convolution with stride 2 and fewer
than 16 input channels corrupts the heap in channels_last at odd batch sizes ≥ 3 ("double free
or corruption", or a segmentation fault; found by bisecting a crashing ResNet-20 of width 4 to
its first down-sampling shortcut). The smallest reproduction, 30 backward passes of::

    conv = nn.Conv2d(4, 8, 1, stride=2, bias=False).to(memory_format=torch.channels_last)
    x = torch.rand(3, 4, 32, 32).contiguous(memory_format=torch.channels_last)
    conv(x).sum().backward()

crashes every time; 16 or more input channels, stride 1, 3×3 kernels, even batch sizes, inputs
smaller than 16×16 and input-only gradients do not. Models holding such a layer train in the
contiguous layout (``channels_last_safe``); ``benchmarks/bench_train.py --channels-last-crash``
re-runs the reproduction in a child process to see whether a torch build still has the bug.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from classwise.errors import ConfigError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16 in ``/proc/cpuinfo``)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → ``bf16`` on CUDA and on CPUs with native bf16, else ``fp32``. An explicit ``bf16``
    on a CPU without native bf16 is kept, with one warning that it is emulated there (slow)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        _warn_emulated_bf16()
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16()) else "fp32"


@functools.cache
def _warn_emulated_bf16() -> None:
    # measured on an AVX2-only AMD EPYC (2026-12-07): a 3×3 convolution 28× slower than in fp32
    log.warning(
        "bf16 asked for on a CPU without native bf16 (no AVX512-BF16 or AMX in /proc/cpuinfo): torch "
        "emulates it there, many times slower than fp32; use precision auto or fp32 on this machine"
    )


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for ``precision == "bf16"``, nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def channels_last_safe(model: nn.Module, device: torch.device) -> bool:
    """Whether ``model`` can train in channels_last on ``device`` (see the module docstring)."""
    if device.type != "cpu":
        return True
    return not any(
        isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1) and m.in_channels < 16
        for m in model.modules()
    )


def is_channels_last(model: nn.Module) -> bool:
    """Whether the model's convolutions hold their weights in channels_last."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return conv is not None and conv.weight.is_contiguous(memory_format=torch.channels_last)


@contextlib.contextmanager
def fast_layout(model: nn.Module, device: torch.device) -> Any:
    """Run ``model`` in channels_last inside the block where that is safe (faster convolutions on
    the CPU as on the GPU), and give it back in the layout it came in."""
    was = is_channels_last(model)
    use = channels_last_safe(model, device) and any(isinstance(m, nn.Conv2d) for m in model.modules())
    if use and not was:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    try:
        yield model
    finally:
        if use and not was:
            model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]


class Autocast(nn.Module):
    """``model`` run under bf16 autocast, returning fp32 logits (an evaluation asked for in bf16)."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.model, self.device_type = model, device.type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.model(x).float()


def fused_for_inference(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every BatchNorm that follows a convolution folded
    into that convolution's weights, or ``model`` itself where that is not possible.

    In eval mode batch normalisation is a fixed affine map, so folding it changes no prediction
    beyond float rounding and removes the normalisation from every forward and backward pass of
    an attack (about 12% of a ResNet-20's PGD step on the CPU). Models that torch.fx cannot trace,
    or whose folded logits differ from the original's on ``example`` by more than rounding, are
    used as they are."""
    import copy
    import warnings

    with warnings.catch_warnings():  # importing torch.fx's optimisation helpers warns about torch.jit
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch.fx.experimental.optimization import fuse

    if not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        return model
    try:
        folded = fuse(copy.deepcopy(model).eval())
        with torch.no_grad():
            want, got = model(example), folded(example)
        scale = float(want.abs().max()) + 1e-6
        if got.shape != want.shape or float((got - want).abs().max()) > 1e-3 * scale:
            return model
    except Exception:  # any model torch.fx cannot handle is simply not folded
        return model
    for p in folded.parameters():
        p.requires_grad_(False)
    if is_channels_last(model):
        folded.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return folded


def resolve_device(name: str | None) -> str:
    """``auto`` (or None) → ``cuda`` when a GPU is visible, else ``cpu``; a named device must exist."""
    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but no CUDA GPU is visible here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: only {torch.cuda.device_count()} GPU(s) are visible")
    elif device.type != "cpu":
        raise ConfigError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return str(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, repeats: int = 10) -> float:
    """FLOP/s of the best of ``repeats`` square matmuls (2048² saturates a CPU, a GPU needs 8192²):
    the machine's practical peak in ``dtype``, measured in the same run as what is compared with it."""
    import time

    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def count_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor, input_grad_only: bool) -> int:
    """FLOPs of one forward + backward of the cross-entropy: into the weights (a training step) or
    only into the input (an attack step; parameters frozen, which is what ``autograd.grad`` with
    respect to the input computes), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    wanted = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(not input_grad_only)
    xi = x.clone().requires_grad_(input_grad_only)
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(xi), y).backward()
    for p, w in zip(model.parameters(), wanted, strict=True):
        p.requires_grad_(w)
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())
