"""Experiment trackers: what a run sends to TensorBoard (and MLflow, where installed), read back
from the files they write and compared with the run's own history.json and evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from classwise.errors import ConfigError
from classwise.train import Tracking, TrainConfig, train
from classwise.train.track import epoch_scalars
from tests.synthetic import write_class_folders

CLASSES = ("cat", "dog", "ship")


def _cfg(tmp_path: Path, **changes: object) -> TrainConfig:
    data = str(write_class_folders(tmp_path, CLASSES, n=10, as_tar=True))
    base = {
        "data": {"dataset": data, "val_per_class": 2},
        "model": {"name": "resnet20", "args": {"width": 4}},
        "method": {"name": "pgd-at", "args": {"steps": 1}},
        "optim": {"epochs": 2, "batch_size": 8},
        "monitor": {"steps": 1},
        "evaluation": {"attacks": [{"name": "pgd", "args": {"steps": 2}}]},
    }
    return TrainConfig.from_dict(base).with_overrides(dict(changes))


def test_an_epoch_record_becomes_named_scalars_per_class() -> None:
    record = {
        "epoch": 0,
        "train_loss": 1.5,
        "train_acc": 0.4,
        "lr_end": 0.01,
        "train_class_acc": [0.1, 0.2, 0.9],
        "val": {"clean": [0.5, 0.6, 0.7], "clean_mean": 0.6, "clean_worst": 0.5, "robust": [0.1, 0.3, 0.2]},
        "technique": {"eps_scale": [0.9, 1.0, 1.1], "lambda": 0.25, "note": "text", "flag": True},
    }
    scalars = epoch_scalars(record, CLASSES)
    assert scalars["train/loss"] == 1.5 and scalars["train/lr"] == 0.01
    assert scalars["train/accuracy_by_class/ship"] == pytest.approx(0.9)
    assert scalars["val/robust_by_class/dog"] == pytest.approx(0.3)
    assert scalars["val/clean_worst"] == 0.5 and "val/robust_mean" not in scalars
    assert scalars["technique/eps_scale/cat"] == pytest.approx(0.9) and scalars["technique/lambda"] == 0.25
    assert not any(k.startswith(("technique/note", "technique/flag")) for k in scalars)


def _tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_holds_the_per_class_curves_of_history_json_and_the_test_result(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    result = train(_cfg(tmp_path), run, progress=False, track=Tracking(tmp_path / "tb"))
    logged = _tensorboard_scalars(tmp_path / "tb")
    history = json.loads((run / "history.json").read_text())
    for epoch, record in enumerate(history):
        for i, name in enumerate(CLASSES):
            assert dict(logged[f"val/robust_by_class/{name}"])[epoch + 1] == pytest.approx(record["val"]["robust"][i])
            assert dict(logged[f"val/clean_by_class/{name}"])[epoch + 1] == pytest.approx(record["val"]["clean"][i])
        assert dict(logged["train/lr"])[epoch + 1] == pytest.approx(record["lr_end"])
        assert dict(logged["train/loss"])[epoch + 1] == pytest.approx(record["train_loss"])
    assert [s for s, _ in logged["val/robust_worst"]] == [1, 2]
    robust = result.test.robust(result.test.headline).accuracy
    assert logged["test/robust_worst"] == [(2, pytest.approx(float(robust.min())))]
    assert dict(logged["test/robust_by_class/ship"])[2] == pytest.approx(float(robust[2]))


def test_tensorboard_shows_a_techniques_class_weights(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    cfg = _cfg(tmp_path, **{"balance.name": "cfa"})
    train(cfg, tmp_path / "run", progress=False, final_evaluation=False, track=Tracking(tmp_path / "tb"))
    logged = _tensorboard_scalars(tmp_path / "tb")
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    applied = history[0]["technique"]
    per_class = [k for k, v in applied.items() if isinstance(v, list)]
    assert per_class, applied
    for what in per_class:
        assert dict(logged[f"technique/{what}/dog"])[1] == pytest.approx(applied[what][1])


def test_a_tracker_that_is_not_installed_is_refused_before_the_run_folder_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'classwise\[mlflow\]'"):
        train(_cfg(tmp_path), tmp_path / "run", progress=False, track=Tracking(mlflow="file:///nowhere"))
    assert not (tmp_path / "run").exists()


def test_a_study_logs_each_run_under_its_id(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from classwise.cli import main

    data = str(write_class_folders(tmp_path, CLASSES, n=10, as_tar=True))
    study = tmp_path / "s.yaml"
    study.write_text(
        "name: tracked\n"
        f"base: {{data: {{dataset: {data}, val_per_class: 2}}, model: {{name: resnet20, args: {{width: 4}}}}, "
        "method: {name: standard}, optim: {epochs: 1, batch_size: 8}}\n"
        "grid: {seed: [0, 1]}\n"
        "evaluation: {attacks: [{name: pgd, args: {steps: 1}}]}\n"
    )
    args = ["study", "run", str(study), "--dir", str(tmp_path / "runs"), "--tensorboard", str(tmp_path / "tb")]
    assert main(args) == 0
    runs = sorted(p.name for p in (tmp_path / "runs" / "runs").iterdir())
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == runs
    for run_id in runs:
        assert "val/clean_mean" in _tensorboard_scalars(tmp_path / "tb" / run_id)


def test_mlflow_holds_the_same_per_class_curves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a local folder as the tracking store, for the test
    uri = (tmp_path / "mlruns").as_uri()
    train(_cfg(tmp_path), tmp_path / "run", progress=False, track=Tracking(mlflow=uri, name="r1"))
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    (found,) = client.search_runs([client.get_experiment_by_name("classwise").experiment_id])
    assert found.info.run_name == "r1" and found.data.params["method.name"] == "pgd-at"
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    curve = {m.step: m.value for m in client.get_metric_history(found.info.run_id, "val/robust_by_class/cat")}
    assert curve == {e + 1: pytest.approx(h["val"]["robust"][0]) for e, h in enumerate(history)}
