"""Workers × threads on a CPU: two jobs one after the other with every thread each, against the same
two jobs side by side with an equal share of the threads each, for training and for evaluation.

A job is a ``classwise`` command run in its own process, as a study's worker runs it: ``evaluate``
(PGD-``--steps`` on the first ``--n-per-class`` test images per class of ``--model``'s dataset) or
``train`` (``--model``'s own config for one epoch on ``--train-per-class`` images per class, no
validation). Printed per phase: the wall time of the pair each way and the throughput ratio
(side by side ÷ one after the other; above 1, workers beat threads).

    CLASSWISE_DATA=../shared/data python benchmarks/bench_workers.py --model runs/gap/pgd-at
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def job(phase: str, args: argparse.Namespace, out: Path) -> list[str]:
    cli = [sys.executable, "-m", "classwise.cli"]
    if phase == "evaluate":
        return [
            *cli,
            *["evaluate", "--checkpoint", str(Path(args.model) / "best.pt"), "--dataset", args.dataset],
            *["--attack", "pgd", "--steps", str(args.steps), "--n-per-class", str(args.n_per_class)],
            *["--set", "evaluation.analyses=false", "--out", str(out)],
        ]
    return [
        *cli,
        *["train", "--config", str(Path(args.model) / "config.yaml"), "optim.epochs=1", "monitor.every=1000"],
        *[f"data.train_per_class={args.train_per_class}", "data.val_per_class=1", "evaluation.n_per_class=1"],
        *[f"data.dataset={args.dataset}", "--out", str(out)],
    ]


def run_pair(phase: str, args: argparse.Namespace, threads: int, together: bool, root: Path) -> float:
    """Wall seconds of two jobs with ``threads`` threads each, side by side or one after the other."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    commands = [job(phase, args, root / f"{phase}-{threads}-{together}-{i}") for i in range(2)]
    if together:
        procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL) for c in commands]
        codes = [proc.wait() for proc in procs]
    else:
        codes = [subprocess.run(c, env=env, stdout=subprocess.DEVNULL).returncode for c in commands]
    if any(codes):
        raise SystemExit(f"a {phase} job failed (its message is above): {' '.join(commands[0])}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a run folder (best.pt and config.yaml)")
    p.add_argument("--dataset", required=True, help="its dataset, as classwise takes it (e.g. fashion-mnist)")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--n-per-class", type=int, default=50)
    p.add_argument("--train-per-class", type=int, default=100)
    p.add_argument("--phases", nargs="*", default=["evaluate", "train"])
    args = p.parse_args(argv)
    share = max(1, args.cores // 2)
    print(f"two jobs on {args.cores} cores: 1 worker × {args.cores} threads twice, against 2 workers × {share} threads")
    with tempfile.TemporaryDirectory() as tmp:
        for phase in args.phases:
            apart = run_pair(phase, args, args.cores, together=False, root=Path(tmp))
            side = run_pair(phase, args, share, together=True, root=Path(tmp))
            print(
                f"{phase:<9} one after the other {apart:6.1f} s, side by side {side:6.1f} s: "
                f"2 workers × {share} threads give {apart / side:.2f}x the throughput of 1 × {args.cores}"
            )


if __name__ == "__main__":
    main()
