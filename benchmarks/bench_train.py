"""Training throughput against the machine's measured matrix-multiply peaks, fp32 and bf16.

For each network and method, times training steps on random data of the dataset's shape,
counts the step's floating-point operations with torch's FlopCounterMode, and prints
images/s, achieved FLOP/s and achieved ÷ peak, where the peaks are the best measured
square-matmul rates in fp32 and in bf16 on the same device, measured in the same run (bf16 only
where the device computes it natively; on a CPU without AVX512-BF16 or AMX that column reads -). The steps
are the training loop's own (``step_body`` run by ``TrainStep``), run twice: as the loop runs
them by default (bf16 autocast where the hardware has it, channels_last where it is safe; on
CUDA also replayed as a CUDA graph) and as the fp32 loop (fp32, contiguous layout, eager), so
the speed-up of the default over fp32 is measured side by side; on CUDA the default steps are
also run eagerly, so the gain of the graph alone is printed too.

``--channels-last-crash`` re-runs, in a child process, the smallest case that corrupts the heap
in channels_last on the CPU with torch 2.13 (see ``classwise.compute``) and says whether this
torch build still crashes.

With ``--epochs-on DATASET`` it also times real PGD-AT epochs of the training loop
(``classwise.train.train``) on that dataset, as ``history.json`` records them (training only;
validation and the final evaluation are not counted), graphs and eager side by side on CUDA.
Label results on ``cifar10-jpeg.tar.gz`` as CIFAR-10 (JPEG q75).

    python benchmarks/bench_train.py                       # CPU
    python benchmarks/bench_train.py --channels-last-crash
    python benchmarks/bench_train.py --device cuda --epochs-on ../shared/data/cifar10-jpeg.tar.gz
    python benchmarks/bench_train.py --epochs-on fashion-mnist --epoch-model resnet20 --train-per-class 200

The test suite runs it with one network, one method and one iteration (``tests/test_benchmarks.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import torch

from classwise.compute import channels_last_safe, count_flops, cpu_has_bf16, matmul_peak, resolve_precision
from classwise.models import create_model
from classwise.train import TrainConfig, train
from classwise.train.balance import make_technique
from classwise.train.epoch import EpochTotals, step_body
from classwise.train.methods import METHODS
from classwise.train.step import TrainStep


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model and the threads torch uses: results differ by machine."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), model)
    return f"{model} ({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_rate(
    model_name: str,
    shape: tuple[int, int, int],
    method: str,
    steps: int,
    batch: int,
    device: torch.device,
    iters: int,
    default: bool,
    graph: bool = False,
) -> tuple[float, float]:
    """(images/s, FLOPs per image) of the training loop's own step (``train.loop.step_body`` run by
    ``TrainStep``) of ``method`` (PGD-AT-k: k attack steps + one training step): at the loop's
    default precision and layout, or (``default=False``) in fp32 and contiguous; replayed as a CUDA
    graph when ``graph``, else eager."""
    model = create_model(model_name, 10, shape, (0.5,) * shape[0], (0.25,) * shape[0]).to(device)
    x = torch.rand(batch, *shape, device=device)
    precision = resolve_precision("auto", device) if default else "fp32"
    if default and channels_last_safe(model, device):
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    cfg = TrainConfig.from_dict({"method": {"name": method, "args": {"steps": steps} if steps > 1 else {}}})
    method_cls = METHODS.get(method)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, fused=device.type == "cuda")
    g = torch.Generator(device=device).manual_seed(0)
    model.train()
    flops = count_flops(model, x, y, False) + (steps * count_flops(model, x, y, True) if method != "standard" else 0)
    balance = make_technique("none", {}, torch.full((10,), batch), 1, method_cls)
    trainer_method = method_cls(cfg.method.options, cfg.threat.eps)
    body = step_body(model, opt, trainer_method, balance, 0, g, EpochTotals.zeros(10, device), precision)
    warmup = 3
    with TrainStep(body, opt, g, graph=graph, warmup=warmup) as step:
        for _ in range(warmup + 1):  # eager warm-up steps, and the capture when graphed
            step(x, y, 0.01)
        _sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            step(x, y, 0.01)
        _sync(device)
        seconds = (time.perf_counter() - start) / iters
    return batch / seconds, flops / batch


def epoch_table(args: argparse.Namespace, device: torch.device) -> None:
    """Train the same PGD-AT run with graphs and eagerly (on the CPU only eagerly) in a scratch
    folder and print each epoch's training seconds and images/s."""
    cfg = TrainConfig.from_dict(
        {
            "data": {"dataset": args.epochs_on, "train_per_class": args.train_per_class},
            "model": {"name": args.epoch_model},
            "method": {"name": "pgd-at"},
            "optim": {"epochs": args.epochs, "batch_size": args.batch_size},
            "monitor": {"every": args.epochs},  # validate once, at the end
        }
    )
    modes = (True, False) if device.type == "cuda" else (False,)
    history = {}
    with tempfile.TemporaryDirectory() as scratch:
        for graphs in modes:
            folder = Path(scratch) / f"graphs-{graphs}"
            run = train(cfg, folder, device=device, progress=False, final_evaluation=False, cuda_graphs=graphs)
            history[graphs] = run.history
    print(f"\nreal epochs: {args.epoch_model} pgd-at-10 on {args.epochs_on}, batch {args.batch_size}")
    print(f"{'epoch':>5} {'steps':<6} {'seconds':>8} {'img/s':>9} {'graph steps':>12} {'vs eager':>9}")
    for graphs in modes:
        for h in history[graphs]:
            eager = history[False][h["epoch"]]["seconds"]
            mode = "graph" if graphs else "eager"
            print(
                f"{h['epoch'] + 1:>5} {mode:<6} {h['seconds']:>8.1f} {h['images_per_s']:>9.1f}"
                f" {h['graph_steps']:>12} {eager / h['seconds']:>8.2f}x"
            )


