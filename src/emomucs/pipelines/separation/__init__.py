"""Clips to stems (drums, bass, other, vocals) with a chosen separator."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
