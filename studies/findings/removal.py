"""Question (b) by intervention: does the weakest class lose to a similar neighbour? A study whose
runs leave classes out of training (``data.drop_classes``; studies/cpu/question_b_removal.yaml)
is read here.

Each run is paired with its **baseline**: the run of another committed study with the same config
(seed included) on all classes. From the baselines the page measures which class is the weakest
(by the judged accuracy: robust for adversarially trained runs, clean otherwise), which class its
test images are most often mistaken for (the neighbour) and which least often (the control). If
similarity to the neighbour causes the gap, leaving the neighbour out helps the weakest class far
more than leaving the control out, although both remove one class to be confused with. The
weakest class is measured on its own test images, which are the same images in every run (the
classes kept hold the full dataset's images in its order), so each difference is paired image by
image within a seed (Newcombe's interval) and seed by seed across the retrainings (Student-t over
the seeds, the retrained model being the unit); the family of comparisons is Holm-corrected.

Leaving a class out also shrinks the output: the weakest class's images that the baseline took for
the left-out class must land elsewhere, and up to that share can turn correct without the retraining
learning anything. The page gives that share beside each seed and reads the neighbour arm's change
past it, so that a gain the smaller output alone explains is not taken for a learnt one.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import stats

from classwise import analysis
from classwise.errors import ClasswiseError
from classwise.report import ModelResult, figures, pct
from classwise.study import finished_entries
from classwise.train import TrainConfig
from studies.findings.markdown import markdown_table
from studies.findings.study_answers import StudyRun, progress, snapshot_runs, study_run


def dropped(config: dict[str, Any]) -> tuple[str, ...]:
    """The classes a run's config leaves out of training (none for a run on all classes)."""
    return tuple((config.get("data") or {}).get("drop_classes") or ())


def recipe(config: dict[str, Any]) -> str | None:
    """What pairs a run with its baseline: the config (seed included) with every setting resolved (a
    run stored before a setting existed reads as its default) but without the classes left out and
    without the evaluation, which may hold extra analyses. None for a config this version cannot read."""
    try:
        resolved = TrainConfig.from_dict(config).to_dict()
    except (ClasswiseError, TypeError, ValueError):
        return None
    resolved["data"].pop("drop_classes", None)
    resolved.pop("evaluation", None)
    return json.dumps(resolved, sort_keys=True, default=str)


def is_removal_study(folder: Path) -> bool:
    """Whether a study snapshot's runs leave classes out of training."""
    return any(dropped(_config(folder / "runs" / e["run_id"])) for e in finished_entries(folder))


def _config(run: Path) -> dict[str, Any]:
    path = run / "config.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def baselines(results: Path, keys: set[str | None], exclude: Path) -> dict[str, StudyRun]:
    """The committed runs on all classes (``results/study/*``, other than ``exclude``) whose recipe is
    one of ``keys``: the baselines, by recipe. Only the matching runs' evaluations are read."""
    out: dict[str, StudyRun] = {}
    for folder in sorted(p for p in results.glob("*") if p != exclude and (p / "runs.json").exists()):
        for entry in finished_entries(folder):
            config = _config(folder / "runs" / entry["run_id"])
            key = recipe(config)
            if key is not None and key in keys and not dropped(config) and key not in out:
                out[key] = study_run(folder, entry)
    return out


@dataclass(frozen=True)
class Triple:
    """One retraining seed of one recipe: the baseline and the runs without each class set."""

    setting: str  # architecture and method
    seed: int
    adversarial: bool
    baseline: ModelResult
    without: dict[tuple[str, ...], ModelResult]


def _flags(m: ModelResult, target: str, robust: bool) -> np.ndarray:
    """Per image of the target class, in dataset order: correct (clean) or robust (headline attack)."""
    ev = m.evaluation
    k = ev.class_names.index(target)
    flags = ev.headline.robust if robust else ev.clean_correct
    return np.asarray(flags, bool)[ev.labels == k]


def _confusion(models: Sequence[ModelResult], target: str, robust: bool) -> dict[str, float]:
    """Share of the target class's test images each other class takes (clean prediction, or the
    prediction under the headline attack), pooled over ``models``."""
    taken: dict[str, float] = defaultdict(float)
    total = 0
    for m in models:
        ev = m.evaluation
        k = ev.class_names.index(target)
        pred = ev.headline.adv_pred if robust else ev.clean_pred
        pred = np.asarray(pred)[ev.labels == k]
        total += len(pred)
        for c, name in enumerate(ev.class_names):
            if c != k:
                taken[name] += float((pred == c).sum())
    return {name: v / max(total, 1) for name, v in taken.items()}


def _judged(m: ModelResult) -> np.ndarray:
    ev = m.evaluation
    return (ev.robust(ev.headline) if m.adversarial else ev.clean()).accuracy


