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
    return parser


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
