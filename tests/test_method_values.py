"""Training methods and techniques pinned to hand-worked values on a fixed tiny batch: the PGD-AT,
FGSM-RS and TRADES losses (the KL's direction included) against the papers' formulas computed
here, CFA's CCR normalisation, FRL's multipliers after one update, the focal and class-balanced
losses, WAT's per-class validation cost, and the per-class totals the loop accumulates (which
DAFA reads as its probability matrix)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from classwise.attacks.pgd import random_init
from classwise.train import METHODS, TrainConfig
from classwise.train.balance import Balance, effective_number_weights, make_technique
from classwise.train.epoch import EpochTotals, class_losses, step_body
from classwise.train.fairness import dafa_weights
from classwise.train.methods import Knobs
from tests.test_attack_values import Tiny, reference_pgd
from tests.test_attacks import as_split

EPS = 0.1


def _method(name: str, norm: str = "Linf", eps: float = EPS, **args: object):
    options = TrainConfig.from_dict({"method": {"name": name, "args": dict(args)}}).method.options
    return METHODS.get(name)(options, eps, norm)


def _model(seed: int = 0) -> Tiny:
    """A 4-class network with confident outputs (its last layer ×10), so KL(p ‖ q) and KL(q ‖ p) differ."""
    model = Tiny(k=4, seed=seed)
    with torch.no_grad():
        model.net[3].weight.mul_(10)
    return model


def _batch(k: int = 4, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(21)
    x = torch.rand(n, 3, 2, 2, generator=g)
    return x, torch.arange(n) % k


def test_pgd_at_loss_is_cross_entropy_at_the_pgd_example() -> None:
    model, (x, y) = _model(), _batch()
    out = _method("pgd-at", steps=3).loss(model, x, y, torch.Generator().manual_seed(1), Knobs(EPS))
    start = random_init(x, EPS, "Linf", torch.Generator().manual_seed(1))  # the same draw from the same seed
    x_adv, _ = reference_pgd(model, x, y, start, EPS, 2.5 * EPS / 3, 3, "Linf", "ce", False)
    torch.testing.assert_close(out.loss, F.cross_entropy(model(x_adv), y, reduction="none"), rtol=1e-5, atol=1e-5)
    assert bool((out.loss > F.cross_entropy(model(x), y, reduction="none")).all())  # the attack raised it


def test_pgd_at_under_l2_is_cross_entropy_at_the_l2_pgd_example() -> None:
    """``threat.norm: L2``: the random start is in the L2 ball, each step follows ∇/‖∇‖₂ and the
    projection is onto the L2 ball; an L∞ attack at the same ε would leave it (‖δ‖₂ up to ε·√d)."""
    model, (x, y) = _model(), _batch()
    eps = 0.5
    out = _method("pgd-at", "L2", eps, steps=3).loss(model, x, y, torch.Generator().manual_seed(5), Knobs(eps))
    start = random_init(x, eps, "L2", torch.Generator().manual_seed(5))
    x_adv, _ = reference_pgd(model, x, y, start, eps, 2.5 * eps / 3, 3, "L2", "ce", False)
    assert float((x_adv - x).flatten(1).norm(dim=1).max()) <= eps + 1e-5
    torch.testing.assert_close(out.loss, F.cross_entropy(model(x_adv), y, reduction="none"), rtol=1e-5, atol=1e-5)


def test_trades_under_l2_ascends_the_kl_inside_the_l2_ball() -> None:
    model, (x, y) = _model(), _batch()
    eps, steps = 0.5, 3
    out = _method("trades", "L2", eps, beta=6.0, steps=steps).loss(
        model, x, y, torch.Generator().manual_seed(6), Knobs(eps)
    )
    clean = model(x).detach()
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(6))
    x_adv = (x + 0.001 * noise).clamp(0, 1)  # inside the ball already (‖0.001·N‖₂ ≪ ε)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(_kl(clean, model(x_adv)).sum(), x_adv)
        unit = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        delta = x_adv.detach() + 2.5 * eps / steps * unit - x
        delta = delta * (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1).view(-1, 1, 1, 1)
        x_adv = (x + delta).clamp(0, 1)
    # the first step normalises the gradient of a KL that is nearly 0 at x + 0.001·N, so two correct
    # ways of writing the KL part there in float noise; an L∞ step would differ by whole units
    torch.testing.assert_close(out.logits, model(x_adv), rtol=1e-3, atol=1e-3)
    natural = F.cross_entropy(model(x), y, reduction="none")
    torch.testing.assert_close(out.loss, natural + 6.0 * _kl(model(x), model(x_adv)), rtol=1e-3, atol=1e-3)


def test_fgsm_rs_loss_is_one_step_of_1_25_eps_from_a_random_start() -> None:
    model, (x, y) = _model(), _batch()
    out = _method("fgsm-rs").loss(model, x, y, torch.Generator().manual_seed(2), Knobs(EPS))
    start = random_init(x, EPS, "Linf", torch.Generator().manual_seed(2))
    start.requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(start), y, reduction="sum"), start)
    x_adv = (x + (start.detach() + 1.25 * EPS * grad.sign() - x).clamp(-EPS, EPS)).clamp(0, 1)
    torch.testing.assert_close(out.loss, F.cross_entropy(model(x_adv), y, reduction="none"), rtol=1e-5, atol=1e-5)


def _kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) per row, through torch's own kl_div (input log q, target p)."""
    return F.kl_div(F.log_softmax(q_logits, 1), F.softmax(p_logits, 1), reduction="none").sum(1)


