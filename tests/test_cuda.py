"""The whole pipeline on a CUDA device: training with every method and the techniques that keep
per-class tensors, evaluation (against the same evaluation on the CPU), the CLI and a study.

They run on the GPU where there is one and on the CPU where there is none (so CI, which has no GPU,
runs every one of them and a broken test cannot hide behind a skip); ``CLASSWISE_TEST_DEVICE``
names another device (``cuda:1``), and a CUDA device that is named but absent skips them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from classwise.attacks import PGD
from classwise.cli import main
from classwise.errors import ClasswiseError
from classwise.evaluate import EvalSpec, boundary_distance, evaluate
from classwise.models import load_checkpoint
from classwise.study import load_study, run_study
from classwise.train import TrainConfig, train
from classwise.train.step import TrainStep
from tests.synthetic import tiny, tiny_train_args, write_class_folders
from tests.test_attacks import Linear, as_split

DEVICE = os.environ.get("CLASSWISE_TEST_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")
pytestmark = pytest.mark.skipif(
    DEVICE.startswith("cuda") and not torch.cuda.is_available(), reason="needs a CUDA device"
)


def _data(tmp_path: Path) -> str:
    return str(write_class_folders(tmp_path, n=12, as_tar=True))


@pytest.mark.parametrize(
    ("method", "balance", "balance_args"),
    [
        ("standard", "none", {}),
        ("pgd-at", "none", {}),
        ("fgsm-rs", "none", {}),
        ("trades", "none", {}),
        ("pgd-at", "class-eps", {"adaptive": True}),
        ("pgd-at", "resample", {}),
        ("pgd-at", "ldam", {"drw_start": 0.5}),
        ("pgd-at", "logit-adjust", {"mode": "posthoc"}),
        ("trades", "frl", {"mode": "both"}),
        ("trades", "cfa", {"begin": 0.0, "fawa_threshold": 0.0}),
    ],
)
def test_training_runs_on_the_device(tmp_path: Path, method: str, balance: str, balance_args: dict) -> None:
    settings = {"data.dataset": _data(tmp_path), "method.name": method, "optim.epochs": 2}
    settings |= {"method.args": {"steps": 2} if method in ("pgd-at", "trades") else {}}
    cfg = TrainConfig.from_dict(tiny(settings | {"balance.name": balance, "balance.args": balance_args}))
    result = train(cfg, tmp_path / "run", device=DEVICE, progress=True)
    assert [h["epoch"] for h in result.history] == [0, 1]
    assert all(np.isfinite(h["train_loss"]) for h in result.history)
    assert result.test.clean().n.sum() == 3 * 12
    model, _ = load_checkpoint(result.checkpoint)  # saved weights load on the CPU
    assert next(model.parameters()).device.type == "cpu"


def _linear_run(
    graph: bool, batches: list[tuple[torch.Tensor, torch.Tensor]], lrs: list[float], host_read: bool = False
) -> tuple[torch.nn.Module, bool]:
    """Train a linear model on ``batches``; ``host_read`` reads the loss back inside the step, which
    a CUDA graph cannot capture. Returns the model and whether the steps ended up graphed."""
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3).to(DEVICE)
    opt = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9, weight_decay=1e-3, fused=DEVICE != "cpu")

    def body(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        if host_read:
            float(loss.detach())
        loss.backward()
        opt.step()

    with TrainStep(body, opt, torch.Generator(device=DEVICE), graph=graph, warmup=2) as step:
        for (x, y), lr in zip(batches, lrs, strict=True):
            step(x, y, lr)
    assert all(isinstance(group["lr"], float) for group in opt.param_groups)  # saved state stays plain
    return model, step.graph


def _batches() -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[float]]:
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(8)]
    return [(x.to(DEVICE), y.to(DEVICE)) for x, y in batches], [0.5 / (1 + i) for i in range(8)]


def test_graph_replay_trains_like_eager_steps() -> None:
    """Warm-up, capture and replays see each batch once, with that step's learning rate, and write
    (not add to) the gradients: the same weights as eager steps, to float rounding."""
    batches, lrs = _batches()
    (eager, _), (graphed, was_graphed) = _linear_run(False, batches, lrs), _linear_run(True, batches, lrs)
    assert was_graphed == (DEVICE != "cpu")
    for a, b in zip(eager.parameters(), graphed.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    shuffled, _ = _linear_run(True, batches[::-1], lrs)  # the batches really are read at each replay
    assert not torch.allclose(shuffled.weight, graphed.weight)


def test_a_step_that_cannot_be_captured_is_one_clear_error() -> None:
    """Reading back to the host inside the step cannot be captured: the error says how to go on,
    and the optimizer's learning rate is a plain float again for the saved state."""
    batches, lrs = _batches()
    if DEVICE == "cpu":  # no graphs on the CPU: the step simply runs
        _linear_run(True, batches, lrs, host_read=True)
        return
    with pytest.raises(ClasswiseError, match="--no-cuda-graphs"):
        _linear_run(True, batches, lrs, host_read=True)


