"""Short fingerprints that say whether two results came from the same inputs.

One definition of each, shared by the MLflow hook (run tags) and the experiment
summaries (which the results table compares):

- :func:`corpus_fingerprint`: the track ids and their labels;
- :func:`code_fingerprint`: the code that turns features into scores (models,
  training, feature extraction) and torch's version;
- :func:`source_fingerprint`: the package version and the source of some of its
  modules (what the split and stems caches key their entries by);
- :func:`settings_fingerprint`: any JSON-able settings.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

import emomucs

CODE_PACKAGES = ("models", "training", "pipelines/features")
"""Subpackages of emomucs whose source changes a variant's scores."""


def _digest(text: str | bytes, length: int = 12) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()[:length]


def corpus_fingerprint(track_table: pd.DataFrame) -> str:
    """12 hex digits of the sorted track ids and labels: equal only for the same
    tracks with the same labels."""
    columns = [c for c in ("musicId", "valence", "arousal") if c in track_table.columns]
    table = track_table[columns].sort_values(columns[:1]).round(6)
    return _digest(table.to_csv(index=False))


@functools.cache
def code_fingerprint() -> str:
    """12 hex digits of the package version, torch's version and the source of
    :data:`CODE_PACKAGES`: a change to a model, the training loop or the features
    changes it; one to reporting, plots or docs does not."""
    import torch

    root = Path(emomucs.__file__).parent
    digest = hashlib.sha256(f"{emomucs.__version__} {torch.__version__}".encode())
    for package in CODE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@functools.cache
def source_fingerprint(parts: tuple[str, ...]) -> str:
    """12 hex digits of the package version and the source of ``parts``: subpackages
    (``"training"``) or modules (``"audio_codec.py"``) of emomucs, relative to its
    root. Unlike :func:`code_fingerprint`, library versions are not included: the
    caches keep them as parts of their own, so a log can say which one changed."""
    root = Path(emomucs.__file__).parent
    digest = hashlib.sha256(emomucs.__version__.encode())
    for part in parts:
        path = root / part
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        if not files or not all(f.is_file() for f in files):
            raise FileNotFoundError(f"source_fingerprint: no emomucs source at {part}")
        for file in files:
            digest.update(str(file.relative_to(root)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def changed_parts(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> str:
    """Which parts of a cache key differ, for a log line: ``"code (a1b2 -> c3d4),
    settings.seed (0 -> 1)"``; nested dicts name their changed keys, long values are
    shortened to a fingerprint."""

    def show(value: Any) -> str:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        return text if len(text) <= 24 else settings_fingerprint(value)[:8]

    changes = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            changes.append(changed_parts(before, after, f"{prefix}{name}."))
        else:
            changes.append(f"{prefix}{name} ({show(before)} -> {show(after)})")
    return ", ".join(changes) or "nothing recorded"


def settings_fingerprint(settings: Any) -> str:
    """12 hex digits of JSON-able settings (key order does not matter)."""
    return _digest(json.dumps(settings, sort_keys=True, default=str))
