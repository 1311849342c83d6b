"""Models and data from elsewhere: TorchScript, module:factory, timm and RobustBench models through
the command line, and torch Datasets, DataLoaders and tensors through ``evaluate``."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from classwise.cli import main
from classwise.data import Dataset, LabeledImages
from classwise.errors import ConfigError
from classwise.evaluate import EvalSpec, evaluate
from classwise.models import Preprocessed, create_model, save_checkpoint
from tests.synthetic import write_class_folders

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
PGD3 = ["--attack", "pgd", "--steps", "3", "--eps", "8/255"]


def _model(k: int = 3, size: int = 8) -> torch.nn.Module:
    torch.manual_seed(1)
    return create_model("small_cnn", k, (3, size, size), MEAN, STD, width=4).eval()


def _per_class(out: Path) -> dict[str, list[float]]:
    payload = json.loads((out / "evaluation.json").read_text())
    rows = (out / "per_class.csv").read_text().splitlines()
    return {"classes": payload["classes"], "rows": rows[1:]}  # type: ignore[dict-item]


def _evaluate_cli(tmp_path: Path, name: str, model: str, data: Path, *extra: str) -> tuple[int, Path]:
    out = tmp_path / name
    return main(["evaluate", "--model", model, "--dataset", str(data), *PGD3, "--out", str(out), *extra]), out


def test_torchscript_and_factory_models_match_the_checkpoint(tmp_path: Path) -> None:
    """The same network as a classwise checkpoint, a TorchScript file and a module:factory with
    --weights and --mean/--std gives the same per-class clean and robust accuracy."""
    data = write_class_folders(tmp_path, n=6)
    model = _model()
    ckpt = save_checkpoint(tmp_path / "model.pt", model, class_names=["cat", "dog", "ship"])
    torch.jit.save(torch.jit.trace(model, torch.rand(2, 3, 8, 8)), str(tmp_path / "scripted.pt"))
    torch.save(model.backbone.state_dict(), tmp_path / "backbone.pt")
    (tmp_path / "mine.py").write_text(
        textwrap.dedent(
            """
            from classwise.models import create_model

            def build(num_classes):  # the architecture without its normalisation: --mean/--std give it
                return create_model("small_cnn", num_classes, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, width=4).backbone
            """
        )
    )
    code, reference = _evaluate_cli(tmp_path, "ckpt", str(ckpt), data)
    assert code == 0
    code, scripted = _evaluate_cli(tmp_path, "ts", f"torchscript:{tmp_path / 'scripted.pt'}", data)
    assert code == 0
    weights = ["--weights", str(tmp_path / "backbone.pt"), "--mean", "0.5", "--std", "0.25,0.25,0.25"]
    code, factory = _evaluate_cli(tmp_path, "fn", f"{tmp_path / 'mine.py'}:build", data, *weights)
    assert code == 0
    assert _per_class(scripted) == _per_class(reference) == _per_class(factory)
    source = json.loads((factory / "evaluation.json").read_text())["source"]
    assert source["kind"] == "factory" and source["weights"].endswith("backbone.pt")


def test_a_dotted_module_factory_is_imported_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_class_folders(tmp_path)
    (tmp_path / "zoo_of_mine").mkdir()
    (tmp_path / "zoo_of_mine" / "__init__.py").write_text(
        "import torch\n"
        "def five_logits():\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 5))\n"
        "def three_logits():\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 3))\n"
    )
    monkeypatch.chdir(tmp_path)
    code, out = _evaluate_cli(tmp_path, "ok", "zoo_of_mine:three_logits", data)
    assert code == 0 and (out / "evaluation.json").is_file()
    code, out = _evaluate_cli(tmp_path, "bad", "zoo_of_mine:five_logits", data)
    err = capsys.readouterr().err
    assert code == 2 and "returns 5 logits but the data has 3 classes" in err and "Traceback" not in err
    assert not (out / "evaluation.json").exists()
    code, _ = _evaluate_cli(tmp_path, "typo", "zoo_of_mine:three_logit", data)
    assert code == 2 and "did you mean three_logits" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("model", "extra", "message"),
    [
        ("torchscript:nowhere.pt", [], "is not a file"),
        ("robustbenc:Standard", [], "did you mean robustbench:"),
        ("no_such_module_here:build", [], "cannot import no_such_module_here"),
        ("timm:", [], "needs a name or path after the colon"),
        ("MODEL", ["--mean", "0.5"], "give --mean and --std together"),
        ("MODEL", ["--mean", "0.5", "--std", "0.2"], "carries its own normalisation"),
        ("MODEL", ["--mean", "a,b", "--std", "0.2"], "expected numbers like"),
    ],
)
def test_bad_models_are_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str, extra: list[str], message: str
) -> None:
    data = write_class_folders(tmp_path)
    if model == "MODEL":
        model = str(save_checkpoint(tmp_path / "model.pt", _model()))
    code, out = _evaluate_cli(tmp_path, "eval", model, data, *extra)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not out.exists()


def test_a_declared_input_shape_is_checked_before_any_attack(tmp_path: Path) -> None:
    data = LabeledImages(torch.zeros(6, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 2, 0, 1, 2]))
    flat = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 3))
    net = Preprocessed(flat, input_shape=(3, 32, 32))
    with pytest.raises(ConfigError, match="takes 3×32×32 images, the data's are 3×8×8"):
        evaluate(net, data, EvalSpec(), class_names=("a", "b", "c"), progress=False)


def _random_dataset(n: int = 36, k: int = 3) -> Dataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % k
    split = LabeledImages(images, labels)
    return Dataset("random", ("cat", "dog", "ship")[:k], split, split, "random pixels")


def _outcomes(ev) -> tuple[list[bool], list[bool]]:  # type: ignore[no-untyped-def]
    return ev.clean_correct.tolist(), ev.headline.robust.tolist()


def test_dataloaders_datasets_and_float_tensors_evaluate_like_the_classwise_dataset() -> None:
    ds, model = _random_dataset(), _model()
    spec = EvalSpec(attacks=("pgd",), eps=(8 / 255,), n_per_class=10)
    names = ds.class_names
    reference = _outcomes(evaluate(model, ds, spec, progress=False))
    floats, labels = ds.test.images.float() / 255, ds.test.labels
    loader = DataLoader(TensorDataset(floats, labels), batch_size=7)
    for data in (loader, TensorDataset(floats, labels), (floats, labels), (floats.numpy(), labels.numpy())):
        assert _outcomes(evaluate(model, data, spec, class_names=names, progress=False)) == reference
    ds.test.labels.clone()
    uint8 = (ds.test.images, labels.tolist())
    assert _outcomes(evaluate(model, uint8, spec, class_names=names, progress=False)) == reference


def test_float_images_off_the_pixel_grid_stay_float(tmp_path: Path) -> None:
    from classwise.data.convert import evaluation_images

    x = torch.rand(6, 3, 8, 8)
    images, names, _ = evaluation_images((x, torch.tensor([0, 1, 2, 0, 1, 2])), ["a", "b", "c"])
    assert images.images.dtype == torch.float32 and torch.equal(images.images, x) and names == ("a", "b", "c")
    ev = evaluate(_model(), (x, torch.tensor([0, 1, 2, 0, 1, 2])), EvalSpec(), class_names="abc", progress=False)
    assert len(ev.labels) == 6


class _Classes(torch.utils.data.Dataset):  # a torchvision-style dataset: PIL images and .classes
    classes: ClassVar[list[str]] = ["cat", "dog", "ship"]

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
        from PIL import Image

        return Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)), i % 3


def test_a_torchvision_style_dataset_declares_its_classes() -> None:
    ev = evaluate(_model(), _Classes(), EvalSpec(attacks=("fgsm",)), progress=False)
    assert ev.class_names == ("cat", "dog", "ship") and len(ev.labels) == 6


@pytest.mark.parametrize(
    ("data", "names", "message"),
    [
        ((torch.rand(6, 3, 8, 8) * 2, torch.zeros(6, dtype=torch.long)), "abc", "float images must lie in [0, 1]"),
        ((torch.rand(6, 8, 8, 3), torch.zeros(6, dtype=torch.long)), "abc", "channels last?"),
        ((torch.rand(6, 3, 8, 8), torch.full((6,), 3)), "abc", "labels span 3..3 but there are 3 class names"),
        ((torch.rand(6, 3, 8, 8), torch.zeros(5, dtype=torch.long)), "abc", "need one label per image"),
        ((torch.rand(6, 3, 8, 8), torch.zeros(6)), "abc", "labels must be integers"),
        ((torch.rand(6, 3, 8, 8), torch.zeros(6, dtype=torch.long)), None, "pass class_names"),
        ((torch.rand(6, 3, 8, 8), torch.zeros(6, dtype=torch.long)), "aab", "at least two distinct names"),
        ((torch.full((6, 3, 8, 8), float("nan")), torch.zeros(6, dtype=torch.long)), "abc", "NaN"),
        ((torch.zeros(6, 3, 8, 8, dtype=torch.int32), torch.zeros(6, dtype=torch.long)), "abc", "uint8 pixels"),
        ("images.npz", "abc", "cannot evaluate a str"),
    ],
)
def test_bad_python_data_is_one_clear_error(data: object, names: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        evaluate(_model(), data, EvalSpec(), class_names=None if names is None else list(names), progress=False)
    assert message in str(caught.value)


def test_a_test_only_folder_evaluates_and_refuses_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.synthetic import tiny_train_args

    data = write_class_folders(tmp_path, splits=("test",))
    ckpt = save_checkpoint(tmp_path / "model.pt", _model())
    code, out = _evaluate_cli(tmp_path, "eval", str(ckpt), data)
    assert code == 0 and json.loads((out / "evaluation.json").read_text())["classes"] == ["cat", "dog", "ship"]
    assert main(["train", *tiny_train_args({"data.dataset": str(data)}), "--out", str(tmp_path / "run")]) == 2
    assert "has no train/ images: it can be evaluated" in capsys.readouterr().err


def test_audit_writes_a_report_card(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_class_folders(tmp_path, n=6)
    ckpt = save_checkpoint(tmp_path / "model.pt", _model())
    out = tmp_path / "audit"
    attack = "{name: autoattack, args: {version: custom, attacks: [apgd-ce]}}"
    assert main(["audit", str(ckpt), "--dataset", str(data), "--attack", attack, "--out", str(out)]) == 0
    card = (out / "audit.md").read_text()
    assert card.startswith("# Class-wise audit") and "weakest class under attack" in card and "max-min" in card
    assert "where attacked images go" in card and (out / "report" / "report.html").is_file()
    assert "report card:" in capsys.readouterr().out


# --- the optional integrations: they run where the package imports (pip install 'classwise[timm]' /
# 'classwise[robustbench]' with a torchvision built for the installed torch) and skip elsewhere.


def _integration(module: str) -> None:
    from classwise.models.sources import _optional, _robustbench_modules

    try:
        _robustbench_modules() if module == "robustbench" else _optional(module, module)
    except ConfigError as exc:
        if os.environ.get("CLASSWISE_REQUIRE_INTEGRATIONS"):  # benchmarks/integrations.sh: a skip is a failure
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def test_a_timm_model_evaluates_from_a_local_weights_file(tmp_path: Path) -> None:
    _integration("timm")
    import timm

    data = write_class_folders(tmp_path, n=2, size=32)
    net = timm.create_model("resnet10t", num_classes=3)
    torch.save(net.state_dict(), tmp_path / "resnet10t.pth")
    code, out = _evaluate_cli(tmp_path, "timm", "timm:resnet10t", data, "--weights", str(tmp_path / "resnet10t.pth"))
    assert code == 0
    source = json.loads((out / "evaluation.json").read_text())["source"]
    assert source["kind"] == "timm" and source["normalisation"]["from"] == "timm pretrained config"


def _zoo_checkpoint(model_dir: Path, name: str) -> None:
    """The zoo entry's real architecture with fresh weights, saved where RobustBench looks for it."""
    from classwise.models.sources import _robustbench_modules

    zoo = _robustbench_modules()
    net = zoo.model_dicts[zoo.BenchmarkDataset("cifar10")][zoo.ThreatModel("Linf")][name]["model"]()
    path = model_dir / "cifar10" / "Linf" / f"{name}.pt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": net.state_dict()}, path)


