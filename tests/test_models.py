from __future__ import annotations

from pathlib import Path

import pytest
import torch

from classwise.errors import CheckpointError, ConfigError, UnknownNameError
from classwise.models import MODELS, create_model, load_checkpoint, save_checkpoint

SHAPES = [(1, 28, 28), (3, 32, 32), (3, 96, 96)]
HEAVY = {"wide_resnet", "wrn_28_10", "wrn_34_10", "densenet121", "resnet50", "resnet34"}


def _model(name: str, shape: tuple[int, int, int] = (3, 32, 32), k: int = 10, **kw):
    c = shape[0]
    return create_model(name, k, shape, (0.5,) * c, (0.25,) * c, **kw)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_runs_forward_and_backward(name: str, shape: tuple[int, int, int]) -> None:
    if name in HEAVY and shape[1] == 96:
        pytest.skip("covered at 28 and 32 pixels; 96-pixel pass of the largest nets is in the slow suite")
    model = _model(name, shape, k=7)
    x = torch.rand(2, *shape, requires_grad=True)
    logits = model(x)
    assert logits.shape == (2, 7)
    logits.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert model.features(x).shape[0] == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(HEAVY))
def test_heavy_models_on_96_pixels(name: str) -> None:
    _model(name, (3, 96, 96))(torch.rand(2, 3, 96, 96)).sum().backward()


def test_channels_last_gives_the_same_logits() -> None:
    model = _model("resnet20").eval()
    x = torch.rand(4, 3, 32, 32)
    ref = model(x)
    model = model.to(memory_format=torch.channels_last)
    out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_normalisation_is_the_first_layer() -> None:
    model = create_model("small_cnn", 10, (3, 32, 32), (0.1, 0.2, 0.3), (0.5, 0.4, 0.2)).eval()
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.5, 0.4, 0.2]).view(1, 3, 1, 1)
    torch.testing.assert_close(model(x), model.backbone((x - mean) / std))


def test_presets_and_arguments() -> None:
    assert _model("wrn_16_4").spec.arch == "wrn_16_4" and _model("wrn_16_4").spec.kwargs == {}
    assert _model("resnet20", depth=32).spec.kwargs == {"depth": 32}
    with pytest.raises(ConfigError, match="no argument"):
        _model("resnet18", depth=3)
    with pytest.raises(ConfigError, match="6n\\+2"):
        _model("resnet20", depth=21)
    with pytest.raises(ConfigError, match="has no argument"):
        _model("wrn_34_10", depth=28)


@pytest.mark.parametrize(
    ("name", "args", "match"),
    [
        ("small_cnn", {"width": "wide"}, "model 'small_cnn' argument width: expected a whole number, got 'wide'"),
        ("small_cnn", {"width": 16.0}, "argument width: expected a whole number"),
        ("small_cnn", {"width": 0}, "width must be >= 1"),
        ("resnet20", {"depth": 2}, "6n\\+2"),  # no residual block left
        ("wide_resnet", {"depth": 4}, "6n\\+4"),
        ("wide_resnet", {"widen": 0}, "widen >= 1"),
        ("wide_resnet", {"dropout": 1.5}, "dropout in \\[0, 1\\)"),
        ("wide_resnet", {"dropout": True}, "argument dropout: expected a number"),
    ],
)
def test_impossible_architecture_arguments_are_refused(name: str, args: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _model(name, **args)


def test_unknown_model_lists_close_matches() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean: preact_resnet18"):
        _model("preactresnet18")


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = _model("resnet20", width=8).eval()
    path = save_checkpoint(tmp_path / "model.pt", model, dataset="toy", class_names=list("abcdefghij"))
    loaded, meta = load_checkpoint(path, arch="resnet20", num_classes=10)
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model(x))
    assert meta["dataset"] == "toy" and "torch" in meta["versions"]
    assert loaded.spec == model.spec
    assert not list(tmp_path.glob("*.part"))


def test_bad_checkpoints_give_one_clear_error(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "model.pt", _model("small_cnn"))
    with pytest.raises(CheckpointError, match="holds a 'small_cnn'"):
        load_checkpoint(path, arch="resnet18")
    with pytest.raises(CheckpointError, match="trained for 10 classes"):
        load_checkpoint(path, num_classes=43)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save(_model("small_cnn").state_dict(), foreign)
    with pytest.raises(CheckpointError, match="not a classwise checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
