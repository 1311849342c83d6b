"""The accuracy cost of bf16 training: one recipe trained in fp32 and in bf16, evaluated (in fp32)
per class with 95% Wilson intervals, side by side.

Two recipes: ``fashion`` is the main job (``classwise gap`` defaults), ``cifar`` a CIFAR-10
subset (ResNet-20, 1,000 training images per class, 5 epochs, PGD-3 training at 8/255, PGD-10
evaluation on the first 200 test images per class; on ``cifar10-jpeg.tar.gz`` label it CIFAR-10
(JPEG q75)). Both precisions train the standard and the PGD-AT model; runs are resumable and
reused, so a second call only prints. Printed per model and class: clean and robust accuracy in
fp32 and in bf16, and whether each bf16 value lies inside the fp32 value's interval (and the
reverse), with the training seconds of each precision.

    CLASSWISE_DATA=../shared/data python benchmarks/bench_precision.py fashion --out runs/precision
    CLASSWISE_DATA=../shared/data python benchmarks/bench_precision.py cifar --dataset cifar10-jpeg.tar.gz

``--set KEY=VALUE`` overrides any recipe setting (``--set optim.epochs=2``); the test suite runs it on
synthetic images with a seconds-long recipe (``tests/test_benchmarks.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from classwise.config import apply_overrides, parse_assignment
from classwise.evaluate import ClassAccuracy, Evaluation
from classwise.gap import GAP_DEFAULTS, measure_gap
from classwise.train import TrainConfig, TrainResult

CIFAR: dict[str, Any] = {
    "data": {"dataset": "cifar10", "train_per_class": 1000, "val_per_class": 50},
    "model": {"name": "resnet20"},
    "threat": {"eps": 8 / 255},
    "method": {"args": {"steps": 3}},
    "optim": {"epochs": 5, "batch_size": 128, "lr": 0.1, "schedule": "onecycle"},
    "monitor": {"steps": 5},
    "evaluation": {"attacks": [{"name": "pgd", "args": {"steps": 10}}], "n_per_class": 200},
}
RECIPES = {"fashion": GAP_DEFAULTS, "cifar": CIFAR}


def inside(value: float, acc: ClassAccuracy, k: int) -> bool:
    return bool(acc.low[k] - 1e-12 <= value <= acc.high[k] + 1e-12)


def compare(name: str, a: Evaluation, b: Evaluation) -> tuple[str, int, int]:
    """Table of one model's per-class accuracy in fp32 (a) and bf16 (b); counts of values inside."""
    rows, agree, total = [], 0, 0
    pairs = (("clean", a.clean(), b.clean()), ("robust", a.robust(a.headline), b.robust(b.headline)))
    header = f"{name:<12}" + "".join(f"{kind + ' fp32':>14}{kind + ' bf16':>14}{'in':>5}" for kind, _, _ in pairs)
    for k, cls in enumerate(a.class_names):
        cells = ""
        for _, x, y in pairs:
            ok = inside(y.accuracy[k], x, k) and inside(x.accuracy[k], y, k)
            agree, total = agree + ok, total + 1
            cells += f"{100 * x.accuracy[k]:>14.1f}{100 * y.accuracy[k]:>14.1f}{'yes' if ok else 'NO':>5}"
        rows.append(f"{cls[:12]:<12}{cells}")
    means = "".join(f"{100 * x.accuracy.mean():>14.1f}{100 * y.accuracy.mean():>14.1f}{'':>5}" for _, x, y in pairs)
    return "\n".join([header, *rows, f"{'mean':<12}{means}"]), agree, total


def seconds(result: TrainResult) -> float:
    return sum(h["seconds"] for h in result.history)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe", choices=sorted(RECIPES))
    p.add_argument("--dataset", default=None, help="override the recipe's dataset (e.g. cifar10-jpeg.tar.gz)")
    p.add_argument("--out", default="runs/precision")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe setting")
    args = p.parse_args(argv)
    settings = {"data.dataset": args.dataset} if args.dataset else {}
    settings.update(parse_assignment(a) for a in args.set)
    recipe = apply_overrides(RECIPES[args.recipe], settings)
    results: dict[str, dict[str, TrainResult]] = {}
    for precision in ("fp32", "bf16"):
        cfg = TrainConfig.from_dict(apply_overrides(recipe, {"optim.precision": precision}))
        results[precision] = measure_gap(cfg, Path(args.out) / f"{args.recipe}-{precision}", progress=False)
    first = next(iter(results["fp32"].values())).test
    print(f"{first.title}; evaluation: {first.spec.describe()}; 95% Wilson intervals")
    agree = total = 0
    for variant in results["fp32"]:
        a, b = results["fp32"][variant], results["bf16"][variant]
        table, ok, n = compare(variant, a.test, b.test)
        agree, total = agree + ok, total + n
        print(f"\n{table}\ntraining: fp32 {seconds(a):.0f} s, bf16 {seconds(b):.0f} s ({seconds(a) / seconds(b):.2f}x)")
    print(f"\n{agree} of {total} per-class values lie inside each other's interval")


if __name__ == "__main__":
    main()
