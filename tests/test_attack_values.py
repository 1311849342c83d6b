"""Attacks pinned to values: PGD against an independent implementation written here from the
papers (Madry et al. 2018; Carlini & Wagner's margin), the random start against the uniform
distribution on the ball, restarts against one start, and AutoAttack against the reference
package called directly, per sample and per component."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from classwise.attacks import PGD, AutoAttack, flat_norm, pgd
from classwise.attacks.pgd import random_init
from classwise.evaluate import AttackSpec, EvalSpec, evaluate
from tests.test_attacks import Linear, as_split


class Tiny(nn.Module):
    """A small ReLU network: non-linear, so an attack's path matters, and fast."""

    def __init__(self, k: int = 10, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _images(n: int, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 2, 2, generator=g)


def reference_pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    start: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    norm: str,
    loss: str,
    targeted: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD as the papers write it, sample by sample where it matters: ascend the loss (CE, or the
    margin max_{j≠y} z_j − z_y; both negated toward a target) along sign(∇) (L∞) or ∇/‖∇‖₂ (L2),
    project onto the ε-ball, clip to [0, 1]. Returns the last iterate and, per sample, whether any
    iterate (the start included) fooled the model."""
    x_adv = start.clone()
    fooled = torch.zeros(len(x), dtype=torch.bool)
    for _ in range(steps + 1):
        x_adv.requires_grad_(True)
        z = model(x_adv)
        pred = z.argmax(1)
        fooled |= (pred == y) if targeted else (pred != y)
        if _ == steps:
            break
        if loss == "ce":
            objective = -F.cross_entropy(z, y, reduction="sum") if targeted else F.cross_entropy(z, y, reduction="sum")
        else:
            zy = z[torch.arange(len(y)), y]
            other = torch.stack([torch.cat([z[i, :c], z[i, c + 1 :]]).max() for i, c in enumerate(y.tolist())])
            objective = (zy - other).sum() if targeted else (other - zy).sum()
        (grad,) = torch.autograd.grad(objective, x_adv)
        with torch.no_grad():
            if norm == "Linf":
                x_next = x_adv + alpha * grad.sign()
                delta = torch.clamp(x_next - x, -eps, eps)
            else:
                g = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
                delta = x_adv + alpha * g - x
                norms = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
                delta = delta * torch.where(norms > eps, eps / norms.clamp_min(1e-12), torch.ones_like(norms))
            x_adv = torch.clamp(x + delta, 0, 1).detach()
    return x_adv.detach(), fooled


@pytest.mark.parametrize("norm", ["Linf", "L2"])
@pytest.mark.parametrize("loss", ["ce", "margin"])
@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_equals_an_independent_implementation(norm: str, loss: str, targeted: bool) -> None:
    model = Tiny(k=5)
    x = _images(48)
    with torch.no_grad():
        y = model(x).argmax(1)
    labels = (y + 1 + torch.arange(len(y)) % 4) % 5 if targeted else y
    eps = {"Linf": 0.08, "L2": 0.4}[norm] * (3 if targeted else 1)  # a target is farther than any other class
    steps = 7
    alpha = 2.5 * eps / steps
    start = random_init(x, eps, norm, torch.Generator().manual_seed(11))
    ours, _ = pgd(
        model, x, labels, eps=eps, step_size=alpha, steps=steps, norm=norm, loss=loss, targeted=targeted, x_init=start
    )
    theirs, fooled_any = reference_pgd(model, x, labels, start, eps, alpha, steps, norm, loss, targeted)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    # with early stop, a sample counts as fooled exactly when some iterate fooled it
    _, flags = pgd(
        model,
        x,
        labels,
        eps=eps,
        step_size=alpha,
        steps=steps,
        norm=norm,
        loss=loss,
        targeted=targeted,
        x_init=start,
        early_stop=True,
    )
    assert torch.equal(flags, fooled_any)
    assert 0 < int(flags.sum()) < len(flags)  # the case is not trivial either way


def test_pgd_takes_the_step_its_options_say() -> None:
    """One step from the clean image of a linear model moves every pixel by exactly α toward the
    gradient's sign; the default α is 2.5·ε/steps (Madry et al.)."""
    model = Linear(k=2)
    x = _images(16).clamp(0.3, 0.7)
    with torch.no_grad():
        y = model(x).argmax(1)
    attack = PGD(eps=0.2, steps=4, random_start=False)
    assert attack.alpha == pytest.approx(0.125)
    x1, _ = PGD(eps=0.2, steps=1, step_size=0.125, random_start=False).run(model, x, y, early_stop=False)
    w = model.fc.weight.detach()
    torch.testing.assert_close(x1, x + 0.125 * (w[1 - y] - w[y]).sign().view_as(x))


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_random_start_covers_the_whole_ball(norm: str) -> None:
    """L∞: every coordinate uniform on [−ε, ε]. L2: a uniformly random direction with radius
    uniform on [0, ε] (the norm's distribution) — not a corner, a shell or half the ball."""
    eps = 0.1 if norm == "Linf" else 0.3
    x = torch.full((4000, 3, 2, 2), 0.5)  # far from the [0, 1] border, so nothing is clipped
    delta = random_init(x, eps, norm, torch.Generator().manual_seed(0)) - x
    if norm == "Linf":
        values = delta.flatten().numpy()
        assert stats.kstest(values, stats.uniform(loc=-eps, scale=2 * eps).cdf).pvalue > 1e-3
        assert float(delta.abs().max()) > 0.99 * eps
    else:
        radius = flat_norm(delta, "L2").numpy()
        assert float(radius.max()) <= eps + 1e-6
        assert stats.kstest(radius, stats.uniform(loc=0, scale=eps).cdf).pvalue > 1e-3
        directions = delta.flatten(1) / delta.flatten(1).norm(dim=1, keepdim=True)
        assert float(directions.mean(0).abs().max()) < 0.05  # no preferred direction
        assert float((directions < 0).float().mean()) == pytest.approx(0.5, abs=0.02)


def test_restarts_add_fooled_samples_that_one_start_misses() -> None:
    model = Tiny(k=10, seed=1)
    x = _images(400, seed=5)
    with torch.no_grad():
        y = model(x).argmax(1)
    one = PGD(eps=0.04, steps=2, restarts=1).run(model, x, y, generator=torch.Generator().manual_seed(0))[1]
    five = PGD(eps=0.04, steps=2, restarts=5).run(model, x, y, generator=torch.Generator().manual_seed(0))[1]
    assert bool((one <= five).all())
    assert int(five.sum()) > int(one.sum())  # a restart that did nothing would leave them equal


def _reference_autoattack(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, attacks: list[str], k: int, bs: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference package as its README calls it (standard version, seed 0), with the first
    ``attacks`` of the standard list, and min(9, K − 1) target classes as a K-class user must set."""
    from pyautoattack import AutoAttack as Reference

    adversary = Reference(model, norm="Linf", eps=eps, version="standard", seed=0, device=x.device)
    adversary.verbose = False
    adversary.apgd_targeted.n_target_classes = min(9, k - 1)
    adversary.fab.n_target_classes = min(9, k - 1)
    adversary.attacks_to_run = attacks
    x_adv, y_adv = adversary.run_standard_evaluation(x, y, batch_size=bs)
    return x_adv, y_adv


@pytest.mark.parametrize("k", [10, 4])
def test_autoattack_equals_the_reference_per_sample_and_per_component(k: int) -> None:
    model = Tiny(k=k, seed=2).eval()
    x = (_images(24, seed=7) * 255).round() / 255
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::7] = (y[::7] + 1) % k  # a few clean errors, which every attack leaves alone
    eps, bs = 0.05, 16
    ours = evaluate(
        model,
        as_split(x, y),
        EvalSpec(attacks=(AttackSpec("autoattack"),), eps=(eps,), batch_size=bs, seed=0, analyses=False),
        class_names=[str(i) for i in range(k)],
        progress=False,
    ).headline
    components = ["apgd-ce", "apgd-t", "fab-t", "square"]
    runs = [_reference_autoattack(model, x, y, eps, components[:i], k, bs) for i in range(1, len(components) + 1)]
    x_adv, y_adv = runs[-1]  # the whole standard list
    np.testing.assert_array_equal(ours.robust, (y_adv.cpu() == y).numpy())
    np.testing.assert_array_equal(ours.adv_pred, y_adv.cpu().numpy())
    np.testing.assert_allclose(ours.perturbation, flat_norm(x_adv - x, "Linf").numpy(), atol=1e-6)
    assert float(ours.perturbation.max()) <= eps + 1e-6
    # the component that broke each image: the first prefix of the reference's list that breaks it
    clean_right = (model(x).argmax(1) == y).numpy()
    broken_by = np.full(len(y), "", dtype=object)
    for component, (_, labels) in zip(components, runs, strict=True):
        newly = (labels.cpu() != y).numpy() & clean_right & (broken_by == "")
        broken_by[newly] = component
    np.testing.assert_array_equal(ours.broken_by.astype(object), broken_by)
    assert ours.robust.any() and (~ours.robust).any()


@pytest.mark.parametrize("k", [10, 4])
@pytest.mark.parametrize("component", ["apgd-ce", "apgd-t", "fab-t", "square"])
def test_each_autoattack_component_equals_the_reference_alone(k: int, component: str) -> None:
    """Each component on its own, against the reference running only it: the same adversarial
    image for every sample (a targeted component run untargeted, or with another loss, moves them)."""
    model = Tiny(k=k, seed=2).eval()
    x = (_images(12, seed=8) * 255).round() / 255
    with torch.no_grad():
        y = model(x).argmax(1)
    eps = 0.08
    x_ref, y_ref = _reference_autoattack(model, x, y, eps, [component], k, len(x))
    x_ours, fooled = AutoAttack(eps=eps, seed=0).run(model, x, y, component=component)
    assert torch.equal(fooled, (y_ref.cpu() != y))
    torch.testing.assert_close(x_ours, x_ref.to(x_ours.dtype), rtol=0, atol=1e-6)
    assert fooled.any()


def test_autoattack_components_run_as_the_reference_objects() -> None:
    """One component on a batch gives the reference attack object's own output (the samples it
    breaks, and the clean image for the rest)."""
    model = Tiny(k=10, seed=4).eval()
    x = _images(24, seed=9)
    with torch.no_grad():
        y = model(x).argmax(1)
    attack = AutoAttack(eps=0.03, seed=0)
    adversary = attack.reference(model, 10, x.device)
    with torch.no_grad():
        direct = adversary.apgd  # type: ignore[attr-defined]
        direct.loss, direct.seed = "ce", 0
        expected = direct.perturb(x, y)
    got, fooled = attack.run(model, x, y, component="apgd-ce")
    expected_fooled = model(expected).argmax(1) != y
    assert torch.equal(fooled, expected_fooled)
    torch.testing.assert_close(got[fooled], expected[fooled])
    assert torch.equal(got[~fooled], x[~fooled])
