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

import gzip
import json
import shutil
from collections.abc import Callable, Sequence
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
DISPLAY = {  # dataset labels on the page; results on the shared JPEG copy carry its caveat
    "cifar10-jpeg": "CIFAR-10 (JPEG q75)",
    "mnist": "MNIST",
    "fashion-mnist": "Fashion-MNIST",
    "gtsrb": "GTSRB (32 px)",
}
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
    studies = sorted(p for p in (results / "study").glob("*") if (p / "runs.json").exists())
    if not paper and not studies:
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
    for folder in studies:
        text, f = study_section(folder)
        parts.append(text)
        figs.update(f)
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


# --- the CPU study: questions (a) and (b) -------------------------------------------------------

RUN_FILES = ("config.yaml", "history.json")
EVAL_FILES = ("evaluation.json", "per_class.csv", "analyses.json")


def snapshot_study(study_dir: str | Path, results: str | Path) -> Path:
    """Copy a study's finished runs in small form into ``results/study/<study folder name>/``:
    per run its config, history and evaluation files (per-sample records gzipped, no checkpoint),
    and the runs table (grid values, status, seconds). Runs already copied are kept."""
    from classwise.study import STORE, Store

    study_dir = Path(study_dir)
    if not (study_dir / STORE).exists():
        raise ClasswiseError(f"{study_dir} is not a study folder (no {STORE}); give the --dir of a classwise study run")
    dest = Path(results) / "study" / study_dir.name
    table = []
    for run in Store(study_dir / STORE).runs():
        entry = {k: run[k] for k in ("run_id", "status", "attempts", "seconds")}
        entry["overrides"] = json.loads(run["overrides"])
        table.append(entry)
        src, out = study_dir / "runs" / run["run_id"], dest / "runs" / run["run_id"]
        if run["status"] != "done" or (out / "eval" / "evaluation.json").exists():
            continue
        write_files_atomically(out, {name: partial(_copy, src / name) for name in RUN_FILES})
        writers: dict[str, Callable[[Path], Any]] = {
            name: partial(_copy, src / "eval" / name) for name in EVAL_FILES if (src / "eval" / name).exists()
        }
        writers["samples.csv.gz"] = partial(_gzip, src / "eval" / "samples.csv")
        evaluation = writers.pop("evaluation.json")  # last: its presence marks a complete copy
        write_files_atomically(out / "eval", writers)
        write_files_atomically(out / "eval", {"evaluation.json": evaluation})
    write_files_atomically(dest, {"runs.json": partial(_write, (json.dumps(table, indent=1) + "\n").encode())})
    return dest


def _copy(source: Path, path: Path) -> None:
    path.write_bytes(source.read_bytes())


def _gzip(source: Path, path: Path) -> None:
    with open(source, "rb") as f, gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as g:
        shutil.copyfileobj(f, g)


@dataclass(frozen=True)
class StudyRun:
    """One finished run of a study with the settings the findings group it by."""

    model: ModelResult
    dataset: str
    architecture: str
    method: str
    seed: int
    variant: str  # the hyper-parameters set with the dataset besides its ε, "" for the base setting

    @property
    def adversarial(self) -> bool:
        from classwise.train import METHODS

        return self.method in METHODS and METHODS.get(self.method).adversarial


def study_runs(folder: Path) -> list[StudyRun]:
    out = []
    for entry in json.loads((folder / "runs.json").read_text()):
        path = folder / "runs" / entry["run_id"]
        if entry["status"] != "done" or not (path / "eval" / "evaluation.json").exists():
            continue
        m = model_from_folder(entry["run_id"], path)
        c = m.config
        together = entry["overrides"].get("with") or {}
        variant = ", ".join(
            f"{k.split('.')[-1].replace('_', ' ')} {v}"
            for k, v in together.items()
            if k not in ("data.dataset", "data.root", "threat.eps")
        )
        eps = format_eps(c["threat"]["eps"])
        variant = f"ε={eps}" + (f", {variant}" if variant else "")
        ds = DISPLAY.get(m.evaluation.dataset, m.evaluation.dataset)
        out.append(StudyRun(m, ds, c["model"]["name"], c["method"]["name"], int(c["seed"]), variant))
    return out


