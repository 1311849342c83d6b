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

from classwise.config import apply_overrides
from classwise.errors import ConfigError
from classwise.models import create_model, load_checkpoint
from classwise.train import METHODS, TrainConfig, train
from classwise.train.methods import Knobs, Method
from classwise.train.schedules import learning_rate
from tests.synthetic import write_class_folders

ROOT = Path(__file__).resolve().parents[1]


def _data(tmp_path: Path, n: int = 12) -> str:
    return str(write_class_folders(tmp_path, ("cat", "dog", "ship"), n=n, as_tar=True))


def _cfg(data: str, settings: dict | None = None) -> TrainConfig:
    base = {
        "data": {"dataset": data, "val_per_class": 2},
        "model": {"name": "resnet20", "args": {"width": 4}},
        "threat": {"eps": 8 / 255},
        "method": {"name": "pgd-at", "args": {"steps": 2}},
        "optim": {"epochs": 2, "batch_size": 8, "lr": 0.05},
        "monitor": {"steps": 2},
        "evaluation": {"attacks": [{"name": "pgd", "args": {"steps": 2}}]},
    }
    return TrainConfig.from_dict(apply_overrides(base, settings or {}))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"threat.eps": -0.1}, "threat: eps must be in"),
        ({"method.args.steps": 0}, "method.args: steps must be >= 1"),
        ({"method.args.steps": "ten"}, "method.args.steps: expected a whole number, got 'ten'"),
        ({"method.name": "madry"}, "unknown training method 'madry'"),
        ({"optim.schedule": "linear"}, "unknown schedule 'linear'"),
        ({"method.name": "trades", "threat.eps": 0.0}, "trades needs threat.eps > 0"),
        ({"optim.milestones": [1.5]}, "milestones"),
        ({"optim.lr": "fast"}, "optim.lr: expected a number or a fraction"),
        ({"colour": "red"}, "colour: unknown setting"),
        ({"optim.colour": "red"}, "optim.colour: unknown setting"),
        ({"method.args.beta": 6}, "method.args.beta: unknown setting"),
        ({"monitor.select": "best"}, "unknown selection metric 'best'"),
        ({"optim.precision": "fp16"}, "unknown precision"),
        ({"monitor.precision": "bf16"}, "monitor.precision must be one of train, fp32"),
        ({"seed": -1}, "seed must be a whole number >= 0"),
        ({"threat.norm": "L1"}, "unknown norm 'L1'"),
        ({"threat.norm": "L2", "threat.eps": 100}, "absurd for L2"),
        ({"threat.norm": "L2", "method.name": "fgsm-rs"}, "fgsm-rs is published for Linf only"),
        ({"threat.norm": "L2", "evaluation.norm": "Linf", "evaluation.eps": None}, None),
        ({"evaluation.norm": "L2"}, "give evaluation.eps for that norm"),
    ],
)
def test_impossible_settings_are_refused_naming_the_setting(changes: dict, match: str | None) -> None:
    if match is None:  # the default evaluation norm under an L2 threat: the training norm, not an error
        assert TrainConfig().with_overrides(changes).test_spec().norm == "L2"
        return
    with pytest.raises(ConfigError, match=match):
        TrainConfig().with_overrides(changes)


def test_an_l2_run_validates_and_evaluates_at_its_own_threat_model() -> None:
    cfg = TrainConfig().with_overrides({"threat.norm": "l2", "threat.eps": 0.5, "method.name": "trades"})
    assert cfg.threat.norm == "L2"  # spelled as RobustBench does
    assert (cfg.validation_spec().norm, cfg.validation_spec().eps) == ("L2", (0.5,))
    assert (cfg.test_spec().norm, cfg.test_spec().eps) == ("L2", (0.5,))
    standard = TrainConfig().with_overrides({"threat.norm": "L2", "threat.eps": 0, "method.name": "standard"})
    assert standard.test_spec().eps == (0.5,)  # RobustBench's L2 budget when trained without one
    # an evaluation that names its ε keeps its own norm: an L∞ model audited under L2
    cross = TrainConfig().with_overrides({"evaluation.norm": "L2", "evaluation.eps": [0.25]})
    assert (cross.test_spec().norm, cross.test_spec().eps) == ("L2", (0.25,))


