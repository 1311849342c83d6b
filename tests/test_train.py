from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from classwise.errors import ConfigError
from classwise.models import create_model, load_checkpoint
from classwise.train import METHODS, TrainConfig, train
from classwise.train.methods import Knobs
from classwise.train.schedules import learning_rate
from tests.synthetic import write_class_folders

ROOT = Path(__file__).resolve().parents[1]


def _data(tmp_path: Path, n: int = 12) -> str:
    return str(write_class_folders(tmp_path, ("cat", "dog", "ship"), n=n, as_tar=True))


def _cfg(data: str, **kw: object) -> TrainConfig:
    base = {
        "dataset": data,
        "model": "resnet20",
        "model_args": {"width": 4},
        "method": "pgd-at",
        "eps": 8 / 255,
        "attack_steps": 2,
        "epochs": 2,
        "batch_size": 8,
        "lr": 0.05,
        "val_per_class": 2,
        "eval_steps": 2,
        "evaluation": {"steps": 2},
    }
    return TrainConfig.from_dict({**base, **kw})


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"eps": -0.1}, "eps must be in"),
        ({"attack_steps": 0}, "attack_steps must be >= 1"),
        ({"method": "madry"}, "unknown method"),
        ({"schedule": "linear"}, "unknown schedule"),
        ({"method": "trades", "eps": 0.0}, "needs eps > 0"),
        ({"milestones": [1.5]}, "milestones"),
        ({"colour": "red"}, "unknown training option"),
    ],
)
def test_impossible_settings_are_refused(changes: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_dict({**TrainConfig().to_dict(), **changes})


def test_step_size_defaults_follow_the_papers() -> None:
    assert TrainConfig(method="pgd-at", eps=8 / 255, attack_steps=10).step_size == pytest.approx(2 / 255)
    assert TrainConfig(method="fgsm-rs", eps=8 / 255).step_size == pytest.approx(10 / 255)


def test_schedules() -> None:
    cfg = TrainConfig(lr=0.1, epochs=200, schedule="piecewise", milestones=(0.5, 0.75))
    assert [learning_rate(cfg, t) for t in (0, 99.9, 100, 150)] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    cyc = TrainConfig(lr=0.2, epochs=15, schedule="onecycle")
    assert [learning_rate(cyc, t) for t in (0, 6, 15)] == pytest.approx([0.0, 0.2, 0.0])
    cos = TrainConfig(lr=0.1, epochs=10, schedule="cosine")
    assert learning_rate(cos, 5) == pytest.approx(0.05)


def test_trades_with_beta_zero_is_clean_cross_entropy() -> None:
    model = create_model("resnet20", 3, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, width=4).eval()
    x, y = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    g = torch.Generator().manual_seed(0)
    cfg = TrainConfig(method="trades", trades_beta=0.0)
    out = METHODS.get("trades")(model, x, y, cfg, g, Knobs.plain(cfg))
    torch.testing.assert_close(out.loss, F.cross_entropy(model(x), y, reduction="none"))


def test_adversarial_methods_raise_the_loss() -> None:
    model = create_model("resnet20", 3, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, width=4).eval()
    x, y = torch.rand(16, 3, 8, 8), torch.randint(0, 3, (16,))
    plain = TrainConfig(method="standard")
    clean = METHODS.get("standard")(model, x, y, plain, torch.Generator(), Knobs.plain(plain)).loss
    for method in ("pgd-at", "fgsm-rs"):
        cfg = TrainConfig(method=method, eps=16 / 255, attack_steps=5)
        adv = METHODS.get(method)(model, x, y, cfg, torch.Generator().manual_seed(0), Knobs.plain(cfg)).loss
        assert adv.mean() > clean.mean()


@pytest.mark.parametrize(("method", "passes"), [("standard", 1), ("pgd-at", 4), ("fgsm-rs", 2), ("trades", 6)])
def test_methods_run_the_model_only_as_often_as_the_method_needs(method: str, passes: int) -> None:
    """PGD-AT-3: 3 attack steps + 1 training pass; TRADES-3 adds the clean reference and the clean
    term. One more pass (judging the attack's last iterate) would waste a forward and, in train
    mode, move BatchNorm's running statistics once more per step."""
    model = create_model("resnet20", 3, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, width=4).train()
    calls: list[int] = []
    model.register_forward_hook(lambda *_: calls.append(1))
    cfg = TrainConfig(method=method, eps=8 / 255, attack_steps=3)
    METHODS.get(method)(
        model, torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]), cfg, torch.Generator(), Knobs.plain(cfg)
    )
    assert len(calls) == passes


