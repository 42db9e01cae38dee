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


def make_note_corpus(
    n_tracks: int = 96, seconds: float = 3.0, seed: int = 0
) -> tuple[pd.DataFrame, AudioSet]:
    """``track_table`` and a one-source ``vocals`` stem set whose valence is the
    pitch of three short notes (0.25 s) at random times over faint noise.

    The cue is the same wherever the notes fall, so a model that summarises over
    time can learn it from few tracks; one with weights per time position has to
    learn it at every position. Arousal is random (nothing carries it).
    """
    rng = np.random.default_rng(seed)
    note = int(0.25 * SAMPLE_RATE)
    t = np.arange(note) / SAMPLE_RATE
    stems, rows = {}, []
    for n in range(n_tracks):
        music_id = 2000 + 3 * n
        valence = rng.uniform(-1, 1)
        audio = 0.01 * rng.standard_normal(int(seconds * SAMPLE_RATE))
        for start in rng.integers(0, len(audio) - note, size=3):
            audio[start : start + note] += 0.3 * np.sin(
                2 * np.pi * 200 * 2 ** (2.5 * (valence + 1)) * t
            )
        stems[music_id] = audio.astype(np.float32)[None, None]
        rows.append(
            {"musicId": music_id, "valence": valence, "arousal": rng.uniform(-1, 1)}
        )
    attrs = {"separator": "truth"}
    return pd.DataFrame(rows), AudioSet(
        SAMPLE_RATE, stems, sources=["vocals"], attrs=attrs
    )
