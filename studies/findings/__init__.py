"""The study's write-up: ``docs/findings.md``, generated from the committed results in ``results/``
with classwise's public API only. Run it from the repository root::

    python -m studies.findings            # results/ -> docs/findings.md and docs/figures/

Copy a finished study or run into ``results/`` first with ``classwise snapshot``. The published
numbers the page compares with, and the targets the study's issues set, are data
(``anchors.yaml``), each with its source."""

from studies.findings.page import write_findings

__all__ = ["write_findings"]
