"""Question (c) of the findings: do long-tail and robust-fairness techniques, inside adversarial
training, close the class-wise gap, and at what cost? Read from a study snapshot whose runs
differ in their balancing technique (``results/study/<name>/``, e.g. ``studies/cpu/question_c.yaml``).

Every technique is compared with its base method (the run of the same method, no technique, same
seed): paired differences, technique − base, in worst-class and mean robust accuracy and in clean
accuracy, with Student-t intervals over the seeds; which classes gain; and whether any setting
reaches the goal of issue 17 against PGD-AT (worst-class robust accuracy up by at least 5 points,
its interval above 0, mean robust accuracy down by at most 2)."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classwise import analysis
from classwise.attacks import format_eps
from classwise.evaluate import Evaluation, read_evaluation
from classwise.report import Validation, figures, pct
from classwise.study import runs_table
from classwise.train import TECHNIQUES, components, technique_options
from studies.findings.anchors import GOAL_COST, GOAL_GAIN, TECHNIQUE_ORDER
from studies.findings.engagement import engagement_part
from studies.findings.markdown import markdown_table
from studies.findings.study_answers import (
    StudyRun,
    is_complete,
    left_out_line,
    pooled_accuracy,
    progress,
    snapshot_runs,
    technique,
    train_counts,
    with_intervals,
)
from studies.findings.technique_order import order_part

STATISTICS = (("worst", True), ("mean", True), ("mean", False), ("worst", False))  # (statistic, robust)


def is_technique_study(folder: Path) -> bool:
    """Whether the study's runs differ in their balancing technique (question (c))."""
    entries = runs_table(folder)
    return any("balance.name" in {**e["overrides"], **(e["overrides"].get("with") or {})} for e in entries)


@dataclass(frozen=True)
class Setting:
    """The runs of one method and technique, by seed."""

    method: str
    technique: str
    runs: dict[int, StudyRun]

    @property
    def label(self) -> str:
        return self.method if self.technique == "none" else f"{self.method} + {self.technique}"

    def accuracy(
        self, seeds: Sequence[int], robust: bool, evaluation: str = "eval", images: str | None = None
    ) -> np.ndarray:
        """(seeds, K) per-class accuracy of the given seeds' runs, from the study's evaluation
        (``eval``) or a later one (``eval-<name>``, :mod:`classwise.study.evaluate`); with ``images``,
        on just the test images that the later evaluation of that name covered."""
        out = []
        for s in seeds:
            run = self.runs[s]
            ev = run.model.evaluation if evaluation == "eval" else stored(run.path / evaluation)
            if images is not None:
                ev = ev.on(stored(run.path / images).index)
            out.append(ev.robust(ev.headline).accuracy if robust else ev.clean().accuracy)
        return np.array(out)


@dataclass(frozen=True)
class Paired:
    """A setting against a base over the seeds both finished."""

    setting: Setting
    base: Setting
    seeds: list[int]

    def compare(
        self, statistic: str, robust: bool, evaluation: str = "eval", images: str | None = None
    ) -> analysis.GapComparison:
        return analysis.compare_gaps(
            self.base.accuracy(self.seeds, robust, evaluation, images),
            self.setting.accuracy(self.seeds, robust, evaluation, images),
            statistic,
        )

    def per_class(self) -> np.ndarray:
        """(3, K): per-class change in robust accuracy, mean over seeds with its t-interval."""
        diff = self.setting.accuracy(self.seeds, True) - self.base.accuracy(self.seeds, True)
        bounds = np.array([analysis.mean_interval(diff[:, k]) for k in range(diff.shape[1])]).T
        return np.vstack([diff.mean(0), bounds])

    def meets_goal(self) -> bool:
        """The goal under the study's own evaluation."""
        return meets_goal(self.compare("worst", True), self.compare("mean", True))

    def later(self, name: str) -> Later | None:
        """The pair judged under a later evaluation ``eval-<name>``, on the seeds that have it."""
        sub = self.under(name)
        if sub is None:
            return None
        return Later(
            sub,
            sub.compare("worst", True, name),
            sub.compare("mean", True, name),
            sub.compare("worst", True, images=name),
        )

    def under(self, evaluation: str) -> Paired | None:
        """The pair over the seeds where both runs have the later evaluation ``eval-<name>``, if any."""
        seeds = [
            s
            for s in self.seeds
            if all((x.runs[s].path / evaluation / "evaluation.json").exists() for x in (self.setting, self.base))
        ]
        return Paired(self.setting, self.base, seeds) if seeds else None


