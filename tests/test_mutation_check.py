"""The mutation check (tests/mutation_check.py) keeps working: one planted bug, caught, and every
line it plants a bug in still exists in the source."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.mutation_check import BUGS, ROOT


def test_every_planted_bug_names_a_line_that_exists() -> None:
    for bug in BUGS:
        source = (ROOT / "src" / "classwise" / bug.path).read_text()
        assert source.count(bug.old) >= 1, f"{bug.name}: its line left {bug.path}; update tests/mutation_check.py"
        assert bug.old != bug.new


def test_one_planted_bug_is_caught_in_a_copy_and_the_tree_is_untouched() -> None:
    before = (ROOT / "src" / "classwise" / "evaluate" / "metrics.py").read_text()
    done = subprocess.run(
        [sys.executable, str(Path(ROOT, "tests", "mutation_check.py")), "--only", "wilson-centre"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 of 1 planted bugs caught" in done.stdout
    assert (ROOT / "src" / "classwise" / "evaluate" / "metrics.py").read_text() == before
