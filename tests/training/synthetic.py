"""Synthetic tracks whose labels are a function of their sources' content.

Valence follows the pitch of a tone in ``vocals``, arousal the pitch of a tone in
``drums``; ``bass`` and ``other`` are label-free distractors. Pitch moves energy
across mel bands, which survives the per-clip ``ref=max`` dB scaling.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emomucs import SOURCES
from emomucs.audio import AudioSet

SAMPLE_RATE = 22050


def _tone(freq: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = rng.uniform(0, 2 * np.pi)
    return (0.3 * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def make_corpus(
    n_tracks: int = 24, seconds: float = 2.0, seed: int = 0
) -> tuple[pd.DataFrame, AudioSet, AudioSet]:
    """``track_table``, ``mix`` (mono clips) and ``stems`` (4 mono sources).

    Labels are in [-1, 1]: each is the log-pitch of its tone, rescaled.
    """
    rng = np.random.default_rng(seed)
    mix, stems, rows = {}, {}, []
    for n in range(n_tracks):
        music_id = 1000 + 7 * n  # not 0..n-1, so ids and row positions differ
        valence, arousal = rng.uniform(-1, 1, size=2)
        vocals = _tone(200 * 2 ** (2.5 * (valence + 1)), seconds, rng)  # 200-6400 Hz
        drums = _tone(100 * 2 ** (2.5 * (arousal + 1)), seconds, rng)  # 100-3200 Hz
        bass = _tone(rng.uniform(40, 200), seconds, rng)
        other = (0.05 * rng.standard_normal(vocals.shape)).astype(np.float32)
        by_name = {"drums": drums, "bass": bass, "other": other, "vocals": vocals}
        sources = np.stack([by_name[s] for s in SOURCES])[:, None]
        stems[music_id] = sources
        mix[music_id] = sources.sum(axis=0)
        rows.append({"musicId": music_id, "valence": valence, "arousal": arousal})
    table = pd.DataFrame(rows)
    return (
        table,
        AudioSet(SAMPLE_RATE, mix),
        AudioSet(SAMPLE_RATE, stems, sources=SOURCES, attrs={"separator": "truth"}),
    )