def weakest_class(models: Sequence[ModelResult]) -> tuple[str, int]:
    """The class weakest in the most baselines (by the judged accuracy; ties by the mean), and in how many."""
    names = models[0].class_names
    accs = np.array([_judged(m) for m in models])
    counts = analysis.worst_class_counts(accs)
    best = max(range(len(names)), key=lambda k: (counts[k], -accs[:, k].mean()))
    return names[best], int(counts[best])


def _seed_rows(
    triples: Sequence[Triple], target: str, arms: Sequence[tuple[str, ...]], robust: bool
) -> tuple[list[str], dict[tuple[str, ...], list[float]], list[float], list[float], np.ndarray]:
    """Per seed: the target's accuracy in the baseline, the share of its images the baseline took for
    each removed class, its accuracy in each arm, and the two arms' paired difference over the
    target's images (Newcombe); with the per-seed changes from the baseline, the per-seed differences
    of the arms that the summary is over, the neighbour arm's change minus the share the baseline
    took for the neighbour, and the (seeds, 1 + arms) accuracies the figure draws (NaN where a run
    has not finished)."""
    rows, per_arm, effect, beyond = [], defaultdict(list), [], []
    drawn = np.full((len(triples), 1 + len(arms)), np.nan)
    for i, t in enumerate(triples):
        base = _flags(t.baseline, target, robust)
        drawn[i, 0] = base.mean()
        taken = _confusion([t.baseline], target, robust)
        cells = [pct(base.mean()), " / ".join(pct(taken.get(arm[0], 0.0)) for arm in arms)]
        for j, arm in enumerate(arms, start=1):
            if arm not in t.without:
                cells.append("–")
                continue
            acc = drawn[i, j] = float(_flags(t.without[arm], target, robust).mean())
            change = acc - float(base.mean())
            per_arm[arm].append(change)
            if j == 1:  # the neighbour: its change past what the missing output alone can turn correct
                beyond.append(change - taken.get(arm[0], 0.0))
            cells.append(f"{pct(acc)} ({100 * change:+.1f})")
        if all(a in t.without for a in arms):
            neighbour, control = (_flags(t.without[a], target, robust) for a in arms)
            d = analysis.paired_difference_interval(control, neighbour)
            effect.append(d.value)
            cells.append(d.format(signed=True))
        else:
            cells.append("–")
        rows.append(f"| {t.seed} | " + " | ".join(cells) + " |")
    return rows, per_arm, effect, beyond, drawn


@dataclass(frozen=True)
class Comparison:
    """One measure's neighbour-out minus control-out difference over seeds, with its t-test p-value."""

    name: str
    estimate: analysis.Estimate
    p_value: float
    beyond: analysis.Estimate | None = None  # the neighbour arm's change past the missing output's share


def _over_seeds(values: Sequence[float]) -> tuple[analysis.Estimate, float]:
    """Mean over seeds with its Student-t interval and the one-sample t-test's two-sided p-value (1
    where the seeds cannot resolve it)."""
    e = analysis.run_interval(np.array(values))
    p = float(stats.ttest_1samp(values, 0.0).pvalue) if e.resolved else 1.0
    return e, p


Panel = tuple[str, list[str], np.ndarray, list[str]]


def _seed_mean(subject: str, verb: str, values: Sequence[float]) -> str:
    """``dog out changes it by +3.2 [+1.0, +5.4] points (3 seeds)``, or that no seed has its runs yet."""
    if not values:
        return f"{subject}: no seed has its runs yet"
    e, _ = _over_seeds(values)
    return f"{subject} {verb} {e.format(signed=True)} points ({e.n} seed{'s' if e.n != 1 else ''})"


