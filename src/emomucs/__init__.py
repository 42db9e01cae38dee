"""emomucs: music emotion recognition from separated sources (EmoMucs) in Kedro."""

__version__ = "0.1.0"

SOURCES = ("drums", "bass", "other", "vocals")
"""Demucs' four sources, in Demucs' own order."""
