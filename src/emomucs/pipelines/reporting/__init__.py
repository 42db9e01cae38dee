"""Reporting: results tables."""

from .pipeline import create_pipeline, create_reporting_pipeline

__all__ = ["create_pipeline", "create_reporting_pipeline"]
