"""``classwise <command>``: argument parsing and printing only; every command is one library call."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from classwise.errors import ClasswiseError, os_error_message

if TYPE_CHECKING:
    from classwise.train import TrainConfig

Command = Callable[[argparse.Namespace], int]


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

    return spec_from_options(  # every attack, option and value is checked before any data or model is loaded
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


class Parser(argparse.ArgumentParser):
    """argparse with classwise's one-line errors (exit code 2, no usage dump)."""

    def error(self, message: str) -> Any:
        raise ClasswiseError(f"{self.prog}: {message} (see {self.prog} --help)")


def _fraction(text: str) -> float:
    from classwise.attacks import parse_eps

    try:
        return parse_eps(text)
    except ClasswiseError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _eps_list(text: str) -> tuple[float, ...]:
    from classwise.attacks import parse_eps_list

    try:
        return tuple(parse_eps_list(text))
    except ClasswiseError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-root",
        default=None,
        help="folder holding (or receiving) official dataset files; default $CLASSWISE_DATA or ~/.cache/classwise/data",
    )


def _add_config_options(p: argparse.ArgumentParser, base: str) -> None:
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="override settings by their dotted keys: optim.lr=0.05 threat.eps=8/255 balance.name=focal "
        "(classwise config lists every setting)",
    )
    p.add_argument("--config", default=None, help=f"YAML file of training settings (default: {base})")
    p.add_argument(
        "--set",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="the same as a bare KEY=VALUE, repeatable: --set optim.lr=0.05 --set balance.args.gamma=2",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    _add_tracking(p)


def _add_tracking(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tensorboard",
        default=None,
        metavar="DIR",
        help="follow training in TensorBoard: per-class validation curves, loss, lr, the technique's class "
        "weights, logged under DIR (needs classwise[tensorboard])",
    )
    p.add_argument(
        "--mlflow", default=None, metavar="URI", help="the same to an MLflow tracking URI (needs classwise[mlflow])"
    )


def tracking(args: argparse.Namespace) -> Any:
    """The trackers the command line asks for (``--tensorboard``, ``--mlflow``)."""
    from classwise.train.track import Tracking

    folder = getattr(args, "tensorboard", None)
    return Tracking(None if folder is None else Path(folder), getattr(args, "mlflow", None))


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 0.49,0.48,0.45, got {text!r}") from None


def _add_evaluate(sub: Any) -> None:
    evaluate = sub.add_parser("evaluate", help="per-class clean and robust accuracy of any model under attack")
    audit = sub.add_parser(
        "audit", help="a class-wise report card of any model: per-class AutoAttack accuracy beside the leaderboard's"
    )
    evaluate.add_argument(
        "--model",
        "--checkpoint",
        dest="model",
        required=True,
        help="a classwise checkpoint (RUN/best.pt), robustbench:NAME, timm:NAME, torchscript:PATH, or "
        "module.path:factory / file.py:factory (a callable returning an nn.Module)",
    )
    audit.add_argument("model", help="the model, as for classwise evaluate --model")
    board = sub.add_parser(
        "leaderboard",
        help="rank several models by their weakest class under one attack protocol, beside the mean",
        description="Evaluate every MODEL under one protocol (AutoAttack by default; ε is --eps, else the threat "
        "model's RobustBench default, the same for all) into OUT/models/, and rank them by the held-out worst "
        "class. A rerun reuses the models already evaluated.",
    )
    board.add_argument("models", nargs="+", metavar="MODEL", help="the models, each as for classwise evaluate --model")
    for p in (evaluate, audit, board):
        _add_evaluation_options(p, audit=p is not evaluate)
    evaluate.set_defaults(func=cmd_evaluate)
    audit.set_defaults(func=cmd_audit)
    board.set_defaults(func=cmd_leaderboard)


def _add_evaluation_options(p: argparse.ArgumentParser, audit: bool) -> None:
    p.add_argument("--dataset", required=True, help="dataset name (classwise datasets) or path to class folders")
    _add_data_root(p)
    p.add_argument(
        "--model-dir",
        default="models",
        help="RobustBench model folder in its own layout, <dir>/<dataset>/<threat model>/<name>.pt (default models)",
    )
    p.add_argument("--weights", default=None, help="local weights file for a timm: or module:factory model")
    p.add_argument("--mean", type=_floats, default=None, help="the model's input normalisation: 0.5,0.5,0.5")
    p.add_argument("--std", type=_floats, default=None, help="its standard deviations, per channel (with --mean)")
    _add_attack_options(p, "autoattack" if audit else "pgd")
    p.add_argument(
        "--out",
        required=True,
        help="folder for the results; a killed evaluation resumes there, a finished one is reused, never overwritten",
    )


def _add_attack_options(p: argparse.ArgumentParser, default_attack: str) -> None:
    p.add_argument(
        "--attack",
        action="append",
        default=None,
        help="attack to run, repeatable: fgsm, pgd, autoattack, or one with options as a YAML mapping: "
        "'{name: autoattack, args: {version: custom, attacks: [apgd-ce, square]}}' "
        f"(default {default_attack})",
    )
    p.add_argument(
        "--eps",
        type=_eps_list,
        default=None,
        help="attack budget in pixel units, or a comma list: 0,2/255,8/255 (default: the ε the model was trained "
        "or benchmarked at, else 8/255 for Linf and 0.5 for L2)",
    )
    p.add_argument("--norm", "--threat-model", dest="norm", default="Linf", help="threat model: Linf or L2")
    p.add_argument("--steps", type=int, default=None, help="iterations of every PGD attack (default 20)")
    p.add_argument("--step-size", type=_fraction, default=None, help="PGD step in pixel units (default 2.5·ε/steps)")
    p.add_argument("--restarts", type=int, default=None, help="PGD random restarts (default 1)")
    p.add_argument("--loss", choices=["ce", "margin"], default=None, help="PGD loss: cross-entropy or CW margin")
    images = p.add_mutually_exclusive_group()
    images.add_argument("--n-per-class", type=int, default=None, help="evaluate the first N images of each class")
    images.add_argument(
        "--first-n", type=int, default=None, help="evaluate the first N images in dataset order (RobustBench)"
    )
    p.add_argument("--split", default="test", help="the split to evaluate (default test)")
    p.add_argument(
        "--boundary-per-class",
        type=int,
        default=0,
        help="also measure the distance to the decision boundary of N evaluated images per class",
    )
    p.add_argument(
        "--cascade", action="store_true", help="attack only images earlier attacks left robust (worst case only)"
    )
    p.add_argument(
        "--targeted",
        default=None,
        metavar="CLASS|all",
        help="also attack every class toward CLASS (or toward every class): source × target success matrix",
    )
    p.add_argument("--batch-size", type=int, default=256, help="images per attacked batch (default 256)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="seed of the attacks' randomness (default 0)")


def _add_training(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model (standard or adversarial) with class-wise monitoring")
    _add_config_options(p, "the defaults of classwise config")
    p.add_argument("--out", default=None, help="new run folder (never overwritten)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    p.add_argument(
        "--init-from",
        default=None,
        metavar="RUN_DIR|CHECKPOINT",
        help="start from these weights (model.init_from): fine-tune a robust model, as FRL does",
    )
    p.add_argument(
        "--no-cuda-graphs",
        action="store_true",
        help="on CUDA, run each training step eagerly instead of replaying it as a CUDA graph (to debug or compare)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("gap", help="main job: standard vs adversarial training, per-class tables side by side")
    _add_config_options(p, "a ResNet-20 on 1,000 Fashion-MNIST images per class, 4 epochs, ε = 0.1")
    p.add_argument(
        "--variant",
        action="append",
        default=None,
        help="a model to compare, as settings that differ from the base, repeatable: '{method.name: pgd-at}', "
        "'{method.name: pgd-at, balance.name: focal, balance.args.gamma: 2}' (default: standard and pgd-at)",
    )
    p.add_argument("--out", default="runs/gap", help="folder for the runs; re-running resumes (default runs/gap)")
    p.set_defaults(func=cmd_gap)


def _add_study(sub: Any) -> None:
    study = sub.add_parser("study", help="run a grid of trainings and evaluations from a YAML study file")
    study_sub = study.add_subparsers(dest="study_command", required=True)
    for name, func, text in (
        ("run", cmd_study_run, "expand and run (or resume) the study"),
        ("status", cmd_study_status, "done / running / failed / pending runs"),
        ("export", cmd_study_export, "per-class results as one tidy table"),
        ("evaluate", cmd_study_evaluate, "attack every finished run again (e.g. AutoAttack on a subset)"),
    ):
        p = study_sub.add_parser(name, help=text)
        p.add_argument("file", help="study YAML file (see studies/)")
        p.add_argument("--dir", default=None, help="study folder (default runs/<file name>)")
        p.set_defaults(func=func)
        if name == "run":
            p.add_argument("--executor", default="local", help="where runs execute: local or ray (default local)")
            p.add_argument(
                "--workers", type=int, default=0, help="local worker processes (default 0: runs in this process)"
            )
            p.add_argument("--address", default=None, help="Ray cluster address host:port (default: a local Ray)")
            p.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda when available)")
            p.add_argument("--yes", action="store_true", help=f"run more than {CONFIRM_ABOVE} runs without asking")
            p.add_argument(
                "--only",
                nargs="+",
                metavar="RUN",
                help="run just these runs, by id ('study status' lists them), in this order; the rest stay pending",
            )
            _add_tracking(p)  # each run logged under its id
        if name == "evaluate":
            p.add_argument(
                "--name",
                required=True,
                help="the evaluation's name: results go to runs/<id>/eval-<name>/ (e.g. autoattack)",
            )
            _add_attack_options(p, "autoattack")
        if name == "export":
            p.add_argument("--format", default="csv", help="csv or parquet (parquet needs pyarrow; default csv)")
            p.add_argument("--out", default=None, help="output file (default <study folder>/per_class.<format>)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="classwise",
        description="Per-class accuracy and adversarial robustness of image classifiers: train, attack, report "
        "every class with its interval, and run studies across datasets, models and seeds.",
        epilog="Run 'classwise COMMAND --help' for a command's options; README.md has worked examples.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datasets", help="list datasets, their classes and sizes, and which are available locally")
    _add_data_root(p)
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("models", help="list architectures with parameter counts")
    p.add_argument("--num-classes", type=int, default=10, help="classes to count parameters for (default 10)")
    p.add_argument("--input-shape", default="3x32x32", help="CxHxW used to count parameters (default 3x32x32)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("config", help="every training setting with its default and meaning")
    p.set_defaults(func=cmd_config)

    _add_evaluate(sub)
    _add_training(sub)

    p = sub.add_parser("report", help="HTML page and Markdown summary for a run, a gap folder or a study")
    p.add_argument("path", help="a run folder, a folder of runs (classwise gap --out), a study or an evaluation folder")
    p.add_argument("--out", required=True, help="folder for report.html and report.md")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "snapshot", help="copy a study folder or a finished run in small form (no checkpoints), to commit or share"
    )
    p.add_argument("source", help="a study folder (classwise study run --dir) or a finished run folder")
    p.add_argument(
        "--out",
        required=True,
        help="folder to copy into (e.g. results/study/NAME); runs copied before are kept, later evaluations are added",
    )
    p.set_defaults(func=cmd_snapshot)

    _add_study(sub)
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, with bare ``KEY=VALUE`` settings allowed on either side of options
    (``train a=1 --out X b=2``), which argparse alone takes only in one block."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
        args.overrides = [*(args.overrides or []), *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
        )
        return int(args.func(args))
    except ClasswiseError as exc:
        print(f"classwise: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file that cannot be written or read: full disk, no permission, a file for a folder
        print(f"classwise: error: {os_error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("classwise: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
