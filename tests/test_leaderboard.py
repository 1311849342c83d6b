"""``classwise leaderboard``: several models under one protocol, ranked by the held-out weakest class
beside the mean, with a per-class table, heatmap and DataFrame; resumable model by model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from classwise.cli import main
from classwise.errors import ConfigError
from classwise.evaluate import AttackRecord, EvalSpec, Evaluation
from classwise.models import create_model, save_checkpoint
from classwise.report.ranking import leaderboard_page, model_folder, rank
from tests.synthetic import write_class_folders

CLASSES = ("cat", "dog", "ship")
PGD1 = ["--attack", "pgd", "--steps", "1", "--eps", "8/255"]


def _evaluation(robust_per_class: list[int], per_class: int = 8, spec: EvalSpec | None = None) -> Evaluation:
    """An evaluation of ``per_class`` images a class, the first ``robust_per_class[c]`` of class c robust."""
    labels = np.repeat(np.arange(len(robust_per_class)), per_class)
    robust = np.concatenate([np.arange(per_class) < r for r in robust_per_class])
    n = len(labels)
    rec = AttackRecord("pgd", 8 / 255, "Linf", robust, labels, np.zeros(n), np.array([""] * n))
    return Evaluation(
        CLASSES, "toy", "test", np.arange(n), labels, labels, (rec,), (rec,), spec or EvalSpec(eps=(8 / 255,))
    )


def test_models_are_ranked_by_the_held_out_weakest_class_not_the_mean() -> None:
    lopsided = _evaluation([8, 8, 2])  # mean 75%, one class at 25%
    even = _evaluation([6, 6, 5])  # mean 71%, no class below 62%
    ranking = rank({"lopsided": lopsided, "even": even})
    assert [e.model for e in ranking.entries] == ["even", "lopsided"]
    assert ranking.by_mean() == ["lopsided", "even"]
    rows = ranking.rows()
    assert rows[0]["model"] == "even" and rows[1]["worst_class"] == "ship"
    assert rows[1]["worst_class_accuracy"] == pytest.approx(0.25) and rows[1]["robust"] == pytest.approx(0.75)
    assert rows[1]["held_out_classes"] == "ship / ship" and rows[1]["held_out_worst"] < 0.5
    page = leaderboard_page(ranking)
    assert "| 1 | even |" in page and "2 of 2 places change: lopsided, even" in page
    assert "Cannot be read" not in page  # both predict every clean image right


def test_ties_on_the_worst_class_go_to_the_higher_mean() -> None:
    ranking = rank({"low": _evaluation([4, 4, 0]), "high": _evaluation([8, 8, 0])})
    assert [e.model for e in ranking.entries] == ["high", "low"]


def test_the_rank_follows_the_held_out_worst_class_where_the_naive_minimum_would_order_otherwise() -> None:
    rng = np.random.default_rng(3)
    evaluations = {}
    for i in range(8):  # noisy models: 3 classes of 12 images, each image robust with its class's rate
        labels = np.repeat(np.arange(3), 12)
        robust = rng.random(len(labels)) < np.array([0.5, 0.6, 0.7])[labels]
        n = len(labels)
        rec = AttackRecord("pgd", 8 / 255, "Linf", robust, labels, np.zeros(n), np.array([""] * n))
        evaluations[f"m{i}"] = Evaluation(
            CLASSES, "toy", "test", np.arange(n), labels, labels, (rec,), (rec,), EvalSpec()
        )
    entries = rank(evaluations).entries
    held_out = [e.worst.accuracy for e in entries]
    assert held_out == sorted(held_out, reverse=True)
    naive = [e.worst.naive for e in entries]
    assert naive != sorted(naive, reverse=True)  # the two orders differ here, so the test can tell them apart


def test_models_evaluated_differently_are_not_ranked_together() -> None:
    other = _evaluation([8, 8, 8], spec=EvalSpec(eps=(4 / 255,)))
    with pytest.raises(ConfigError, match=r"not evaluated like a .*rank models under one protocol"):
        rank({"a": _evaluation([8, 8, 8]), "b": other})
    with pytest.raises(ConfigError, match="at least one model"):
        rank({})


def test_model_folders_are_readable_and_never_collide() -> None:
    assert model_folder("robustbench:Wong2020Fast").startswith("robustbench_Wong2020Fast-")
    assert model_folder("runs/a/best.pt") != model_folder("runs/b/best.pt")
    assert "/" not in model_folder("../../x/y.pt") and not model_folder("../../x/y.pt").startswith(".")


def _checkpoints(tmp_path: Path, n: int) -> list[str]:
    paths = []
    for seed in range(n):
        torch.manual_seed(seed)
        model = create_model("small_cnn", 3, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, width=4).eval()
        paths.append(str(save_checkpoint(tmp_path / f"m{seed}" / "best.pt", model, class_names=list(CLASSES))))
    return paths


def test_leaderboard_writes_the_page_tables_and_figures_and_resumes_model_by_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import classwise.evaluate.store as store

    data = write_class_folders(tmp_path, n=6)
    models = _checkpoints(tmp_path, 3)
    out = tmp_path / "board"
    calls: list[int] = []
    real = store.evaluate
    monkeypatch.setattr(store, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))

    missing = str(tmp_path / "gone" / "best.pt")
    code = main(["leaderboard", *models[:2], missing, "--dataset", str(data), *PGD1, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "model 3 of 3" in err and "the 2 evaluated before it are kept" in err
    assert "Traceback" not in err and not (out / "leaderboard.md").exists() and len(calls) == 2

    assert main(["leaderboard", *models, "--dataset", str(data), *PGD1, "--out", str(out)]) == 0
    assert len(calls) == 3  # the first two were reused, not evaluated again
    assert "1. " in capsys.readouterr().out
    with (out / "leaderboard.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["model"] for r in rows) == sorted(models) and [r["rank"] for r in rows] == ["1", "2", "3"]
    keys = [(-float(r["held_out_worst"]), -float(r["robust"])) for r in rows]
    assert keys == sorted(keys)
    for r in rows:  # every number is the stored evaluation's
        stored = json.loads((out / "models" / model_folder(r["model"]) / "evaluation.json").read_text())
        assert stored["spec"]["eps"] == [8 / 255] and int(r["images"]) == 18
    with (out / "per_class.csv").open() as f:
        per_class = list(csv.DictReader(f))
    assert {r["model"] for r in per_class} == set(models) and {r["class"] for r in per_class} == set(CLASSES)
    assert len(per_class) == 3 * 3 * 2  # models × classes × (clean, pgd)
    page = (out / "leaderboard.md").read_text()
    assert page.startswith("# Class-wise leaderboard") and "held-out worst" in page and "pgd" in page
    assert "Cannot be read as a result" in page  # untrained models, at chance: said, whatever their rank
    for png in ("per_class.png", "mean_vs_worst.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert not list(out.glob(".partial-*"))


def test_leaderboard_refuses_a_model_named_twice_and_another_protocol_in_the_same_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_class_folders(tmp_path, n=2)
    models = _checkpoints(tmp_path, 2)
    args = ["--dataset", str(data), "--out", str(tmp_path / "board")]
    assert main(["leaderboard", models[0], models[0], *PGD1, *args]) == 2
    assert "given more than once" in capsys.readouterr().err
    assert main(["leaderboard", *models, "evaluation.seed=1", *PGD1, *args]) == 2
    assert "looks like a setting, not a model: give it as --set evaluation.seed=1" in capsys.readouterr().err
    assert main(["leaderboard", *models, *PGD1, *args]) == 0
    assert main(["leaderboard", *models, "--attack", "pgd", "--steps", "2", "--eps", "8/255", *args]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "Traceback" not in err


def test_a_ranking_is_one_long_dataframe() -> None:
    pytest.importorskip("pandas")
    frame = rank({"a": _evaluation([8, 4, 2]), "b": _evaluation([8, 8, 8])}).to_frame()
    assert {"model", "rank", "class", "attack", "eps", "metric", "n", "correct", "accuracy", "ci_low"} <= set(frame)
    assert len(frame) == 2 * 3 * 2
    weak = frame[(frame.model == "a") & (frame.attack == "pgd") & (frame["class"] == "ship")]
    assert weak.accuracy.item() == pytest.approx(0.25) and weak["rank"].item() == 2
