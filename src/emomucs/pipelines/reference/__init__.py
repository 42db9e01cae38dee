"""Reference: a ridge regression on per-band log-mel statistics, the bar for the
networks and the proof that a corpus' cues are visible in the paper's features."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