def test_a_robustbench_entry_loads_by_name_from_a_local_model_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _integration("robustbench")
    import robustbench.utils

    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("no network in the tests")

    monkeypatch.setattr(robustbench.utils, "download_gdrive_new", offline)
    classes = tuple(f"c{i}" for i in range(10))
    data = write_class_folders(tmp_path, classes=classes, n=1, size=32, splits=("test",))
    _zoo_checkpoint(tmp_path / "zoo", "Wong2020Fast")
    zoo = ["--model-dir", str(tmp_path / "zoo"), "--threat-model", "Linf"]
    out = tmp_path / "card"
    assert main(["audit", "robustbench:Wong2020Fast", "--dataset", str(data), *zoo, *PGD3[:4], "--out", str(out)]) == 0
    stored = json.loads((out / "evaluation.json").read_text())
    assert stored["spec"]["eps"] == [8 / 255]  # the leaderboard's budget
    assert stored["source"]["leaderboard"]["autoattack_acc"] == 43.21
    card = (out / "audit.md").read_text()
    assert "RobustBench leaderboard (Wong2020Fast" in card and "Not the same setup" in card

    data_args = ["--dataset", str(data), *zoo]
    code = main(["evaluate", "--model", "robustbench:Carmon2019Unlabeled", *data_args, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "could not be downloaded" in err and "Traceback" not in err
    assert not (tmp_path / "zoo" / "cifar10" / "Linf" / "Carmon2019Unlabeled.pt").exists()
    code = main(["evaluate", "--model", "robustbench:Wong2020Fats", *data_args, "--out", str(tmp_path / "y")])
    assert code == 2 and "close: Wong2020Fast" in capsys.readouterr().err