def _method_part(
    setting: str, triples: Sequence[Triple], target: str, neighbour: str, control: str
) -> tuple[list[str], list[Comparison], list[Panel]]:
    arms = [(neighbour,), (control,)]
    lines: list[str] = []
    found: list[Comparison] = []
    panels: list[Panel] = []
    for robust in (False, True) if triples[0].adversarial else (False,):
        what = "robust (headline attack)" if robust else "clean"
        rows, per_arm, effect, beyond, drawn = _seed_rows(triples, target, arms, robust)
        columns = [
            "seed",
            f"{target}, all classes",
            f"{target} taken for {neighbour} / {control} there",
            f"{target}, without {neighbour} (the neighbour)",
            f"{target}, without {control} (the control)",
            f"{neighbour} out − {control} out (paired over {target}'s images)",
        ]
        lines += [f"{setting}: {target}'s {what} accuracy (%; change from the baseline in brackets):", ""]
        lines += markdown_table(columns, rows, "no seed has a run yet")
        texts = [
            _seed_mean(f"{neighbour} out", "changes it by", per_arm[arms[0]]),
            _seed_mean(f"{control} out", "changes it by", per_arm[arms[1]]),
            _seed_mean(f"{neighbour} out minus {control} out", "is", effect),
            _seed_mean(f"{neighbour} out's change past the share the baseline took for {neighbour}", "is", beyond),
        ]
        e, p = _over_seeds(effect)
        found.append(Comparison(f"{setting}, {what}", e, p, _over_seeds(beyond)[0] if beyond else None))
        labels = ["all classes", f"without {neighbour}", f"without {control}"]
        title = f"{setting}: {target}, {'robust' if robust else 'clean'}"
        panels.append((title, labels, drawn, [f"seed {t.seed}" for t in triples]))
        lines += [
            "",
            "Mean over seeds (Student-t, the retrained model the unit): " + "; ".join(texts) + ". A class left "
            f"out cannot be predicted, so the {target} images the baseline took for it must land elsewhere: up to "
            f"that share (the third column) can turn correct from the smaller output alone, without the retraining "
            f"learning {target} better; a change beyond it is the retraining's.",
            "",
        ]
    return lines, found, panels


def _where_errors_go(triples: Sequence[Triple], target: str, neighbour: str) -> str:
    """Where the target's clean errors go once the neighbour is gone: the classes that take its images."""
    models = [t.without[(neighbour,)] for t in triples if (neighbour,) in t.without]
    if not models:
        return ""
    shares = sorted(_confusion(models, target, robust=False).items(), key=lambda kv: -kv[1])[:3]
    before = _confusion([t.baseline for t in triples], target, robust=False)
    return (
        f" Without {neighbour}, {target}'s clean errors go to "
        + ", ".join(f"{name} {pct(v)}% (with all classes {pct(before.get(name, 0.0))}%)" for name, v in shares)
        + f" of its test images ({len(models)} run{'s' if len(models) != 1 else ''})."
    )


def _under_attack(confusion: dict[str, float]) -> str:
    if not confusion:
        return ""
    top = max(confusion, key=confusion.__getitem__)
    return f" Under attack, the adversarially trained baselines send most of them to {top} ({pct(confusion[top])}%)."


def removal_section(folder: Path) -> tuple[str, dict[str, bytes]]:
    """Markdown for the class-removal intervention study in ``folder``."""
    finished, runs, total = snapshot_runs(folder)
    title = f"## Question (b) by intervention: study `{folder.name}`"
    if not runs:
        return f"{title}\n\nNo run of the study has finished yet ({total} planned).\n", {}
    keys = {recipe(r.model.config) for r in runs}
    base = baselines(folder.parent, keys, folder)
    usable = {k: r.model for k, r in base.items() if r.trained}
    lines = [
        title,
        "",
        progress(folder, finished, total) + ". Each run retrains a recipe of a committed run, with the same seed, "
        "but leaves one class out of training, validation and test (`data.drop_classes`); the weakest class is "
        "measured on its own test images, the same images in every run.",
    ]
    if not usable:
        lines += [
            "",
            "No committed run on all classes has the same config as these runs, so there is no baseline to "
            "compare with yet: the baselines are the same recipes and seeds trained on every class (e.g. "
            "`results/study/question-a-cifar`).",
        ]
        return "\n".join(lines) + "\n", {}
    target, weakest_in = weakest_class(list(usable.values()))
    clean_conf = _confusion(list(usable.values()), target, robust=False)
    ranked = sorted(clean_conf, key=lambda c: -clean_conf[c])
    neighbour, control = ranked[0], ranked[-1]
    adv = [m for m in usable.values() if m.adversarial]
    robust_conf = _confusion(adv, target, robust=True) if adv else {}
    dataset = next(r.dataset for r in base.values() if r.trained)
    lines += [
        "",
        f"Baselines: {len(usable)} committed run{'s' if len(usable) != 1 else ''} on all classes of {dataset} with "
        "the same configs and seeds. "
        f"The weakest class is **{target}** (weakest in {weakest_in} of {len(usable)}, by robust accuracy for "
        f"adversarially trained runs and clean accuracy otherwise). Its clean test images are most often taken for "
        f"**{neighbour}** ({pct(clean_conf[neighbour])}% of them, pooled over the baselines; then "
        + ", ".join(f"{c} {pct(clean_conf[c])}%" for c in ranked[1:3])
        + f") and least often for **{control}** ({pct(clean_conf[control])}%), the control."
        + _under_attack(robust_conf),
        "",
    ]
    triples = _triples(runs, usable, target)
    paired = {id(m) for t in triples for m in t.without.values()}
    aside = sorted({", ".join(dropped(r.model.config)) for r in runs if id(r.model) not in paired})
    if aside:
        lines += [
            f"Runs without {'; '.join(aside)} have no committed baseline yet, or leave {target} itself out: "
            "they are not compared.",
            "",
        ]
    unexpected = sorted({arm for t in triples for arm in t.without} - {(neighbour,), (control,)})
    if unexpected:
        lines += [
            f"Runs without {'; '.join(', '.join(a) for a in unexpected)} leave out neither the measured neighbour "
            f"({neighbour}) nor the control ({control}) of {target}: they are not part of the comparison.",
            "",
        ]
    lines += _precisions(triples)
    tests: list[Comparison] = []
    panels: list[Panel] = []
    for setting in sorted({t.setting for t in triples}):
        group = sorted((t for t in triples if t.setting == setting), key=lambda t: t.seed)
        part, found, drawn = _method_part(setting, group, target, neighbour, control)
        lines += part
        tests += found
        panels += drawn
    figs: dict[str, bytes] = {}
    if panels:
        name = f"study-{folder.name}-removal.png"
        figs[name] = figures.paired_lines(panels)
        lines += [
            f"![{target}'s accuracy with all classes, without {neighbour} and without {control}, one line per "
            f"seed](figures/{name})",
            "",
        ]
    lines += _verdict(tests, target, neighbour, control)
    errors = _where_errors_go(triples, target, neighbour)
    if errors:
        lines += ["", errors.strip()]
    return "\n".join(lines) + "\n", figs


