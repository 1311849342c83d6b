"""``python -m studies.findings``: regenerate docs/findings.md from the committed results."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from classwise.errors import ClasswiseError
from studies.findings.page import write_findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m studies.findings",
        description="docs/findings.md: the study's answers, from committed results only",
    )
    parser.add_argument("--results", default="results", help="folder of committed results (default results)")
    parser.add_argument("--out", default="docs/findings.md", help="Markdown file to write; figures go beside it")
    args = parser.parse_args(argv)
    try:
        out = write_findings(args.results, args.out)
    except ClasswiseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} (figures in {Path(args.out).parent / 'figures'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