def _trades_example(model: torch.nn.Module, x: torch.Tensor, seed: int, steps: int) -> torch.Tensor:
    """Zhang et al.'s inner maximisation: from x + 0.001·N(0, I), ascend KL(f(x) ‖ f(x')) by signed
    steps of 2.5·ε/steps, projected onto the ε-ball and [0, 1]."""
    clean = model(x).detach()
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    x_adv = (x + (0.001 * noise).clamp(-EPS, EPS)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(_kl(clean, model(x_adv)).sum(), x_adv)
        x_adv = (x + (x_adv.detach() + 2.5 * EPS / steps * grad.sign() - x).clamp(-EPS, EPS)).clamp(0, 1)
    return x_adv.detach()


def test_trades_loss_is_natural_plus_beta_kl_from_clean_to_adversarial() -> None:
    model, (x, y) = _model(), _batch()
    out = _method("trades", beta=6.0, steps=3).loss(model, x, y, torch.Generator().manual_seed(3), Knobs(EPS))
    x_adv = _trades_example(model, x, 3, 3)
    natural = F.cross_entropy(model(x), y, reduction="none")
    kl = _kl(model(x), model(x_adv))
    torch.testing.assert_close(out.loss, natural + 6.0 * kl, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.parts["natural"], natural, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.parts["boundary"], 6.0 * kl, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.logits, model(x_adv), rtol=1e-5, atol=1e-5)
    # the other direction is a different number here, so a swapped KL cannot pass
    assert float((_kl(model(x_adv), model(x)) - kl).abs().max().detach()) > 1e-2 * float(kl.max().detach())


def test_trades_with_class_wise_beta_is_normalised_as_cfa_ccr() -> None:
    model, (x, y) = _model(), _batch()
    beta = torch.tensor([2.0, 4.0, 6.0, 8.0])[y]
    method = _method("trades", beta=6.0, steps=2)
    out = method.loss(model, x, y, torch.Generator().manual_seed(4), Knobs(EPS, beta=beta))
    x_adv = _trades_example(model, x, 4, 2)
    natural, kl = F.cross_entropy(model(x), y, reduction="none"), _kl(model(x), model(x_adv))
    torch.testing.assert_close(out.loss, (natural + beta * kl) / (1 + beta), rtol=1e-5, atol=1e-5)


def test_frl_multipliers_and_budget_after_one_update() -> None:
    """Worked by hand from Xu et al.'s update with tau 0.1, rate1 0.05, rate2 0.1:
    clean error (0.1, 0.5, 0.3) has mean 0.3, so its gap minus tau is (−0.3, 0.1, −0.1) and
    λ_clean = max(0, 0.05·gap) = (0, 0.005, 0); the boundary error (0.3, 0.4, 0.2) gives
    (−0.1, 0, −0.2), so λ_boundary = (0, 0, 0) and λ_margin = 0.1·gap = (−0.01, 0, −0.02), whose
    ε multipliers exp(2λ) = (0.9802, 1, 0.9608) are clipped below at 0.98."""
    frl = make_technique("frl", {}, torch.tensor([10, 10, 10]), 10, METHODS.get("trades")).techniques[0]
    frl.observe_validation(0, torch.tensor([0.9, 0.5, 0.7]), torch.tensor([0.6, 0.1, 0.5]))
    torch.testing.assert_close(frl.lam_clean, torch.tensor([0.0, 0.005, 0.0]))
    torch.testing.assert_close(frl.lam_boundary, torch.zeros(3))
    torch.testing.assert_close(frl.lam_margin, torch.tensor([-0.01, 0.0, -0.02]))
    torch.testing.assert_close(frl.class_eps(1, 0.1), 0.1 * torch.tensor([math.exp(-0.02), 1.0, 0.98]))
    # the natural part's weights 1/K + λ − mean(λ); the boundary part's stay uniform
    w_nat = torch.tensor([1 / 3 - 0.005 / 3, 1 / 3 + 0.005 - 0.005 / 3, 1 / 3 - 0.005 / 3])
    y = torch.tensor([0, 1, 2, 1])
    natural, boundary = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0.5, 0.5, 1.0, 2.0])
    loss = Balance(frl).reduce(natural + boundary, y, {"natural": natural, "boundary": boundary}, 1)
    expected = ((w_nat[y] * natural).sum() + (boundary / 3).sum()) / (w_nat[y].sum() + 4 / 3)
    torch.testing.assert_close(loss, expected)


