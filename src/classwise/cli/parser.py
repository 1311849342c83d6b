"""The command line's grammar: every subcommand, its options and their help."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from classwise.cli.commands import (
    CONFIRM_ABOVE,
    cmd_audit,
    cmd_config,
    cmd_datasets,
    cmd_evaluate,
    cmd_gap,
    cmd_leaderboard,
    cmd_models,
    cmd_report,
    cmd_snapshot,
    cmd_study_evaluate,
    cmd_study_export,
    cmd_study_run,
    cmd_study_status,
    cmd_train,
)
from classwise.errors import ClasswiseError


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
        "--set",
        action="append",
        default=None,
        metavar="evaluation.KEY=VALUE",
        help="any evaluation setting, as in a training config, applied after the flags and repeatable: "
        "--set evaluation.precision=bf16 --set evaluation.early_stop=false (classwise config lists them)",
    )
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
    elif extra and hasattr(args, "set") and all("=" in e and not e.startswith("-") for e in extra):
        sets = " ".join(f"--set {e}" for e in extra)  # evaluate, audit, ...: settings come with --set
        parser.error(f"unrecognized arguments: {' '.join(extra)}; give evaluation settings as {sets}")
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args