@dataclass(frozen=True)
class Later:
    """A pair under a later evaluation: worst-class and mean robust differences there, and the worst-class
    difference under the study's own attack on the same images, which tells the attack from the images."""

    pair: Paired
    worst: analysis.GapComparison
    mean: analysis.GapComparison
    same_images: analysis.GapComparison


@dataclass(frozen=True)
class _Under:
    """A pair judged under a later evaluation (``eval-<name>``) of its runs."""

    pair: Paired
    evaluation: str

    @property
    def seeds(self) -> list[int]:
        return self.pair.seeds

    def compare(self, statistic: str, robust: bool) -> analysis.GapComparison:
        return self.pair.compare(statistic, robust, self.evaluation)


def _between(settings: Sequence[Setting], evaluation: str) -> Callable[[str, str], analysis.GapComparison | None]:
    """Technique b − technique a (by label, on the published table's base method) in worst-class robust
    accuracy under ``evaluation``, paired over the seeds where both have it."""
    by_label = {s.technique: s for s in settings if s.method == TECHNIQUE_ORDER.base}

    def between(a: str, b: str) -> analysis.GapComparison | None:
        pair = Paired(by_label[b], by_label[a], sorted(set(by_label[a].runs) & set(by_label[b].runs)))
        under = pair if evaluation == "eval" else pair.under(evaluation)
        return None if under is None or not under.seeds else under.compare("worst", True, evaluation)

    return between


def meets_goal(worst: analysis.GapComparison, mean: analysis.GapComparison) -> bool:
    return worst.mean_difference >= GOAL_GAIN and worst.low > 0 and mean.mean_difference >= -GOAL_COST


@functools.cache
def stored(folder: Path) -> Evaluation:
    return read_evaluation(folder)


def settings_of(runs: Sequence[StudyRun]) -> list[Setting]:
    """The study's settings by method, each base method first, then its techniques by name."""
    grouped: dict[tuple[str, str], dict[int, StudyRun]] = {}
    for r in runs:
        grouped.setdefault((r.method, technique(r)), {})[r.seed] = r
    keys = sorted(grouped, key=lambda k: (k[0], k[1] != "none", k[1]))
    return [Setting(m, t, grouped[(m, t)]) for m, t in keys]


def pair(setting: Setting, base: Setting) -> Paired:
    return Paired(setting, base, sorted(set(setting.runs) & set(base.runs)))


def _points(value: float) -> str:
    """``+1.2`` points; a value that rounds to zero is ``+0.0``, never ``-0.0``."""
    return f"{round(100 * value, 1) + 0.0:+.1f}"


def _difference(cmp: analysis.GapComparison) -> str:
    """``+1.2 [+0.3, +2.1]`` points, or ``+0.0 (not resolved)`` where the seeds give no interval."""
    return cmp.difference.format(signed=True)


def _movers(change: np.ndarray, names: tuple[str, ...]) -> str:
    """The two classes gaining most and the one losing most, in points."""
    order = np.argsort(-change[0], kind="stable")
    gains = [f"{names[k]} {_points(change[0, k])}" for k in order[:2]]
    return ", ".join(gains) + f"; {names[order[-1]]} {_points(change[0, order[-1]])}"


