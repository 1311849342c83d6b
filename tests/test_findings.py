"""docs/findings.md is generated from the committed results, and says what they say."""

from __future__ import annotations

from pathlib import Path

import pytest

from classwise.cli import main
from classwise.evaluate import Spread, read_evaluation
from classwise.report.findings import ANCHORS, write_findings

ROOT = Path(__file__).resolve().parents[1]
PAPER = sorted((ROOT / "results" / "paper-scale").glob("*"))


def test_committed_findings_are_what_the_generator_writes(tmp_path: Path) -> None:
    out = write_findings(ROOT / "results", tmp_path / "findings.md")
    assert out.read_text() == (ROOT / "docs" / "findings.md").read_text(), "run: classwise findings"
    assert (tmp_path / "figures" / "paper-scale-per-class.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(not PAPER, reason="no paper-scale results committed")
def test_paper_scale_numbers_come_from_the_stored_evaluations(tmp_path: Path) -> None:
    text = write_findings(ROOT / "results", tmp_path / "findings.md").read_text()
    run = PAPER[0] / "pgd-at-preact18"
    ev = read_evaluation(run / "eval")
    pgd = Spread.of(ev.robust(ev.headline), ev.class_names)
    assert "| pgd-at | " in text and f"| {100 * pgd.overall:.1f} [" in text
    assert f"{pgd.worst_class} {100 * pgd.worst:.1f} [" in text
    aa = read_evaluation(next(p for p in PAPER[0].iterdir() if p.name.startswith("aa-pgd-at")))
    s = Spread.of(aa.robust(aa.headline), aa.class_names)
    verdict = abs(100 * s.mean - ANCHORS["pgd-at"].robust_mean) <= 3 and abs(100 * s.worst - 20.1) <= 3
    assert ("met." if verdict else "**not met**") in text.split("- pgd-at: AutoAttack", 1)[1].splitlines()[0]


def test_findings_without_results_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["findings", "--results", str(tmp_path), "--out", str(tmp_path / "f.md")]) == 2
    assert "holds no results yet" in capsys.readouterr().err
    assert not (tmp_path / "f.md").exists()
