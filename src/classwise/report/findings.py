"""``docs/findings.md``: the study's answers, written from committed results only.

Every number on the page is read from result folders under ``results/`` (evaluation folders,
run folders with ``history.json``, and the ``timings.json`` a device session wrote beside them);
the only numbers typed here are the published anchors, each with its source. Run
``classwise findings`` after new results are committed; the page and its figures are replaced
atomically.

Sections so far:

- paper scale on a GPU (``results/paper-scale/<device>-<date>/``): PGD-AT and TRADES
  PreActResNet-18 on CIFAR-10 (JPEG q75), per class with intervals, beside the anchors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from classwise.attacks import format_eps
from classwise.errors import ClasswiseError
from classwise.evaluate import ClassAccuracy, Spread, wilson_interval
from classwise.evaluate.store import write_files_atomically
from classwise.report import figures
from classwise.report.collect import ModelResult, model_from_folder
from classwise.report.headline import weakest


@dataclass(frozen=True)
class Anchor:
    """Published CIFAR-10 L∞ 8/255 AutoAttack numbers (%) of one method, mean and worst class."""

    clean_mean: float
    clean_worst: float
    robust_mean: float
    robust_worst: float
    source: str


# ../shared/docs/REFERENCES.md, "Published anchors": PreActResNet-18, best checkpoint, CFA's table.
ANCHORS = {
    "pgd-at": Anchor(82.3, 63.9, 46.7, 20.1, "PGD-AT, PreActResNet-18, best checkpoint (Wei et al., CVPR 2023, CFA)"),
    "trades": Anchor(82.3, 67.8, 48.3, 21.7, "TRADES, PreActResNet-18 (Wei et al., CVPR 2023, CFA)"),
}
DISPLAY = {"cifar10-jpeg": "CIFAR-10 (JPEG q75)"}  # the label results on the shared JPEG copy carry
TOLERANCE = 3.0  # points: the target of "within 3 points of the anchors"


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


def _pct(v: float) -> str:
    return f"{100 * v:.1f}"


def _mean_with_interval(acc: ClassAccuracy) -> str:
    """Mean over classes with the Wilson interval of the pooled accuracy (classes are balanced)."""
    k, n = int(acc.correct.sum()), int(acc.n.sum())
    lo, hi = wilson_interval(np.array(k), np.array(n))
    return f"{100 * k / n:.1f} [{100 * float(lo):.1f}, {100 * float(hi):.1f}]"


def _worst(acc: ClassAccuracy, names: tuple[str, ...]) -> str:
    return weakest(acc, names).replace("%", "")


def paper_runs(folder: Path) -> list[PaperRun]:
    """The run folders of one device session and the AutoAttack evaluations of their checkpoints
    (an evaluation folder whose checkpoint lies in a run folder of the same name)."""
    timings = json.loads((folder / "timings.json").read_text()) if (folder / "timings.json").exists() else {}
    runs = sorted(p for p in folder.iterdir() if (p / "eval" / "evaluation.json").exists())
    evaluations = [p for p in folder.iterdir() if (p / "evaluation.json").exists()]
    out = []
    for path in runs:
        run = model_from_folder(path.name, path)
        aa = [
            model_from_folder(e.name, e)
            for e in sorted(evaluations)
            if Path(str(json.loads((e / "evaluation.json").read_text())["source"].get("checkpoint", ""))).parent.name
            == path.name
        ]
        method = str(run.config["method"]["name"])
        out.append(PaperRun(path.name, run, aa[0] if aa else None, timings.get("runs", {}).get(method, {})))
    return out


def _recipe(config: dict[str, Any]) -> str:
    o, m = config["optim"], config["method"]
    steps = (m.get("args") or {}).get("steps", 10)
    return (
        f"{config['model']['name']}, {m['name']}-{steps}, {o['epochs']} epochs {o['schedule']} (peak lr {o['lr']}), "
        f"batch {o['batch_size']}, weight decay {o['weight_decay']}, best of {config['data']['val_per_class']} "
        f"validation images per class by {config['monitor'].get('select') or 'robust_mean'}"
    )


def paper_scale_section(folder: Path) -> tuple[str, dict[str, bytes]]:
    """Markdown and figures for one device session's paper-scale runs."""
    runs = paper_runs(folder)
    if not runs:
        raise ClasswiseError(f"{folder} holds no run folder (eval/evaluation.json)")
    timings = json.loads((folder / "timings.json").read_text()) if (folder / "timings.json").exists() else {}
    device = timings.get("device", "device not recorded")
    date = timings.get("date", "date not recorded")
    names = runs[0].run.class_names
    title = DISPLAY.get(runs[0].run.evaluation.dataset, runs[0].run.evaluation.dataset)
    lines = [
        f"## Paper scale on a GPU: PreActResNet-18 on {title}, L∞ 8/255",
        "",
        f"Measured on {device}, {date}; results in `{'/'.join(folder.parts[-3:])}`. Clean and PGD-20 accuracy are on",
        "all 10,000 test images; AutoAttack (standard: APGD-CE, APGD-T, FAB-T, Square) on the first",
        "test images of each class, as the column says. Accuracy in %, worst class with its 95% Wilson",
        "interval, mean with the interval of the pooled accuracy.",
        "",
        "| method | clean mean | clean worst | PGD-20 mean | PGD-20 worst | AutoAttack mean | AutoAttack worst | "
        "anchor clean mean / worst | anchor AutoAttack mean / worst |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts, weakest_lines = [], []
    for r in runs:
        ev = r.run.evaluation
        clean, pgd = ev.clean(), ev.robust(r.run.headline)
        anchor = ANCHORS.get(r.method)
        aa_mean = aa_worst = "not run"
        if r.autoattack is not None:
            a = r.autoattack.evaluation.robust(r.autoattack.headline)
            aa_mean = f"{_mean_with_interval(a)} (n={int(a.n[0])}/class)"
            aa_worst = _worst(a, names)
            if anchor:
                s = Spread.of(a, names)
                dm, dw = 100 * s.mean - anchor.robust_mean, 100 * s.worst - anchor.robust_worst
                met = abs(dm) <= TOLERANCE and abs(dw) <= TOLERANCE
                verdicts.append(
                    f"- {r.method}: AutoAttack mean {_pct(s.mean)} vs {anchor.robust_mean} ({dm:+.1f}), worst class "
                    f"{_pct(s.worst)} vs {anchor.robust_worst} ({dw:+.1f}): target of ±{TOLERANCE:.0f} points "
                    + ("met." if met else "**not met**.")
                )
        lines.append(
            f"| {r.method} | {_mean_with_interval(clean)} | {_worst(clean, names)} | {_mean_with_interval(pgd)} | "
            f"{_worst(pgd, names)} | {aa_mean} | {aa_worst} | "
            + (
                f"{anchor.clean_mean} / {anchor.clean_worst} | {anchor.robust_mean} / {anchor.robust_worst} |"
                if anchor
                else "| |"
            )
        )
        order = np.argsort(pgd.accuracy, kind="stable")
        weakest_lines.append(
            f"- {r.method}: "
            + ", ".join(
                f"{names[k]} {_pct(pgd.accuracy[k])} [{_pct(pgd.low[k])}, {_pct(pgd.high[k])}]" for k in order[:3]
            )
            + f"; strongest {names[order[-1]]} {_pct(pgd.accuracy[order[-1]])}"
        )
    lines += [
        "",
        "Anchors: " + "; ".join(f"{a.source}" for m, a in ANCHORS.items() if any(r.method == m for r in runs)),
    ]
    lines += ["", "**Against the anchors** (AutoAttack on the subset above):", "", *verdicts]
    lines += [
        "",
        "Why the numbers differ from the anchors: the anchors train for 100-200 epochs with a piecewise",
        "schedule on the original CIFAR-10; these runs had "
        + " and ".join(sorted({str(r.run.config["optim"]["epochs"]) for r in runs}))
        + " epochs (the device time of one session) on the JPEG q75 copy, whose",
        "compression noise is about as large as ε. Clean accuracy is what a short schedule loses first.",
    ]
    lines += ["", "**Weakest classes under PGD-20** (all test images, with 95% intervals):", "", *weakest_lines]
    lines += ["", "**Recipe and time:**", ""]
    for r in runs:
        h = r.run.history
        seconds = [e["seconds"] for e in h]
        graph = sum(e.get("graph_steps", 0) for e in h)
        t = r.timings
        lines.append(
            f"- {r.method}: {_recipe(r.run.config)}; {len(h)} epochs of training took {sum(seconds):.0f} s "
            f"({np.mean(seconds):.1f} s and {np.mean([e['images_per_s'] for e in h]):,.0f} img/s per epoch, "
            f"{h[0].get('precision', '?')}, {graph:,} steps replayed as CUDA graphs); best epoch "
            f"{int(r.run.evaluation.source.get('best_epoch', -1)) + 1} of {len(h)}"
            + (
                f"; the whole training command, validation and the final PGD-20 included, {t['train_command_wall_s']} s"
                if t
                else ""
            )
        )
        if t:
            comps = ", ".join(
                f"{c} {v['images']} images at {v['img_per_s']} img/s" for c, v in t["autoattack_components"].items()
            )
            lines.append(
                f"  - PGD-20 on the {t['pgd20_attacked_images']:,} correctly classified test images: "
                f"{t['pgd20_img_per_s']:,} img/s ({t['pgd20_attacked_images'] / t['pgd20_img_per_s']:.1f} s). "
                f"AutoAttack on the subset: {t['autoattack_command_wall_s']} s for the whole command ({comps})."
            )
    figs = {"paper-scale-per-class.png": figures.class_bars([r.run for r in runs])}
    lines += [
        "",
        f"![per-class clean and PGD-20 accuracy at ε={format_eps(runs[0].run.headline.eps)}]"
        "(figures/paper-scale-per-class.png)",
    ]
    return "\n".join(lines) + "\n", figs


def write_findings(results: str | Path, out: str | Path) -> Path:
    """Write ``out`` (Markdown) and its figures (``figures/`` beside it) from ``results``."""
    results, out = Path(results), Path(out)
    paper = sorted(p for p in (results / "paper-scale").glob("*") if p.is_dir())
    if not paper:
        raise ClasswiseError(f"{results} holds no results yet (expected {results}/paper-scale/<device>-<date>/)")
    parts = [
        "# Findings",
        "",
        "Generated by `classwise findings` from the committed results in `results/`; do not edit by hand.",
        'CIFAR-10 here is the JPEG q75 copy ("CIFAR-10 (JPEG q75)"): its pixels differ from the',
        "original by about the size of the attack budget, so numbers are on that variant.",
        "",
    ]
    figs: dict[str, bytes] = {}
    for folder in paper:
        text, f = paper_scale_section(folder)
        parts.append(text)
        figs.update(f)
    figures_dir = out.parent / "figures"  # first the figures, then the page that shows them
    write_files_atomically(figures_dir, {name: partial(_write, data) for name, data in figs.items()})
    write_files_atomically(out.parent, {out.name: partial(_write, "\n".join(parts).encode())})
    return out


def _write(data: bytes, path: Path) -> None:
    path.write_bytes(data)
