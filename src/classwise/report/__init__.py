"""Reports: a self-contained HTML page and a Markdown summary from stored results."""

from classwise.report.build import render, write_report
from classwise.report.collect import ModelResult, ReportData, collect

__all__ = ["ModelResult", "ReportData", "collect", "render", "write_report"]
