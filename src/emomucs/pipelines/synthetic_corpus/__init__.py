"""Synthetic corpus: the embedded PMEmo2019-format dataset with known labels and stems."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
