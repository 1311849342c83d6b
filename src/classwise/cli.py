"""``classwise <command>``: argument parsing and printing only; every command is one library call."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from classwise.errors import ClasswiseError

if TYPE_CHECKING:
    from classwise.train import TrainConfig

Command = Callable[[argparse.Namespace], int]


def _add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-root",
        default=None,
        help="folder holding (or receiving) official dataset files; default $CLASSWISE_DATA or ~/.cache/classwise/data",
    )


def cmd_datasets(args: argparse.Namespace) -> int:
    from classwise.data import DATASETS, data_root

    root = data_root(args.data_root)
    print(f"data root: {root}")
    rows = [("name", "classes", "input", "train", "test", "local", "class names")]
    for entry in DATASETS:
        spec = entry.factory
        names = ", ".join(spec.classes[:6]) + (", ..." if len(spec.classes) > 6 else "")
        rows.append(
            (
                spec.name,
                str(len(spec.classes)),
                "×".join(map(str, spec.input_shape)),
                str(spec.sizes[0]),
                str(spec.sizes[1]),
                "yes" if spec.available(root) else "no",
                names,
            )
        )
    print(_table(rows))
    print(
        "Any folder or .tar/.tar.gz of train/<class>/* and test/<class>/* images is a dataset too "
        "(pass its path as --dataset)."
    )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from classwise.models import MODELS, count_parameters, create_model

    shape = tuple(int(v) for v in args.input_shape.split("x"))
    rows = [("name", f"params ({args.num_classes} classes, {args.input_shape})", "description")]
    for entry in MODELS:
        model = create_model(entry.name, args.num_classes, shape, (0.5,) * shape[0], (0.25,) * shape[0])  # type: ignore[arg-type]
        rows.append((entry.name, f"{count_parameters(model) / 1e6:.2f}M", entry.description))
    print(_table(rows))
    return 0


def resolve_device(name: str | None) -> str:
    import torch

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def cmd_evaluate(args: argparse.Namespace) -> int:
    from classwise.attacks import parse_eps_list
    from classwise.data import load_dataset
    from classwise.evaluate import format_eps_curve, format_flows, format_table, format_targeted, run_evaluation
    from classwise.evaluate import spec_from_options as make_spec
    from classwise.models import load_checkpoint

    spec = make_spec(  # every attack, option and value checked before any data or model is loaded
        args.attack,
        steps=args.steps,
        step_size=args.step_size,
        restarts=args.restarts,
        loss=args.loss,
        eps=tuple(parse_eps_list(args.eps)) if args.eps else None,
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
    ds = load_dataset(args.dataset, root=args.data_root)
    model, meta = load_checkpoint(args.checkpoint, num_classes=ds.num_classes, device=resolve_device(args.device))
    trained_on = meta.get("class_names")
    if trained_on and list(trained_on) != list(ds.class_names):
        print(
            f"warning: checkpoint classes {trained_on} differ from dataset classes {list(ds.class_names)}",
            file=sys.stderr,
        )
    trained_eps = (meta.get("config") or {}).get("eps")  # the threat model the checkpoint was trained for
    spec = spec.resolved(float(trained_eps) if trained_eps else None)
    source = {"checkpoint": str(Path(args.checkpoint).resolve()), "dataset": ds.describe()}
    ev = run_evaluation(model, ds, spec, args.out, source=source)
    print(format_table(ev, f"{ev.title} [{ev.spec.images}] {args.checkpoint}"))
    print()
    print(format_flows(ev, ev.headline))
    if len(ev.worst) > 1:
        print()
        print(format_eps_curve(ev))
    if ev.targeted is not None:
        print()
        print(format_targeted(ev.targeted))
    for w in ev.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"\nresults in {args.out} (evaluation.json, per_class.csv, samples.csv, analyses.json)")
    return 0


TRAIN_HELP = {
    "dataset": "dataset name or path to class folders",
    "model": "architecture (classwise models)",
    "method": "standard, pgd-at, trades or fgsm-rs",
    "eps": "training/evaluation ε (L∞, pixel units, e.g. 8/255)",
    "attack_steps": "attack steps while training (PGD-AT, TRADES)",
    "attack_step_size": "attack step size (default 2.5·ε/steps; 1.25ε for fgsm-rs)",
    "schedule": "piecewise, cosine, onecycle or constant",
    "milestones": "piecewise decay points as fractions of the epochs, e.g. 0.5,0.75",
    "best_metric": "robust_mean, robust_worst, clean_mean, clean_worst or robust_mean_plus_worst",
    "train_per_class": "train on the first N images of each class",
    "val_per_class": "validation images held out per class",
    "evaluation": "final test evaluation as YAML, e.g. '{attacks: [pgd, autoattack], n_per_class: 100}' "
    "(default: PGD-20 at the training ε on the whole test set)",
}


def add_train_options(p: argparse.ArgumentParser, defaults: dict[str, object] | None = None) -> None:
    """One ``--option`` per :class:`TrainConfig` field (default: the config's own, or the file's)."""
    import dataclasses

    from classwise.train import TrainConfig

    p.add_argument("--config", default=None, help="YAML file of training options (command-line options override)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = (defaults or {}).get(f.name, f.default if f.default is not dataclasses.MISSING else "{}")
        help_ = f"{TRAIN_HELP.get(f.name, f.name.replace('_', ' '))} (default {default})"
        if f.name == "model_args":
            p.add_argument("--model-arg", dest="model_args", action="append", metavar="KEY=VALUE", help=help_)
        else:
            p.add_argument(flag, dest=f.name, default=None, help=help_)


def train_config_from_args(args: argparse.Namespace, base: dict[str, object] | None = None) -> TrainConfig:
    import dataclasses

    import yaml

    from classwise.train import TrainConfig

    values: dict[str, object] = dict(base or {})
    if args.config:
        values.update(TrainConfig.load(Path(args.config)).to_dict())
    types = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    for name in types:
        raw = getattr(args, name, None)
        if raw is None:
            continue
        if name == "model_args":
            values[name] = {k: yaml.safe_load(v) for k, _, v in (item.partition("=") for item in raw)}
        elif name == "milestones":
            values[name] = [float(v) for v in str(raw).split(",")]
        elif name in ("eps", "attack_step_size"):
            values[name] = _fraction(raw)
        elif name == "evaluation":
            before = values.get(name)
            values[name] = {**(before if isinstance(before, dict) else {}), **_yaml_mapping(raw, "--evaluation")}
        else:
            values[name] = yaml.safe_load(raw)  # ints, floats, booleans and names as YAML reads them
    return TrainConfig.from_dict(values)


def _yaml_mapping(text: str, option: str) -> dict[str, object]:
    import yaml

    from classwise.errors import ConfigError

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{option}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{option}: give a mapping like '{{n_per_class: 100}}', got {text!r}")
    return value


def cmd_train(args: argparse.Namespace) -> int:
    from classwise.evaluate import format_table
    from classwise.train import train

    device, graphs = resolve_device(args.device), not args.no_cuda_graphs
    if args.resume:
        given = [n for n in vars(args) if n not in _NON_CONFIG and getattr(args, n) is not None]
        cfg = train_config_from_args(args) if given else None
        result = train(cfg, Path(args.resume), resume=True, device=device, cuda_graphs=graphs)
    else:
        if not args.out:
            raise ClasswiseError("give --out RUN_DIR for a new run, or --resume RUN_DIR")
        cfg = train_config_from_args(args)
        result = train(cfg, Path(args.out), device=device, cuda_graphs=graphs)
    ev = result.test
    print(
        format_table(ev, f"{result.run_dir}: {result.config.method}, best epoch {result.best_epoch}, {ev.dataset} test")
    )
    print(f"\nrun folder: {result.run_dir}")
    return 0


_NON_CONFIG = {"command", "func", "verbose", "resume", "out", "device", "no_cuda_graphs"}


def cmd_gap(args: argparse.Namespace) -> int:
    import time

    from classwise.evaluate import format_comparison, format_flows, format_side_by_side
    from classwise.gap import GAP_DEFAULTS, measure_gap

    start = time.perf_counter()
    cfg = train_config_from_args(args, GAP_DEFAULTS)
    results = measure_gap(
        cfg, Path(args.out), args.variant or ["standard", "pgd-at"], device=resolve_device(args.device)
    )
    evals = {m: r.test for m, r in results.items()}
    first = next(iter(results.values()))
    title = f"{first.test.title}, {cfg.model}, {cfg.epochs} epochs; evaluation: {first.test.spec.describe()}"
    if len(evals) <= 3:
        print(format_side_by_side(evals, title))
        for variant, ev in evals.items():
            print(f"\n{variant}: " + format_flows(ev, ev.headline))
        print()
    print(format_comparison(evals, None if len(evals) <= 3 else title))
    from classwise.report import write_report

    page, _ = write_report(first.run_dir.parent, first.run_dir.parent / "report")
    print(f"\nruns in {first.run_dir.parent} ({time.perf_counter() - start:.0f} s); report: {page}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from classwise.report import write_report

    page, md = write_report(args.path, args.out)
    print(f"wrote {page} and {md}")
    return 0


CONFIRM_ABOVE = 1000


def _study_dir(args: argparse.Namespace) -> Path:
    return Path(args.dir) if args.dir else Path("runs") / Path(args.file).stem


def cmd_study_run(args: argparse.Namespace) -> int:
    from classwise.study import load_study, run_study

    study = load_study(args.file)
    n = len(study.runs)
    print(
        f"study {study.name}: {n} runs ({' × '.join(f'{k}: {len(v)}' for k, v in study.grid.items()) or 'base only'})"
        f" in {_study_dir(args)}"
    )
    if n > CONFIRM_ABOVE and not args.yes:
        if not sys.stdin.isatty():
            raise ClasswiseError(f"{n} runs is a lot; pass --yes to run them all")
        if input(f"run all {n}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing run")
            return 1
    result = run_study(
        study,
        _study_dir(args),
        executor=args.executor,
        workers=args.workers,
        address=args.address,
        device=resolve_device(args.device),
    )
    print(f"done {result.done}, failed {result.failed}, pending {result.pending}")
    return 0 if result.failed == 0 else 1


def cmd_study_status(args: argparse.Namespace) -> int:
    import json

    from classwise.study import STORE, Store, load_study

    study = load_study(args.file)
    path = _study_dir(args) / STORE
    state = {r["run_id"]: r for r in Store(path).runs()} if path.exists() else {}
    rows = [("run", "grid values", "status", "attempts", "seconds", "error")]
    counts: dict[str, int] = {}
    for run in study.runs:
        r = state.get(run.run_id, {})
        status = r.get("status", "pending")
        counts[status] = counts.get(status, 0) + 1
        error = (r.get("error") or "").strip().splitlines()
        rows.append(
            (
                run.run_id,
                json.dumps(run.overrides)[:60],
                status,
                str(r.get("attempts", 0)),
                f"{r['seconds']:.0f}" if r.get("seconds") else "",
                error[-1][:80] if error else "",
            )
        )
    print(
        f"study {study.name}: " + ", ".join(f"{k} {counts.get(k, 0)}" for k in ("done", "running", "failed", "pending"))
    )
    print(_table(rows))
    return 0


def cmd_study_export(args: argparse.Namespace) -> int:
    from classwise.study import STORE, Store, export

    path = _study_dir(args) / STORE
    if not path.exists():
        raise ClasswiseError(f"no results at {path}; run the study first (classwise study run {args.file})")
    out = Path(args.out or _study_dir(args) / f"per_class.{args.format}")
    print(f"wrote {export(Store(path), out, args.format)}")
    return 0


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="classwise", description=__doc__.split(":")[0] if __doc__ else None)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datasets", help="list datasets, their classes and sizes, and which are available locally")
    _add_data_root(p)
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("models", help="list architectures with parameter counts")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--input-shape", default="3x32x32", help="CxHxW used to count parameters (default 3x32x32)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("evaluate", help="per-class clean and robust accuracy of a checkpoint under attack")
    p.add_argument("--checkpoint", required=True, help="a classwise checkpoint (RUN/model.pt)")
    p.add_argument("--dataset", required=True, help="dataset name (classwise datasets) or path to class folders")
    _add_data_root(p)
    p.add_argument(
        "--attack",
        action="append",
        default=None,
        help="attack name or spec, repeatable: fgsm, pgd, pgd:loss=margin,restarts=5, autoattack, "
        "autoattack:version=custom,attacks=apgd-ce+square (default pgd)",
    )
    p.add_argument(
        "--eps",
        default=None,
        help="ε in pixel units, or a comma list: 0,2/255,4/255,8/255 (default: the ε the checkpoint was "
        "trained at, else 8/255 for Linf and 0.5 for L2)",
    )
    p.add_argument("--norm", default="Linf", help="threat model: Linf or L2 (default Linf)")
    p.add_argument("--steps", type=int, default=None, help="PGD iterations (default 20)")
    p.add_argument(
        "--step-size", type=_fraction, default=None, help="PGD step size in pixel units (default 2.5·ε/steps)"
    )
    p.add_argument("--restarts", type=int, default=None, help="PGD random restarts (default 1)")
    p.add_argument(
        "--loss", choices=["ce", "margin"], default=None, help="PGD loss: cross-entropy or CW margin (default ce)"
    )
    images = p.add_mutually_exclusive_group()
    images.add_argument("--n-per-class", type=int, default=None, help="evaluate the first N images of each class")
    images.add_argument(
        "--first-n",
        type=int,
        default=None,
        help="evaluate the first N images in dataset order (RobustBench's n_examples)",
    )
    p.add_argument("--split", default="test", help="the split to evaluate (default test)")
    p.add_argument(
        "--boundary-per-class",
        type=int,
        default=0,
        help="also measure the distance to the decision boundary of N evaluated images per class",
    )
    p.add_argument(
        "--cascade",
        action="store_true",
        help="attack only samples earlier attacks left robust (worst case only, faster)",
    )
    p.add_argument(
        "--targeted",
        default=None,
        metavar="CLASS|all",
        help="also attack every class toward CLASS (or toward every class): source × target matrix",
    )
    p.add_argument("--batch-size", type=int, default=256, help="images per attacked batch (default 256)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="seed of the attacks' randomness (default 0)")
    p.add_argument(
        "--out",
        required=True,
        help="folder for the results; a killed evaluation resumes there, a finished one is reused, never overwritten",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("train", help="train a model (standard or adversarial) with class-wise monitoring")
    add_train_options(p)
    p.add_argument("--out", default=None, help="new run folder (never overwritten)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    p.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument(
        "--no-cuda-graphs",
        action="store_true",
        help="on CUDA, run each training step eagerly instead of replaying it as a CUDA graph (to debug or compare)",
    )
    p.set_defaults(func=cmd_train)

    from classwise.gap import GAP_DEFAULTS

    p = sub.add_parser("gap", help="main job: standard vs adversarial training, per-class tables side by side")
    add_train_options(p, GAP_DEFAULTS)
    p.add_argument(
        "--variant",
        action="append",
        default=None,
        help="a method to compare, optionally with a balancing technique, repeatable: standard, pgd-at, "
        "pgd-at+focal:gamma=2, trades+frl:mode=both (default: standard and pgd-at)",
    )
    p.add_argument("--out", default="runs/gap", help="folder for the runs; re-running resumes (default runs/gap)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_gap)

    p = sub.add_parser("report", help="HTML page and Markdown summary for a run, a gap folder or a study")
    p.add_argument("path", help="a run folder, a folder of runs (classwise gap --out) or a study folder")
    p.add_argument("--out", required=True, help="folder for report.html and report.md")
    p.set_defaults(func=cmd_report)

    study = sub.add_parser("study", help="run a grid of trainings and evaluations from a YAML study file")
    study_sub = study.add_subparsers(dest="study_command", required=True)
    for name, func, text in (
        ("run", cmd_study_run, "expand and run (or resume) the study"),
        ("status", cmd_study_status, "done / running / failed / pending runs"),
        ("export", cmd_study_export, "per-class results as one tidy table"),
    ):
        p = study_sub.add_parser(name, help=text)
        p.add_argument("file", help="study YAML file (see studies/)")
        p.add_argument("--dir", default=None, help="study folder (default runs/<file name>)")
        p.set_defaults(func=func)
        if name == "run":
            p.add_argument("--executor", choices=["local", "ray"], default="local")
            p.add_argument("--workers", type=int, default=0, help="local worker processes (0: in this process)")
            p.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray instance)")
            p.add_argument("--device", default="auto")
            p.add_argument("--yes", action="store_true", help=f"run more than {CONFIRM_ABOVE} runs without asking")
        if name == "export":
            p.add_argument("--format", choices=["csv", "parquet"], default="csv")
            p.add_argument("--out", default=None, help="output file (default <study folder>/per_class.<format>)")
    return parser


def _fraction(text: str) -> float:
    from classwise.attacks import parse_eps

    return parse_eps(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except ClasswiseError as exc:
        print(f"classwise: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("classwise: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