def test_focal_loss_value() -> None:
    """FL = −(1 − p_y)^γ·log p_y; logits (2, 0, 0), class 0: p = e²/(e² + 2)."""
    focal = make_technique("focal", {"gamma": 2.0}, torch.tensor([5, 5, 5]), 10, METHODS.get("pgd-at"))
    p = math.exp(2) / (math.exp(2) + 2)
    value = focal.criterion(0)(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0]))
    assert value.item() == pytest.approx(-((1 - p) ** 2) * math.log(p), rel=1e-6)


def test_class_balanced_weights_and_ldam_deferred_reweighting() -> None:
    """Cui et al.: w_k ∝ (1 − β)/(1 − β^n_k), scaled to sum to K; LDAM-DRW switches them on at
    ``drw_start`` of the epochs."""
    counts = torch.tensor([1000, 100, 10])
    raw = [(1 - 0.999) / (1 - 0.999**n) for n in (1000, 100, 10)]
    expected = torch.tensor([3 * r / sum(raw) for r in raw])
    torch.testing.assert_close(effective_number_weights(counts, 0.999), expected)
    ldam = make_technique("ldam", {"drw_start": 0.5, "beta": 0.999}, counts, 10, METHODS.get("pgd-at"))
    assert ldam.reduce(torch.ones(3), torch.tensor([0, 1, 2]), {}, 4).item() == pytest.approx(1.0)
    weighted = ldam.reduce(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 1, 2]), {}, 5)
    assert weighted.item() == pytest.approx(float((expected * torch.tensor([1.0, 2.0, 3.0])).mean()), rel=1e-6)


