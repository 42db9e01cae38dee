"""Clips to stems (drums, bass, other, vocals) with a chosen separator; other
separators' stems (e.g. the harmonic–percussive split) in their own namespaces."""

from .pipeline import OTHER_SEPARATORS, create_other_separator_pipeline, create_pipeline

__all__ = ["OTHER_SEPARATORS", "create_other_separator_pipeline", "create_pipeline"]
