"""Bad input, table-driven: every case goes through the command line and must end with exit code 2,
one message naming the problem, no traceback, and nothing half-written left behind."""

from __future__ import annotations

import gzip
import io
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from classwise.cli import main
from classwise.models import create_model, save_checkpoint
from tests.synthetic import tiny, tiny_train_args, write_class_folders, write_idx_dataset


@dataclass(frozen=True)
class World:
    """Fixtures every case can use: datasets (good and broken), checkpoints, files and folders."""

    root: Path

    def path(self, name: str) -> str:
        return str(self.root / name)


class Bomb:
    """Unpickling it runs a shell command (it must never be unpickled)."""

    def __reduce__(self) -> tuple:
        return (os.system, ("touch PWNED",))


def _pickle_bomb() -> bytes:
    return pickle.dumps({b"data": Bomb(), b"labels": [0]})


def _corrupt_datasets(root: Path) -> None:
    header = bytes([0, 0, 8, 3]) + (60000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    for folder, payload in (
        ("garbage-mnist", b"not a gzip file at all"),
        ("truncated-mnist", gzip.compress(header + b"\x00" * 50)),
        ("badmagic-mnist", gzip.compress(b"\x01\x02\x03\x04" + b"\x00" * 100)),
    ):
        d = root / folder / "mnist"
        d.mkdir(parents=True)
        for name in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"):
            (d / f"{name}-ubyte.gz").write_bytes(payload)
    for folder, payload in (("bomb-cifar", _pickle_bomb()), ("junk-cifar", b"\x80\x04junk")):
        d = root / folder / "cifar-10-batches-py"
        d.mkdir(parents=True)
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            (d / name).write_bytes(payload)
    (root / "fake-archive").mkdir()
    (root / "fake-archive" / "cifar-10-python.tar.gz").write_bytes(b"this is not the official archive")


def _class_folder_variants(root: Path) -> None:
    good = write_class_folders(root / "good", n=6)
    (root / "tar").mkdir()
    tar = write_class_folders(root / "tar", n=6, as_tar=True)
    (root / "truncated.tar.gz").write_bytes(tar.read_bytes()[: len(tar.read_bytes()) // 2])
    (root / "notatar.tar.gz").write_bytes(b"plain text, not an archive")
    broken = write_class_folders(root / "broken-png", n=6)
    (broken / "train" / "cat" / "000.png").write_bytes(b"not a png")
    empty = write_class_folders(root / "empty-class", n=6)
    (empty / "train" / "owl").mkdir()
    no_test = write_class_folders(root / "no-test", n=6)
    for p in sorted((no_test / "test").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (no_test / "test").rmdir()
    assert good.is_dir()


class Foreign:
    """An object only a full (unsafe) unpickler could rebuild."""


def _checkpoints(root: Path) -> None:
    model = create_model("small_cnn", 3, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, width=4)
    good = save_checkpoint(root / "good.pt", model, class_names=["cat", "dog", "ship"])
    (root / "empty.pt").write_bytes(b"")
    (root / "truncated.pt").write_bytes(good.read_bytes()[:200])

    buf = io.BytesIO()
    torch.save({"format": "classwise-checkpoint/1", "x": Foreign()}, buf)
    (root / "foreign.pt").write_bytes(buf.getvalue())
    (root / "dir.pt").mkdir()
    save_checkpoint(root / "four.pt", create_model("small_cnn", 4, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, width=4))
    grey = create_model("small_cnn", 10, (3, 32, 32), (0.5,) * 3, (0.25,) * 3, width=4)
    save_checkpoint(root / "rgb32.pt", grey)


def _files(root: Path) -> None:
    (root / "a-file").write_text("x")
    (root / "bad.yaml").write_text("optim: {lr: [unclosed\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "empty.yaml").write_text("")
    (root / "unknown.yaml").write_text(yaml.safe_dump({"optim": {"colour": "red"}}))
    data = str(root / "good" / "images")
    for name, study in (
        ("study-bad-dataset.yaml", {"base": tiny({"data.dataset": data}), "grid": {"data.dataset": ["nosuchdata"]}}),
        (
            "study-steps.yaml",
            {
                "base": tiny({"data.dataset": data}),
                "evaluation": {"attacks": [{"name": "pgd", "args": {"steps": "ten"}}]},
            },
        ),
        ("study-npc.yaml", {"base": tiny({"data.dataset": data}), "evaluation": {"n_per_class": 0}}),
        ("study-grid.yaml", {"base": tiny({"data.dataset": data}), "grid": {"optim.lr": 0.1}}),
        ("study-ok.yaml", {"base": tiny({"data.dataset": data}), "grid": {"seed": [0]}}),
    ):
        (root / name).write_text(yaml.safe_dump(study))
    (root / "no-eval").mkdir()
    (root / "old-run").mkdir()  # a run folder from before the nested config
    (root / "old-run" / "config.yaml").write_text(yaml.safe_dump({"dataset": "mnist", "attack_step_size": 0.01}))
    damaged = root / "damaged-eval"
    damaged.mkdir()
    (damaged / "evaluation.json").write_text("{not json")


def _round_two(root: Path) -> None:
    """Round two of the hardening: files that look like checkpoints, stores and runs but are not."""
    good = torch.load(root / "good.pt", weights_only=True)
    torch.save({**good, "state_dict": "a string"}, root / "sd-string.pt")
    broken = create_model("small_cnn", 3, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, width=4)
    with torch.no_grad():
        for p in broken.parameters():
            p.fill_(float("nan"))
    save_checkpoint(root / "nan.pt", broken, class_names=["cat", "dog", "ship"])
    (root / "text.pt").write_text("these are not the weights you are looking for\n")
    (root / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (root / "notdb").mkdir()
    (root / "notdb" / "results.sqlite").write_text("not a database")
    data = str(root / "good" / "images")
    (root / "study-width.yaml").write_text(
        yaml.safe_dump({"base": tiny({"data.dataset": data}), "grid": {"model.args.width": [-3]}})
    )
    (root / "netmod.py").write_text(
        "import torch.nn as nn\n\n\ndef make(num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes))\n"
    )
    run = root / "poisoned-run"  # a run whose state.pt was replaced by a file that runs code when unpickled
    assert main(["train", *tiny_train_args({"data.dataset": data}), "--out", str(run)]) == 0
    buf = io.BytesIO()
    torch.save({"model": Bomb()}, buf)
    (run / "state.pt").write_bytes(buf.getvalue())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("world")
    _corrupt_datasets(root)
    _class_folder_variants(root)
    _checkpoints(root)
    _files(root)
    write_idx_dataset(root / "fmnist", "fashion-mnist")
    _round_two(root)
    return World(root)


Argv = Callable[[World], list[str]]


def _evaluate(ckpt: str = "good.pt", data: str = "good/images", *extra: str) -> Argv:
    return lambda w: ["evaluate", "--checkpoint", w.path(ckpt), "--dataset", w.path(data), *extra]


def _train(*settings: str, data: str = "good/images") -> Argv:
    return lambda w: ["train", *tiny_train_args({"data.dataset": w.path(data)}), *settings]


def _set(*pairs: str) -> list[str]:
    return [x for p in pairs for x in ("--set", p)]


CASES: list[tuple[str, Argv, str]] = [
    # datasets: missing, corrupt, truncated, hostile
    ("unknown dataset name", _train(data="nosuchdata"), r"nosuchdata"),
    (
        "garbage IDX file",
        lambda w: ["train", *tiny_train_args({"data.dataset": "mnist", "data.root": w.path("garbage-mnist")})],
        r"train-images-idx3-ubyte.*(damaged|not)",
    ),
    (
        "truncated IDX file",
        lambda w: ["train", *tiny_train_args({"data.dataset": "mnist", "data.root": w.path("truncated-mnist")})],
        r"damaged|holds",
    ),
    (
        "IDX with a bad magic number",
        lambda w: ["train", *tiny_train_args({"data.dataset": "mnist", "data.root": w.path("badmagic-mnist")})],
        r"magic|damaged",
    ),
    ("truncated tar.gz", _train(data="truncated.tar.gz"), r"truncated.tar.gz"),
    ("not a tar archive", _train(data="notatar.tar.gz"), r"notatar.tar.gz"),
    ("non-image .png in a class folder", _train(data="broken-png/images"), r"000.png"),
    ("empty class folder", _train(data="empty-class/images"), r"owl.*(no images|empty)"),
    ("class folders without test/", _train(data="no-test/images"), r"test"),
    (
        "malicious pickle in a CIFAR batch",
        lambda w: ["train", *tiny_train_args({"data.dataset": "cifar10", "data.root": w.path("bomb-cifar")})],
        r"data_batch_1.*(refus|not allowed|damaged)",
    ),
    (
        "junk CIFAR batch",
        lambda w: ["train", *tiny_train_args({"data.dataset": "cifar10", "data.root": w.path("junk-cifar")})],
        r"data_batch_1",
    ),
    (
        "official archive with a wrong checksum",
        lambda w: ["train", *tiny_train_args({"data.dataset": "cifar10", "data.root": w.path("fake-archive")})],
        r"cifar-10-python.tar.gz.*(checksum|md5)",
    ),
    ("data root that is a file", lambda w: ["datasets", "--data-root", w.path("a-file")], r"a-file"),
    # checkpoints
    ("missing checkpoint", _evaluate("missing.pt"), r"missing.pt does not exist"),
    ("0-byte checkpoint", _evaluate("empty.pt"), r"empty.pt.*(empty|cannot be read)"),
    ("truncated checkpoint", _evaluate("truncated.pt"), r"truncated.pt cannot be read"),
    ("checkpoint holding foreign objects", _evaluate("foreign.pt"), r"foreign.pt.*(refuse|not plain)"),
    ("checkpoint that is a folder", _evaluate("dir.pt"), r"dir.pt"),
    ("checkpoint with another class count", _evaluate("four.pt"), r"trained for 4 classes but the dataset has 3"),
    (
        "checkpoint for other images",
        lambda w: [*_evaluate("rgb32.pt")(w)[:3], "--dataset", "fashion-mnist", "--data-root", w.path("fmnist")],
        r"takes 3×32×32 images, the data's are 1×28×28",
    ),
    # evaluation settings
    (
        "batch size 0",
        _evaluate("good.pt", "good/images", "--batch-size", "0"),
        r"batch_size must be a whole number >= 1",
    ),
    ("negative batch size", _evaluate("good.pt", "good/images", "--batch-size", "-3"), r"batch_size"),
    ("0 images per class", _evaluate("good.pt", "good/images", "--n-per-class", "0"), r"n_per_class"),
    ("first 0 images", _evaluate("good.pt", "good/images", "--first-n", "0"), r"first_n"),
    ("negative eps", _evaluate("good.pt", "good/images", "--eps", "-1"), r"ε must be >= 0"),
    ("eps that is not a number", _evaluate("good.pt", "good/images", "--eps", "abc"), r"cannot read ε 'abc'"),
    ("absurd eps", _evaluate("good.pt", "good/images", "--eps", "9"), r"absurd"),
    ("unknown norm", _evaluate("good.pt", "good/images", "--norm", "L3"), r"unknown norm"),
    ("unknown attack", _evaluate("good.pt", "good/images", "--attack", "pgdd"), r"Did you mean: pgd"),
    (
        "attack option of the wrong type",
        _evaluate("good.pt", "good/images", "--attack", "{name: pgd, args: {steps: abc}}"),
        r"option steps must be a whole number",
    ),
    (
        "attack option out of range",
        _evaluate("good.pt", "good/images", "--attack", "{name: pgd, args: {steps: 0}}"),
        r"steps and restarts must be >= 1",
    ),
    (
        "attack as broken YAML",
        _evaluate("good.pt", "good/images", "--attack", "{name: pgd"),
        r"not a valid YAML mapping",
    ),
    (
        "attack in the old syntax",
        _evaluate("good.pt", "good/images", "--attack", "pgd:steps=3"),
        r"write attack options as a mapping",
    ),
    (
        "custom AutoAttack without components",
        _evaluate("good.pt", "good/images", "--attack", "{name: autoattack, args: {version: custom}}"),
        r"version custom needs attacks",
    ),
    (
        "unknown target class",
        _evaluate("good.pt", "good/images", "--targeted", "zebra"),
        r"targeted takes 'all', a class name or an index",
    ),
    ("0 PGD steps", _evaluate("good.pt", "good/images", "--steps", "0"), r"steps"),
    ("0 restarts", _evaluate("good.pt", "good/images", "--restarts", "0"), r"restarts"),
    (
        "negative step size",
        _evaluate("good.pt", "good/images", "--step-size", "-1"),
        r"step size must be > 0|step_size",
    ),
    (
        "negative boundary images",
        _evaluate("good.pt", "good/images", "--boundary-per-class", "-1"),
        r"boundary_per_class",
    ),
    ("negative seed", _evaluate("good.pt", "good/images", "--seed", "-1"), r"seed must be a whole number >= 0"),
    ("--out that is a file", lambda w: [*_evaluate()(w), "--out", w.path("a-file")], r"a-file is a file"),
    ("--out where no folder can be made", lambda w: [*_evaluate()(w), "--out", "/proc/classwise/eval"], r"/proc/"),
    ("--device cuda without a GPU", lambda w: [*_evaluate()(w), "--device", "cuda"], r"no CUDA GPU is visible"),
    ("unknown device", lambda w: [*_evaluate()(w), "--device", "tpu"], r"unknown device|not supported"),
    # training settings
    ("learning rate as a word", _train(*_set("optim.lr=fast")), r"optim.lr: expected a number"),
    ("--set without a value", _train(*_set("optim.lr")), r"--set takes KEY=VALUE"),
    ("--set with broken YAML", _train(*_set("optim.lr=[")), r"not a valid YAML value"),
    (
        "milestone that is not a number",
        _train(*_set("optim.milestones=[0.5, abc]")),
        r"optim.milestones\[1\]: expected a number",
    ),
    ("milestone beyond the run", _train(*_set("optim.milestones=[1.5]")), r"milestones are fractions"),
    ("negative model width", _train(*_set("model.args.width=-4")), r"width must be >= 1"),
    ("unknown architecture", _train(*_set("model.name=resnet99")), r"unknown model 'resnet99'"),
    ("unknown architecture argument", _train(*_set("model.args.depthh=3")), r"has no argument"),
    ("architecture argument of the wrong type", _train(*_set("model.args.width=abc")), r"expected a whole number"),
    ("technique option of the wrong type", _train(*_set("balance.name=focal", "balance.args.gamma=two")), r"gamma"),
    ("unknown method", _train(*_set("method.name=madry")), r"unknown training method 'madry'"),
    ("0 attack steps", _train(*_set("method.args.steps=0")), r"steps must be >= 1"),
    ("eps beyond the image range", _train(*_set("threat.eps=2")), r"eps must be in \[0, 1\]"),
    ("FRL without TRADES", _train(*_set("balance.name=frl")), r"frl reweighs the natural and boundary parts"),
    (
        "user weights of the wrong length",
        _train(*_set("balance.name=reweight", "balance.args={scheme: user, weights: [1, 2]}")),
        r"one value per class",
    ),
    ("0 epochs", _train(*_set("optim.epochs=0")), r"epochs must be >= 1"),
    ("0 batch size", _train(*_set("optim.batch_size=0")), r"batch_size must be >= 1"),
    ("too many validation images", _train(*_set("data.val_per_class=1000")), r"cannot hold out 1000 validation images"),
    ("unknown precision", _train(*_set("optim.precision=fp16")), r"unknown precision"),
    ("negative seed for training", _train(*_set("seed=-1")), r"seed must be"),
    ("unknown setting", _train(*_set("colour=red")), r"colour: unknown setting"),
    ("unknown selection metric", _train(*_set("monitor.select=best")), r"unknown selection metric"),
    ("missing config file", lambda w: ["train", "--config", w.path("nope.yaml")], r"nope.yaml does not exist"),
    (
        "config file with broken YAML",
        lambda w: ["train", "--config", w.path("bad.yaml")],
        r"bad.yaml is not valid YAML",
    ),
    (
        "config file holding a list",
        lambda w: ["train", "--config", w.path("list.yaml")],
        r"list.yaml must hold a mapping",
    ),
    ("empty config file", lambda w: ["train", "--config", w.path("empty.yaml")], r"empty.yaml must hold a mapping"),
    (
        "config file with an unknown setting",
        lambda w: ["train", "--config", w.path("unknown.yaml"), "--out", w.path("u")],
        r"optim.colour: unknown setting",
    ),
    ("train without --out", _train(), r"give --out RUN_DIR"),
    (
        "a batch larger than the training images (every epoch would train on nothing)",
        _train("--set", "optim.batch_size=4096"),
        r"optim.batch_size is 4096, but only \d+ training images are left",
    ),
    (
        "resume of a folder holding no run",
        lambda w: ["train", "--resume", w.path("no-eval")],
        r"holds no run to resume",
    ),
    ("train --out that is a file", lambda w: [*_train()(w), "--out", w.path("a-file")], r"a-file"),
    # gap, report, study, listings
    (
        "gap variant in the old syntax",
        lambda w: ["gap", *tiny_train_args({"data.dataset": w.path("good/images")}), "--variant", "pgd-at+focal"],
        r"--variant takes a mapping",
    ),
    (
        "gap variant with an unknown technique",
        lambda w: [
            "gap",
            *tiny_train_args({"data.dataset": w.path("good/images")}),
            "--variant",
            "{balance.name: fokal}",
        ],
        r"Did you mean: focal",
    ),
    ("report without --out", lambda w: ["report", w.path("no-eval")], r"required: --out"),
    (
        "report of a missing folder",
        lambda w: ["report", w.path("nowhere"), "--out", w.path("r")],
        r"nowhere is not a folder",
    ),
    (
        "report of a folder without results",
        lambda w: ["report", w.path("no-eval"), "--out", w.path("r")],
        r"holds no evaluated run",
    ),
    ("report of a damaged evaluation", lambda w: ["report", w.path("damaged-eval"), "--out", w.path("r")], r"damaged"),
    ("missing study file", lambda w: ["study", "run", w.path("nope.yaml")], r"nope.yaml does not exist"),
    ("study file with broken YAML", lambda w: ["study", "run", w.path("bad.yaml")], r"bad.yaml is not valid YAML"),
    ("study grid with an unknown dataset", lambda w: ["study", "run", w.path("study-bad-dataset.yaml")], r"nosuchdata"),
    (
        "study evaluation with steps: ten",
        lambda w: ["study", "run", w.path("study-steps.yaml")],
        r"option steps must be a whole number",
    ),
    ("study evaluation of 0 images per class", lambda w: ["study", "run", w.path("study-npc.yaml")], r"n_per_class"),
    (
        "study grid axis that is not a list",
        lambda w: ["study", "run", w.path("study-grid.yaml")],
        r"give a non-empty list",
    ),
    (
        "negative worker count",
        lambda w: ["study", "run", w.path("study-ok.yaml"), "--workers", "-1"],
        r"workers must be >= 0",
    ),
    (
        "unknown executor",
        lambda w: ["study", "run", w.path("study-ok.yaml"), "--executor", "slurm"],
        r"unknown executor 'slurm'",
    ),
    (
        "unknown export format",
        lambda w: ["study", "export", w.path("study-ok.yaml"), "--format", "xlsx"],
        r"unknown export format 'xlsx'",
    ),
    (
        "export before any run",
        lambda w: ["study", "export", w.path("study-ok.yaml"), "--dir", w.path("never-run")],
        r"no results",
    ),
    (
        "resume a run written by an older classwise",
        lambda w: ["train", "--resume", w.path("old-run")],
        r"old-run holds a run this classwise cannot read .*older version",
    ),
    # round two: tracebacks, misleading messages and nonsense that was accepted
    ("state_dict that is a string", _evaluate("sd-string.pt"), r"state_dict is not a mapping of names to tensors"),
    ("text file as a checkpoint", _evaluate("text.pt"), r"text.pt is not a file written by torch.save .*holds text"),
    ("random bytes as a checkpoint", _evaluate("random.pt"), r"random.pt (is not a file written by torch.save|cannot)"),
    ("model whose logits are NaN", _evaluate("nan.pt"), r"NaN or infinite logits"),
    (
        "poisoned state.pt on resume",
        lambda w: ["train", "--resume", w.path("poisoned-run")],
        r"run state .*state.pt holds objects other than tensors.*Do not open it unsafely; delete",
    ),
    ("config that is a folder", lambda w: ["train", "--config", w.path("good")], r"good is a folder; give the path"),
    ("study file that is a folder", lambda w: ["study", "run", w.path("good")], r"good is a folder; give the path"),
    (
        "--out inside a file",
        lambda w: [*_evaluate()(w), "--out", w.path("a-file") + "/eval"],
        r"a-file/eval: a part of this path is a file, not a folder",
    ),
    (
        "--mean/--std of the wrong length for one channel",
        lambda w: [
            "evaluate",
            "--model",
            w.path("netmod.py") + ":make",
            "--dataset",
            "fashion-mnist",
            "--data-root",
            w.path("fmnist"),
            "--mean",
            "0.5,0.5",
            "--std",
            "0.2",
        ],
        r"--mean and --std need 1 value \(the data has one channel\)",
    ),
    ("a list as --attack", _evaluate("good.pt", "good/images", "--attack", "[pgd, fgsm]"), r"one attack per --attack"),
    ("two attacks in one --attack", _evaluate("good.pt", "good/images", "--attack", "pgd,fgsm"), r"one attack per"),
    (
        "unknown RobustBench model",
        lambda w: ["evaluate", "--model", "robustbench:NoSuchModel", "--dataset", w.path("good/images")],
        r"(no model 'NoSuchModel'|RobustBench has models for CIFAR-10)",
    ),
    ("learning rate NaN", _train(*_set("optim.lr=.nan")), r"optim.lr: expected a finite number"),
    ("learning rate infinite", _train(*_set("optim.lr=.inf")), r"optim.lr: expected a finite number"),
    ("learning rate 'nan'", _train(*_set("optim.lr=nan")), r"optim.lr: expected a number"),
    ("weight decay infinite", _train(*_set("optim.weight_decay=-.inf")), r"weight_decay: expected a finite number"),
    (
        "attack option NaN",
        _evaluate("good.pt", "good/images", "--attack", "{name: pgd, args: {step_size: .nan}}"),
        r"option step_size must be a number .*\(finite\)",
    ),
    ("empty item in --eps", _evaluate("good.pt", "good/images", "--eps", "0.1,,0.2"), r"has an empty item"),
    ("trailing comma in --eps", _evaluate("good.pt", "good/images", "--eps", "0.1,"), r"has an empty item"),
    ("the same ε twice", _evaluate("good.pt", "good/images", "--eps", "8/255,8/255"), r"8/255 more than once"),
    (
        "the same ε twice in a config",
        _train(*_set("evaluation.eps=[0.03, 0.03]")),
        r"evaluation.eps: .* gives an ε more than once",
    ),
    (
        "--weights with a classwise checkpoint",
        _evaluate("good.pt", "good/images", "--weights", "w.pt"),
        r"carries its own weights: leave --weights out",
    ),
    (
        "--weights with a TorchScript model",
        lambda w: [
            *["evaluate", "--model", "torchscript:" + w.path("m.ts"), "--weights", "w.pt"],
            *["--dataset", w.path("good/images")],
        ],
        r"a TorchScript file .* leave --weights out",
    ),
    (
        "study grid value only the architecture rejects",
        lambda w: ["study", "run", w.path("study-width.yaml"), "--dir", w.path("never-made")],
        r"run \[model.args.width=-3\]: model 'resnet20': width must be >= 1",
    ),
    (
        "report of a store that is no database",
        lambda w: ["report", w.path("notdb"), "--out", w.path("r")],
        r"notdb/results.sqlite is not a readable study store",
    ),
    (
        "snapshot of a store that is no database",
        lambda w: ["snapshot", w.path("notdb"), "--out", w.path("r")],
        r"notdb/results.sqlite is not a readable study store",
    ),
    (
        "status of a store that is no database",
        lambda w: ["study", "status", w.path("study-ok.yaml"), "--dir", w.path("notdb")],
        r"is not a readable study store",
    ),
    ("input shape without three sizes", lambda w: ["models", "--input-shape", "3x32"], r"CxHxW"),
    ("a single class", lambda w: ["models", "--num-classes", "1"], r"at least 2 classes"),
]


@pytest.mark.parametrize(("name", "argv", "match"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_message(
    world: World,
    name: str,
    argv: Argv,
    match: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # a hostile file that ran would leave PWNED here
    args = argv(world)
    if "--out" not in args and args[0] in ("train", "evaluate") and "--resume" not in args:
        args += ["--out", str(tmp_path / "out")] if "give --out" not in match else []
    before = _listing(world.root)
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("classwise: error: "), err
    assert len(err.strip().splitlines()) <= 3, err
    import re

    assert re.search(match, err), err
    assert "weights_only=False" not in err and "free space" not in err, err  # never the unsafe or a wrong fix
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing half-written
    assert _listing(world.root) == before  # nothing created or left in the fixtures
    assert not (tmp_path / "PWNED").exists()


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if ".cache" not in p.parts}


def test_there_are_at_least_sixty_cases() -> None:
    assert len(CASES) >= 60


def test_a_corrected_command_in_the_same_out_folder_just_works(tmp_path: Path) -> None:
    data = str(write_class_folders(tmp_path, n=6))
    out = tmp_path / "run"
    assert (
        main(["train", *tiny_train_args({"data.dataset": data}), *_set("model.args.width=-4"), "--out", str(out)]) == 2
    )
    assert not out.exists()
    assert main(["train", *tiny_train_args({"data.dataset": data}), "--out", str(out)]) == 0


def test_reading_a_cifar_batch_never_runs_its_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from classwise.data import formats

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "data_batch_1"
    path.write_bytes(_pickle_bomb())
    with pytest.raises(ValueError, match="refus"):
        formats.read_cifar_batches([path], "labels")
    assert not (tmp_path / "PWNED").exists()
    good = tmp_path / "good_batch"
    good.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0, 1]}))
    x, y = formats.read_cifar_batches([good], "labels")
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [0, 1]


def test_html_in_run_dataset_and_class_names_comes_out_escaped(tmp_path: Path) -> None:
    hostile = ("<img src=x onerror=alert(1)>", "dog", "ship")
    data = write_class_folders(tmp_path / "<b>data</b>", classes=hostile, n=6)
    run = tmp_path / "<svg onload=alert(2)>"
    assert main(["train", *tiny_train_args({"data.dataset": str(data)}), "--out", str(run)]) == 0
    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<img src=x onerror" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<svg onload" not in page and "<b>data</b>" not in page
    assert page.count("<script>") == 1  # the page's own figure check, nothing else


def test_killing_the_parent_of_two_workers_stops_them_and_every_run_is_done_once(tmp_path: Path) -> None:
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    data = str(write_class_folders(tmp_path, n=8))
    study = tmp_path / "study.yaml"
    doc = {"base": tiny({"data.dataset": data, "optim.epochs": 4}), "grid": {"seed": [0, 1, 2, 3]}}
    study.write_text(yaml.safe_dump(doc))
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "classwise.cli", "study", "run", str(study), "--dir", str(tmp_path / "s")]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    parent = subprocess.Popen(
        [*cmd, "--workers", "2"], cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    db, workers = tmp_path / "s" / "results.sqlite", []
    deadline = time.time() + 120
    while time.time() < deadline and parent.poll() is None and len(workers) < 2:
        if db.exists():
            with sqlite3.connect(db, timeout=30) as con:
                try:
                    rows = con.execute("SELECT worker FROM runs WHERE status='running'").fetchall()
                except sqlite3.OperationalError:
                    rows = []
            workers = [int(w.rsplit(":", 1)[1]) for (w,) in rows if w]
        time.sleep(0.05)
    assert len(workers) == 2, "the workers never took runs"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    time.sleep(3)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)]
    assert not alive, f"workers {alive} outlived their parent"
    assert main([*cmd[3:]]) == 0
    from classwise.study import STORE, Store, load_study

    store = Store(tmp_path / "s" / STORE)
    assert [r["status"] for r in store.runs()] == ["done"] * 4
    assert len(store.metrics()) == 4 * 3 * 2  # clean and pgd × 3 classes × 4 runs: none recorded twice
    for run in load_study(study).runs:
        history = yaml.safe_load((tmp_path / "s" / "runs" / run.run_id / "history.json").read_text())
        assert [h["epoch"] for h in history] == [0, 1, 2, 3]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return "Z"


def test_a_resumed_run_clears_what_killed_saves_left(tmp_path: Path) -> None:
    data = str(write_class_folders(tmp_path, n=6))
    run = tmp_path / "run"
    assert main(["train", *tiny_train_args({"data.dataset": data, "optim.epochs": 2}), "--out", str(run)]) == 0
    (run / ".state.pt.abc.part").write_bytes(b"half")
    (run / "eval" / ".partial-xyz").mkdir()
    assert main(["train", "--resume", str(run)]) == 0
    assert not (run / ".state.pt.abc.part").exists() and not (run / "eval" / ".partial-xyz").exists()


def _constant_model(path: Path) -> Path:
    """A model that predicts ``cat`` for every image: a run that never trained."""
    model = create_model("small_cnn", 3, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, width=4)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.bias.copy_(torch.tensor([5.0, 0.0, 0.0]))
    return save_checkpoint(path, model, class_names=["cat", "dog", "ship"])


def test_a_model_that_never_trained_is_named_first_and_equal_spreads_do_not_narrow(tmp_path: Path) -> None:
    from classwise.evaluate import read_evaluation
    from classwise.report.headline import comparison_headline, model_headline

    data = str(write_class_folders(tmp_path / "d", n=6))
    ckpt = _constant_model(tmp_path / "constant.pt")
    assert main(["evaluate", "--checkpoint", str(ckpt), "--dataset", data, "--out", str(tmp_path / "e")]) == 0
    ev = read_evaluation(tmp_path / "e")
    finding = model_headline(ev).finding
    assert finding.startswith("the model cannot be read as a result (constant prediction: cat for 100% of the images)")
    same = comparison_headline(ev, ev, {"method": {"name": "standard"}}, {"method": {"name": "pgd-at"}}).finding
    assert "leaves the gap as it was" in same and "narrows" not in same and "widens" not in same
    assert same.startswith("the standard model cannot be read as a result")
    assert main(["report", str(tmp_path / "e"), "--out", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "report.html").read_text()
    assert "cannot be read as a result: constant prediction: cat for 100% of the images" in page


def test_ten_tied_classes_are_counted_not_spelled_out() -> None:
    from classwise.evaluate import ClassAccuracy
    from classwise.report.headline import weakest

    names = tuple(f"c{k}" for k in range(10))
    labels = np.repeat(np.arange(10), 10)
    acc = ClassAccuracy.from_flags(labels == 9, labels, 10)
    assert weakest(acc, names) == "9 classes tied at 0.0% (c0, c1, c2, …)"
    two = ClassAccuracy.from_flags(labels[:30] == 2, labels[:30], 3)
    assert weakest(two, names[:3]) == "c0 and c1 tied at 0.0%"


def test_the_coefficient_of_variation_of_a_zero_mean_is_said_to_be_undefined(tmp_path: Path) -> None:
    import dataclasses

    from classwise.evaluate import format_table, read_evaluation

    data = str(write_class_folders(tmp_path / "d", n=6))
    ckpt = _constant_model(tmp_path / "constant.pt")
    assert main(["evaluate", "--checkpoint", str(ckpt), "--dataset", data, "--out", str(tmp_path / "e")]) == 0
    ev = read_evaluation(tmp_path / "e")
    wrong = dataclasses.replace(ev, clean_pred=(ev.labels + 1) % ev.num_classes)  # every class at 0%
    text = format_table(wrong)
    assert "nan" not in text and "undefined" in text and "CV undefined: every class at 0%" in text


def test_a_report_over_datasets_with_different_classes_shows_each_on_its_own(tmp_path: Path) -> None:
    three = write_class_folders(tmp_path / "three", n=6)
    four = write_class_folders(tmp_path / "four", classes=("ant", "bee", "cow", "doe"), n=6)
    for name, data in (("a", three), ("b", four)):
        args = ["train", *tiny_train_args({"data.dataset": str(data)}), "--out", str(tmp_path / "runs" / name)]
        assert main(args) == 0
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "report.html").read_text()
    assert "Per-class accuracy and robustness — " in page and page.count("Per-class accuracy and robustness — ") == 2


def test_a_store_read_while_a_worker_finishes_a_run_sees_one_moment(tmp_path: Path) -> None:
    """The runs and the metrics come from one read: a run finished between the two queries is
    either done with its metrics or pending without them, never pending with metrics."""
    import sqlite3
    from collections.abc import Iterator
    from contextlib import contextmanager

    from classwise.study import Store, load_study
    from tests.test_study import _study

    study = load_study(_study(tmp_path, {"seed": [0]}))
    (run,) = study.runs
    Store(tmp_path / "s.sqlite").register(study.runs)
    row = {"split": "test", "attack": "clean", "eps": 0.0, "norm": "Linf", "class_index": 0, "class_name": "a"}
    rows = [{**row, "n": 1, "correct": 1, "accuracy": 1.0, "ci_low": 0.2, "ci_high": 1.0}]

    class Racing(Store):
        """A reader during whose first query another worker finishes the run."""

        raced = False

        @contextmanager
        def _connect(self) -> Iterator[sqlite3.Connection]:
            with super()._connect() as db:

                def factory(cursor: sqlite3.Cursor, values: tuple) -> sqlite3.Row:
                    if not Racing.raced and "position" in [d[0] for d in cursor.description]:
                        Racing.raced = True
                        writer = Store(self.path)
                        assert writer.claim(run.run_id, "other", 3)
                        writer.finish(run.run_id, rows, {})
                    return sqlite3.Row(cursor, values)

                db.row_factory = factory
                yield db

    runs, metrics = Racing(tmp_path / "s.sqlite").read()
    assert Racing.raced
    assert runs[0]["status"] == "pending" and metrics == []  # the moment before the other worker committed
    runs, metrics = Store(tmp_path / "s.sqlite").read()
    assert runs[0]["status"] == "done" and len(metrics) == 1


def test_a_full_disk_during_any_write_leaves_the_previous_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The report, an evaluation, a checkpoint and a run's history: each written atomically, so a disk
    that fills up mid-write leaves what was there before, no partial file, and one message."""
    import errno

    from classwise.config import write_text_atomically
    from classwise.models import atomic_torch_save

    data = str(write_class_folders(tmp_path / "d", n=6))
    run = tmp_path / "run"
    assert main(["train", *tiny_train_args({"data.dataset": data}), "--out", str(run)]) == 0
    assert main(["report", str(run), "--out", str(tmp_path / "r")]) == 0
    before = {p: p.read_bytes() for p in [*run.rglob("*"), *(tmp_path / "r").rglob("*")] if p.is_file()}

    real_write = Path.write_text

    def full(self: Path, *args: object, **kwargs: object) -> int:
        if self.name.startswith(".") or ".partial-" in str(self):  # the temporary copy: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    assert main(["report", str(run), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "no space left on the device while writing" in err and ".partial-" not in err, err
    monkeypatch.undo()

    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(OSError):
        atomic_torch_save({"x": torch.zeros(1)}, run / "model.pt")
    monkeypatch.undo()
    monkeypatch.setattr("os.fsync", no_space)
    with pytest.raises(OSError):
        write_text_atomically(run / "history.json", "[]")
    monkeypatch.undo()
    after = {p: p.read_bytes() for p in [*run.rglob("*"), *(tmp_path / "r").rglob("*")] if p.is_file()}
    assert after == before  # every file as it was, and no temporary file left beside them
