"""Class-wise AutoAttack against the reference ``pyautoattack`` called directly.

Same model, images, ε, seed and batch size. The reference is timed as its users call it: one
``AutoAttack(...).run_standard_evaluation(x, y, bs=...)`` over all images (standard version:
APGD-CE, APGD-T, FAB-T, Square). classwise is timed through ``evaluate`` with
``EvalSpec(attacks=("autoattack",))``, which runs the same reference attack objects component by
component on the still-robust images, in the reference's batches, and records which component
broke each image. Printed: whether the per-sample robust flags are identical (they must be), the
wall times and the overhead; classwise is also timed with its resumable progress file (what
``classwise evaluate`` uses) and its class-geometry analyses off, as the reference has neither.

Usage:

    CLASSWISE_DATA=../shared/data python benchmarks/bench_autoattack.py --runs runs/gap --n-per-class 10

``--runs`` is a folder made by ``classwise gap`` (its ``pgd-at/best.pt`` is attacked); missing, it
is made first. The test suite runs it on a tiny ``classwise gap`` folder of synthetic images
(``tests/test_benchmarks.py``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from classwise.attacks import parse_eps
from classwise.data import load_dataset, per_class_subset
from classwise.evaluate import AttackSpec, EvalSpec, evaluate
from classwise.evaluate.progress_state import STATE
from classwise.models import load_checkpoint
from classwise.provenance import cpu_name
from classwise.train import TrainConfig


def reference(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, bs: int, seed: int) -> np.ndarray:
    """Robust flags from the reference, called the way its README shows."""
    from pyautoattack import AutoAttack

    adversary = AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=seed, device=x.device)
    adversary.verbose = False
    _, y_adv = adversary.run_standard_evaluation(x, y, batch_size=bs)
    return (y_adv == y).cpu().numpy()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs/gap")
    p.add_argument("--model", default="pgd-at", help="which model of --runs to attack (default pgd-at)")
    p.add_argument("--eps", default=None, help="default: the model's training ε")
    p.add_argument("--n-per-class", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    runs = Path(args.runs)
    if not (runs / args.model / "best.pt").exists():
        from classwise.gap import GAP_DEFAULTS, measure_gap

        measure_gap(TrainConfig.from_dict(GAP_DEFAULTS), runs, progress=False)
    model, meta = load_checkpoint(runs / args.model / "best.pt")
    cfg = TrainConfig.from_dict(meta["config"])  # the checkpoint's own config, as the loop wrote it
    eps = parse_eps(args.eps) if args.eps else cfg.threat.eps
    ds = load_dataset(cfg.data.dataset, root=cfg.data.root)
    test = per_class_subset(ds.test, args.n_per_class, ds.num_classes)
    x, y = test.images.float() / 255, test.labels
    print(
        f"AutoAttack standard, L∞ ε={eps:.4g}, {len(y)} images of {ds.name} ({args.model} model), batch "
        f"{args.batch_size}, seed {args.seed}, {cpu_name()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}"
    )
    start = time.perf_counter()
    ref = reference(model, x, y, eps, args.batch_size, args.seed)
    t_ref = time.perf_counter() - start

    spec = EvalSpec(
        attacks=(AttackSpec("autoattack"),), eps=(eps,), batch_size=args.batch_size, seed=args.seed, analyses=False
    )
    start = time.perf_counter()
    plain = evaluate(model, test, spec, class_names=ds.class_names, progress=False)
    t_plain = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        saved = evaluate(model, test, spec, class_names=ds.class_names, progress=False, state_path=Path(tmp) / STATE)
        t_saved = time.perf_counter() - start

    for name, ev in (("classwise", plain), ("classwise with progress file", saved)):
        flags = ev.headline.robust
        same = "identical" if np.array_equal(flags, ref) else f"DIFFER at {np.flatnonzero(flags != ref).tolist()}"
        print(f"  per-sample robust flags, {name} vs reference: {same}")
    print(f"  robust accuracy: reference {ref.mean():.2%}, classwise {plain.headline.robust.mean():.2%}")
    broken = {c: int((plain.headline.broken_by == c).sum()) for c in ("apgd-ce", "apgd-t", "fab-t", "square")}
    print(f"  images broken by each component (classwise records it): {broken}")
    print(f"  wall time: reference {t_ref:.1f} s, classwise {t_plain:.1f} s ({t_plain / t_ref - 1:+.1%}), ")
    print(f"             classwise with its resumable progress file {t_saved:.1f} s ({t_saved / t_ref - 1:+.1%})")


if __name__ == "__main__":
    main()
