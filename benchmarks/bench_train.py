"""Training throughput against the machine's fp32 matrix-multiply peak.

For each network and method, times training steps on random data of the dataset's shape,
counts the step's floating-point operations with torch's FlopCounterMode, and prints
images/s, achieved FLOP/s and achieved ÷ peak, where peak is the best measured square-matmul
rate on the same device and dtype. On CUDA the steps run as in training (bf16 autocast,
channels_last, data on the device) and the peak is measured in bf16 as well.

    python benchmarks/bench_train.py                       # CPU
    python benchmarks/bench_train.py --device cuda --epoch-images 50000   # GPU: seconds per PGD-AT epoch too
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from classwise.models import create_model
from classwise.train import METHODS, TrainConfig
from classwise.train.loop import autocast
from classwise.train.methods import Knobs


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 2):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def count_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, input_grad_only: bool) -> int:
    """FLOPs of forward + backward: into the weights (a training step) or only into the input (an
    attack step; parameters frozen, which is what ``autograd.grad`` w.r.t. the input computes)."""
    for p in model.parameters():
        p.requires_grad_(not input_grad_only)
    xi = x.clone().requires_grad_(input_grad_only)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(xi), y).backward()
    for p in model.parameters():
        p.requires_grad_(True)
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def step_rate(
    model_name: str, shape: tuple[int, int, int], method: str, steps: int, batch: int, device: torch.device, iters: int
) -> tuple[float, float]:
    """(images/s, FLOPs per image) of training steps of ``method`` (PGD-AT-k: k attack steps + one training step)."""
    model = create_model(model_name, 10, shape, (0.5,) * shape[0], (0.25,) * shape[0]).to(device)
    x = torch.rand(batch, *shape, device=device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    cfg = TrainConfig(method=method, eps=8 / 255, attack_steps=steps)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    fn, g = METHODS.get(method), torch.Generator(device=device).manual_seed(0)
    model.train()
    flops = count_flops(model, x, y, False) + (steps * count_flops(model, x, y, True) if method != "standard" else 0)

    def one() -> None:
        with autocast(device):
            loss = fn(model, x, y, cfg, g, Knobs.plain(cfg)).loss.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(2):
        one()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        one()
    _sync(device)
    seconds = (time.perf_counter() - start) / iters
    return batch / seconds, flops / batch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--epoch-images", type=int, default=50000, help="images per epoch for the s/epoch column")
    args = p.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_peak(device, dtype)
    print(f"device: {name}; torch {torch.__version__}; {dtype} matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(
        f"{'model':<16} {'input':<8} {'method':<10} {'img/s':>8} {'GFLOP/img':>10} {'GFLOP/s':>9} "
        f"{'of peak':>8} {'s/epoch':>8}"
    )
    for model_name, shape in (("resnet20", (3, 32, 32)), ("preact_resnet18", (3, 32, 32))):
        for method, steps in (("standard", 1), ("pgd-at", 10)):
            rate, flops = step_rate(model_name, shape, method, steps, args.batch_size, device, args.iters)
            achieved = rate * flops
            label = method + (f"-{steps}" if steps > 1 else "")
            print(
                f"{model_name:<16} {'x'.join(map(str, shape)):<8} {label:<10}"
                f" {rate:>8.1f} {flops / 1e9:>10.3f} {achieved / 1e9:>9.1f} {achieved / peak:>8.1%}"
                f" {args.epoch_images / rate:>8.0f}"
            )


if __name__ == "__main__":
    main()