def reached_part(settings: Sequence[Setting]) -> list[str]:
    lines = [
        "What each setting reached, the mean over its seeds of each run's statistic, with the weakest class under "
        "attack over the seeds (mean with a Student-t interval over them; one seed: its Wilson interval):",
        "",
    ]
    rows = []
    for s in settings:
        seeds = sorted(s.runs)
        names = s.runs[seeds[0]].model.class_names
        cells = [
            pct(float(np.mean([analysis.spread_of(a)[stat] for a in s.accuracy(seeds, robust)])))
            for stat, robust in (("mean", False), ("worst", False), ("mean", True), ("worst", True))
        ]
        robust = pooled_accuracy([s.runs[k].model for k in seeds], True)
        weakest = with_intervals(robust, names, np.argsort(robust[0], kind="stable")[:1])
        rows.append(f"| {s.label} | {', '.join(map(str, seeds))} | " + " | ".join(cells) + f" | {weakest} |")
    columns = ("setting", "seeds", "clean mean", "clean worst", "robust mean", "robust worst", "weakest under attack")
    return lines + markdown_table(columns, rows, "no run has finished yet")


FLOOR = 0.02  # clean accuracy at or below this: the class is not learnt (chance is 10% on CIFAR-10)


def floor_part(settings: Sequence[Setting]) -> list[str]:
    """Classes that a base method (no technique) does not learn at all: clean accuracy at the floor
    on the test set, with what they trained on and the highest training accuracy any epoch reached.
    A technique's gain there says whether the class is learnt, not how robust it is."""
    lines = []
    for base in (s for s in settings if s.technique == "none"):
        seeds = sorted(base.runs)
        runs = [base.runs[k] for k in seeds]
        clean, robust = base.accuracy(seeds, False).mean(0), base.accuracy(seeds, True).mean(0)
        low = [int(k) for k in np.flatnonzero(clean <= FLOOR)]
        if not low:
            continue
        names, counts = runs[0].model.class_names, train_counts(runs[0])
        cells = [
            f"{names[k]} ({'' if counts is None else f'{int(counts[k]):,} training images; '}clean "
            f"{pct(float(clean[k]))}%, robust {pct(float(robust[k]))}%, the highest training accuracy of any epoch "
            f"{pct(max(_trained(r, k) for r in runs))}%)"
            for k in low
        ]
        lines += [
            "",
            f"Classes {base.label} does not learn (clean accuracy at most {pct(FLOOR)}% on the test set, the mean "
            f"over seeds {', '.join(map(str, seeds))}): " + "; ".join(cells) + ". A technique's gain on these classes "
            "says whether it makes them learnt at all, not whether it closes a robustness gap; the goal's worst-class "
            "comparison is read on them all the same.",
        ]
    return lines


def _trained(run: StudyRun, k: int) -> float:
    """The highest training accuracy of class ``k`` that any epoch of ``run`` recorded."""
    return max((e.train_class_acc[k] for e in run.model.history if e.train_class_acc), default=float("nan"))


def paired_part(pairs: Sequence[Paired]) -> list[str]:
    lines = [
        "",
        "Each technique against its base method trained with the same seed, and each setting of another method "
        "against PGD-AT (the goal's reference): setting − base in points, the mean "
        "over the seeds with its 95% Student-t interval (not resolved where one seed, or seeds that all agree, "
        "give none). The last column names the two "
        "classes whose robust accuracy rose most and the one that fell most.",
        "",
    ]
    rows = []
    for p in pairs:
        names = p.setting.runs[p.seeds[0]].model.class_names
        cells = [_difference(p.compare(stat, robust)) for stat, robust in STATISTICS]
        rows.append(
            f"| {p.setting.label} | {p.base.label} | {len(p.seeds)} | "
            + " | ".join(cells)
            + f" | {_movers(p.per_class(), names)} |"
        )
    columns = (
        "setting",
        "against",
        "seeds",
        "Δ robust worst",
        "Δ robust mean",
        "Δ clean mean",
        "Δ clean worst",
        "classes gaining most; losing most",
    )
    return lines + markdown_table(columns, rows, "no technique and its base have both finished with one seed yet")


