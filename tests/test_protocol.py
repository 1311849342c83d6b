"""One evaluation protocol and one results path: the same EvalSpec gives the same numbers through
every entry point, results are read back typed, evaluations resume exactly, and the report reads
stored results only."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from classwise.cli import main
from classwise.data import load_dataset
from classwise.errors import ConfigError
from classwise.evaluate import EvalSpec, evaluate, read_evaluation, run_evaluation
from classwise.evaluate.progress_state import STATE
from classwise.report import collect, write_report
from classwise.study import STORE, Store, load_study, run_study
from classwise.train import TrainConfig, train
from tests.synthetic import tiny, tiny_train_args, write_class_folders
from tests.test_attacks import Linear, as_split

ROOT = Path(__file__).resolve().parents[1]
SPEC = {"attacks": [{"name": "pgd", "args": {"steps": 2}}, "fgsm"], "n_per_class": 6}


def _pgd(**args: object) -> dict:
    return {"name": "pgd", "args": args}


def _rows(ev_folder: Path) -> list[dict]:
    return json.loads((ev_folder / "evaluation.json").read_text())["per_class"]


def test_one_checkpoint_gives_identical_numbers_through_evaluate_a_run_and_a_study(tmp_path: Path) -> None:
    """A bf16-trained model, evaluated (in fp32) by its run, by ``classwise evaluate`` and by a study."""
    data = str(write_class_folders(tmp_path, n=8))
    config = tiny({"data.dataset": data, "optim.epochs": 2, "optim.precision": "bf16", "evaluation": SPEC})
    run = train(TrainConfig.from_dict(config), tmp_path / "run", progress=False)
    args = ["evaluate", "--checkpoint", str(run.checkpoint), "--dataset", data, "--attack", "pgd", "--steps", "2"]
    assert main([*args, "--attack", "fgsm", "--n-per-class", "6", "--out", str(tmp_path / "cli")]) == 0
    study = tmp_path / "study.yaml"
    study.write_text(
        yaml.safe_dump({"base": {k: v for k, v in config.items() if k != "evaluation"}, "evaluation": SPEC})
    )
    run_study(load_study(study), tmp_path / "s", progress=False)
    (study_run,) = (tmp_path / "s" / "runs").iterdir()

    run_rows, cli_rows, study_rows = (
        _rows(tmp_path / "run" / "eval"),
        _rows(tmp_path / "cli"),
        _rows(study_run / "eval"),
    )
    assert run_rows == cli_rows == study_rows
    assert {r["attack"] for r in run_rows} == {"clean", "pgd", "fgsm", "worst"}
    fingerprints = {
        read_evaluation(p).fingerprint for p in (tmp_path / "run" / "eval", tmp_path / "cli", study_run / "eval")
    }
    assert len(fingerprints) == 1  # the same spec, weights and images
    metrics = Store(tmp_path / "s" / STORE).metrics()  # the study records the run's own evaluation
    by_key = {(m["attack"], m["eps"], m["class_index"]): m["correct"] for m in metrics}
    assert by_key == {(r["attack"], r["eps"], r["class_index"]): r["correct"] for r in run_rows}
    assert not (study_run / "study_eval").exists()  # evaluated once, by the run


def test_results_are_read_back_typed_and_record_what_ran(tmp_path: Path) -> None:
    data = as_split(torch.rand(30, 3, 2, 2, generator=torch.Generator().manual_seed(1)), torch.arange(30) % 3)
    spec = EvalSpec(attacks=({"name": "pgd", "args": {"steps": 5}},), eps=(3 / 255, 5 / 255), seed=4)
    ev = run_evaluation(Linear(), data, spec, tmp_path / "ev", class_names=("a", "b", "c"), progress=False)
    back = read_evaluation(tmp_path / "ev")
    assert back.spec == spec.resolved() and back.spec.eps == (3 / 255, 5 / 255)
    assert [(r.attack, r.eps, r.norm) for r in back.records] == [("pgd", 3 / 255, "Linf"), ("pgd", 5 / 255, "Linf")]
    assert [r.eps for r in back.worst] == [3 / 255, 5 / 255]
    np.testing.assert_array_equal(back.clean_pred, ev.clean_pred)
    payload = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert payload["spec"]["eps"] == [3 / 255, 5 / 255] and payload["spec"]["seed"] == 4
    prov = payload["provenance"]
    assert set(prov["versions"]) >= {"classwise", "torch", "pyautoattack", "numpy"}
    assert prov["device"]["type"] == "cpu" and prov["device"]["cpu"] and "command" in prov
    assert payload["images"] == "all test images"
    assert not (tmp_path / "ev" / STATE).exists()


def test_images_first_n_in_dataset_order_or_first_n_per_class() -> None:
    data = as_split(torch.rand(30, 3, 2, 2), torch.arange(30) % 3)
    first = evaluate(Linear(), data, EvalSpec(attacks=("fgsm",), first_n=7), class_names="abc", progress=False)
    assert first.index.tolist() == list(range(7)) and first.spec.images == "first 7 test images"
    per = evaluate(Linear(), data, EvalSpec(attacks=("fgsm",), n_per_class=2), class_names="abc", progress=False)
    assert per.clean().n.tolist() == [2, 2, 2] and per.spec.images == "first 2 test images per class"
    with pytest.raises(ConfigError, match="n_per_class or first_n"):
        EvalSpec(n_per_class=2, first_n=3)


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"atacks": ["pgd"]}, r"evaluation.atacks: unknown setting"),
        ({"attacks": [{"name": "pgd", "args": {"steps": "abc"}}]}, "option steps must be a whole number"),
        ({"attacks": [{"name": "pgd", "args": {"colour": "red"}}]}, "takes no option 'colour'"),
        ({"attacks": [{"name": "pgd", "steps": 10}]}, "put options under args"),
        ({"attacks": ["pgd:steps=10"]}, "write attack options as a mapping"),
        ({"attacks": ["pgdd"]}, "Did you mean: pgd"),
        ({"attacks": []}, "at least one attack"),
        ({"eps": ["8/25x"]}, "cannot read ε"),
        ({"eps": [3.0]}, "absurd"),
        ({"n_per_class": 0}, "n_per_class must be a whole number >= 1"),
        ({"batch_size": "many"}, "batch_size must be a whole number"),
        ({"steps": 10}, "steps: unknown setting"),
        ({"norm": "L3"}, "unknown norm"),
        ({"cascade": "yes"}, "cascade must be true or false"),
    ],
)
def test_a_bad_evaluation_spec_names_its_field(doc: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        EvalSpec.from_dict(doc)


def test_bad_spec_on_the_command_line_fails_before_anything_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["evaluate", "--checkpoint", "missing.pt", "--dataset", "missing", "--out", str(out)]
    assert main([*args, "--attack", "{name: pgd, args: {steps: abc}}"]) == 2
    err = capsys.readouterr().err
    assert "option steps must be a whole number" in err and "Traceback" not in err and not out.exists()


class _Crash(Exception):
    pass


def _crash_after(monkeypatch: pytest.MonkeyPatch, batches: int) -> None:
    """Make the attack raise on its ``batches``-th call, as a kill would interrupt it."""
    from classwise.attacks.pgd import PGD

    original, calls = PGD.run, {"n": 0}

    def run(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == batches:
            raise _Crash
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PGD, "run", run)


def test_an_interrupted_evaluation_resumes_with_identical_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = as_split(torch.rand(60, 3, 2, 2, generator=torch.Generator().manual_seed(3)), torch.arange(60) % 3)
    spec = EvalSpec(attacks=(_pgd(steps=4), _pgd(steps=3, restarts=2)), eps=(0.05, 0.1), batch_size=7)
    whole = run_evaluation(Linear(), data, spec, tmp_path / "whole", class_names="abc", progress=False)
    with monkeypatch.context() as m:
        _crash_after(m, 9)
        with pytest.raises(_Crash):
            run_evaluation(Linear(), data, spec, tmp_path / "cut", class_names="abc", progress=False)
    assert (tmp_path / "cut" / STATE).exists() and not (tmp_path / "cut" / "evaluation.json").exists()
    with pytest.raises(ConfigError, match="unfinished evaluation with other settings"):
        run_evaluation(Linear(), data, replace(spec, seed=1), tmp_path / "cut", class_names="abc", progress=False)
    resumed = run_evaluation(Linear(), data, spec, tmp_path / "cut", class_names="abc", progress=False)
    for a, b in zip((*whole.records, *whole.worst), (*resumed.records, *resumed.worst), strict=True):
        np.testing.assert_array_equal(a.robust, b.robust)
        np.testing.assert_array_equal(a.adv_pred, b.adv_pred)
        np.testing.assert_array_equal(a.perturbation, b.perturbation)
        np.testing.assert_array_equal(a.broken_by, b.broken_by)
    assert (tmp_path / "whole" / "samples.csv").read_text() == (tmp_path / "cut" / "samples.csv").read_text()


def test_a_finished_evaluation_is_reused_and_never_overwritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = as_split(torch.rand(12, 3, 2, 2), torch.arange(12) % 3)
    spec = EvalSpec(attacks=("fgsm",), eps=(0.1,))
    first = run_evaluation(Linear(), data, spec, tmp_path / "ev", class_names="abc", progress=False)
    with monkeypatch.context() as m:
        _crash_after(m, 1)  # any attack run now would fail: the stored result must be reused
        again = run_evaluation(Linear(), data, spec, tmp_path / "ev", class_names="abc", progress=False)
    assert again.fingerprint == first.fingerprint
    before = (tmp_path / "ev" / "samples.csv").read_text()
    with pytest.raises(ConfigError, match="already holds an evaluation with other settings"):
        run_evaluation(Linear(), data, replace(spec, eps=(0.2,)), tmp_path / "ev", class_names="abc", progress=False)
    assert (tmp_path / "ev" / "samples.csv").read_text() == before


def _class_folder_checkpoint(tmp_path: Path, classes: tuple[str, ...]) -> tuple[str, Path]:
    from classwise.models import create_model, save_checkpoint

    data = write_class_folders(tmp_path, classes=classes, n=6)
    ds = load_dataset(str(data))
    torch.manual_seed(0)
    model = create_model("small_cnn", len(classes), ds.input_shape, ds.mean, ds.std, width=4)
    return str(data), save_checkpoint(tmp_path / "model.pt", model, class_names=list(classes))


def test_killed_evaluate_resumes_from_its_last_batch_with_identical_records(tmp_path: Path) -> None:
    data, ckpt = _class_folder_checkpoint(tmp_path, ("cat", "dog", "ship"))
    common = ["evaluate", "--checkpoint", str(ckpt), "--dataset", data, "--steps", "300", "--restarts", "2"]
    common += ["--eps", "16/255", "--batch-size", "1"]
    assert main([*common, "--out", str(tmp_path / "whole")]) == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "classwise.cli", *common, "--out", str(tmp_path / "cut")]
    child = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "cut" / STATE
    deadline = time.time() + 120
    while time.time() < deadline and child.poll() is None and not state.exists():
        time.sleep(0.01)
    time.sleep(0.2)  # a few batches in
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the evaluation finished before it could be killed"
    assert state.exists() and not (tmp_path / "cut" / "evaluation.json").exists()
    assert main([*common, "--out", str(tmp_path / "cut")]) == 0
    assert (tmp_path / "whole" / "samples.csv").read_text() == (tmp_path / "cut" / "samples.csv").read_text()
    assert not state.exists()


def test_progress_written_to_a_file_is_a_few_whole_lines(tmp_path: Path) -> None:
    data, ckpt = _class_folder_checkpoint(tmp_path, ("cat", "dog", "ship"))
    log = tmp_path / "log.txt"
    cmd = [sys.executable, "-m", "classwise.cli", "evaluate", "--checkpoint", str(ckpt), "--dataset", data]
    cmd += ["--attack", "pgd", "--steps", "3"]
    cmd += ["--attack", "{name: autoattack, args: {version: custom, attacks: [apgd-ce, square]}}"]
    cmd += ["--batch-size", "2", "--out", str(tmp_path / "ev")]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with open(log, "w") as f:
        subprocess.run(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=f, check=True, timeout=300)
    text = log.read_text()
    assert "\r" not in text
    stages = [line for line in text.splitlines() if " img (" in line]
    assert {line.split(":")[0] for line in stages} >= {"pgd ε=8/255", "autoattack apgd-ce ε=8/255"}
    assert len(stages) <= 6 and all("robust" in line for line in stages)


class Flat(nn.Module):
    """A linear classifier of flattened images: every AutoAttack component can work on it."""

    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, k)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(k, d, generator=torch.Generator().manual_seed(0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("k", [4, 2])
def test_standard_autoattack_on_datasets_with_few_classes(tmp_path: Path, k: int) -> None:
    names = ("a", "b", "c", "d")[:k]
    ds = load_dataset(str(write_class_folders(tmp_path, classes=names, n=3)))
    spec = EvalSpec(attacks=("autoattack",), eps=(8 / 255,), batch_size=64)
    ev = evaluate(Flat(3 * 8 * 8, k), ds, spec, progress=False)
    assert ev.spec.attacks[0].options["seed"] == 0  # the seed is set explicitly, as AutoAttack asks
    assert (ev.robust(ev.headline).correct <= ev.clean().correct).all()
    used = set(ev.headline.broken_by) - {""}
    assert used <= {"apgd-ce", "apgd-t", "fab-t", "square"}
    if k == 2:
        assert any("apgd-t left out" in w for w in ev.warnings)
    else:
        assert any(f"{k - 1} target classes" in w for w in ev.warnings)


@pytest.fixture(scope="module")
def gap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("gap")
    data = str(write_class_folders(tmp, n=8))
    settings = {"data.dataset": data, "optim.epochs": 2, "evaluation.attacks": [_pgd(steps=2)]}
    assert main(["gap", *tiny_train_args(settings), "--out", str(tmp / "gap")]) == 0
    return tmp / "gap"


def test_where_attacked_images_go_shows_the_attack_not_the_clean_confusion(gap_dir: Path) -> None:
    model = collect(gap_dir).models[1]
    ev = model.evaluation
    assert len(ev.records) == 1  # one attack: the main job's case
    attacked, clean = ev.confusion_adv(ev.headline), ev.confusion_clean()
    assert not np.array_equal(attacked, clean)  # the defect would show the clean matrix
    np.testing.assert_allclose(ev.flows(), attacked / attacked.sum(1, keepdims=True).clip(1))


def test_report_of_a_moved_folder_is_complete_and_loads_no_model(
    gap_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(gap_dir, moved)
    for path in moved.rglob("*.pt"):
        path.unlink()  # the report must not need any weights
    import classwise.data
    import classwise.models

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the report loaded a model or a dataset")

    monkeypatch.setattr(classwise.models, "load_checkpoint", refuse)
    monkeypatch.setattr(classwise.data, "load_dataset", refuse)
    monkeypatch.chdir(tmp_path)
    page, _ = write_report(moved, tmp_path / "report")
    text = page.read_text()
    assert "Why: class similarity and geometry (standard)" in text
    assert "Why: class similarity and geometry (pgd-at)" in text
    assert "Provenance" in text and "Penultimate-layer centroid similarity" in text
    run_prov = json.loads((moved / "pgd-at" / "provenance.json").read_text())
    assert run_prov[0]["first_epoch"] == 0 and run_prov[0]["versions"]["torch"]
