"""``classwise <command>``: argument parsing and printing only; every command is one library call."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from classwise.errors import ClasswiseError

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


def dataset_title(ds: object) -> str:
    notes = getattr(ds, "notes", ())
    return f"{getattr(ds, 'name', ds)}" + (f" ({'; '.join(notes)})" if notes else "")


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from classwise.attacks import build_attack, parse_eps_list
    from classwise.data import load_dataset
    from classwise.evaluate import (
        evaluate,
        format_eps_curve,
        format_flows,
        format_table,
        format_targeted,
        targeted_matrix,
        write_evaluation,
    )
    from classwise.models import load_checkpoint

    eps = parse_eps_list(args.eps)
    options = {
        "steps": args.steps,
        "step_size": args.step_size,
        "restarts": args.restarts,
        "loss": args.loss,
        "seed": args.seed,
    }
    for spec in args.attack:  # validate every attack at every ε before any work
        for e in eps:
            build_attack(spec, e, args.norm, **options)
    ds = load_dataset(args.dataset, root=args.data_root)
    model, meta = load_checkpoint(args.checkpoint, num_classes=ds.num_classes, device=resolve_device(args.device))
    trained_on = meta.get("class_names")
    if trained_on and list(trained_on) != list(ds.class_names):
        print(
            f"warning: checkpoint classes {trained_on} differ from dataset classes {list(ds.class_names)}",
            file=sys.stderr,
        )
    target = _target_index(args.targeted, ds.class_names) if args.targeted else None
    ev = evaluate(
        model,
        ds,
        args.attack,
        eps,
        norm=args.norm,
        split=args.split,
        n_per_class=args.n_per_class,
        batch_size=args.batch_size,
        seed=args.seed,
        cascade=args.cascade,
        attack_options=options,
    )
    subset = f", first {args.n_per_class} per class" if args.n_per_class else ", full split"
    print(format_table(ev, f"{dataset_title(ds)} [{args.split}{subset}] {args.checkpoint}"))
    print()
    print(format_flows(ev, ev.worst[-1]))
    if len(eps) > 1:
        print()
        print(format_eps_curve(ev))
    targeted = None
    if target is not None:
        from classwise.attacks import PGD

        attack = PGD(
            eps=max(eps), norm=args.norm, steps=args.steps or 20, step_size=args.step_size, loss=args.loss or "ce"
        )
        samples = ds.splits()[args.split].take(torch.from_numpy(ev.index))  # the same images as above
        targeted = targeted_matrix(
            model,
            samples,
            ds.class_names,
            attack,
            None if isinstance(target, str) else [target],
            batch_size=args.batch_size,
            seed=args.seed,
        )
        print()
        print(format_targeted(targeted))
    for w in ev.warnings:
        print(f"warning: {w}", file=sys.stderr)
    paths = write_evaluation(ev, args.out, targeted, {"checkpoint": str(args.checkpoint), "dataset": ds.describe()})
    print(f"\nwrote {', '.join(str(p) for p in paths)}")
    return 0


def _target_index(text: str, classes: tuple[str, ...]) -> int | str:
    from classwise.errors import ConfigError

    if text == "all":
        return "all"
    if text in classes:
        return classes.index(text)
    if text.isdigit() and int(text) < len(classes):
        return int(text)
    raise ConfigError(f"--targeted takes 'all', a class name or index; classes: {', '.join(classes)}")


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
    p.add_argument("--eps", default="8/255", help="ε in pixel units, or a comma list: 0,2/255,4/255,8/255")
    p.add_argument("--norm", default="Linf", help="Linf or L2")
    p.add_argument("--steps", type=int, default=20, help="PGD steps (default 20)")
    p.add_argument("--step-size", type=_fraction, default=None, help="PGD step size (default 2.5·ε/steps)")
    p.add_argument("--restarts", type=int, default=None, help="PGD restarts (default 1)")
    p.add_argument("--loss", choices=["ce", "margin"], default=None, help="PGD loss (default ce)")
    p.add_argument("--n-per-class", type=int, default=None, help="evaluate the first N test images of each class")
    p.add_argument("--split", default="test")
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
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="folder for evaluation.json, per_class.csv, samples.csv")
    p.set_defaults(func=cmd_evaluate, attack_default=["pgd"])
    return parser


def _fraction(text: str) -> float:
    from classwise.attacks import parse_eps

    return parse_eps(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "attack_default", None) and not args.attack:
        args.attack = args.attack_default
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