def averaging_part(settings: Sequence[Setting]) -> list[str]:
    """Whether a weight-averaging technique (CFA's FAWA) engaged: validations that entered the
    average, from each run's history (``val.weights_averaged``)."""
    lines = []
    for s in settings:
        per_run = [
            [e.val for e in r.model.history if e.val is not None and e.val.weights_averaged is not None]
            for r in s.runs.values()
        ]
        validations = [v for run in per_run for v in run]
        flags = [bool(v.weights_averaged) for v in validations]
        if flags:
            balance = s.runs[min(s.runs)].model.config.get("balance") or {}
            options = {  # every option of the run's technique(s), defaults included
                key: value
                for part, args in components(balance["name"], balance.get("args") or {})
                for key, value in {**technique_options(TECHNIQUES.get(part)), **args}.items()
            }
            threshold = options.get("fawa_threshold")
            bar = f", {threshold:g}" if isinstance(threshold, float) else ""
            highest = max((v.robust_worst for v in validations if v.robust_worst is not None), default=None)
            reached = "" if highest is None else f"; the highest these validations reached was {highest:.2f}"
            lines.append(
                f"- {s.label}: {sum(flags)} of {len(flags)} validations entered the weight average (FAWA takes an "
                f"epoch only when its worst-class validation robust accuracy reaches fawa_threshold{bar}{reached})."
                + _first_epoch_share(per_run, options.get("fawa_decay"))
            )
    return ["", "Weight averaging:", "", *lines] if lines else []


def _first_epoch_share(per_run: Sequence[Sequence[Validation]], decay: object) -> str:
    """How much of each run's evaluated average the first epoch it took still holds: the average starts
    as that epoch's weights and every later epoch it takes keeps ``decay`` of it, so after k epochs
    the first holds decay^(k-1). On a short schedule that is most of the average. ``per_run``: each
    run's validations that say whether they entered the average."""
    if not isinstance(decay, float):
        return ""
    shares, first_worst, last_worst = [], [], []
    for validations in per_run:
        taken = [v for v in validations if v.weights_averaged]
        if taken:
            shares.append(decay ** (len(taken) - 1))
            first_worst.append(taken[0].robust_or_clean_worst)
            last_worst.append(validations[-1].robust_or_clean_worst)
    if not shares:
        return ""
    return (
        f" Each run is evaluated with its average, where the first epoch taken holds {_span(shares, 100, '%')} of "
        f"the weights (fawa_decay {decay:g} per later epoch taken; {_count(len(shares), 'run')}); those first "
        f"epochs' worst-class validation robust accuracy was {_span(first_worst)}, against {_span(last_worst)} at "
        "the runs' last validation."
    )


def _span(values: Sequence[float], scale: float = 1, unit: str = "") -> str:
    """``0.52`` or ``0.44–0.61``: the range of a few values, as printed."""
    digits = 0 if unit else 2
    low, high = f"{scale * min(values):.{digits}f}", f"{scale * max(values):.{digits}f}"
    return f"{low}{unit}" if low == high else f"{low}{unit}–{high}{unit}"


