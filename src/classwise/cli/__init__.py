"""``classwise <command>``: argument parsing and printing only; every command is one library call.

- :mod:`classwise.cli.parser`: the subcommands and their options;
- :mod:`classwise.cli.commands`: what each does (one library call, then printing).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from classwise.cli.commands import resolve_device, train_config
from classwise.cli.parser import build_parser, parse_args
from classwise.errors import ClasswiseError, os_error_message

__all__ = ["build_parser", "main", "parse_args", "resolve_device", "train_config"]


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
