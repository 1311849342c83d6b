"""Question (c): the order of the techniques' worst-class gains over their base method, beside the
order one published table gives (``anchors.yaml``: ``technique_order``). Where the two orders
disagree, the page gives the measured difference between the two techniques, paired by seed, so a
disagreement that the seeds do not resolve is not read as one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from scipy import stats

from classwise import analysis
from studies.findings.anchors import TECHNIQUE_ORDER


class Pair(Protocol):
    """A technique setting against its base (:class:`studies.findings.closing_gap.Paired`)."""

    @property
    def seeds(self) -> list[int]: ...

    def compare(self, statistic: str, robust: bool) -> analysis.GapComparison: ...


def technique_name(label: str) -> str:
    """The registry name of a setting's technique label (``cfa (begin=0, lambda1=0.3)`` → ``cfa``)."""
    return label.split(" ", 1)[0]


def order_part(
    pairs: Sequence[tuple[str, str, Pair]],
    between: Callable[[str, str], analysis.GapComparison | None],
    attack: str,
) -> list[str]:
    """``pairs``: (base method, technique label, the technique against its base) of the study;
    ``between(a, b)``: technique b − technique a in worst-class robust accuracy, paired by seed (None
    where they share no seed); ``attack``: what the study's robust accuracy is measured with."""
    published = TECHNIQUE_ORDER.gains()
    ours = {
        technique_name(label): (label, p)
        for base, label, p in pairs
        if base == TECHNIQUE_ORDER.base and technique_name(label) in published
    }
    if len(ours) < 2:
        return []
    gains = {t: p.compare("worst", True) for t, (_, p) in ours.items()}
    names = sorted(ours, key=lambda t: published[t])
    rows = [
        f"| {ours[t][0]} | {published[t]:+.1f} | {len(ours[t][1].seeds)} | {gains[t].difference.format(signed=True)} |"
        for t in names
    ]
    mine = sorted(names, key=lambda t: gains[t].mean_difference)
    tau = stats.kendalltau([published[t] for t in names], [gains[t].mean_difference for t in names]).statistic
    lines = [
        "",
        f"The order of the techniques' worst-class gains over {TECHNIQUE_ORDER.base}, beside the published one "
        f"({TECHNIQUE_ORDER.source}): gain in worst-class robust accuracy, points; ours under {attack}, the mean "
        "over the seeds with its 95% t-interval.",
        "",
        *_table(rows),
        "",
        f"Published order (smallest gain first): {' < '.join(names)}; here: {' < '.join(mine)} "
        f"(Kendall's τ between the two: {tau:+.2f}).",
    ]
    swapped = [
        (a, b)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if gains[a].mean_difference > gains[b].mean_difference  # published a < b, ours a > b
    ]
    if swapped:
        lines += [
            "",
            "Where the orders disagree, the measured difference between the two techniques (paired by seed):",
            "",
        ]
        for a, b in swapped:
            d = between(ours[a][0], ours[b][0])
            if d is None:
                lines.append(f"- {b} − {a}: no seed has both.")
                continue
            e = d.difference
            verdict = (
                f"{a} is ahead of {b} here, the reverse of the published order"
                if e.resolved and e.high < 0
                else "not resolved by these seeds: the disagreement may be noise"
            )
            lines.append(f"- {b} − {a}: {e.format(signed=True)} points over {e.n} seed(s); {verdict}.")
    return lines


def _table(rows: list[str]) -> list[str]:
    columns = ("technique", "published gain (AutoAttack)", "seeds", "gain here")
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), *rows]