def _pooled(models: Sequence[ModelResult], robust: bool) -> np.ndarray:
    """(3, K): per-class accuracy pooled over the runs' test images, with its Wilson interval."""
    accs = [m.evaluation.robust(m.headline) if robust else m.evaluation.clean() for m in models]
    correct = np.sum([a.correct for a in accs], axis=0)
    n = np.sum([a.n for a in accs], axis=0)
    low, high = wilson_interval(correct, n)
    return np.stack([correct / n, low, high])


def _classes(acc: np.ndarray, names: tuple[str, ...], order: np.ndarray) -> str:
    return ", ".join(f"{names[k]} {_pct(acc[0, k])} [{_pct(acc[1, k])}, {_pct(acc[2, k])}]" for k in order)


def _fisher(rho: float, n: int) -> str:
    if not np.isfinite(rho) or n < 4:
        return "undefined"
    z, se = np.arctanh(np.clip(rho, -0.999999, 0.999999)), np.sqrt(1.06 / (n - 3))
    return f"{rho:+.2f} [{np.tanh(z - 1.96 * se):+.2f}, {np.tanh(z + 1.96 * se):+.2f}]"


def _slug(dataset: str) -> str:
    return dataset.lower().replace(" ", "-").replace("(", "").replace(")", "")


def _by(runs: Sequence[StudyRun], **match: object) -> list[StudyRun]:
    return [r for r in runs if all(getattr(r, k) == v for k, v in match.items())]


