"""Registry-wide tests: every registry follows the same contract, and every entry of every registry
passes its registry's behavioural check, so a new entry is tested by being registered."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from classwise.attacks import ATTACKS, build_attack, flat_norm
from classwise.data import DATASETS
from classwise.errors import UnknownNameError
from classwise.models import MODELS, create_model
from classwise.models.sources import SOURCES, ModelRequest, load_model
from classwise.registry import Registry
from classwise.study import EXECUTORS, FORMATS
from classwise.train import METHODS, SCHEDULES, SELECTION, TECHNIQUES, TrainConfig
from classwise.train.balance import make_technique
from classwise.train.epoch import EpochTotals, step_body
from tests.synthetic import WRITERS
from tests.test_attacks import Linear

REGISTRIES: dict[str, Registry] = {
    "datasets": DATASETS,
    "models": MODELS,
    "attacks": ATTACKS,
    "methods": METHODS,
    "techniques": TECHNIQUES,
    "schedules": SCHEDULES,
    "selection": SELECTION,
    "executors": EXECUTORS,
    "formats": FORMATS,
    "model sources": SOURCES,
}


def _entries(registry: Registry) -> list[str]:
    return registry.names()


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_every_registry_keeps_the_contract(kind: str) -> None:
    registry = REGISTRIES[kind]
    names = registry.names()
    assert names and names == sorted(names) and all(n == n.lower() for n in names)
    for entry in registry:
        assert entry.description, f"{kind}: {entry.name} has no description"
        assert entry.name in registry and registry.get(entry.name.upper()) is entry.factory
    with pytest.raises(UnknownNameError, match=f"Did you mean: {names[0]}"):
        registry.get(names[0] + "x")


@pytest.mark.parametrize("name", _entries(DATASETS))
def test_every_dataset_has_an_official_format_writer_for_its_tests(name: str) -> None:
    assert name in WRITERS, f"add a writer of {name}'s official files to tests/synthetic.py"
    spec = DATASETS.get(name)
    assert len(spec.classes) >= 2 and len(spec.input_shape) == 3 and spec.files


@pytest.mark.parametrize("name", _entries(ATTACKS))
def test_every_attack_stays_in_the_ball_and_reports_per_sample(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 3, 2, 2, generator=g)
    model = Linear().eval()
    y = model(x).argmax(1).detach()
    attack = build_attack(name, {}, 0.1)
    components, _ = attack.plan(3)
    for component in components[:1]:
        x_adv, fooled = attack.run(model, x, y, component=component, generator=g)
        assert x_adv.shape == x.shape and fooled.dtype == torch.bool and fooled.shape == (12,)
        assert float(flat_norm(x_adv - x, "Linf").max()) <= 0.1 + 1e-5


def _tiny_step(method_name: str, technique: str) -> float:
    model = create_model("resnet20", 3, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, width=4)
    cfg = TrainConfig.from_dict({"method": {"name": method_name}, "balance": {"name": technique}})
    method_cls = METHODS.get(method_name)
    method = method_cls(cfg.method.options, cfg.threat.eps)
    balance = make_technique(technique, {}, torch.tensor([8, 4, 2]), 2, method_cls)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    totals = EpochTotals.zeros(3, torch.device("cpu"))
    body = step_body(model, opt, method, balance, 0, torch.Generator().manual_seed(0), totals)
    model.train()
    body(torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2]))
    return float(totals.loss)


@pytest.mark.parametrize("name", _entries(METHODS))
def test_every_method_trains_a_step_with_its_default_options(name: str) -> None:
    assert math.isfinite(_tiny_step(name, "none"))


@pytest.mark.parametrize("name", _entries(TECHNIQUES))
def test_every_technique_trains_a_step_with_a_method_it_accepts(name: str) -> None:
    cls = TECHNIQUES.get(name)
    method = next(
        m.name
        for m in METHODS
        if (m.factory.adversarial or not cls.requires_adversarial) and set(cls.needs_parts) <= set(m.factory.parts)
    )
    assert math.isfinite(_tiny_step(method, name))


@pytest.mark.parametrize("name", _entries(SCHEDULES))
def test_every_schedule_stays_between_zero_and_the_peak(name: str) -> None:
    optim = TrainConfig().with_overrides({"optim.schedule": name, "optim.epochs": 10, "optim.lr": 0.2}).optim
    rates = [SCHEDULES.get(name)(optim, t / 4) for t in range(41)]
    assert all(0 <= r <= 0.2 + 1e-12 for r in rates) and max(rates) > 0


@pytest.mark.parametrize("name", _entries(SELECTION))
def test_every_selection_metric_reads_a_validation_record(name: str) -> None:
    clean = {"clean_mean": 0.8, "clean_worst": 0.5}
    robust = {**clean, "robust_mean": 0.4, "robust_worst": 0.1}
    metric = SELECTION.get(name)
    assert math.isfinite(metric(robust)) and math.isfinite(metric(clean))
    assert metric.needs_robust == name.startswith("robust")


@pytest.mark.parametrize("name", _entries(FORMATS))
def test_every_export_format_writes_a_table(name: str, tmp_path: Path) -> None:
    if name == "parquet":
        pytest.importorskip("pyarrow")
    path = tmp_path / f"t.{name}"
    FORMATS.get(name)(path, ["a", "b"], [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])
    assert path.stat().st_size > 0


@pytest.mark.parametrize("name", _entries(EXECUTORS))
def test_every_executor_is_documented_for_the_command_line(name: str) -> None:
    from classwise.cli import build_parser

    study = next(a for a in build_parser()._actions if a.dest == "command").choices["study"]  # type: ignore[union-attr]
    run = next(a for a in study._actions if a.dest == "study_command").choices["run"]  # type: ignore[union-attr]
    executor = next(a for a in run._actions if a.dest == "executor")
    assert name in (executor.help or "")


@pytest.mark.parametrize("name", _entries(SOURCES))
def test_every_model_source_names_an_example_and_refuses_what_it_does_not_take(name: str) -> None:
    from classwise.errors import ConfigError

    source = SOURCES.get(name)
    request = ModelRequest(num_classes=10, input_shape=(3, 32, 32))
    with pytest.raises(ConfigError, match=f"e.g. {name}:{source.example}"):
        load_model(f"{name}:", request)
    if not source.takes_weights:
        with pytest.raises(ConfigError, match=f"{source.what} .* carries its own weights"):
            load_model(f"{name}:{source.example}", ModelRequest(10, (3, 32, 32), weights=Path("w.pt")))
