"""The paper-scale section of the findings: runs of one device session (PGD-AT, TRADES
PreActResNet-18 on CIFAR-10 (JPEG q75)) per class with intervals, beside the published anchors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from classwise.attacks import format_eps
from classwise.errors import ClasswiseError
from classwise.evaluate import ClassAccuracy, Spread
from classwise.report import ModelResult, figures, mean_with_interval, model_from_folder, pct, weakest
from studies.findings.anchors import ANCHORS, DISPLAY, FRL_PGD_AT_CLASSES, FRL_SOURCE, TOLERANCE


def display_name(dataset: str) -> str:
    """The page's label of a dataset name: ``cifar10-jpeg-lt10`` → ``CIFAR-10 (JPEG q75), long-tailed
    training split (ratio 10)``."""
    base, tail, ratio = dataset.rpartition("-lt")
    if tail and base and ratio.replace(".", "", 1).isdigit():
        return f"{DISPLAY.get(base, base)}, long-tailed training split (ratio {ratio})"
    return DISPLAY.get(dataset, dataset)


@dataclass(frozen=True)
class PaperRun:
    """A paper-scale run: its full-test evaluation (PGD) and the AutoAttack evaluation of its
    checkpoint, with the device session's timings."""

    name: str
    run: ModelResult
    autoattack: ModelResult | None
    timings: dict[str, Any]

    @property
    def method(self) -> str:
        return str(self.run.config["method"]["name"])


def _worst(acc: ClassAccuracy, names: tuple[str, ...]) -> str:
    return weakest(acc, names).replace("%", "")


def _timings(folder: Path) -> dict[str, Any]:
    path = folder / "timings.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _checkpoint_folder(e: ModelResult) -> str:
    return Path(str(e.evaluation.source.get("checkpoint", ""))).parent.name


def paper_runs(folder: Path, timings: dict[str, Any]) -> list[PaperRun]:
    """The run folders of one device session, each with the largest AutoAttack evaluation of its
    checkpoint (an evaluation folder whose checkpoint lies in a run folder of the same name)."""
    evaluations = [model_from_folder(p.name, p) for p in sorted(folder.iterdir()) if (p / "evaluation.json").exists()]
    out = []
    for path in sorted(p for p in folder.iterdir() if (p / "eval" / "evaluation.json").exists()):
        run = model_from_folder(path.name, path)
        of_run = [e for e in evaluations if _checkpoint_folder(e) == path.name]
        aa = max(of_run, key=lambda e: int(e.evaluation.clean().n.sum()), default=None)
        out.append(PaperRun(path.name, run, aa, timings.get("runs", {}).get(str(run.config["method"]["name"]), {})))
    return out


def _recipe(config: dict[str, Any]) -> str:
    o, m = config["optim"], config["method"]
    steps = (m.get("args") or {}).get("steps", 10)
    return (
        f"{config['model']['name']}, {m['name']}-{steps}, {o['epochs']} epochs {o['schedule']} (peak lr {o['lr']}), "
        f"batch {o['batch_size']}, weight decay {o['weight_decay']}, best of {config['data']['val_per_class']} "
        f"validation images per class by {config['monitor'].get('select') or 'robust_mean'}"
    )


def _row_and_verdict(r: PaperRun, names: tuple[str, ...]) -> tuple[str, str | None]:
    """The run's table row and, where an anchor and AutoAttack exist, its verdict line."""
    ev = r.run.evaluation
    clean, pgd = ev.clean(), ev.robust(r.run.headline)
    anchor = ANCHORS.get(r.method)
    aa_mean = aa_worst = "not run"
    verdict = None
    if r.autoattack is not None:
        a = r.autoattack.evaluation.robust(r.autoattack.headline)
        aa_mean, aa_worst = f"{mean_with_interval(a)} (n={int(a.n[0])}/class)", _worst(a, names)
        if anchor:
            s = Spread.of(a, names)
            dm, dw = 100 * s.mean - anchor.robust_mean, 100 * s.worst - anchor.robust_worst
            met = max(abs(dm), abs(dw)) <= TOLERANCE
            verdict = (
                f"- {r.method}: AutoAttack mean {pct(s.mean)} vs {anchor.robust_mean} ({dm:+.1f}), worst class "
                f"{pct(s.worst)} vs {anchor.robust_worst} ({dw:+.1f}): target of ±{TOLERANCE:.0f} points "
                + ("met." if met else f"**not met** (mean {_within(dm)}, worst class {_within(dw)}).")
            )
    anchors = (
        f"{anchor.clean_mean} / {anchor.clean_worst} | {anchor.robust_mean} / {anchor.robust_worst} |"
        if anchor
        else "| |"
    )
    row = (
        f"| {r.method} | {mean_with_interval(clean)} | {_worst(clean, names)} | {mean_with_interval(pgd)} | "
        f"{_worst(pgd, names)} | {aa_mean} | {aa_worst} | {anchors}"
    )
    return row, verdict


def _within(delta: float) -> str:
    return "within" if abs(delta) <= TOLERANCE else "outside"


def _weakest_line(r: PaperRun, names: tuple[str, ...]) -> str:
    pgd = r.run.evaluation.robust(r.run.headline)
    order = np.argsort(pgd.accuracy, kind="stable")
    three = ", ".join(f"{names[k]} {pct(pgd.accuracy[k])} [{pct(pgd.low[k])}, {pct(pgd.high[k])}]" for k in order[:3])
    return f"- {r.method}: {three}; strongest {names[order[-1]]} {pct(pgd.accuracy[order[-1]])}"