def channels_last_crash() -> None:
    """Run the smallest channels_last crash case in a child process and report how it ended."""
    import subprocess
    import sys

    code = (
        "import torch\n"
        "conv = torch.nn.Conv2d(4, 8, 1, stride=2, bias=False).to(memory_format=torch.channels_last)\n"
        "for _ in range(30):\n"
        "    x = torch.rand(3, 4, 32, 32).contiguous(memory_format=torch.channels_last)\n"
        "    conv(x).sum().backward()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    verdict = "no crash: the bug is gone in this build" if done.returncode == 0 else f"crashed (exit {done.returncode})"
    tail = done.stderr.strip().splitlines()[-1:] or [""]
    case = "1×1 stride-2 conv, 4→8 channels, batch 3, channels_last backward"
    print(f"torch {torch.__version__}: {case}: {verdict} {tail[0]}")


NETWORKS = {"resnet20": (3, 32, 32), "preact_resnet18": (3, 32, 32)}
METHOD_STEPS = {"standard": 1, "pgd-at": 10}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--channels-last-crash", action="store_true", help="only re-run the channels_last crash case")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--epoch-images", type=int, default=50000, help="images per epoch for the s/epoch column")
    p.add_argument("--epochs-on", default=None, metavar="DATASET", help="also time real PGD-AT epochs on DATASET")
    p.add_argument("--epoch-model", default="preact_resnet18", help="the network of those epochs")
    p.add_argument("--epochs", type=int, default=2, help="how many real epochs")
    p.add_argument("--train-per-class", type=int, default=None, help="a smaller training split for them (CPU)")
    p.add_argument("--models", nargs="+", default=list(NETWORKS), choices=list(NETWORKS), help="networks to time")
    p.add_argument("--methods", nargs="+", default=list(METHOD_STEPS), choices=list(METHOD_STEPS))
    p.add_argument("--peak-repeats", type=int, default=10, help="matmuls per peak measurement (best is taken)")
    args = p.parse_args(argv)
    if args.channels_last_crash:
        channels_last_crash()
        return
    device = torch.device(args.device)
    # The matmul rate of a shared machine moves from minute to minute (seen: 99-184 GFLOP/s in fp32
    # on one 2-core VM), so both peaks are measured before and after every row and the highest of
    # each is taken: the ratios are then, if anything, understated.
    # bf16 where the hardware computes it: elsewhere torch emulates it, a 2048² matmul takes minutes
    # and its "peak" is no ceiling of anything the loop runs (it trains in fp32 there)
    native_bf16 = device.type == "cuda" or cpu_has_bf16()
    peaks: dict[torch.dtype, list[float]] = {torch.float32: []}
    if native_bf16:
        peaks[torch.bfloat16] = []

    def measure_peaks() -> None:
        for dtype, values in peaks.items():
            values.append(matmul_peak(device, dtype, args.peak_repeats))

    measure_peaks()
    rows = []
    precision = resolve_precision("auto", device)
    for model_name in args.models:
        shape = NETWORKS[model_name]
        for method in args.methods:
            steps = METHOD_STEPS[method]
            run = (model_name, shape, method, steps, args.batch_size, device, args.iters)
            cuda = device.type == "cuda"
            rate, flops = step_rate(*run, default=True, graph=cuda)
            eager = step_rate(*run, default=True)[0] if cuda else rate
            fp32 = step_rate(*run, default=False)[0]
            label = method + (f"-{steps}" if steps > 1 else "")
            rows.append((model_name, "x".join(map(str, shape)), label, rate, flops, fp32, eager))
            measure_peaks()
    peak32, peak16 = max(peaks[torch.float32]), max(peaks.get(torch.bfloat16) or [float("nan")])
    print(f"device: {device_name(device)}; torch {torch.__version__}")
    for dtype, values in peaks.items():
        print(
            f"{'fp32' if dtype == torch.float32 else 'bf16'} matmul peak {max(values) / 1e9:.1f} GFLOP/s "
            f"(highest of {len(values)} measurements, lowest {min(values) / 1e9:.1f})"
        )
    if not native_bf16:
        print("bf16 matmul peak: not measured, this CPU has no native bf16 (no AVX512-BF16 or AMX; torch emulates it)")
    cuda = device.type == "cuda"
    print(
        f"batch {args.batch_size}; default = the loop as it trains ({precision}, channels_last where safe"
        + (", CUDA graphs); eager = the same steps without graphs" if cuda else ")")
        + "; fp32 = fp32, contiguous, eager"
    )
    header = (
        f"{'model':<16} {'input':<8} {'method':<10} {'img/s':>8} {'GFLOP/img':>10} {'GFLOP/s':>9} "
        f"{'of fp32 pk':>10} {'of bf16 pk':>10} {'s/epoch':>8} {'fp32 img/s':>11} {'speed-up':>9}"
        + (f" {'eager img/s':>11} {'graph gain':>10}" if cuda else "")
    )
    print(header)
    for model_name, shape_text, label, rate, flops, fp32, eager in rows:
        achieved = rate * flops
        print(
            f"{model_name:<16} {shape_text:<8} {label:<10} {rate:>8.1f} {flops / 1e9:>10.3f}"
            f" {achieved / 1e9:>9.1f} {achieved / peak32:>10.1%} "
            + (f"{achieved / peak16:>10.1%}" if native_bf16 else f"{'-':>10}")
            + f" {args.epoch_images / rate:>8.1f} {fp32:>11.1f} {rate / fp32:>8.2f}x"
            + (f" {eager:>11.1f} {rate / eager:>9.2f}x" if cuda else "")
        )
    if args.epochs_on:
        epoch_table(args, device)


if __name__ == "__main__":
    main()
