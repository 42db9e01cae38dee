"""Predict: new audio files → valence and arousal by a trained variant's ensemble."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
