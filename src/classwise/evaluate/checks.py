"""The checks every evaluation runs, in the spirit of AutoAttack's: logits (not probabilities) of
the right width, no zero input gradients, perturbations inside the ball and images in [0,1],
robust ≤ clean per class, PGD not weaker than FGSM, robust accuracy not rising with ε."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from classwise.attacks import Attack, flat_norm, format_eps
from classwise.errors import ConfigError
from classwise.evaluate.records import Evaluation


def _shape(shape: tuple[int, ...] | torch.Size) -> str:
    return "×".join(str(int(v)) for v in shape)


def check_input(model: nn.Module, image_shape: tuple[int, ...] | torch.Size) -> None:
    """A model that declares the images it takes (every classwise model; a :class:`Preprocessed`
    model with ``input_shape``) refuses other images before any attack."""
    spec = getattr(model, "spec", None)
    expected = tuple(getattr(model, "input_shape", None) or getattr(spec, "input_shape", ()) or ())
    if expected and tuple(int(v) for v in image_shape) != expected:
        raise ConfigError(
            f"the model takes {_shape(expected)} images, the data's are {_shape(image_shape)}; "
            "evaluate it on data of the shape it was built for"
        )


def forward_checked(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's logits for ``x``; a model that cannot take these images is one clear error."""
    try:
        return model(x)
    except RuntimeError as exc:
        raise ConfigError(
            f"the model cannot take the data's {_shape(x.shape[1:])} images ({str(exc).splitlines()[0][:160]}); "
            "evaluate it on data of the shape it was built for"
        ) from None


def check_logits(logits: torch.Tensor, num_classes: int) -> None:
    """The model must return (batch, classes) logits, not probabilities."""
    if logits.ndim != 2:
        raise ConfigError(f"the model must return logits (batch, classes), got shape {tuple(logits.shape)}")
    if logits.shape[1] != num_classes:
        raise ConfigError(
            f"the model returns {logits.shape[1]} logits but the data has {num_classes} classes; "
            "evaluate it on the data it was trained for"
        )
    inside = bool(((logits >= 0) & (logits <= 1)).all())
    sums_to_one = bool(
        torch.allclose(logits.float().sum(1), logits.new_ones(len(logits), dtype=torch.float32), atol=1e-3)
    )
    if inside and sums_to_one:
        raise ConfigError(
            "the model returns probabilities (rows in [0,1] summing to 1), not logits; attacks on softmax "
            "outputs mask gradients. Remove the final softmax."
        )


def gradient_warnings(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[str]:
    """AutoAttack's zero-gradient check: inputs whose loss gradient is exactly zero."""
    x = x.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    zero = (grad.flatten(1).abs().amax(1) == 0).float().mean().item()
    if zero > 0:
        return [
            f"{zero:.1%} of the checked inputs have exactly zero loss gradient: a sign of gradient masking; "
            "gradient-based robust accuracy may be overestimated (try autoattack, whose Square attack needs none)"
        ]
    return []


def check_ball(x_adv: torch.Tensor, x: torch.Tensor, attack: Attack) -> None:
    tol = 1e-5 if attack.norm == "Linf" else 1e-4
    worst = float(flat_norm(x_adv - x, attack.norm).max()) if len(x) else 0.0
    if worst > attack.eps + tol:
        raise RuntimeError(f"{attack.name} left the {attack.norm} ball: ‖δ‖ = {worst:.6f} > ε = {attack.eps:.6f}")
    if len(x) and (float(x_adv.min()) < -1e-6 or float(x_adv.max()) > 1 + 1e-6):
        raise RuntimeError(f"{attack.name} produced images outside [0,1]")


def sanity_warnings(ev: Evaluation) -> list[str]:
    """Warnings in the spirit of AutoAttack's checks: robust ≤ clean per class, PGD not weaker than
    FGSM, robust accuracy not rising with ε."""
    out = []
    clean = ev.clean().correct
    for r in (*ev.records, *ev.worst):
        if (ev.robust(r).correct > clean).any():
            raise RuntimeError(f"{r.label}: robust accuracy above clean accuracy for a class (a bug)")
    by_eps: dict[float, dict[str, float]] = {}
    for r in ev.records:
        by_eps.setdefault(r.eps, {})[r.attack] = float(r.robust.mean())
    for e, accs in by_eps.items():
        if "pgd" in accs and "fgsm" in accs and accs["pgd"] > accs["fgsm"] + 1e-9:
            out.append(
                f"PGD is weaker than FGSM at ε={format_eps(e)} ({accs['pgd']:.1%} vs {accs['fgsm']:.1%} robust): "
                "a sign of gradient masking or a too-small step size"
            )
    for name in sorted({r.attack for r in ev.records}):
        curve = sorted((r.eps, float(r.robust.mean())) for r in ev.records if r.attack == name)
        for (e0, a0), (e1, a1) in itertools.pairwise(curve):
            if a1 > a0 + 0.01:
                out.append(
                    f"{name}: robust accuracy rises from {a0:.1%} at ε={format_eps(e0)} to {a1:.1%} at "
                    f"ε={format_eps(e1)}: the attack is failing at larger ε (gradient masking?)"
                )
    return out
