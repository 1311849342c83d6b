"""Threat models: the norm ball an attack lives in (RobustBench names ``Linf``, ``L2``), ε parsing,
and projection onto the ball ∩ [0,1]."""

from __future__ import annotations

import torch

from classwise.config import number
from classwise.errors import ConfigError

NORMS = ("Linf", "L2")


def check_norm(norm: str) -> str:
    """Canonical norm name; accepts ``linf``/``inf``/``l2`` spellings."""
    canon = {"linf": "Linf", "inf": "Linf", "l_inf": "Linf", "l2": "L2"}.get(norm.lower())
    if canon is None:
        raise ConfigError(f"unknown norm {norm!r}; use one of {', '.join(NORMS)}")
    return canon


def check_eps(eps: float, norm: str) -> float:
    """Reject negative or absurd budgets (a ball that covers the whole image space)."""
    if not eps == eps or eps < 0:  # NaN or negative
        raise ConfigError(f"ε must be >= 0, got {eps}")
    limit = 1.0 if norm == "Linf" else 64.0
    if eps > limit:
        raise ConfigError(
            f"ε={eps:g} is absurd for {norm} on [0,1] images (at most {limit:g}); give pixel units, e.g. 8/255"
        )
    return float(eps)


def parse_eps(text: str) -> float:
    """``"8/255"``, ``"0.5"`` → float."""
    try:
        return number(text, "ε")  # the one reader of numbers and fractions (classwise.config)
    except ConfigError:
        raise ConfigError(f"cannot read ε {text!r}; write a number or a fraction like 8/255") from None


def parse_eps_list(text: str) -> list[float]:
    """``"0,2/255,8/255"`` → [0.0, 0.00784..., 0.0313...]."""
    items = text.split(",")
    if not text.strip():
        raise ConfigError("no ε given; write one or more values separated by commas, e.g. 0,2/255,8/255")
    if any(not t.strip() for t in items):
        raise ConfigError(f"ε list {text!r} has an empty item; separate values by single commas, e.g. 0,2/255,8/255")
    values = [parse_eps(t) for t in items]
    twice = sorted({format_eps(v) for v in values if values.count(v) > 1})
    if twice:
        raise ConfigError(f"ε list {text!r} gives {', '.join(twice)} more than once; give each ε once")
    return values


def format_eps(eps: float) -> str:
    """ε as ``8/255`` when it is a multiple of 1/255, else compactly."""
    k = eps * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 and eps != 0 else f"{eps:g}"


def flat_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample norm of a (B, ...) perturbation."""
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "Linf" else flat.norm(p=2, dim=1)


Budget = float | torch.Tensor  # one ε, or one per sample (B,)


def per_sample(eps: Budget, x: torch.Tensor) -> Budget:
    """ε shaped to broadcast against a batch: a float stays, a (B,) tensor becomes (B, 1, 1, 1)."""
    return eps.view(-1, *([1] * (x.ndim - 1))).to(x.dtype) if isinstance(eps, torch.Tensor) else eps


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: Budget, norm: str) -> torch.Tensor:
    """Project ``x_adv`` onto {‖x_adv − x‖ ≤ ε} ∩ [0,1]^d (ε a float or one per sample)."""
    delta = x_adv - x
    e = per_sample(eps, x)
    if norm == "Linf":
        delta = torch.maximum(torch.minimum(delta, e), -e) if isinstance(e, torch.Tensor) else delta.clamp(-e, e)
    else:
        n = flat_norm(delta, "L2").clamp_min(1e-12).view(-1, *([1] * (x.ndim - 1)))
        delta = delta * (e / n).clamp(max=1.0)
    return (x + delta).clamp(0.0, 1.0)