def _frl_line(r: PaperRun, names: tuple[str, ...]) -> str | None:
    """PGD-AT's cat and automobile, the classes FRL reports, beside FRL's numbers."""
    if r.method != "pgd-at" or not set(FRL_PGD_AT_CLASSES) <= set(names):
        return None
    pgd = r.run.evaluation.robust(r.run.headline)
    here = ", ".join(
        f"{c} {pct(pgd.accuracy[k])} [{pct(pgd.low[k])}, {pct(pgd.high[k])}] (FRL {v:.0f})"
        for c, v in FRL_PGD_AT_CLASSES.items()
        for k in [names.index(c)]
    )
    return f"- {r.method} against {FRL_SOURCE}: {here}"


def _time_lines(r: PaperRun) -> list[str]:
    h, t = r.run.history, r.timings
    seconds = [e.seconds for e in h]
    graph = sum(e.graph_steps for e in h)
    lines = [
        f"- {r.method}: {_recipe(r.run.config)}; {len(h)} epochs of training took {sum(seconds):.0f} s "
        f"({np.mean(seconds):.1f} s and {np.mean([e.images_per_s or np.nan for e in h]):,.0f} img/s per epoch, "
        f"{h[0].precision or '?'}, {graph:,} steps replayed as CUDA graphs); best epoch "
        f"{int(r.run.evaluation.source.get('best_epoch', -1)) + 1} of {len(h)}"
        + (
            f"; the whole training command, validation and the final PGD-20 included, {t['train_command_wall_s']} s"
            if t
            else ""
        )
    ]
    if t:
        comps = ", ".join(
            f"{c} {v['images']} images at {v['img_per_s']} img/s" for c, v in t["autoattack_components"].items()
        )
        lines.append(
            f"  - PGD-20 on the {t['pgd20_attacked_images']:,} correctly classified test images: "
            f"{t['pgd20_img_per_s']:,} img/s ({t['pgd20_attacked_images'] / t['pgd20_img_per_s']:.1f} s). "
            f"AutoAttack on the subset: {t['autoattack_command_wall_s']} s for the whole command ({comps})."
        )
        if r.autoattack is not None:
            lines.append(f"  - {_full_autoattack_estimate(r.run, r.autoattack, t)}")
    return lines


def _full_autoattack_estimate(run: ModelResult, autoattack: ModelResult, t: dict[str, Any]) -> str:
    """AutoAttack on the whole test set, estimated from the subset: each component's images scale
    with the number of images, at the throughput it had on the subset."""
    total = int(run.evaluation.clean().n.sum())
    scale = total / float(autoattack.evaluation.clean().n.sum())
    seconds = sum(scale * v["images"] / v["img_per_s"] for v in t["autoattack_components"].values())
    return (
        f"Standard AutoAttack on all {total:,} test images, estimated by scaling "
        f"the subset's component times by {scale:.1f} (not measured): about {seconds / 60:.0f} min of attack time."
    )


def paper_scale_section(folder: Path) -> tuple[str, dict[str, bytes]]:
    """Markdown and figures for one device session's paper-scale runs."""
    timings = _timings(folder)
    runs = paper_runs(folder, timings)
    if not runs:
        raise ClasswiseError(f"{folder} holds no run folder (eval/evaluation.json)")
    names = runs[0].run.class_names
    title = display_name(runs[0].run.evaluation.dataset)
    rows, verdicts = zip(*(_row_and_verdict(r, names) for r in runs), strict=True)
    epochs = " and ".join(sorted({str(r.run.config["optim"]["epochs"]) for r in runs}))
    figure = f"paper-scale-{folder.name}-per-class.png"
    device = timings.get("device", "a device not recorded")
    lines = [
        f"## Paper scale on a GPU ({device.split(' (')[0]}, {epochs} epochs): PreActResNet-18 on {title}, L∞ 8/255",
        "",
        f"Measured on {device}, {timings.get('date', 'date not recorded')}; "
        f"results in `{'/'.join(folder.parts[-3:])}`. Clean and PGD-20 accuracy are on",
        "all 10,000 test images; AutoAttack (standard: APGD-CE, APGD-T, FAB-T, Square) on the first",
        "test images of each class, as the column says. Accuracy in %, worst class with its 95% Wilson",
        "interval, mean with the interval of the pooled accuracy.",
        "",
        "| method | clean mean | clean worst | PGD-20 mean | PGD-20 worst | AutoAttack mean | AutoAttack worst | "
        "anchor clean mean / worst | anchor AutoAttack mean / worst |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Anchors: " + "; ".join(a.source for m, a in ANCHORS.items() if any(r.method == m for r in runs)),
        "",
        "**Against the anchors** (AutoAttack on the subset above):",
        "",
        *(v for v in verdicts if v),
        "",
        "Why the numbers differ from the anchors: the anchors train for 100-200 epochs with a piecewise",
        f"schedule on the original CIFAR-10; these runs had {epochs} epochs (the device time of one session) on "
        "the JPEG q75 copy, whose",
        "compression noise is about as large as ε. Clean accuracy is what a short schedule loses first.",
        "",
        "**Weakest classes under PGD-20** (all test images, with 95% intervals):",
        "",
        *(_weakest_line(r, names) for r in runs),
        *(line for r in runs if (line := _frl_line(r, names))),
        "",
        "**Recipe and time:**",
        "",
        *(line for r in runs for line in _time_lines(r)),
        "",
        f"![per-class clean and PGD-20 accuracy at ε={format_eps(runs[0].run.headline.eps)}](figures/{figure})",
    ]
    return "\n".join(lines) + "\n", {figure: figures.class_bars([r.run for r in runs])}