def _precision(m: ModelResult) -> str:
    return next((e.precision for e in m.history if e.precision), "an unrecorded precision")


def _precisions(triples: Sequence[Triple]) -> list[str]:
    """A note where a seed's runs trained at different precisions (``precision: auto`` takes bf16 where
    the CPU has it natively, fp32 elsewhere): the change from the baseline then mixes the two."""
    mixed = [
        f"{t.setting}, seed {t.seed}: all classes {_precision(t.baseline)}, "
        + ", ".join(f"without {', '.join(arm)} {_precision(m)}" for arm, m in sorted(t.without.items()))
        for t in triples
        if len({_precision(m) for m in (t.baseline, *t.without.values())}) > 1
    ]
    if not mixed:
        return []
    return [
        "Trained at different precisions (the machine decided `precision: auto`): "
        + "; ".join(mixed)
        + ". There the change from the baseline mixes the precision with the removal; the difference between "
        "the two removals does not where both trained at one precision.",
        "",
    ]


def _triples(runs: Sequence[StudyRun], usable: dict[str, ModelResult], target: str) -> list[Triple]:
    """The removal runs that keep the target class, grouped with their baseline by recipe (one triple a
    setting and seed); runs with no baseline yet are left out."""
    grouped: dict[str, Triple] = {}
    for r in runs:
        key = recipe(r.model.config)
        if key is None or key not in usable or target in dropped(r.model.config):
            continue
        setting = f"{r.architecture}, {r.method}"
        t = grouped.setdefault(key, Triple(setting, r.seed, bool(usable[key].adversarial), usable[key], {}))
        t.without[dropped(r.model.config)] = r.model
    return list(grouped.values())


def _verdict(tests: list[Comparison], target: str, neighbour: str, control: str) -> list[str]:
    """The answer, stated either way, from the seed-level comparisons (Holm over the family)."""
    resolved = [t for t in tests if t.estimate.resolved]
    if not resolved:
        return [
            f"**Answer so far:** not resolved. Fewer than two seeds have both arms, so nothing measures how "
            f"{neighbour} out minus {control} out varies between retrainings; the last column above is paired over "
            f"{target}'s test images within one retraining only."
        ]
    adjusted = analysis.holm(np.array([t.p_value for t in resolved]))
    parts = []
    for t, q in zip(resolved, adjusted, strict=True):
        if q > 0.05:
            verdict = "no difference resolved"
        elif t.estimate.value > 0:
            verdict = f"leaving {neighbour} out helps {target} more than leaving {control} out"
        else:
            verdict = f"leaving {neighbour} out helps {target} less than leaving {control} out"
        if t.beyond is not None and q <= 0.05 and t.estimate.value > 0:
            past = t.beyond.resolved and t.beyond.low > 0
            verdict += (
                f"; past the share of {target} that the baseline took for {neighbour} the change is "
                f"{t.beyond.format(signed=True)} points, so "
                + (
                    f"the retraining learnt {target} better than the smaller output alone explains"
                    if past
                    else f"it is not told apart from the smaller output alone ({neighbour} can no longer be predicted)"
                )
            )
        parts.append(f"{t.name}: {t.estimate.format(signed=True)} points, Holm-adjusted p {q:.3f}: {verdict}")
    return [f"**Answer:** {neighbour} out minus {control} out, per measure: " + "; ".join(parts) + "."]