def test_trades_restores_the_model_mode_when_its_attack_fails() -> None:
    model = create_model("resnet20", 3, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, width=4).train()
    model.register_forward_hook(lambda module, *_: None if module.training else 1 / 0)  # fails in eval mode
    cfg = TrainConfig(method="trades", eps=8 / 255, attack_steps=2)
    with pytest.raises(ZeroDivisionError):
        METHODS.get("trades")(
            model, torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]), cfg, torch.Generator(), Knobs.plain(cfg)
        )
    assert model.training


def test_training_run_leaves_its_artifacts(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = train(_cfg(_data(tmp_path), method="fgsm-rs", best_metric="robust_worst"), run, progress=False)
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "state.pt", "model.pt", "best.pt", "history.json", "eval"}
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    assert len(history[0]["val"]["robust"]) == 3 and "co_pgd_acc" in history[0]
    assert result.best_epoch in (0, 1)
    _, meta = load_checkpoint(run / "best.pt")
    assert meta["class_names"] == ["cat", "dog", "ship"] and meta["config"]["method"] == "fgsm-rs"
    assert (run / "eval" / "evaluation.json").exists()
    assert result.test.clean().n.tolist() == [12, 12, 12]


def test_run_folders_are_never_overwritten(tmp_path: Path) -> None:
    data = _data(tmp_path)
    run = tmp_path / "run"
    train(_cfg(data, epochs=1), run, progress=False)
    with pytest.raises(ConfigError, match="already holds this run"):
        train(_cfg(data, epochs=1), run, progress=False)
    with pytest.raises(ConfigError, match="different run"):
        train(_cfg(data, epochs=1, lr=0.01), run, progress=False)
    with pytest.raises(ConfigError, match="changed config"):
        train(_cfg(data, epochs=1, lr=0.01), run, resume=True, progress=False)
    with pytest.raises(ConfigError, match="no run to resume"):
        train(None, tmp_path / "empty", resume=True, progress=False)


_CHILD = """
import sys
from classwise.train import TrainConfig, train
train(TrainConfig.load(__import__('pathlib').Path(sys.argv[1])), sys.argv[2], progress=False)
"""


@pytest.mark.parametrize(
    ("precision", "width", "channels_last"),
    [("fp32", 4, False), ("bf16", 4, False), ("bf16", 16, True)],
    ids=["fp32", "bf16", "bf16-channels-last"],
)
def test_resume_after_kill_9_matches_an_uninterrupted_run(
    tmp_path: Path, precision: str, width: int, channels_last: bool
) -> None:
    data = _data(tmp_path, n=40)
    cfg = _cfg(data, epochs=4, method="pgd-at", precision=precision, model_args={"width": width})
    cfg_file = tmp_path / "cfg.yaml"
    cfg.dump(cfg_file)
    killed = tmp_path / "killed"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(cfg_file), str(killed)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    deadline = time.time() + 120
    while time.time() < deadline and child.poll() is None:
        if (killed / "history.json").exists() and json.loads((killed / "history.json").read_text()):
            os.kill(child.pid, signal.SIGKILL)  # dies wherever it is: mid-epoch or mid-write
            break
        time.sleep(0.02)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done_before = len(json.loads((killed / "history.json").read_text()))
    assert done_before < 4
    resumed = train(None, killed, resume=True, progress=False)
    straight = train(cfg, tmp_path / "straight", progress=False)
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3]
    a, _ = load_checkpoint(killed / "model.pt")
    b, _ = load_checkpoint(tmp_path / "straight" / "model.pt")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert resumed.history[-1]["val"] == straight.history[-1]["val"]
    assert {(h["precision"], h["channels_last"]) for h in resumed.history} == {(precision, channels_last)}
    sessions = json.loads((killed / "provenance.json").read_text())
    assert [s["first_epoch"] for s in sessions] == [0, done_before] and sessions[0]["precision"] == precision


def test_an_empty_config_is_an_error_not_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        train(None, tmp_path / "run", resume=True, progress=False)