def later_evaluation_part(pairs: Sequence[Paired], name: str) -> list[str]:
    """The paired table again under a later evaluation of the runs (``eval-<name>``), over the seeds
    where both runs of a pair have it."""
    rows, described, per_class = [], "", 0
    for p in pairs:
        later = p.later(name)
        if later is None:
            continue
        first = stored(p.base.runs[later.pair.seeds[0]].path / name)
        described, per_class = described or first.spec.describe(), per_class or int(first.clean().n.min())
        rows.append(
            f"| {p.setting.label} | {p.base.label} | {len(later.pair.seeds)} | {pct(float(later.worst.b.mean()))} | "
            f"{pct(float(later.mean.b.mean()))} | {_difference(later.worst)} | {_difference(later.mean)} | "
            f"{_difference(later.same_images)} |"
        )
    if not rows:
        return []
    lines = [
        "",
        f"The same pairs under `{name}`: {described}. Robust accuracy of the setting (mean over seeds), and "
        "technique − base in points with its 95% t-interval. "
        f"With {per_class} images of a class, one image is {100 / per_class:.1f} points of its accuracy, so a "
        "difference in the worst class of a few images is below what this subset resolves; the study's own "
        "evaluation above, on all test images, resolves it. The last column is the study's own attack on the "
        "same images as this evaluation, so where it differs from the Δ robust worst beside it, the attack "
        "makes the difference, not the choice of images:",
        "",
    ]
    columns = (
        "setting",
        "against",
        "seeds",
        "robust worst",
        "robust mean",
        "Δ robust worst",
        "Δ robust mean",
        "Δ robust worst, study's attack, same images",
    )
    return lines + markdown_table(columns, rows, "")


def goal_part(against_pgd: Sequence[Paired], later: Sequence[str] = (), complete: bool = False) -> list[str]:
    """The goal against PGD-AT, judged for every setting that shares seeds with it; each setting the
    verdict names is judged again under every later evaluation (``eval-<name>``) its runs have.
    ``complete``: every planned run has finished, so the answer is final rather than "so far"."""
    lines = ["", "### The answer to (c)" + ("" if complete else " so far"), ""]
    judged = [p for p in against_pgd if len(p.seeds) >= 2]
    if not against_pgd:
        return [*lines, "- No setting has finished beside a PGD-AT run of the same seed yet."]
    met = [p for p in judged if p.meets_goal()]
    goal = (
        f"worst-class robust accuracy up by at least {100 * GOAL_GAIN:.0f} points over PGD-AT, its interval above 0, "
        f"at a cost of at most {100 * GOAL_COST:.0f} points of mean robust accuracy, under the study's own evaluation"
    )
    if met:
        lines.append(f"- **Goal met** ({goal}) by: " + "; ".join(_verdict(p) for p in met) + ".")
        lines += [check for p in met for name in later if (check := _check_under(p, name))]
    else:
        cheap = [p for p in against_pgd if p.compare("mean", True).mean_difference >= -GOAL_COST] or list(against_pgd)
        best = max(cheap, key=_closeness)
        verdict = "**Goal not decided yet**" if not judged else "**Goal not met**"
        why = "no setting has two seeds beside PGD-AT yet, so no interval" if not judged else "none does"
        lines.append(f"- {verdict} ({goal}): {why}. Closest: {_verdict(best)}.")
        lines += [check for name in later if (check := _check_under(best, name))]
    if not judged:
        return lines
    closing = [p for p in judged if p.compare("worst", True).low > 0]
    widening = [p for p in judged if p.compare("worst", True).high < 0]
    lines.append(
        f"- Worst-class robust accuracy against PGD-AT, over {_count(len(judged), 'setting')} with at least two seeds: "
        f"raised (interval above 0) by {', '.join(p.setting.label for p in closing) or 'none'}; "
        f"lowered (interval below 0) by {', '.join(p.setting.label for p in widening) or 'none'}."
    )
    lines.append(holm_line(judged))
    return lines


