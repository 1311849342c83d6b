"""Every benchmark in benchmarks/ runs, as documented, in a quick mode: seconds on synthetic images
and tiny models, through its own ``main``. A benchmark that no longer runs (an old config shape,
a renamed API) fails here, on every CI run. The numbers they print are not checked: speed targets
live in the benchmarks' own output, never in a timed test."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest

from classwise.cli import main as classwise
from tests.synthetic import tiny_train_args, write_class_folders

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py"))
TINY_SETTINGS = [  # the recipe of bench_precision shrunk to seconds, as --set options
    "model.args={width: 4}",
    "optim.epochs=1",
    "optim.batch_size=8",
    "data.train_per_class=null",
    "data.val_per_class=2",
    "monitor.steps=1",
    "method.args.steps=1",
    "evaluation.attacks=[{name: pgd, args: {steps: 1}}]",
    "evaluation.n_per_class=null",
]


@pytest.fixture(scope="module")
def gap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``classwise gap`` folder (standard and pgd-at) trained for seconds on synthetic 8×8 images."""
    root = tmp_path_factory.mktemp("bench")
    data = write_class_folders(root / "data", n=6)
    out = root / "gap"
    assert classwise(["gap", *tiny_train_args({"data.dataset": str(data)}), "--out", str(out)]) == 0
    return out


def _args(name: str, gap: Path, tmp: Path) -> list[str]:
    data = str(gap.parent / "data" / "images")
    quick = {
        "bench_eval": [  # any checkpoints by name (--runs reads the same two from a gap folder)
            *["--model", f"standard={gap / 'standard' / 'best.pt'}", "--model", f"pgd-at={gap / 'pgd-at' / 'best.pt'}"],
            "--n-per-class",
            "2",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--peak-repeats",
            "1",
        ],
        "bench_autoattack": ["--runs", str(gap), "--n-per-class", "1", "--batch-size", "4"],
        "bench_workers": [
            *["--model", str(gap / "pgd-at"), "--dataset", data, "--n-per-class", "2", "--steps", "2"],
            *["--train-per-class", "5"],
        ],
        "bench_levers": [
            *["--model", str(gap / "pgd-at"), "--n-per-class", "2", "--steps", "2"],
            *["--batch-size", "4", "--batch-sizes", "2", "--skip", "torch.compile"],
        ],
        "bench_attack_precision": ["--runs", str(gap), "--n-per-class", "2", "--steps", "2", "--batch-size", "4"],
        "bench_precision": ["fashion", "--dataset", data, "--out", str(tmp / "precision")]
        + [x for s in TINY_SETTINGS for x in ("--set", s)],
        "bench_validation_precision": ["--dataset", data, "--seeds", "0", "1"]
        + [x for s in TINY_SETTINGS for x in ("--set", s)]
        + ["--set", "optim.epochs=2"],
        "bench_train": [
            *["--models", "resnet20", "--methods", "standard"],
            *["--batch-size", "4", "--iters", "1", "--peak-repeats", "1"],
        ],
    }
    assert name in quick, f"benchmarks/{name}.py has no quick mode in tests/test_benchmarks.py: add one"
    return quick[name]


EXPECT = {  # a line each benchmark prints when it ran to the end
    "bench_eval": ("default <= ", "pgd-at", "of the fp32 matmul peak"),
    "bench_autoattack": ("per-sample robust flags, classwise vs reference: identical",),
    "bench_workers": ("evaluate", "train", "the throughput of 1 ×"),
    "bench_levers": (
        *("baseline", "channels_last off", "batch 2", "1 thread", "early stop on", "bf16 autocast"),
        "where the baseline's time goes",
    ),
    "bench_attack_precision": ("bf16 against fp32:", "McNemar", "the speed of fp32"),
    "bench_precision": ("per-class values lie inside each other's interval",),
    "bench_train": ("fp32 matmul peak", "resnet20"),
    "bench_validation_precision": ("picks epoch", "over 2 runs: bf16 validation picks", "verdict: bf16 changes"),
}


@pytest.mark.parametrize("name", BENCHMARKS)
def test_the_benchmark_runs_in_its_quick_mode(
    name: str, gap: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    module.main(_args(name, gap, tmp_path))
    out = capsys.readouterr().out
    for text in EXPECT[name]:
        assert text in out, out
    if name == "bench_eval" and importlib.util.find_spec("torchattacks") is not None:
        assert out.count("exact per-class match") == 2, out  # the peer agrees class by class, both models


def test_every_benchmark_is_run_here() -> None:
    assert set(BENCHMARKS) == set(EXPECT), "a benchmark without a quick-mode test, or a test of one that is gone"


def test_bench_train_measures_no_bf16_peak_where_bf16_is_emulated(
    gap: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without native bf16 a 2048² bf16 matmul takes minutes (torch emulates it): the benchmark
    measures the fp32 peak only and says why the bf16 one is missing."""
    import torch

    module = importlib.import_module("benchmarks.bench_train")
    asked: list[torch.dtype] = []
    monkeypatch.setattr(module, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(module, "matmul_peak", lambda device, dtype, repeats: asked.append(dtype) or 1e9)
    module.main(_args("bench_train", gap, tmp_path))
    out = capsys.readouterr().out
    assert asked and set(asked) == {torch.float32}
    assert "bf16 matmul peak: not measured, this CPU has no native bf16" in out and "fp32 matmul peak 1.0" in out


@pytest.mark.parametrize("name", BENCHMARKS)
def test_the_benchmark_starts_as_the_readme_runs_it(name: str) -> None:
    """``python benchmarks/NAME.py`` from the repository root (not ``python -m``): a benchmark that
    imports something only importable as a package module fails here."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, f"benchmarks/{name}.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr
