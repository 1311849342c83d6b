"""What a bf16 attack costs: PGD on the same model and images in fp32 (the default for every final
evaluation) and under bf16 autocast (``evaluation.precision: bf16``), timed side by side, with
the per-class agreement of the two.

For the ``standard`` and ``pgd-at`` checkpoints of a ``classwise gap`` folder (or any run folders
given with ``--models``), PGD-``--steps`` at the checkpoint's training ε (or ``--eps``) on the first
``--n-per-class`` test images of each class, both precisions. Printed per model: images/s of each
and their ratio; the per-sample robust flags that agree; per class the fp32 and bf16 robust
accuracy, whether the bf16 value lies inside the fp32 value's 95% Wilson interval, and McNemar's
exact test on the paired images (Holm over the classes, since the same images are attacked
twice, an interval for independent samples would not fit).

    CLASSWISE_DATA=../shared/data python benchmarks/bench_attack_precision.py --runs runs/gap
    CLASSWISE_DATA=../shared/data python benchmarks/bench_attack_precision.py --models runs/recipe/a2-resnet20-pgd2

The test suite runs it on a seconds-long ``classwise gap`` folder (``tests/test_benchmarks.py``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from classwise import analysis
from classwise.attacks import format_eps, parse_eps
from classwise.data import load_dataset
from classwise.evaluate import AttackSpec, ClassAccuracy, EvalSpec, Evaluation, evaluate
from classwise.models import load_checkpoint
from classwise.train import TrainConfig


def timed_evaluation(model: torch.nn.Module, data: object, spec: EvalSpec) -> tuple[float, Evaluation]:
    """Seconds and result of ``spec``, after an untimed warm-up on one image per class (layout
    changes, autocast caches and first-call allocations stay out of the time)."""
    evaluate(model, data, replace(spec, n_per_class=1), progress=False)
    start = time.perf_counter()
    ev = evaluate(model, data, spec, progress=False)
    return time.perf_counter() - start, ev


def agreement(fp32: Evaluation, bf16: Evaluation) -> list[str]:
    """Per class: both robust accuracies, bf16 inside fp32's Wilson interval, McNemar (Holm)."""
    names = fp32.class_names
    a, b = fp32.worst[0].robust, bf16.worst[0].robust
    acc_a, acc_b = (
        ClassAccuracy.from_flags(a, fp32.labels, len(names)),
        ClassAccuracy.from_flags(b, bf16.labels, len(names)),
    )
    tests = [analysis.mcnemar_exact(a[fp32.labels == k], b[fp32.labels == k]) for k in range(len(names))]
    adjusted = analysis.holm(np.array([t.p_value for t in tests]))
    inside = [bool(acc_a.low[k] <= acc_b.accuracy[k] <= acc_a.high[k]) for k in range(len(names))]
    lines = [f"    {'class':<14} {'fp32 %':>7} {'[95% Wilson]':>14} {'bf16 %':>7}  inside  McNemar p (Holm)"]
    for k, name in enumerate(names):
        interval = f"[{100 * acc_a.low[k]:.1f}, {100 * acc_a.high[k]:.1f}]"
        lines.append(
            f"    {name[:14]:<14} {100 * acc_a.accuracy[k]:7.1f} {interval:>14} {100 * acc_b.accuracy[k]:7.1f}  "
            f"{'yes' if inside[k] else 'NO':<6}  {adjusted[k]:.3f}"
        )
    differ = int((adjusted <= 0.05).sum())
    lines.append(
        f"    per-class robust accuracy, bf16 against fp32: {sum(inside)} of {len(names)} classes inside fp32's "
        f"interval; {differ} of {len(names)} differ by McNemar's test at 5% (Holm); per-sample robust flags "
        f"identical on {100 * float((a == b).mean()):.1f}% of {len(a)} images"
    )
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs/gap", help="a classwise gap folder (its standard and pgd-at runs)")
    p.add_argument("--models", nargs="*", default=None, help="run folders instead (each with best.pt)")
    p.add_argument("--dataset", default=None, help="default: the checkpoint's dataset")
    p.add_argument("--eps", default=None, help="default: the checkpoint's training ε")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--n-per-class", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=250)
    args = p.parse_args(argv)
    folders = [Path(m) for m in args.models] if args.models else [Path(args.runs) / n for n in ("standard", "pgd-at")]
    threads = torch.get_num_threads()
    print(f"PGD-{args.steps}, fp32 against bf16 autocast, {threads} CPU threads, torch {torch.__version__}")
    for folder in folders:
        model, meta = load_checkpoint(folder / "best.pt")
        cfg = TrainConfig.from_dict(meta["config"])  # the checkpoint's own config, as the loop wrote it
        ds = load_dataset(args.dataset or cfg.data.dataset, root=cfg.data.root)
        eps = parse_eps(args.eps) if args.eps else cfg.threat.eps
        spec = EvalSpec(
            attacks=(AttackSpec("pgd", {"steps": args.steps}),),
            eps=(eps,),
            norm=cfg.threat.norm,
            n_per_class=args.n_per_class,
            batch_size=args.batch_size,
            analyses=False,
        )
        t32, fp32 = timed_evaluation(model, ds, spec)
        t16, bf16 = timed_evaluation(model, ds, EvalSpec.from_dict({**spec.to_dict(), "precision": "bf16"}))
        n = len(fp32.labels)
        print(
            f"{folder.name}: {n} {fp32.title} test images at ε={format_eps(eps)} ({cfg.threat.norm}); "
            f"fp32 {n / t32:.1f} img/s, bf16 {n / t16:.1f} img/s: bf16 {t32 / t16:.2f}x the speed of fp32"
        )
        print("\n".join(agreement(fp32, bf16)))


if __name__ == "__main__":
    main()
