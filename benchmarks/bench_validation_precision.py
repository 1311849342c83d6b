"""Does validating in bf16 change which epoch a run keeps? Training validation (which picks
``best.pt``) ran in fp32 until this benchmark's result made the training precision the default
(``monitor.precision: train``); it measures what bf16 autocast changes against fp32, beside the
noise that is there anyway.

For each training seed, one training config (``--config``, any file ``classwise train`` reads; by
default ``classwise gap``'s PGD-AT recipe) is trained with validation after every epoch, and after
each epoch the same weights are validated three ways on the validation split: in fp32 (attack seed
``s``), in fp32 with another attack seed (``s + 1``: the PGD random start drawn
again, the noise any validation carries), and under bf16 autocast (seed ``s``). Printed per run:
the selection metric of every epoch each way, the epoch each way picks, and what bf16's pick costs
in the fp32 metric; then, over the runs, how often bf16 picks another epoch than fp32 against how
often the other attack seed does, the mean absolute change of the metric each way, and the
validation time of each precision.

    CLASSWISE_DATA=../shared/data python benchmarks/bench_validation_precision.py --seeds 0 1 2
    CLASSWISE_DATA=../shared/data python benchmarks/bench_validation_precision.py \
        --config studies/cpu/recipe/adversarial-pgd2.yaml --set data.train_per_class=1000 --set optim.epochs=6

``--set KEY=VALUE`` overrides any setting (``monitor.every`` is always 1); the test suite runs it on
synthetic images with a seconds-long recipe (``tests/test_benchmarks.py``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import yaml

from classwise.config import apply_overrides, parse_assignment
from classwise.evaluate import EvalSpec
from classwise.gap import GAP_DEFAULTS
from classwise.train import SELECTION, TrainConfig, prepare_data, rundir
from classwise.train.loop import RunState, Trainer, validation_record

WAYS = ("fp32", "fp32, attack seed + 1", "bf16")


@dataclass
class Curves:
    """One run: the selection metric of every epoch validated each way, and the seconds each took."""

    seed: int
    metric: str
    values: dict[str, list[float]]
    seconds: dict[str, float]

    def picked(self, way: str) -> int:
        return int(np.argmax(self.values[way]))  # the first best epoch, as the loop keeps it


def specs(cfg: TrainConfig) -> dict[str, EvalSpec]:
    spec = cfg.validation_spec()
    return {
        "fp32": spec,
        "fp32, attack seed + 1": replace(spec, seed=spec.seed + 1),
        "bf16": replace(spec, precision="bf16"),
    }


def validate_each_epoch(cfg: TrainConfig, device: torch.device) -> Curves:
    """Train ``cfg`` epoch by epoch through the training loop and validate each epoch's weights three ways."""
    select = SELECTION.get(cfg.selection_metric)
    ds = prepare_data(cfg)
    trainer, state = Trainer(cfg, ds, device), RunState()
    curves = Curves(cfg.seed, cfg.selection_metric, {w: [] for w in WAYS}, dict.fromkeys(WAYS, 0.0))
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        rundir.create(run_dir, cfg)
        for epoch in range(cfg.optim.epochs):
            trainer.epoch(run_dir, epoch, state, progress=False, graphs=False)
            predictor = trainer.predictor()
            for way, spec in specs(cfg).items():
                start = time.perf_counter()
                record = validation_record(predictor, ds, spec, cfg.validates_robustness)
                curves.seconds[way] += time.perf_counter() - start
                curves.values[way].append(float(select(record)))
    return curves


def report(runs: list[Curves]) -> None:
    for c in runs:
        print(f"seed {c.seed}, selection metric {c.metric}, per epoch (%):")
        for way in WAYS:
            cells = " ".join(f"{100 * v:5.1f}" for v in c.values[way])
            print(f"    {way:<22} {cells}   picks epoch {c.picked(way) + 1}")
        fp32 = c.values["fp32"]
        cost = fp32[c.picked("fp32")] - fp32[c.picked("bf16")]
        print(f"    bf16's pick costs {100 * cost:.1f} points of the fp32 metric")
    n = len(runs)
    moved = {w: sum(c.picked(w) != c.picked("fp32") for c in runs) for w in WAYS[1:]}
    change = {
        w: 100 * float(np.mean([abs(a - b) for c in runs for a, b in zip(c.values[w], c.values["fp32"], strict=True)]))
        for w in WAYS[1:]
    }
    print(
        f"over {n} runs: bf16 validation picks another epoch than fp32 in {moved['bf16']} of {n}; another attack "
        f"seed in fp32 does in {moved[WAYS[1]]} of {n}; mean |change| of the metric per epoch: bf16 "
        f"{change['bf16']:.2f} points, other attack seed {change[WAYS[1]]:.2f} points"
    )
    seconds = {w: sum(c.seconds[w] for c in runs) for w in ("fp32", "bf16")}
    print(
        f"validation time: fp32 {seconds['fp32']:.1f} s, bf16 {seconds['bf16']:.1f} s "
        f"(bf16 {seconds['fp32'] / max(seconds['bf16'], 1e-9):.2f}x the speed of fp32)"
    )
    verdict = "no more than" if moved["bf16"] <= moved[WAYS[1]] else "more often than"
    print(f"verdict: bf16 changes the picked epoch {verdict} the attack's own seed noise does, in these runs")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=None, help="training config (default: classwise gap's recipe)")
    p.add_argument("--dataset", default=None, help="override the config's dataset (e.g. cifar10-jpeg.tar.gz)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds, one run each")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    args = p.parse_args(argv)
    base = yaml.safe_load(args.config.read_text()) if args.config else {**GAP_DEFAULTS, "method": {"name": "pgd-at"}}
    settings = {"data.dataset": args.dataset} if args.dataset else {}
    settings.update(parse_assignment(a) for a in args.set)
    recipe = apply_overrides(base, {**settings, "monitor.every": 1})
    runs = []
    for seed in args.seeds:
        cfg = TrainConfig.from_dict(apply_overrides(recipe, {"seed": seed}))
        runs.append(validate_each_epoch(cfg, torch.device(args.device)))
    print(
        f"{args.config or 'classwise gap recipe'}: {cfg.method.name}, {cfg.optim.epochs} epochs, training precision "
        f"{cfg.optim.precision}, validation {cfg.validation_spec().describe()}"
    )
    report(runs)


if __name__ == "__main__":
    main()
