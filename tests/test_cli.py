from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from classwise.cli import build_parser, main
from tests.synthetic import tiny_train_args, write_idx_dataset


def _commands() -> list[list[str]]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    out = []
    for name, parser in sorted(sub.choices.items()):  # type: ignore[union-attr]
        nested = [a for a in parser._actions if a.dest == "study_command"]
        out += [[name, n] for n in sorted(nested[0].choices)] if nested else [[name]]  # type: ignore[union-attr]
    return out


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: classwise" in capsys.readouterr().out


def test_datasets_lists_local_availability(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_idx_dataset(tmp_path, "mnist")
    assert main(["datasets", "--data-root", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith("mnist "))
    assert " yes " in row and "60000" in row
    assert " no " in next(line for line in lines if line.startswith("cifar10 "))


def test_models_lists_parameter_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "preact_resnet18" in out and "11.17M" in out and "wrn_34_10" in out


def _checkpoint(tmp_path: Path, num_classes: int = 3) -> Path:
    from classwise.models import create_model, save_checkpoint

    model = create_model("small_cnn", num_classes, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, width=4)
    return save_checkpoint(tmp_path / "model.pt", model, class_names=["cat", "dog", "ship", "x"][:num_classes])


def test_evaluate_writes_tables_and_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from tests.synthetic import write_class_folders

    data = write_class_folders(tmp_path, as_tar=True)
    ckpt = _checkpoint(tmp_path)
    out = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            "--checkpoint",
            str(ckpt),
            "--dataset",
            str(data),
            "--attack",
            "fgsm",
            "--attack",
            "pgd",
            "--eps",
            "0,4/255",
            "--steps",
            "3",
            "--targeted",
            "all",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "worst@4/255" in printed and "max-min" in printed and "targeted pgd" in printed
    payload = json.loads((out / "evaluation.json").read_text())
    assert payload["classes"] == ["cat", "dog", "ship"]
    assert len(payload["targeted"]["success"]) == 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--eps", "-1"], "ε must be >= 0"),
        (["--eps", "9"], "absurd"),
        (["--norm", "L3"], "unknown norm"),
        (["--attack", "pgdd"], "Did you mean: pgd"),
        (["--set", "evaluation.bogus=1"], "evaluation.bogus: unknown setting"),
        (["--set", "optim.lr=0.1"], "optim: not an evaluation setting"),
        (["--set", "evaluation.batch_size=0"], "evaluation.batch_size must be a whole number >= 1"),
        (["--set", "evaluation.precision=fp8"], "evaluation.precision must be fp32 or bf16"),
        (["--set", "evaluation"], "--set takes KEY=VALUE"),
        (["evaluation.seed=1"], "give evaluation settings as --set evaluation.seed=1"),
    ],
)
def test_evaluate_bad_input_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    from tests.synthetic import write_class_folders

    data = write_class_folders(tmp_path)
    out = tmp_path / "eval"
    code = main(
        ["evaluate", "--checkpoint", str(_checkpoint(tmp_path)), "--dataset", str(data), "--out", str(out), *extra]
    )
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not out.exists()


def test_evaluation_settings_are_set_like_a_training_config(tmp_path: Path) -> None:
    """--set evaluation.KEY=VALUE reaches the fields no flag has, and wins over the flags."""
    import json

    from tests.synthetic import write_class_folders

    data = write_class_folders(tmp_path)
    out = tmp_path / "eval"
    sets = [
        "evaluation.early_stop=false",
        "evaluation.analyses=false",
        "evaluation.attacks=[fgsm]",
        "evaluation.seed=3",
    ]
    args = ["evaluate", "--checkpoint", str(_checkpoint(tmp_path)), "--dataset", str(data), "--attack", "pgd"]
    assert main([*args, "--seed", "1", *(f for s in sets for f in ("--set", s)), "--out", str(out)]) == 0
    spec = json.loads((out / "evaluation.json").read_text())["spec"]
    assert spec["early_stop"] is False and spec["analyses"] is False and spec["seed"] == 3
    assert [a if isinstance(a, str) else a["name"] for a in spec["attacks"]] == ["fgsm"]


def test_evaluate_refuses_a_class_count_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.synthetic import write_class_folders

    data = write_class_folders(tmp_path)
    code = main(
        [
            "evaluate",
            "--checkpoint",
            str(_checkpoint(tmp_path, num_classes=4)),
            "--dataset",
            str(data),
            "--out",
            str(tmp_path / "eval"),
        ]
    )
    assert code == 2 and "trained for 4 classes but the dataset has 3" in capsys.readouterr().err


