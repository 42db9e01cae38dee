"""Training the compact HTDemucs separator that the offline run uses by default."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