def test_overrides_use_one_syntax_and_fractions_work_everywhere(tmp_path: Path) -> None:
    cfg = TrainConfig().with_overrides(["threat.eps=8/255", "optim.lr=0.05", "balance.name=focal"])
    assert cfg.threat.eps == pytest.approx(8 / 255) and cfg.optim.lr == 0.05 and cfg.balance.name == "focal"
    assert cfg.with_overrides({"balance.args.gamma": 3}).balance.args == {"gamma": 3}
    (tmp_path / "c.yaml").write_text("threat: {eps: 8/255}\nmethod: {name: trades, args: {beta: 1}}\n")
    loaded = TrainConfig.load(tmp_path / "c.yaml")
    assert loaded.threat.eps == pytest.approx(8 / 255) and loaded.method.options.beta == 1.0
    # a piece's args belong to it: switching the method starts its args afresh
    assert loaded.with_overrides({"method.name": "pgd-at"}).method.args == {}
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_switching_a_piece_warns_when_it_drops_options_the_new_piece_takes(caplog: pytest.LogCaptureFixture) -> None:
    from classwise.config import apply_overrides
    from classwise.train.config import dropped_options as dropped

    def dropped_options(tree: dict, assignments: dict) -> list[str]:
        return dropped(tree, apply_overrides(tree, assignments))

    pgd3 = TrainConfig().with_overrides({"method.name": "pgd-at", "method.args.steps": 3}).to_dict()
    (message,) = dropped_options(pgd3, {"method.name": "trades"})  # TRADES takes steps: 3 would be lost
    assert message.startswith("method.name=trades starts method.args afresh and drops steps=3")
    assert dropped_options(pgd3, {"method.name": "standard"}) == []  # standard training has no steps
    assert dropped_options(pgd3, {"method.name": "trades", "method.args": {"steps": 3}}) == []
    cfa = {**pgd3, "balance": {"name": "cfa", "args": {"lambda1": 0.3}}}
    assert dropped_options(cfa, {"balance.name": "focal"}) == []  # focal has no lambda1
    with caplog.at_level("WARNING"):
        trades = TrainConfig.from_dict(pgd3).with_overrides(["method.name=trades"])
    assert trades.method.args == {} and "drops steps=3" in caplog.text


def test_step_size_defaults_follow_the_papers() -> None:
    pgd_at = METHODS.get("pgd-at")(TrainConfig().method.options, 8 / 255)
    x, y = torch.zeros(2, 3, 8, 8), torch.tensor([0, 1])
    assert pgd_at.options.steps == 10 and pgd_at.options.step_size is None  # 2.5·ε/10 = 2/255 in the loss
    calls: list[float] = []

    def spy(*args: object, step_size: float, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(float(step_size))
        return x, torch.zeros(2, dtype=torch.bool)

    model = create_model("resnet20", 3, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, width=4)
    import importlib

    core = importlib.import_module("classwise.attacks.pgd")  # the training attack's PGD core
    original = core.pgd
    core.pgd = spy
    try:
        pgd_at.loss(model, x, y, torch.Generator(), Knobs(8 / 255))
        fgsm = METHODS.get("fgsm-rs")(TrainConfig.from_dict({"method": {"name": "fgsm-rs"}}).method.options, 8 / 255)
        fgsm.loss(model, x, y, torch.Generator(), Knobs(8 / 255))
    finally:
        core.pgd = original
    assert calls == pytest.approx([2 / 255, 10 / 255])


def test_schedules() -> None:
    cfg = TrainConfig().with_overrides({"optim.lr": 0.1, "optim.epochs": 200, "optim.schedule": "piecewise"})
    assert [learning_rate(cfg.optim, t) for t in (0, 99.9, 100, 150)] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    cyc = TrainConfig().with_overrides({"optim.lr": 0.2, "optim.epochs": 15, "optim.schedule": "onecycle"})
    assert [learning_rate(cyc.optim, t) for t in (0, 6, 15)] == pytest.approx([0.0, 0.2, 0.0])
    cos = TrainConfig().with_overrides({"optim.lr": 0.1, "optim.epochs": 10, "optim.schedule": "cosine"})
    assert learning_rate(cos.optim, 5) == pytest.approx(0.05)


def _method(name: str, eps: float = 8 / 255, **args: object) -> Method:
    cfg = TrainConfig.from_dict({"method": {"name": name, "args": args}, "threat": {"eps": eps}})
    return METHODS.get(name)(cfg.method.options, eps)


def test_trades_with_beta_zero_is_clean_cross_entropy() -> None:
    model = create_model("resnet20", 3, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, width=4).eval()
    x, y = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    out = _method("trades", beta=0.0).loss(model, x, y, torch.Generator().manual_seed(0), Knobs(8 / 255))
    torch.testing.assert_close(out.loss, F.cross_entropy(model(x), y, reduction="none"))


def test_adversarial_methods_raise_the_loss() -> None:
    model = create_model("resnet20", 3, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, width=4).eval()
    x, y = torch.rand(16, 3, 8, 8), torch.randint(0, 3, (16,))
    clean = _method("standard").loss(model, x, y, torch.Generator(), Knobs(16 / 255)).loss
    for method in ("pgd-at", "fgsm-rs"):
        args = {"steps": 5} if method == "pgd-at" else {}
        adv = _method(method, 16 / 255, **args).loss(model, x, y, torch.Generator().manual_seed(0), Knobs(16 / 255))
        assert adv.loss.mean() > clean.mean()


@pytest.mark.parametrize(("method", "passes"), [("standard", 1), ("pgd-at", 4), ("fgsm-rs", 2), ("trades", 6)])
def test_methods_run_the_model_only_as_often_as_the_method_needs(method: str, passes: int) -> None:
    """PGD-AT-3: 3 attack steps + 1 training pass; TRADES-3 adds the clean reference and the clean
    term. One more pass (judging the attack's last iterate) would waste a forward and, in train
    mode, move BatchNorm's running statistics once more per step."""
    model = create_model("resnet20", 3, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, width=4).train()
    calls: list[int] = []
    model.register_forward_hook(lambda *_: calls.append(1))
    m = _method(method, **({"steps": 3} if method in ("pgd-at", "trades") else {}))
    m.loss(model, torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]), torch.Generator(), Knobs(8 / 255))
    assert len(calls) == passes


