from __future__ import annotations

from pathlib import Path

import pytest

from classwise.cli import build_parser, main
from tests.synthetic import write_idx_dataset


def _commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sorted(sub.choices)  # type: ignore[union-attr]


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
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
