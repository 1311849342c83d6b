from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from classwise.attacks import (
    PGD,
    AutoAttack,
    build_attack,
    fgsm,
    flat_norm,
    parse_attack_spec,
    parse_eps,
    parse_eps_list,
)
from classwise.data import LabeledImages
from classwise.errors import ConfigError, UnknownNameError


class Linear(nn.Module):
    """Logits = W·x + b on flattened [0,1] images: gradients and optimal attacks are known."""

    def __init__(self, d: int = 12, k: int = 3, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(d, k)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(k, d, generator=g))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _batch(n: int = 64, seed: int = 1, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 2, 2, generator=g)
    y = Linear(k=k)(x).argmax(1).detach()  # clean-correct by construction
    return x, y


@pytest.mark.parametrize("norm", ["Linf", "L2"])
@pytest.mark.parametrize("random_start", [True, False])
def test_pgd_stays_in_ball_and_image_range(norm: str, random_start: bool) -> None:
    x, y = _batch()
    eps = 0.1 if norm == "Linf" else 0.5
    x_adv, fooled = PGD(eps=eps, norm=norm, steps=10, random_start=random_start).run(Linear(), x, y)
    assert float(flat_norm(x_adv - x, norm).max()) <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert fooled.dtype == torch.bool and fooled.any()


def test_fgsm_is_optimal_for_a_two_class_linear_model() -> None:
    """For logits w·x, the L∞ worst case moves every pixel by ε against sign(w_y − w_other)."""
    model = Linear(k=2)
    x, _ = _batch()
    x = x.clamp(0.2, 0.8)
    y = model(x).argmax(1).detach()  # no clipping at the image border at ε = 0.1
    x_adv, _ = fgsm(0.1).run(model, x, y, early_stop=False)
    w = model.fc.weight.detach()
    direction = (w[1 - y] - w[y]).sign().view_as(x)
    torch.testing.assert_close(x_adv, x + 0.1 * direction)


def test_eps_zero_fools_nothing_correct() -> None:
    x, y = _batch()
    _, fooled = PGD(eps=0.0, steps=3).run(Linear(), x, y)
    assert not fooled.any()


def test_early_stop_finds_at_least_what_the_last_iterate_finds() -> None:
    x, y = _batch(256)
    attack = PGD(eps=0.05, steps=10, random_start=False)
    _, last = attack.run(Linear(), x, y, early_stop=False)
    x_es, any_iterate = attack.run(Linear(), x, y, early_stop=True)
    assert bool((last <= any_iterate).all())
    # what early stop reports as fooled really is fooled
    assert bool((Linear()(x_es).argmax(1)[any_iterate] != y[any_iterate]).all())


def test_restarts_only_add_fooled_samples() -> None:
    x, y = _batch(256)
    one = PGD(eps=0.04, steps=5, restarts=1).run(Linear(), x, y, generator=torch.Generator().manual_seed(0))[1]
    three = PGD(eps=0.04, steps=5, restarts=3).run(Linear(), x, y, generator=torch.Generator().manual_seed(0))[1]
    assert bool((one <= three).all())


@pytest.mark.parametrize("loss", ["ce", "margin"])
def test_targeted_pgd_reaches_the_target(loss: str) -> None:
    x, y = _batch(32)
    target = (y + 1) % 3
    x_adv, hit = PGD(eps=1.0, steps=50, step_size=0.05, loss=loss).run(Linear(), x, target, targeted=True)
    assert hit.float().mean() > 0.9
    assert torch.equal(Linear()(x_adv).argmax(1)[hit], target[hit])


def test_margin_loss_is_the_cw_margin() -> None:
    from classwise.attacks.pgd import attack_loss

    logits = torch.tensor([[3.0, 1.0, 2.0]])
    assert attack_loss(logits, torch.tensor([0]), "margin", False).item() == pytest.approx(-1.0)
    assert attack_loss(logits, torch.tensor([1]), "margin", True).item() == pytest.approx(-2.0)


