"""The commands: each reads its parsed arguments, makes one library call and prints the result."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from classwise.errors import ClasswiseError

if TYPE_CHECKING:
    from classwise.train import TrainConfig


def _table(rows: Sequence[Sequence[object]]) -> str:
    text = [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(text[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in text]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def resolve_device(name: str | None) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; a named device must exist."""
    from classwise.compute import resolve_device as resolve

    return resolve(name)


def cmd_datasets(args: argparse.Namespace) -> int:
    from classwise.data import data_root, dataset_rows

    root = data_root(args.data_root)
    rows = dataset_rows(root)
    print(f"data root: {root}")
    print(
        _table(
            [list(rows[0]), *([("yes" if v is True else "no" if v is False else v) for v in r.values()] for r in rows)]
        )
    )
    print("Any folder or .tar/.tar.gz of train/<class>/* and test/<class>/* images is a dataset too (give its path).")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from classwise.models import model_rows

    rows = model_rows(args.num_classes, args.input_shape)
    print(_table([list(rows[0]), *(list(r.values()) for r in rows)]))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from classwise.train.config import setting_rows

    print(_table([("setting", "default", "meaning"), *setting_rows()]))
    print("\nOverride any setting with --set KEY=VALUE (train, gap), or by its key in a study grid.")
    return 0


def _eval_spec(args: argparse.Namespace, attacks: list[str] | None) -> Any:
    from classwise.evaluate import spec_from_options

    spec = spec_from_options(  # every attack, option and value is checked before any data or model is loaded
        attacks,
        steps=args.steps,
        step_size=args.step_size,
        restarts=args.restarts,
        loss=args.loss,
        eps=args.eps,
        norm=args.norm,
        split=args.split,
        n_per_class=args.n_per_class,
        first_n=args.first_n,
        batch_size=args.batch_size,
        seed=args.seed,
        cascade=args.cascade,
        targeted=args.targeted,
        boundary_per_class=args.boundary_per_class,
    )
    return spec.with_settings(args.set) if args.set else spec  # --set evaluation.KEY=VALUE, after the flags


def _load_options(args: argparse.Namespace) -> dict[str, Any]:
    """How models are found and fed (``evaluate_model``'s keyword options)."""
    names = ("device", "model_dir", "weights", "mean", "std")
    return {"root": args.data_root, **{name: getattr(args, name) for name in names}}


