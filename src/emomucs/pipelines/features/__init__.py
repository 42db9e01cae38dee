"""Features: log-mel spectrograms and waveforms of the mix and the stems."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