def test_graphed_training_follows_eager_training(tmp_path: Path) -> None:
    """A whole PGD-AT run with and without CUDA graphs: the same training, up to bf16 rounding."""
    data = str(write_class_folders(tmp_path, n=24, as_tar=True))
    cfg = TrainConfig.from_dict(tiny({"data.dataset": data, "method.args.steps": 3, "optim.epochs": 2}))
    runs = {}
    for graphs in (False, True):
        result = train(
            cfg, tmp_path / f"run-{graphs}", device=DEVICE, progress=False, final_evaluation=False, cuda_graphs=graphs
        )
        steps = 3 * (24 - 2) // 8  # 3 classes, 2 images each held out, batches of 8 (the last dropped)
        expected = steps - 3 if graphs and DEVICE != "cpu" else 0  # after 3 eager warm-up steps
        assert [h["graph_steps"] for h in result.history] == [expected, expected]
        runs[graphs] = load_checkpoint(result.run_dir / "model.pt")[0].state_dict()
    diff = max(
        float((runs[True][k].float() - runs[False][k].float()).norm() / runs[False][k].float().norm().clamp_min(1e-12))
        for k in runs[False]
    )
    print("largest relative difference of a weight tensor:", diff)
    assert diff < 0.05


def test_resume_on_the_device_keeps_the_history_whole(tmp_path: Path) -> None:
    cfg = TrainConfig.from_dict(tiny({"data.dataset": _data(tmp_path), "optim.epochs": 1}))
    train(cfg, tmp_path / "run", device=DEVICE, progress=False, final_evaluation=False)
    longer = cfg.with_overrides({"optim.epochs": 2})
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(longer.to_dict()))
    result = train(None, tmp_path / "run", resume=True, device=DEVICE, progress=False)
    assert [h["epoch"] for h in result.history] == [0, 1]


def test_evaluation_on_the_device_matches_the_cpu() -> None:
    """fp32 attacks on a linear model: the same per-sample outcomes on both devices."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(120, 3, 2, 2, generator=g)
    y = Linear()(x).argmax(1).detach()
    y[::5] = (y[::5] + 1) % 3
    data = as_split(x, y)
    spec = EvalSpec(attacks=("fgsm", {"name": "pgd", "args": {"steps": 10, "random_start": False}}), eps=(0.05,))
    on_cpu = evaluate(Linear(), data, spec, class_names=("a", "b", "c"), progress=False)
    on_dev = evaluate(Linear().to(DEVICE), data, spec, class_names=("a", "b", "c"), progress=False)
    np.testing.assert_array_equal(on_dev.clean_pred, on_cpu.clean_pred)
    for a, b in zip(on_dev.records, on_cpu.records, strict=True):
        np.testing.assert_array_equal(a.robust, b.robust)
        np.testing.assert_allclose(a.perturbation, b.perturbation, atol=1e-6)
    np.testing.assert_array_equal(on_dev.robust(on_dev.worst[0]).correct, on_cpu.robust(on_cpu.worst[0]).correct)


def test_boundary_distance_on_the_device() -> None:
    x = torch.rand(30, 3, 2, 2, generator=torch.Generator().manual_seed(4))
    y = Linear()(x).argmax(1).detach()
    attack = PGD(eps=0.5, steps=10)
    on_cpu = boundary_distance(Linear(), x, y, attack=attack, iterations=6)
    on_dev = boundary_distance(Linear().to(DEVICE), x.to(DEVICE), y.to(DEVICE), attack=attack, iterations=6)
    np.testing.assert_allclose(on_dev, on_cpu, atol=1e-6)


def test_cli_train_and_evaluate_on_the_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _data(tmp_path)
    run = tmp_path / "run"
    assert main(["train", *tiny_train_args({"data.dataset": data}), "--out", str(run), "--device", DEVICE]) == 0
    out = tmp_path / "eval"
    args = ["evaluate", "--checkpoint", str(run / "best.pt"), "--dataset", data, "--device", DEVICE]
    args += ["--attack", "fgsm", "--attack", "pgd", "--eps", "0,4/255,8/255", "--steps", "3", "--cascade"]
    assert main([*args, "--targeted", "all", "--out", str(out)]) == 0
    assert "worst" in capsys.readouterr().out
    assert (out / "evaluation.json").exists() and (out / "samples.csv").exists()


def test_study_on_the_device(tmp_path: Path) -> None:
    doc = {
        "name": "tiny",
        "base": tiny({"data.dataset": _data(tmp_path)}),
        "grid": {"seed": [0, 1]},
        "evaluation": {"attacks": [{"name": "pgd", "args": {"steps": 2}}], "eps": ["8/255"]},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = run_study(load_study(path), tmp_path / "s", device=DEVICE, progress=False)
    assert (out.done, out.failed) == (2, 0)
