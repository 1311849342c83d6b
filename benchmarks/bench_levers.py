"""What each lever gives the attack loop: PGD on one trained model, the baseline against one change
at a time, in one run on one machine.

The baseline is classwise's evaluation as it runs by default except that every image takes every
step (``early_stop: false``, the work an attack on a robust image cannot avoid): fp32,
channels_last where safe, BatchNorm folded into the convolutions, batch ``--batch-size``, all CPU
threads. The levers, each alone:

- channels_last off (the model kept in the contiguous layout);
- the batch size (``--batch-sizes``);
- threads: 1 instead of all;
- ``torch.compile`` of the model (default mode; its compile time kept out by the warm-up);
- early stop on (classwise's default: a fooled image leaves the batch);
- bf16 autocast (``benchmarks/bench_attack_precision.py`` measures its agreement).

Each is timed after an untimed warm-up on one image per class; printed are images/s, the ratio to
the baseline, and whether the per-class robust counts equal the baseline's (early stop may only
lower them; bf16 may differ).

    CLASSWISE_DATA=../shared/data python benchmarks/bench_levers.py --model runs/gap/pgd-at
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch

from classwise.attacks import format_eps
from classwise.data import load_dataset
from classwise.evaluate import AttackSpec, EvalSpec, evaluate
from classwise.models import load_checkpoint
from classwise.train import TrainConfig


@contextmanager
def threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def robust_counts(model: torch.nn.Module, data: Any, spec: EvalSpec) -> tuple[float, np.ndarray, int]:
    """Seconds of ``spec`` after a warm-up on one image per class, per-class robust counts, images."""
    evaluate(model, data, replace(spec, n_per_class=1), progress=False)
    start = time.perf_counter()
    ev = evaluate(model, data, spec, progress=False)
    return time.perf_counter() - start, ev.robust(ev.worst[0]).correct, len(ev.labels)


def levers(spec: EvalSpec, batch_sizes: list[int]) -> list[tuple[str, Callable[[], Any], EvalSpec, bool]]:
    """(name, context, spec, compiled) for each lever."""
    out: list[tuple[str, Callable[[], Any], EvalSpec, bool]] = [
        (
            "channels_last off",
            lambda: mock.patch("classwise.compute.channels_last_safe", return_value=False),
            spec,
            False,
        ),
        *((f"batch {b}", nullcontext, replace(spec, batch_size=b), False) for b in batch_sizes if b != spec.batch_size),
        ("1 thread", lambda: threads(1), spec, False),
        ("torch.compile", nullcontext, spec, True),
        ("early stop on", nullcontext, replace(spec, early_stop=True), False),
        ("bf16 autocast", nullcontext, replace(spec, precision="bf16"), False),
    ]
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a run folder with best.pt (an adversarially trained model)")
    p.add_argument("--dataset", default=None, help="default: the checkpoint's dataset")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--n-per-class", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--batch-sizes", default="64,128,500", help="the batch sizes to try beside --batch-size")
    p.add_argument(
        "--skip",
        nargs="*",
        default=[],
        help="levers to leave out, by name (e.g. torch.compile; profile: the breakdown)",
    )
    args = p.parse_args(argv)
    model, meta = load_checkpoint(Path(args.model) / "best.pt")
    cfg = TrainConfig.from_dict(meta["config"])
    ds = load_dataset(args.dataset or cfg.data.dataset, root=cfg.data.root)
    spec = EvalSpec(
        attacks=(AttackSpec("pgd", {"steps": args.steps}),),
        eps=(cfg.threat.eps,),
        norm=cfg.threat.norm,
        n_per_class=args.n_per_class,
        batch_size=args.batch_size,
        early_stop=False,
        analyses=False,
    )
    seconds, base, n = robust_counts(model, ds, spec)
    print(
        f"{cfg.model.name} ({Path(args.model).name}), PGD-{args.steps} at ε={format_eps(cfg.threat.eps)} "
        f"({cfg.threat.norm}) on {n} test images, {torch.get_num_threads()} CPU threads, torch {torch.__version__}"
    )
    print(f"{'lever':<20} {'img/s':>8} {'× baseline':>11}  per-class robust counts")
    print(f"{'baseline':<20} {n / seconds:8.1f} {1.0:10.2f}x  {base.sum()} robust of {n}")
    sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    for name, context, lever_spec, compiled in levers(spec, sizes):
        if name in args.skip:
            continue
        try:
            with context():
                net: Any = torch.compile(model) if compiled else model
                t, counts, _ = robust_counts(net, ds, lever_spec)
        except Exception as exc:  # a lever that cannot run here (no compiler, say) is reported, not fatal
            print(
                f"{name:<20} {'-':>8} {'-':>11}  could not run: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
            )
            continue
        same = "the same" if (counts == base).all() else f"differ: {counts.sum()} robust"
        if name.startswith("batch") and not (counts == base).all():
            same += " (each batch draws its own random starts)"
        if name == "early stop on" and (counts <= base).all():
            same = f"{counts.sum()} robust, never more than the baseline in any class"
        print(f"{name:<20} {n / t:8.1f} {seconds / t:10.2f}x  {same}")
    if "profile" not in args.skip:
        where_the_time_goes(model, ds, spec)


KINDS = {  # operator kinds of an attack loop, by a piece of the profiler's operator name
    "convolutions": ("convolution", "conv2d"),
    "batch norm": ("batch_norm",),
    "ReLU": ("relu", "clamp_min", "threshold"),
    "copies and layout": ("copy_", "contiguous", "to_dense", "reorder"),
}


def where_the_time_goes(model: torch.nn.Module, data: Any, spec: EvalSpec, top: int = 6) -> None:
    """The baseline once more under torch's profiler: the operators that take its time (self time,
    their share), then the shares by kind. Whatever is not a convolution is memory-bound work that
    no FLOP rate counts: it is why an attack loop can sit well below the matmul peak."""
    from torch.profiler import ProfilerActivity, profile

    evaluate(model, data, replace(spec, n_per_class=1), progress=False)  # warm-up, as timed above
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        evaluate(model, data, spec, progress=False)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    print("where the baseline's time goes (torch profiler, self time of each operator)")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]:
        print(f"    {e.key[:40]:<40} {100 * e.self_cpu_time_total / total:5.1f}%")
    share = dict.fromkeys([*KINDS, "other"], 0.0)
    for e in events:
        kind = next((k for k, parts in KINDS.items() if any(p in e.key.lower() for p in parts)), "other")
        share[kind] += 100 * e.self_cpu_time_total / total
    print("    by kind: " + ", ".join(f"{k} {v:.0f}%" for k, v in share.items()))


if __name__ == "__main__":
    main()
