"""Reports: a self-contained HTML page and a Markdown summary from stored results."""

from classwise.history import Epoch, Validation
from classwise.report import figures
from classwise.report.build import render, write_report
from classwise.report.collect import ModelResult, ReportData, collect, model_from_folder
from classwise.report.headline import mean_with_interval, pct, unreadable, weakest
from classwise.report.why import correlations

__all__ = [
    "Epoch",
    "ModelResult",
    "ReportData",
    "Validation",
    "collect",
    "correlations",
    "figures",
    "mean_with_interval",
    "model_from_folder",
    "pct",
    "render",
    "unreadable",
    "weakest",
    "write_report",
]
