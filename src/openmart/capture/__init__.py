"""Ingesting traffic captured by a serving platform itself (SageMaker Data Capture)."""
