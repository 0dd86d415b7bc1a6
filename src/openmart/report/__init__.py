"""The HTML report: what a person would rather see than read."""

from openmart.report.html import write_report

__all__ = ["write_report"]