def _evaluated(args: argparse.Namespace, attacks: list[str] | None) -> Any:
    from classwise.evaluate import evaluate_model

    spec = _eval_spec(args, attacks)
    return evaluate_model(args.model, args.dataset, spec, args.out, **_load_options(args))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from classwise.evaluate import format_eps_curve, format_flows, format_table, format_targeted
    from classwise.report.headline import model_headline

    ev = _evaluated(args, args.attack)
    print(format_table(ev, f"{ev.title} [{ev.spec.images}] {args.model}"))
    print("\n" + format_flows(ev, ev.headline))
    if len(ev.worst) > 1:
        print("\n" + format_eps_curve(ev))
    if ev.targeted is not None:
        print("\n" + format_targeted(ev.targeted))
    for w in ev.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"\nresults in {args.out} (evaluation.json, per_class.csv, samples.csv, analyses.json)")
    print("\n" + model_headline(ev, ev.source.get("config")).text())
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from classwise.evaluate.store import write_files_atomically
    from classwise.report import write_report
    from classwise.report.audit import audit_card

    ev = _evaluated(args, args.attack or ["autoattack"])
    card = audit_card(ev)
    write_files_atomically(Path(args.out), {"audit.md": lambda p: p.write_text(card)})
    page, _ = write_report(args.out, Path(args.out) / "report")
    print(card)
    print(f"report card: {Path(args.out) / 'audit.md'}; page: {page}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from classwise.report.ranking import rank_models

    setting = next((m for m in args.models if "=" in m and not Path(m).exists()), None)
    if setting is not None:
        raise ClasswiseError(f"{setting!r} looks like a setting, not a model: give it as --set {setting}")
    spec = _eval_spec(args, args.attack or ["autoattack"])
    ranking = rank_models(args.models, args.dataset, spec, args.out, **_load_options(args))
    for row in ranking.rows():
        print(
            f"{row['rank']:>3}. {row['model']}: held-out worst class {100 * row['held_out_worst']:.1f}%, "
            f"mean {100 * row['robust']:.1f}%, clean {100 * row['clean']:.1f}%"
        )
    print(f"\nleaderboard: {Path(args.out) / 'leaderboard.md'} (leaderboard.csv, per_class.csv, per_class.png)")
    return 0


def train_config(args: argparse.Namespace, base: dict[str, Any] | None = None) -> TrainConfig:
    """The config of ``--config`` (or ``base``) with every ``--set`` applied."""
    from classwise.config import load_yaml
    from classwise.train import TrainConfig

    cfg = TrainConfig.from_dict(load_yaml(args.config, "training settings") if args.config else base or {})
    init = [f"model.init_from={json.dumps(args.init_from)}"] if getattr(args, "init_from", None) else []
    return cfg.with_overrides([*settings(args), *init])


def settings(args: argparse.Namespace) -> list[str]:
    """The overrides given as bare ``KEY=VALUE`` arguments (as Hydra takes them) and as ``--set``, in
    the order typed: bare ones first, then each ``--set``; a later one wins."""
    bare = args.overrides or []
    stray = next((a for a in bare if "=" not in a), None)
    if stray is not None:
        raise ClasswiseError(
            f"unexpected argument {stray!r}: a setting is KEY=VALUE, e.g. optim.lr=0.05 (classwise config lists them)"
        )
    return [*bare, *(args.set or [])]


def cmd_train(args: argparse.Namespace) -> int:
    from classwise.evaluate import format_table
    from classwise.train import train
    from classwise.train.rundir import saved_config

    device, graphs = resolve_device(args.device), not args.no_cuda_graphs
    if args.resume and args.init_from:
        raise ClasswiseError("--init-from starts a new run from given weights; give it with --out, not --resume")
    if args.resume:
        saved = saved_config(Path(args.resume))  # --set alone changes the saved config (and is refused)
        base = saved.to_dict() if saved is not None and not args.config else None
        cfg = train_config(args, base) if (args.config or settings(args)) else None
        result = train(cfg, Path(args.resume), resume=True, device=device, cuda_graphs=graphs, track=tracking(args))
    else:
        if not args.out:
            raise ClasswiseError("give --out RUN_DIR for a new run, or --resume RUN_DIR")
        result = train(train_config(args), Path(args.out), device=device, cuda_graphs=graphs, track=tracking(args))
    ev = result.test
    best = "none" if result.best_epoch is None else result.best_epoch + 1  # epochs count from 1 on screen
    title = f"{result.run_dir}: {result.config.method.name}, best epoch {best}, {ev.dataset} test"
    print(format_table(ev, title))
    print(f"\nrun folder: {result.run_dir}")
    return 0


def cmd_gap(args: argparse.Namespace) -> int:
    import time

    from classwise.evaluate import format_comparison, format_flows, format_side_by_side
    from classwise.gap import DEFAULT_VARIANTS, GAP_DEFAULTS, measure_gap, parse_variant
    from classwise.report import write_report
    from classwise.report.headline import headline

    start = time.perf_counter()
    cfg = train_config(args, GAP_DEFAULTS)
    variants = [parse_variant(v) for v in args.variant] if args.variant else list(DEFAULT_VARIANTS)
    results = measure_gap(cfg, Path(args.out), variants, device=resolve_device(args.device), track=tracking(args))
    evals = {label: r.test for label, r in results.items()}
    first = next(iter(evals.values()))
    title = f"{first.title}, {cfg.model.name}, {cfg.optim.epochs} epochs; evaluation: {first.spec.describe()}"
    if len(evals) <= 3:
        print(format_side_by_side(evals, title))
        for label, ev in evals.items():
            print(f"\n{label}: " + format_flows(ev, ev.headline))
        print()
    print(format_comparison(evals, None if len(evals) <= 3 else title))
    page, _ = write_report(args.out, Path(args.out) / "report")
    print(f"\nruns in {args.out} ({time.perf_counter() - start:.0f} s); report: {page}")
    top = headline([(r.test, r.config.to_dict()) for r in results.values()])
    print("\n" + top.text() if top else "")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from classwise.report import write_report

    page, md = write_report(args.path, args.out)
    print(f"wrote {page} and {md}")
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    from classwise.study import snapshot

    print(f"copied {args.source} into {snapshot(args.source, args.out)} (no checkpoints)")
    return 0


CONFIRM_ABOVE = 1000


def _study_dir(args: argparse.Namespace) -> Path:
    return Path(args.dir) if args.dir else Path("runs") / Path(args.file).stem


def cmd_study_run(args: argparse.Namespace) -> int:
    from classwise.study import load_study, run_study
    from classwise.study.execute import select

    study = load_study(args.file)
    n = len(study.runs)
    axes = " × ".join(f"{k}: {len(v)}" for k, v in study.grid.items()) or "base only"
    print(f"study {study.name}: {n} runs ({axes}) in {_study_dir(args)}")
    count = len(select(study, args.only)) if args.only else n  # an unknown id is refused before the question
    if count > CONFIRM_ABOVE and not args.yes:
        if not sys.stdin.isatty():
            raise ClasswiseError(f"{count} runs is a lot; pass --yes to run them all")
        if input(f"run all {count}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing run")
            return 1
    result = run_study(
        study,
        _study_dir(args),
        executor=args.executor,
        workers=args.workers,
        address=args.address,
        device=resolve_device(args.device),
        only=args.only or (),
        track=tracking(args),
    )
    print(
        f"done {result.done}, failed {result.failed}, pending {result.pending}" + (" (of --only)" if args.only else "")
    )
    if result.done:
        from classwise.report import collect
        from classwise.report.build import report_headline

        top = report_headline(collect(_study_dir(args)))
        print("\n" + top.text() if top else "")
    return 0 if result.failed == 0 else 1


def cmd_study_status(args: argparse.Namespace) -> int:
    from classwise.study import load_study, study_status

    study = load_study(args.file)
    rows = study_status(study, _study_dir(args))
    counts = {s: sum(r.status == s for r in rows) for s in ("done", "running", "failed", "pending")}
    print(f"study {study.name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(_table([("run", "grid values", "status", "attempts", "seconds", "error"), *(r.cells() for r in rows)]))
    return 0


def cmd_study_evaluate(args: argparse.Namespace) -> int:
    from classwise.study.evaluate import evaluate_study

    spec = _eval_spec(args, args.attack or ["autoattack"])
    done = evaluate_study(_study_dir(args), spec, args.name, device=args.device)
    new = sum(not e.reused for e in done)
    print(f"{len(done)} finished runs evaluated as eval-{args.name} ({new} new): {spec.describe()}")
    return 0


def cmd_study_export(args: argparse.Namespace) -> int:
    from classwise.study import export_study

    print(f"wrote {export_study(_study_dir(args), args.out, args.format)}")
    return 0


def tracking(args: argparse.Namespace) -> Any:
    """The trackers the command line asks for (``--tensorboard``, ``--mlflow``)."""
    from classwise.train.track import Tracking

    folder = getattr(args, "tensorboard", None)
    return Tracking(None if folder is None else Path(folder), getattr(args, "mlflow", None))
