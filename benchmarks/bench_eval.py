"""Class-wise PGD-20 evaluation speed: classwise against torchattacks' PGD plus per-class bookkeeping.

Same model, data, batch size, device, ε, step size and steps; no random start, so the attacks
are deterministic. Two classwise settings are timed, and the exact one's attack loop is set against
the machine's fp32 matmul peak measured in the same run (FLOPs per image and step counted by torch's
FlopCounterMode: one forward and one input-gradient backward, times steps + 1, over the attacked
images):

- ``exact``: judges the last iterate like torchattacks, so per-class robust accuracies must
  agree exactly (checked and printed);
- ``default``: early stop (a sample fooled at any iterate is broken and leaves the batch), and
  only clean-correct samples are attacked — never weaker, so its per-class robust accuracy is
  ≤ torchattacks' (checked).

Usage (torchattacks needs no torchvision for its PGD: ``pip install --no-deps torchattacks==3.5.1``;
without it, its columns say so and classwise alone is timed):

    CLASSWISE_DATA=../shared/data python benchmarks/bench_eval.py --runs runs/gap

``--runs`` is a folder made by ``classwise gap`` (its ``standard`` and ``pgd-at`` best checkpoints
are the standard and the adversarially trained model); missing, it is made first. ``--model
NAME=CHECKPOINT`` (repeatable) times any classwise checkpoints instead, e.g. a study's
adversarially trained ResNet-20 on CIFAR-10 (JPEG q75):

    CLASSWISE_DATA=../shared/data python benchmarks/bench_eval.py \
        --model r20-pgd=runs/question-a-cifar/runs/0102797465cf/best.pt

The test suite runs it on a tiny ``classwise gap`` folder of synthetic images (``tests/test_benchmarks.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from classwise.attacks import parse_eps
from classwise.compute import count_flops, matmul_peak
from classwise.data import LabeledImages, load_dataset, per_class_subset
from classwise.evaluate import AttackSpec, EvalSpec, evaluate
from classwise.models import load_checkpoint
from classwise.train import TrainConfig

T = TypeVar("T")


def torchattacks_classwise(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, batch_size: int, k: int
) -> np.ndarray:
    """torchattacks PGD on every sample, then per-class robust counts (robust = correct on the last iterate)."""
    import torchattacks

    attack = torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=steps, random_start=False)
    robust = np.zeros(k, dtype=np.int64)
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        adv = attack(xb, yb)
        with torch.no_grad():
            ok = (model(adv).argmax(1) == yb) & (model(xb).argmax(1) == yb)
        robust += np.bincount(yb[ok].numpy(), minlength=k)
    return robust


def timed(fn: Callable[[], T], repeats: int) -> tuple[float, T]:
    times, outs = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        outs.append(fn())
        times.append(time.perf_counter() - start)
    return min(times), outs[-1]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs/gap")
    p.add_argument("--model", action="append", default=[], metavar="NAME=CHECKPOINT", help="time these instead")
    p.add_argument("--dataset", default=None, help="default: the checkpoints' dataset")
    p.add_argument("--eps", default="8/255")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--n-per-class", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--peak-repeats", type=int, default=10, help="matmuls for the fp32 peak (the best is taken)")
    args = p.parse_args(argv)
    models = dict(_named(m) for m in args.model)
    if not models:
        runs = Path(args.runs)
        if not (runs / "pgd-at" / "best.pt").exists():
            from classwise.gap import GAP_DEFAULTS, measure_gap

            measure_gap(TrainConfig.from_dict(GAP_DEFAULTS), runs, progress=False)
        models = {name: runs / name / "best.pt" for name in ("standard", "pgd-at")}
    eps = parse_eps(args.eps)
    args.peak = matmul_peak(torch.device("cpu"), torch.float32, args.peak_repeats)
    print(f"fp32 matmul peak of this machine, measured now: {args.peak / 1e9:.1f} GFLOP/s")
    print(
        f"PGD-{args.steps}, L∞ ε={args.eps}, step ε/4, no random start, batch {args.batch_size}, "
        f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}"
    )
    print(
        f"{'model':<10} {'images':>6} {'torchattacks img/s':>19} {'classwise exact':>16} {'ratio':>6} "
        f"{'classwise default':>18} {'ratio':>6}  agreement"
    )
    for name, path in models.items():
        model, meta = load_checkpoint(path)
        data = TrainConfig.from_dict(meta["config"]).data  # the checkpoint's own config, as the loop wrote it
        ds = load_dataset(args.dataset or data.dataset, root=data.root)
        test = per_class_subset(ds.test, args.n_per_class, ds.num_classes)
        print(compare(name, model, test, ds.class_names, eps, args))


def _named(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not Path(path).is_file():
        raise SystemExit(f"--model takes NAME=CHECKPOINT with an existing checkpoint file, got {text!r}")
    return name, Path(path)


def compare(
    name: str,
    model: torch.nn.Module,
    test: LabeledImages,
    class_names: tuple[str, ...],
    eps: float,
    args: argparse.Namespace,
) -> str:
    k = len(class_names)
    x, y = test.images.float() / 255, test.labels
    attack = AttackSpec("pgd", {"steps": args.steps, "step_size": eps / 4, "random_start": False})

    def run_classwise(early: bool) -> np.ndarray:
        spec = EvalSpec(attacks=(attack,), eps=(eps,), batch_size=args.batch_size, early_stop=early, analyses=False)
        ev = evaluate(model, test, spec, class_names=class_names, progress=False)
        return ev.robust(ev.worst[0]).correct

    t_ex, ex = timed(lambda: run_classwise(False), args.repeats)
    t_df, df = timed(lambda: run_classwise(True), args.repeats)
    n = len(y)
    with torch.no_grad():
        attacked = int((model(x).argmax(1) == y).sum())  # exact mode attacks the clean-correct images, every step
    per_image = count_flops(model, x[:8], y[:8], input_grad_only=True) / len(x[:8])
    achieved = attacked * (args.steps + 1) * per_image / t_ex
    loop = f"; exact attack loop {achieved / 1e9:.1f} GFLOP/s = {achieved / args.peak:.0%} of the fp32 matmul peak"
    if importlib.util.find_spec("torchattacks") is None:
        return (
            f"{name:<10} {n:>6} {'(not installed)':>19} {n / t_ex:>16.1f} {'-':>6} {n / t_df:>18.1f} {'-':>6}  "
            f"torchattacks is not installed (pip install --no-deps torchattacks==3.5.1): no peer to compare with; "
            f"default <= exact per class: {bool((df <= ex).all())}; robust acc {ex.sum() / n:.1%} / {df.sum() / n:.1%}"
            + loop
        )
    t_ta, ta = timed(lambda: torchattacks_classwise(model, x, y, eps, args.steps, args.batch_size, k), args.repeats)
    exact = "exact per-class match" if np.array_equal(ta, ex) else f"MISMATCH {ta.tolist()} vs {ex.tolist()}"
    weaker = "default <= torchattacks per class" if (df <= ta).all() else "DEFAULT WEAKER"
    return (
        f"{name:<10} {n:>6} {n / t_ta:>19.1f} {n / t_ex:>16.1f} {t_ta / t_ex:>5.2f}x {n / t_df:>18.1f} "
        f"{t_ta / t_df:>5.2f}x  {exact}; {weaker}; robust acc {ta.sum() / n:.1%} / {df.sum() / n:.1%}" + loop
    )


if __name__ == "__main__":
    main()