def study_section(folder: Path) -> tuple[str, dict[str, bytes]]:
    """Markdown and figures for questions (a) and (b) from one study snapshot."""
    from classwise import analysis
    from classwise.report.why import correlations

    runs = study_runs(folder)
    total = len(json.loads((folder / "runs.json").read_text()))
    title = f"## Questions (a) and (b) on real data: study `{folder.name}`"
    if not runs:
        return f"{title}\n\nNo run of the study has finished yet ({total} planned).\n", {}
    datasets = sorted({r.dataset for r in runs})
    lines = [
        title,
        "",
        f"{len(runs)} of {total} planned runs have finished (results in `{'/'.join(folder.parts[-3:])}`): "
        + "; ".join(
            f"{d}: {len(_by(runs, dataset=d))} runs "
            f"({', '.join(sorted({r.architecture for r in _by(runs, dataset=d)}))}; "
            f"seeds {', '.join(map(str, sorted({r.seed for r in _by(runs, dataset=d)})))})"
            for d in datasets
        )
        + ". Every run is evaluated on its whole test set; robust accuracy is the headline attack of the "
        "evaluation (see each run's config) at the dataset's ε. Intervals: 95% Wilson intervals of accuracy "
        "pooled over the runs' test images; paired differences across seeds with Student-t intervals; Spearman's "
        "ρ with Fisher intervals over the classes.",
        "",
        "### (a) Is the class-wise gap universal?",
        "",
        "Weakest classes, pooled over every run of a dataset and method (architectures, hyper-parameters, seeds):",
        "",
        "| dataset | method | runs | clean mean | weakest clean | robust mean | weakest under attack |",
        "|---|---|---|---|---|---|---|",
    ]
    figs: dict[str, bytes] = {}
    verdict_gap_std: list[tuple[str, bool, str]] = []
    verdict_gap_at: list[tuple[str, bool, str]] = []
    verdict_robust: list[tuple[str, bool, str]] = []
    weakest_cifar = ""
    for d in datasets:
        names = _by(runs, dataset=d)[0].model.class_names
        series = []
        for method in sorted({r.method for r in _by(runs, dataset=d)}):
            models = [r.model for r in _by(runs, dataset=d, method=method)]
            clean, robust = _pooled(models, False), _pooled(models, True)
            oc, orob = np.argsort(clean[0], kind="stable"), np.argsort(robust[0], kind="stable")
            tied = np.ptp(robust[0]) == 0
            weak_robust = f"all at {_pct(robust[0][0])}" if tied else _classes(robust, names, orob[:3])
            lines.append(
                f"| {d} | {method} | {len(models)} | {_pct(clean[0].mean())} | {_classes(clean, names, oc[:3])} | "
                f"{_pct(robust[0].mean())} | {weak_robust} |"
            )
            series += [(f"{method}: clean", clean), (f"{method}: under attack", robust)]
            adversarial = _by(runs, dataset=d, method=method)[0].adversarial
            worst_below = clean[2, oc[0]] < clean[0].mean()
            (verdict_gap_at if adversarial else verdict_gap_std).append((d, bool(worst_below), names[oc[0]]))
            if adversarial and not tied:
                verdict_robust.append((d, bool(robust[2, orob[0]] < robust[0].mean()), names[orob[0]]))
            if adversarial and d.startswith("CIFAR-10"):
                weakest_cifar = f"{names[orob[0]]} ({_classes(robust, names, orob[:1])})"
        order = [int(k) for k in np.argsort(series[-1][1][0], kind="stable")]
        figs[f"study-{_slug(d)}.png"] = figures.series_bars(names, series, order)
    lines += [""]
    lines += [f"![{d}: per-class accuracy pooled over runs](figures/study-{_slug(d)}.png)" for d in datasets]

    # stability of the class ordering across architectures, hyper-parameters and seeds
    lines += [
        "",
        "Do the same classes stay weak? Spearman's ρ between the per-class accuracies of two runs of one dataset "
        "and method that differ in one respect (robust accuracy for adversarial training, clean for standard):",
        "",
        "| dataset | method | differs in | pairs | mean ρ [Fisher 95% interval at K classes] | range |",
        "|---|---|---|---|---|---|",
    ]
    for d in datasets:
        for method in sorted({r.method for r in _by(runs, dataset=d)}):
            group = _by(runs, dataset=d, method=method)
            for what in ("architecture", "variant", "seed"):
                rhos = []
                for i, a in enumerate(group):
                    for b in group[i + 1 :]:
                        same = all(
                            getattr(a, f) == getattr(b, f) for f in ("architecture", "variant", "seed") if f != what
                        )
                        if same and getattr(a, what) != getattr(b, what):
                            ka = a.model.robust[0] if a.adversarial else a.model.clean[0]
                            kb = b.model.robust[0] if b.adversarial else b.model.clean[0]
                            rhos.append(analysis.spearman(ka, kb).rho)
                rhos = [r for r in rhos if np.isfinite(r)]
                if rhos:
                    k = len(group[0].model.class_names)
                    label = {"variant": "hyper-parameters"}.get(what, what)
                    lines.append(
                        f"| {d} | {method} | {label} | {len(rhos)} | {_fisher(float(np.mean(rhos)), k)} | "
                        f"{min(rhos):+.2f} to {max(rhos):+.2f} |"
                    )

    if lines[-1].startswith("|---"):
        lines.append("| (no two finished runs differ in only one respect yet) | | | | | |")

    # widening: standard against adversarial training with the same seed, architecture and setting
    lines += [
        "",
        "Does adversarial training widen the gap? Clean accuracy of the adversarially trained model against the "
        "standard one trained with the same architecture, setting and seed (paired; difference = adversarial − "
        "standard, in points, with its 95% t-interval over the pairs):",
        "",
        "| dataset | pairs | std across classes | max − min | worst class | mean |",
        "|---|---|---|---|---|---|",
    ]
    widen = []
    for d in datasets:
        pairs = []
        for std in (r for r in _by(runs, dataset=d) if not r.adversarial):
            for adv in (
                r
                for r in _by(runs, dataset=d, architecture=std.architecture, variant=std.variant, seed=std.seed)
                if r.adversarial
            ):
                pairs.append((std.model.clean[0], adv.model.clean[0]))
        if not pairs:
            continue
        before, after = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        cells = []
        for stat in ("std", "gap", "worst", "mean"):
            cmp = analysis.compare_gaps(before, after, stat)
            interval = "" if not np.isfinite(cmp.low) else f" [{100 * cmp.low:+.1f}, {100 * cmp.high:+.1f}]"
            cells.append(f"{100 * cmp.mean_difference:+.1f}{interval}")
            if stat == "std":
                widen.append((d, cmp))
        lines.append(f"| {d} | {len(pairs)} | " + " | ".join(cells) + " |")

    if lines[-1].startswith("|---"):
        lines.append("| (no standard and adversarial run with the same settings have both finished yet) | | | | | |")

    # (b) explanations
    lines += [
        "",
        "### (b) Why? Class geometry against class robustness",
        "",
        "For every adversarially trained run, Spearman's ρ across classes between each class's robust accuracy and "
        "each candidate explanation, stored with the run's evaluation (standard models are 0% robust almost "
        "everywhere, so their ρ is undefined). Per dataset: the median ρ over runs, and in how many runs the "
        "interval excludes 0 in each direction.",
        "",
        "| dataset | explanation | runs | median ρ | interval below 0 | interval above 0 |",
        "|---|---|---|---|---|---|",
    ]
    holds: dict[str, list[float]] = {}
    for d in datasets:
        per_expl: dict[str, list[Any]] = {}
        for r in (r for r in _by(runs, dataset=d) if r.adversarial):
            for name, c in correlations(r.model).items():
                per_expl.setdefault(name, []).append(c)
        for name, cs in sorted(per_expl.items()):
            defined = [c for c in cs if np.isfinite(c.rho)]
            if not defined:
                continue
            med = float(np.median([c.rho for c in defined]))
            holds.setdefault(name, []).append(med)
            lines.append(
                f"| {d} | {name} | {len(defined)} | {med:+.2f} | {sum(c.high < 0 for c in defined)} | "
                f"{sum(c.low > 0 for c in defined)} |"
            )

    if lines[-1].startswith("|---"):
        lines.append("| (no adversarially trained run has finished yet) | | | | | |")

    # the answers
    lines += ["", "### The answers so far", ""]
    claims = (
        ("The gap exists without attack (standard training, clean accuracy)", verdict_gap_std),
        ("Adversarial training keeps it (clean accuracy of the adversarially trained models)", verdict_gap_at),
        ("Per-class robustness differs (robust accuracy of the adversarially trained models)", verdict_robust),
    )
    for claim, verdicts in claims:
        if verdicts:
            lines.append(
                f"- **{claim}:** the weakest class lies below the mean, its interval included, on "
                f"{sum(v for _, v, _ in verdicts)} of {len(verdicts)} datasets (weakest: "
                + ", ".join(f"{d}: {c}" for d, _, c in verdicts)
                + ")."
            )
    for d, cmp in widen:
        if not np.isfinite(cmp.low):
            word = "undecided (one pair: no interval)"
        elif cmp.low > 0:
            word = "reproduced (the interval of the change in std excludes 0)"
        elif cmp.high < 0:
            word = "**contradicted**: adversarial training narrowed the clean spread"
        else:
            word = "not shown (the interval includes 0)"
        change = f"std across classes {100 * cmp.mean_difference:+.1f} points"
        lines.append(f"- **Adversarial training widens the gap, {d}:** {word}; {change}.")
    if weakest_cifar:
        lines.append(f"- **CIFAR-10 (JPEG q75), the weakest class under attack** (pooled): {weakest_cifar}.")
    for name, meds in sorted(holds.items()):
        signs = {np.sign(m) for m in meds if abs(m) > 0.2}
        word = "consistent in sign across datasets" if len(signs) == 1 else "not consistent across datasets"
        lines.append(f"- **{name}:** median ρ per dataset {', '.join(f'{m:+.2f}' for m in meds)}: {word}.")
    return "\n".join(lines) + "\n", figs
