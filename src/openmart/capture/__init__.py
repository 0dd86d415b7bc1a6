"""Ingesting traffic and ground truth a serving platform captured itself, through the provider
that declares the capability (see :mod:`openmart.capture.ingest`)."""

from openmart.capture.ingest import IngestReport, ingest_capture, ingest_ground_truth

__all__ = ["IngestReport", "ingest_capture", "ingest_ground_truth"]