def test_train_then_resume_then_refuse_changes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.synthetic import write_class_folders

    data = str(write_class_folders(tmp_path, n=6))
    run = tmp_path / "run"
    tiny = tiny_train_args({"data.dataset": data})
    assert main(["train", *tiny, "--out", str(run)]) == 0
    assert "max-min" in capsys.readouterr().out
    assert main(["train", "--resume", str(run)]) == 0  # finished: nothing to redo, the evaluation is reused
    assert main(["train", "--resume", str(run), "--set", "optim.lr=0.5"]) == 2
    assert "changed config (optim.lr: 0.1 → 0.5)" in capsys.readouterr().err
    assert main(["train", *tiny, "--out", str(run)]) == 2
    assert main(["train", *tiny, "--set", "method.args.steps=0", "--out", str(tmp_path / "r2")]) == 2
    assert "steps must be >= 1" in capsys.readouterr().err
    assert main(["train", *tiny, "--set", "optim.lr", "--out", str(tmp_path / "r2")]) == 2
    assert "--set takes KEY=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()


def test_train_from_a_config_file_with_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.synthetic import tiny, write_class_folders

    data = str(write_class_folders(tmp_path, n=6))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny({"data.dataset": data, "threat.eps": "4/255"})))
    run = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--set", "optim.epochs=2", "--out", str(run)]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optim"]["epochs"] == 2 and saved["threat"]["eps"] == pytest.approx(4 / 255)
    assert main(["train", "--config", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "r2")]) == 2
    assert "missing.yaml does not exist" in capsys.readouterr().err


def test_bare_settings_are_the_same_thing_as_set_on_either_side_of_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from classwise.cli import parse_args, train_config

    bare = ["train", "data.dataset=mnist", "--out", "x", "model.name=resnet20", "method.name=trades"]
    flagged = ["train", "--set", "data.dataset=mnist", "--set", "model.name=resnet20", "--out", "x"]
    flagged += ["--set", "method.name=trades"]
    assert train_config(parse_args(bare)) == train_config(parse_args(flagged))
    assert train_config(parse_args(bare)).method.name == "trades"
    # a later setting wins, bare ones before --set ones
    assert train_config(parse_args(["train", "optim.lr=0.3", "--set", "optim.lr=0.2"])).optim.lr == 0.2
    assert train_config(parse_args(["train", "optim.lr=0.3", "optim.lr=0.4"])).optim.lr == 0.4
    assert main(["train", "optim.lr=0.3", "lr", "--out", str(tmp_path / "r")]) == 2
    assert "unexpected argument 'lr': a setting is KEY=VALUE" in capsys.readouterr().err
    assert main(["train", "optim.lr=fast", "--out", str(tmp_path / "r")]) == 2
    assert "optim.lr: expected a number" in capsys.readouterr().err
    assert main(["train", "optim.lr=0.3", "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_config_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    for key in ("optim.lr", "threat.eps", "method.args.beta", "monitor.select", "evaluation.n_per_class", "cfa"):
        assert key in out


def test_gap_prints_both_models_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.synthetic import write_class_folders

    data = str(write_class_folders(tmp_path, n=6))
    out = tmp_path / "gap"
    tiny = tiny_train_args({"data.dataset": data, "data.train_per_class": 4, "evaluation.n_per_class": 3})
    assert main(["gap", *tiny, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "standard" in printed and "pgd-at" in printed and "weakest" in printed
    assert (out / "standard" / "best.pt").exists() and (out / "pgd-at" / "eval" / "evaluation.json").exists()
    focal = "{method.name: pgd-at, balance.name: focal, balance.args.gamma: 2}"
    assert main(["gap", *tiny, "--variant", focal, "--out", str(out)]) == 0
    assert (out / "pgd-at+focal+gamma=2" / "eval" / "evaluation.json").exists()
    assert main(["gap", *tiny, "--variant", "pgd-at+focal:gamma=2", "--out", str(out)]) == 2
    assert "--variant takes a mapping" in capsys.readouterr().err


def test_the_top_level_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "``" not in out and out.splitlines()[0].startswith("usage: classwise")
    assert "Per-class accuracy and adversarial robustness" in out
