"""A class-wise report card of one evaluated model (``classwise audit``): the headline, per-class
clean and robust accuracy with intervals sorted by robustness, worst class and spread, where
each class's attacked images go, and the aggregate robust accuracy beside the RobustBench
leaderboard's published number — said to be comparable only when measured on the same images."""

from __future__ import annotations

from typing import Any

from classwise.attacks import format_eps
from classwise.evaluate import Evaluation, format_flows, format_table
from classwise.report.headline import mean_with_interval, model_headline


def same_images(ev: Evaluation, board: dict[str, Any]) -> str | None:
    """Why the evaluation is not on the leaderboard's images and budget (None when it is)."""
    if ev.dataset != board["dataset"]:
        return f"the data is {ev.title}, the leaderboard's is the official {board['dataset']}"
    if ev.split != "test" or len(ev.labels) != int(board["test_images"]):
        return f"{len(ev.labels):,} {ev.split} images were evaluated, the leaderboard uses {board['test_images']:,}"
    if ev.headline.norm != board["threat_model"] or abs(ev.headline.eps - float(board["eps"])) > 1e-9:
        return f"the budget is {ev.headline.norm} ε={format_eps(ev.headline.eps)}, the leaderboard's " + (
            f"{board['threat_model']} ε={format_eps(float(board['eps']))}"
        )
    return None


def leaderboard_lines(ev: Evaluation) -> list[str]:
    """Measured against published, with the reason they differ in setup where they do."""
    board = ev.source.get("leaderboard")
    if not board:
        return []
    n, record = len(ev.labels), ev.headline
    full = any(a.name == "autoattack" for a in ev.spec.attacks)
    attack = ev.spec.describe() + ("" if full else " (an upper bound on AutoAttack's robust accuracy)")
    lines = [
        f"RobustBench leaderboard ({board['name']}, {board['venue']}): clean {float(board['clean_acc']):.2f}%, "
        f"AutoAttack {float(board['autoattack_acc']):.2f}% on all {int(board['test_images']):,} {board['dataset']} "
        f"test images at {board['threat_model']} ε={format_eps(float(board['eps']))}.",
        f"Measured here: clean {mean_with_interval(ev.clean())}%, robust {mean_with_interval(ev.robust(record))}% "
        f"under {attack}, on {n:,} images.",
    ]
    why = same_images(ev, board)
    lines.append(
        "Same images and budget: the numbers are directly comparable."
        if why is None
        else f"Not the same setup ({why}): compare with care."
    )
    return lines


def audit_card(ev: Evaluation) -> str:
    """The report card as Markdown."""
    top = model_headline(ev, ev.source.get("config") or None)
    parts = [
        f"# Class-wise audit: {ev.source.get('model', 'model')}",
        f"**{top.finding}**",
        top.setup,
        "```\n" + format_table(ev, f"{ev.title} [{ev.spec.images}]") + "\n```",
        "Where the attacked images of each class go:\n\n```\n" + format_flows(ev, ev.headline) + "\n```",
    ]
    board = leaderboard_lines(ev)
    if board:
        parts.append("\n".join(f"- {line}" for line in board))
    if ev.warnings:
        parts.append("\n".join(f"- warning: {w}" for w in ev.warnings))
    return "\n\n".join(parts) + "\n"