def test_trades_restores_the_model_mode_when_its_attack_fails() -> None:
    model = create_model("resnet20", 3, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, width=4).train()
    model.register_forward_hook(lambda module, *_: None if module.training else 1 / 0)  # fails in eval mode
    with pytest.raises(ZeroDivisionError):
        _method("trades", steps=2).loss(
            model, torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]), torch.Generator(), Knobs(8 / 255)
        )
    assert model.training


@pytest.mark.parametrize(("monitor", "expected"), [("train", "bf16"), ("fp32", "fp32")])
def test_validation_runs_in_the_training_precision_unless_pinned_to_fp32(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, monitor: str, expected: str
) -> None:
    """bench_validation_precision measured that bf16 validation keeps the same epochs, so by default
    a run validates in the precision it trains in; the studies begun before pin fp32."""
    from classwise.train import loop

    seen: list[str] = []
    validate = loop.validation_record
    monkeypatch.setattr(
        loop, "validation_record", lambda m, ds, spec, r: seen.append(spec.precision) or validate(m, ds, spec, r)
    )
    cfg = _cfg(_data(tmp_path), {"optim.precision": "bf16", "monitor.precision": monitor})
    train(cfg, tmp_path / "run", progress=False, final_evaluation=False)
    assert seen == [expected, expected]  # both epochs
    assert TrainConfig().with_overrides({"optim.precision": "fp32"}).validation_spec("fp32").precision == "fp32"


def test_a_run_stored_before_monitor_precision_existed_reads_back_as_validated_in_fp32(tmp_path: Path) -> None:
    import yaml

    from classwise.train import rundir

    run = tmp_path / "run"
    run.mkdir()
    stored = TrainConfig().to_dict()
    del stored["monitor"]["precision"]
    (run / "config.yaml").write_text(yaml.safe_dump(stored))
    assert rundir.resolve(run, None, resume=True).monitor.precision == "fp32"
    assert TrainConfig.from_dict(stored).monitor.precision == "train"  # a new config: the new default


def test_training_run_leaves_its_artifacts(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = _cfg(_data(tmp_path), {"method.name": "fgsm-rs", "monitor.select": "robust_worst"})
    result = train(cfg, run, progress=False)
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "state.pt", "model.pt", "best.pt", "history.json", "eval"}
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    assert len(history[0]["val"]["robust"]) == 3 and "co_pgd_acc" in history[0]
    assert result.best_epoch in (0, 1)
    _, meta = load_checkpoint(run / "best.pt")
    assert meta["class_names"] == ["cat", "dog", "ship"] and meta["config"]["method"]["name"] == "fgsm-rs"
    assert (run / "eval" / "evaluation.json").exists()
    assert result.test.clean().n.tolist() == [12, 12, 12]