def holm_line(judged: Sequence[Paired]) -> str:
    """The same comparisons as one family: each setting's paired t-test over seeds against PGD-AT,
    with Holm's step-down correction, so that the chance of any false "raised" or "lowered" across
    the family stays at 5% (each interval above is at 95% on its own)."""
    p_values = np.array([p.compare("worst", True).p_value for p in judged])
    testable = np.isfinite(p_values)
    adjusted = np.full(len(judged), np.nan)
    adjusted[testable] = analysis.holm(p_values[testable])
    survive = [
        f"{p.setting.label} ({'raised' if p.compare('worst', True).mean_difference > 0 else 'lowered'}, "
        f"Holm-adjusted p {a:.3f})"
        for p, a in zip(judged, adjusted, strict=True)
        if a < 0.05
    ]
    return (
        f"- The same {_count(int(testable.sum()), 'comparison')} as one family (paired t-tests over seeds, Holm's "
        f"correction, family-wise 5%): {'; '.join(survive) if survive else 'none survives'}"
        + ("." if survive else "; with a few seeds a paired t-test needs a large, consistent change to survive it.")
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def _closeness(p: Paired) -> tuple[float, float]:
    """Rank by the worst-class gain as printed (0.1 points); a printed tie goes to the surer gain (higher low end)."""
    worst = p.compare("worst", True)
    low = worst.low if math.isfinite(worst.low) else -math.inf
    return round(100 * worst.mean_difference, 1), low


def _check_under(p: Paired, name: str) -> str | None:
    """The same setting judged under a later evaluation, on the seeds that have it."""
    later = p.later(name)
    if later is None:
        return None
    if len(later.pair.seeds) < 2:
        verdict = "one seed, so no interval to judge the goal by"
    elif meets_goal(later.worst, later.mean):
        verdict = "the goal holds there too"
    else:
        verdict = "the goal does not hold there"
    return (
        f"  - {p.setting.label} under `{name}` ({_count(len(later.pair.seeds), 'seed')}): worst class "
        f"{_difference(later.worst)}, mean robust {_difference(later.mean)}; {verdict}. The study's own attack on "
        f"the same images: worst class {_difference(later.same_images)}."
    )


def _verdict(p: Paired) -> str:
    worst, mean, clean = p.compare("worst", True), p.compare("mean", True), p.compare("mean", False)
    return (
        f"{p.setting.label} (worst class {_difference(worst)}, mean robust {_difference(mean)}, "
        f"clean mean {_difference(clean)}, {_count(len(p.seeds), 'seed')})"
    )


def start_weights(run: StudyRun) -> str | None:
    """The sha256 of the weights a fine-tune started from, as its provenance recorded it (None:
    a run stored before the digest was kept)."""
    try:
        sessions = json.loads((run.path / "provenance.json").read_text())
        digest = sessions[0]["init_from"]["sha256"]
    except (OSError, ValueError, LookupError, TypeError):  # none kept, or not the form classwise writes
        return None
    return str(digest) if digest else None


def start_part(runs: Sequence[StudyRun]) -> list[str]:
    """Which weights each seed's fine-tunes started from: a technique and its control pair within
    a seed, so a seed must share one start; across seeds the start may differ (a base retrained on
    another machine), and then the spread over seeds holds the base's spread too."""
    tuned = [r for r in runs if r.model.config.get("model", {}).get("init_from")]
    if not tuned:
        return []
    per_seed: dict[int, list[StudyRun]] = {}
    for r in tuned:
        per_seed.setdefault(r.seed, []).append(r)
    items, mixed, starts_of = [], [], {}
    for seed, group in sorted(per_seed.items()):
        starts = sorted({start_weights(r) or "not recorded" for r in group})
        machines = sorted({str(r.model.evaluation.provenance.get("device", {}).get("cpu", "?")) for r in group})
        starts_of[seed] = starts
        if len(starts) > 1:
            mixed.append(seed)
        names = ", ".join(s if s == "not recorded" else f"sha256 {s[:12]}" for s in starts)
        items.append(f"seed {seed}: {names} (ran on {', '.join(machines)}; {_count(len(group), 'run')})")
    source = sorted({str(r.model.config["model"]["init_from"]) for r in tuned})
    line = (
        f"Start weights (`model.init_from`: {', '.join(f'`{s}`' for s in source)}), by seed, as each run's "
        "provenance recorded them (runs stored before the digest was kept: not recorded): " + "; ".join(items) + "."
    )
    if mixed:
        line += (
            f" Within seed {', '.join(map(str, mixed))} the runs do not share one recorded start, so that seed's "
            "technique−control differences may compare fine-tunes of different weights."
        )
    if len(starts_of) > 1 and (
        len({tuple(v) for v in starts_of.values()}) > 1 or any("not recorded" in v for v in starts_of.values())
    ):
        line += (
            " The seeds are not shown to share one start: each technique is compared with its control within a "
            "seed, and the spread over seeds may also hold the difference between the starts."
        )
    return ["", line]


def closing_gap_section(folder: Path) -> tuple[str, dict[str, bytes]]:
    """Markdown and figures for question (c) from one study snapshot."""
    finished, runs, total = snapshot_runs(folder)
    complete = is_complete(finished, total)
    title = f"## Question (c): can the techniques close the gap? Study `{folder.name}`"
    if not runs:
        return f"{title}\n\nNo run of the study has finished yet ({total} planned).\n", {}
    left_out = left_out_line(finished, lambda r: f"`{r.model.name}` ({r.method}, {technique(r)}, seed {r.seed})")
    settings = settings_of(runs)
    bases = {s.method: s for s in settings if s.technique == "none"}
    pairs = [pair(s, bases[s.method]) for s in settings if s.technique != "none" and s.method in bases]
    pgd = bases.get("pgd-at")
    if pgd is not None:  # the goal's reference: every setting of another method against PGD-AT too
        pairs += [pair(s, pgd) for s in settings if s.method != "pgd-at"]
    pairs = [p for p in pairs if p.seeds]
    r0 = runs[0]
    lines = [
        title,
        "",
        f"{progress(folder, finished, total)}: {r0.dataset}, {r0.architecture}, "
        f"ε={format_eps(r0.model.config['threat']['eps'])}, "
        f"{_count(len(settings), 'setting')}{'' if complete else ' so far'}. "
        + (f"{left_out.strip()} " if left_out else "")
        + f"Every run is evaluated with {r0.model.evaluation.spec.describe()}.",
        "",
        *reached_part(settings),
        *floor_part(settings),
        *paired_part(pairs),
    ]
    lines += start_part(runs)
    lines += engagement_part([s for s in settings if s.technique != "none"])
    lines += averaging_part(settings)
    later = sorted({e.name for r in runs for e in r.path.glob("eval-*") if (e / "evaluation.json").exists()})
    own = [p for p in pairs if p.base.technique == "none" and p.base.method == p.setting.method]
    lines += order_part(
        [(p.base.method, p.setting.technique, p) for p in own],
        _between(settings, "eval"),
        r0.model.evaluation.spec.describe(),
    )
    for name in later:
        lines += later_evaluation_part(pairs, name)
        under = [(p.base.method, p.setting.technique, _Under(q, name)) for p in own if (q := p.under(name))]
        lines += order_part(under, _between(settings, name), f"`{name}`")
    figs = {}
    for method, base in bases.items():
        group = [p for p in pairs if p.base is base]
        if not group:
            continue
        names = base.runs[sorted(base.runs)[0]].model.class_names
        grid = np.array([p.per_class()[0] for p in group])
        name = f"closing-gap-{folder.name}-{method}.png"
        figs[name] = figures.difference_grid(
            grid,
            [f"{p.setting.label} ({len(p.seeds)})" for p in group],
            names,
            f"{folder.name}: change in per-class robust accuracy against {method} (points; seeds in brackets)",
        )
        lines += ["", f"![Per-class change in robust accuracy against {method}](figures/{name})"]
    if pgd is not None:
        lines += goal_part([p for p in pairs if p.base is pgd], later, complete)
    return "\n".join(lines) + "\n", figs
