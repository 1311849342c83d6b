"""Precision and memory layout: bf16 where the hardware has it, fp32 evaluation unless asked,
channels_last except where torch's CPU kernel corrupts the heap."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from classwise import compute
from classwise.errors import ConfigError
from classwise.evaluate import EvalSpec, evaluate
from classwise.models import create_model
from classwise.train import TrainConfig, train
from tests.synthetic import tiny, write_class_folders
from tests.test_attacks import Linear, as_split

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_precision_is_bf16_where_the_hardware_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compute, "cpu_has_bf16", lambda: True)
    assert compute.resolve_precision("auto", CPU) == "bf16"
    monkeypatch.setattr(compute, "cpu_has_bf16", lambda: False)
    assert compute.resolve_precision("auto", CPU) == "fp32"
    assert compute.resolve_precision("auto", CUDA) == "bf16"
    assert compute.resolve_precision("fp32", CUDA) == "fp32" and compute.resolve_precision("bf16", CPU) == "bf16"
    with pytest.raises(ConfigError, match="unknown precision 'half'"):
        compute.resolve_precision("half", CPU)


def test_bf16_asked_for_on_a_cpu_without_it_is_kept_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Emulated bf16 is many times slower than fp32 (28× for a convolution on an AVX2-only EPYC):
    an explicit bf16 there runs as asked, and says so once; auto, fp32 and native bf16 say nothing."""
    compute._warn_emulated_bf16.cache_clear()
    monkeypatch.setattr(compute, "cpu_has_bf16", lambda: True)
    with caplog.at_level("WARNING", logger="classwise.compute"):
        assert compute.resolve_precision("bf16", CPU) == "bf16"
        assert compute.resolve_precision("bf16", CUDA) == "bf16"
    assert not caplog.records
    monkeypatch.setattr(compute, "cpu_has_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="classwise.compute"):
        assert compute.resolve_precision("auto", CPU) == "fp32" and compute.resolve_precision("fp32", CPU) == "fp32"
        assert not caplog.records
        assert compute.resolve_precision("bf16", CPU) == "bf16"
        assert compute.resolve_precision("bf16", CPU) == "bf16"
    assert [r.getMessage() for r in caplog.records if "emulates it" in r.getMessage()] != []
    assert len(caplog.records) == 1
    compute._warn_emulated_bf16.cache_clear()
    with pytest.raises(ConfigError, match="unknown precision"):
        TrainConfig().with_overrides({"optim.precision": "fp16"})


def _model(arch: str, **kw: int) -> torch.nn.Module:
    return create_model(arch, 10, (3, 32, 32), (0.5,) * 3, (0.25,) * 3, **kw)


def test_channels_last_is_refused_only_where_the_cpu_kernel_breaks() -> None:
    # a 1×1 stride-2 convolution with fewer than 16 input channels (ResNet-20's shortcut at width < 16)
    assert not compute.channels_last_safe(_model("resnet20", width=4), CPU)
    assert compute.channels_last_safe(_model("resnet20", width=4), CUDA)
    assert compute.channels_last_safe(_model("resnet20"), CPU)
    assert compute.channels_last_safe(_model("preact_resnet18"), CPU)
    assert compute.channels_last_safe(_model("wrn_16_4"), CPU)


def test_fast_layout_gives_the_model_back_as_it_came() -> None:
    model = _model("resnet20")
    with compute.fast_layout(model, CPU):
        assert compute.is_channels_last(model)
    assert not compute.is_channels_last(model)
    narrow = _model("resnet20", width=4)
    with compute.fast_layout(narrow, CPU):
        assert not compute.is_channels_last(narrow)


def test_evaluation_is_fp32_unless_asked() -> None:
    assert EvalSpec().precision == "fp32"
    with pytest.raises(ConfigError, match="precision must be fp32 or bf16"):
        EvalSpec(precision="fp16")
    data = as_split(torch.rand(30, 3, 2, 2, generator=torch.Generator().manual_seed(0)), torch.arange(30) % 3)
    spec = EvalSpec(attacks=({"name": "pgd", "args": {"steps": 5}},), eps=(0.05,))
    fp32 = evaluate(Linear(), data, spec, class_names="abc", progress=False)
    bf16 = evaluate(Linear(), data, replace(spec, precision="bf16"), class_names="abc", progress=False)
    assert bf16.spec.precision == "bf16" and fp32.spec.precision == "fp32"
    assert abs(float(fp32.headline.robust.mean()) - float(bf16.headline.robust.mean())) < 0.2
    assert fp32.fingerprint != bf16.fingerprint  # never reused for one another


def test_a_run_records_its_precision_and_layout(tmp_path: Path) -> None:
    data = str(write_class_folders(tmp_path, n=6))
    cfg = TrainConfig.from_dict(tiny({"data.dataset": data, "optim.precision": "bf16", "model.args.width": 16}))
    result = train(cfg, tmp_path / "run", progress=False)
    assert [(h["precision"], h["channels_last"]) for h in result.history] == [("bf16", True)]
    assert result.test.spec.precision == "fp32"  # the final evaluation stays fp32
    assert np.isfinite(result.history[0]["train_loss"])