def test_autoattack_components_give_per_sample_outcomes() -> None:
    x, y = _batch(24)
    attack = AutoAttack(eps=0.03, version="custom", attacks=("apgd-ce", "square"), seed=0)
    assert attack.plan(3) == (("apgd-ce", "square"), ())
    for component in ("apgd-ce", "square"):
        x_adv, fooled = attack.run(Linear(), x, y, component=component)
        assert float(flat_norm(x_adv - x, "Linf").max()) <= 0.03 + 1e-6
        assert fooled.any()
        assert bool((Linear()(x_adv).argmax(1)[fooled] != y[fooled]).all())
        assert bool((x_adv[~fooled] == x[~fooled]).all())  # unbroken samples keep their clean image


def test_autoattack_plan_adapts_to_few_classes() -> None:
    standard = AutoAttack(eps=0.03)
    assert standard.plan(10) == (("apgd-ce", "apgd-t", "fab-t", "square"), ())
    run, notes = standard.plan(4)
    assert run == ("apgd-ce", "apgd-t", "fab-t", "square") and "3 target classes" in notes[0]
    run, notes = standard.plan(2)
    assert run == ("apgd-ce", "fab-t", "square") and "apgd-t left out" in notes[0]


def test_eps_parsing() -> None:
    assert parse_eps("8/255") == pytest.approx(8 / 255)
    assert parse_eps_list("0, 2/255,0.5") == [0.0, pytest.approx(2 / 255), 0.5]
    with pytest.raises(ConfigError, match="fraction"):
        parse_eps("eight")


@pytest.mark.parametrize(
    ("spec", "kwargs", "error", "match"),
    [
        ("pgd", {"eps": -0.1}, ConfigError, ">= 0"),
        ("pgd", {"eps": 8.0}, ConfigError, "absurd"),
        ("pgd", {"eps": 0.1, "norm": "L7"}, ConfigError, "unknown norm"),
        ({"name": "pgd", "args": {"steps": 0}}, {"eps": 0.1}, ConfigError, "steps"),
        ({"name": "pgd", "args": {"loss": "hinge"}}, {"eps": 0.1}, ConfigError, "unknown loss"),
        ({"name": "pgd", "args": {"colour": "red"}}, {"eps": 0.1}, ConfigError, "takes no option"),
        ("pdg", {"eps": 0.1}, UnknownNameError, "Did you mean: pgd"),
        (
            "{name: autoattack, args: {version: custom, attacks: [apgd-xx]}}",
            {"eps": 0.1},
            ConfigError,
            "unknown AutoAttack",
        ),
    ],
)
def test_bad_attack_settings_are_clear_errors(spec: str, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        name, options = parse_attack_spec(spec)
        build_attack(name, options, **kwargs)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("{name: pgd, args: {steps: abc}}", "option steps must be a whole number"),
        ("{name: pgd, args: {steps: 2.5}}", "option steps must be a whole number"),
        ("{name: pgd, args: {random_start: maybe}}", "option random_start must be true or false"),
        ("{name: pgd, args: {step_size: big}}", "option step_size must be a number"),
        ({"name": "pgd", "args": {"steps": "ten"}}, "option steps must be a whole number"),
        ({"name": "pgd", "args": {"steps": True}}, "option steps must be a whole number"),
        ({"steps": 10}, "an attack is a name or a mapping"),
        ("pgd:steps=10", "write attack options as a mapping"),
        ("{name: pgd, args: [1]}", "args must be a mapping"),
    ],
)
def test_attack_options_are_typed_by_the_attack(spec: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_attack_spec(spec)  # type: ignore[arg-type]


def test_pgd_defaults_are_the_evaluation_protocol() -> None:
    a = PGD(eps=8 / 255)
    assert a.steps == 20 and a.restarts == 1 and a.random_start
    assert a.alpha == pytest.approx(2.5 * (8 / 255) / 20)
    name, options = parse_attack_spec("{name: pgd, args: {loss: margin, steps: 10, step_size: 2/255}}")
    b = build_attack(name, options, 8 / 255)
    assert isinstance(b, PGD) and (b.steps, b.loss, b.alpha) == (10, "margin", pytest.approx(2 / 255))
    assert b.step_at(16 / 255) == pytest.approx(4 / 255)  # the same fraction of ε at another budget


def as_split(x: torch.Tensor, y: torch.Tensor) -> LabeledImages:
    return LabeledImages((x * 255).round().to(torch.uint8), y.to(torch.int64))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()