def test_an_l2_adversarial_run_trains_evaluates_and_is_reloaded_under_l2(tmp_path: Path) -> None:
    from classwise.evaluate import EvalSpec, evaluate_model

    data = _data(tmp_path)
    cfg = _cfg(data, {"threat.norm": "L2", "threat.eps": 0.25, "method.name": "trades", "optim.epochs": 1})
    result = train(cfg, tmp_path / "run", progress=False)
    assert (result.test.headline.norm, result.test.headline.eps) == ("L2", 0.25)
    _, meta = load_checkpoint(tmp_path / "run" / "best.pt")
    assert meta["config"]["threat"] == {"eps": 0.25, "norm": "L2"}
    # evaluating the checkpoint later defaults to the threat model it was trained under
    spec = EvalSpec.from_dict({"norm": "L2", "attacks": [{"name": "pgd", "args": {"steps": 2}}]})
    ev = evaluate_model(str(tmp_path / "run" / "best.pt"), data, spec, tmp_path / "ev", progress=False)
    assert (ev.headline.norm, ev.headline.eps) == ("L2", 0.25)


def test_a_run_without_a_class_trains_on_the_others_and_is_evaluated_on_them_again(tmp_path: Path) -> None:
    from classwise.evaluate import EvalSpec, evaluate_model, read_evaluation
    from classwise.train import prepare_data

    data = _data(tmp_path)
    cfg = _cfg(data, {"data.drop_classes": ["dog"], "optim.epochs": 1})
    full, dropped = prepare_data(_cfg(data)), prepare_data(cfg)
    assert dropped.class_names == ("cat", "ship")
    for split in ("train", "val", "test"):  # the kept classes hold exactly the images of the run on all classes
        whole, kept = getattr(full, split), getattr(dropped, split)
        assert torch.equal(kept.images, whole.images[whole.labels != 1])
    result = train(cfg, tmp_path / "run", progress=False)
    model, meta = load_checkpoint(tmp_path / "run" / "best.pt")
    assert meta["class_names"] == ["cat", "ship"] and model.spec.num_classes == 2
    assert result.test.class_names == ("cat", "ship") and result.test.clean().n.tolist() == [12, 12]
    # evaluated again on the whole dataset (AutoAttack after training, say): on the classes it has
    spec = EvalSpec.from_dict({"attacks": [{"name": "pgd", "args": {"steps": 2}}]})
    again = evaluate_model(str(tmp_path / "run" / "best.pt"), data, spec, tmp_path / "ev", progress=False)
    assert again.class_names == ("cat", "ship")
    assert again.clean().correct.tolist() == read_evaluation(tmp_path / "run" / "eval").clean().correct.tolist()
    with pytest.raises(ConfigError, match="no class 'zebra'"):
        train(_cfg(data, {"data.drop_classes": ["zebra"]}), tmp_path / "bad", progress=False)
    with pytest.raises(ConfigError, match="names a class twice"):
        _cfg(data, {"data.drop_classes": ["dog", "dog"]})


def test_run_folders_are_never_overwritten(tmp_path: Path) -> None:
    data = _data(tmp_path)
    run = tmp_path / "run"
    train(_cfg(data, {"optim.epochs": 1}), run, progress=False)
    with pytest.raises(ConfigError, match="already holds this run"):
        train(_cfg(data, {"optim.epochs": 1}), run, progress=False)
    with pytest.raises(ConfigError, match="different run"):
        train(_cfg(data, {"optim.epochs": 1, "optim.lr": 0.01}), run, progress=False)
    with pytest.raises(ConfigError, match=r"changed config \(optim.lr: 0.05 → 0.01\)"):
        train(_cfg(data, {"optim.epochs": 1, "optim.lr": 0.01}), run, resume=True, progress=False)
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
    cfg = _cfg(data, {"optim.epochs": 4, "optim.precision": precision, "model.args.width": width})
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


def test_the_overfitting_check_compares_with_the_previous_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wong et al.'s code stops when PGD accuracy on a fixed batch falls 20 points below the
    previous epoch's, not below the best so far (early epochs' near-constant predictions inflate it)."""
    import types

    import numpy as np

    import classwise.evaluate as evaluation
    from classwise.train.methods import METHODS, EpochEnd

    accuracies = iter([0.55, 0.38, 0.34, 0.10])

    def fake_evaluate(*args: object, **kwargs: object) -> object:
        record = types.SimpleNamespace(robust=np.array([next(accuracies)]))
        return types.SimpleNamespace(worst=[record])

    monkeypatch.setattr(evaluation, "evaluate", fake_evaluate)
    method = METHODS.get("fgsm-rs")(METHODS.get("fgsm-rs").Options(), 8 / 255)
    stops = []
    for epoch in range(4):
        record: dict[str, object] = {"epoch": epoch}
        stops.append(method.end_of_epoch(EpochEnd(torch.nn.Identity(), None, ("a",), 8 / 255, 0, record)))
    assert stops == [False, False, False, True]  # 0.55 → 0.34 is 21 points below the best, but 4 below the last
    assert method.state() == {"co_last": 0.34}