def test_wat_cost_is_the_methods_mean_loss_per_class_with_the_model_untouched() -> None:
    model, (x, y) = _model(), _batch(n=24)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = as_split(x, y)
    x_q = images.images.float() / 255
    cost = class_losses(model, _method("standard"), images, 4, 7, 0, "fp32")
    loss = F.cross_entropy(model(x_q), y, reduction="none").detach()
    torch.testing.assert_close(cost, torch.stack([loss[y == c].mean() for c in range(4)]), rtol=1e-5, atol=1e-5)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_the_loops_per_class_totals_and_what_dafa_reads_from_them() -> None:
    """seen, correct and the (K, K) mean probability matrix (row: true class) over one step; DAFA's
    weights come from that matrix, so a transposed matrix changes them."""
    model, (x, y) = _model(seed=6), _batch(n=20)
    y = torch.tensor([0] * 8 + [1] * 6 + [2] * 4 + [3] * 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # the step leaves the weights, so logits are known
    method = _method("standard")
    dafa = make_technique("dafa", {"warmup": 0.1}, torch.bincount(y), 10, METHODS.get("trades"))
    totals = EpochTotals.zeros(4, torch.device("cpu"))
    with torch.no_grad():
        logits = model(x)
    body = step_body(model, optimizer, method, Balance(*dafa.techniques), 0, torch.Generator(), totals)
    body(x, y)
    body(x[:4], y[:4])  # a second batch adds to the first
    all_y, all_logits = torch.cat([y, y[:4]]), torch.cat([logits, logits[:4]])
    torch.testing.assert_close(totals.seen, torch.bincount(all_y, minlength=4).float())
    correct = torch.stack([(all_logits.argmax(1)[all_y == c] == c).sum() for c in range(4)]).float()
    torch.testing.assert_close(totals.correct, correct)
    probs = torch.stack([all_logits[all_y == c].softmax(1).mean(0) for c in range(4)])
    torch.testing.assert_close(totals.class_probs(), probs)
    assert float((probs - probs.T).abs().max()) > 1e-3  # not symmetric: a transpose would show
    dafa.observe_training(0, totals.class_accuracy(), totals.class_probs())
    torch.testing.assert_close(dafa.techniques[0].weights, dafa_weights(probs, 1.0))
    assert not torch.allclose(dafa_weights(probs, 1.0), dafa_weights(probs.T, 1.0))


@pytest.mark.parametrize(
    ("name", "args", "step"), [("pgd-at", {"steps": 4}, 2.5 * EPS / 4), ("fgsm-rs", {}, 1.25 * EPS)]
)
def test_a_methods_attack_is_the_registered_pgd_with_its_step_rule_and_the_techniques_budget(
    name: str, args: dict[str, int], step: float
) -> None:
    """Training goes through the attack interface: the method's attack is the registry's PGD with
    the method's steps and step rule, and a technique's per-example ε and step multiple reach it."""
    from classwise.attacks import PGD

    method = _method(name, **args)
    assert isinstance(method.attack, PGD) and method.attack.alpha == pytest.approx(step)
    model, (x, y) = _model(), _batch()
    eps, scale = EPS * (1 + torch.arange(len(y)) % 3) / 3, 0.5 + (torch.arange(len(y)) % 2)
    out = method.loss(model, x, y, torch.Generator().manual_seed(4), Knobs(eps, step_scale=scale))
    start = random_init(x, eps, "Linf", torch.Generator().manual_seed(4))
    steps = args.get("steps", 1)
    for i in range(len(y)):  # sample by sample: its own ε and step
        rows = slice(i, i + 1)
        x_adv, _ = reference_pgd(
            model, x[rows], y[rows], start[rows], float(eps[i]), step * float(scale[i]), steps, "Linf", "ce", False
        )
        torch.testing.assert_close(
            out.loss[i], F.cross_entropy(model(x_adv), y[rows], reduction="none")[0], rtol=1e-5, atol=1e-5
        )
