"""Features: log-mel spectrograms, chroma, constant-Q and waveforms of the mix and
the stems."""

from .pipeline import create_pipeline, create_stems_pipeline

__all__ = ["create_pipeline", "create_stems_pipeline"]
