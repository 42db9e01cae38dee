"""A tiny multitrack synthesiser for separation tests: four sources a model can tell apart.

Not a music generator: each source has its own spectral signature (percussive noise and
pitch-dropping kicks, low harmonics, mid-register chords, a vibrato melody), which is all
a separator needs to learn something measurable in a few seconds of training.
"""

from __future__ import annotations

import numpy as np

from emomucs import SOURCES


def _harmonics(freq: np.ndarray, sr: int, count: int, rng: np.random.Generator):
    phase = 2 * np.pi * np.cumsum(freq) / sr
    weights = 1 / np.arange(1, count + 1) ** rng.uniform(0.8, 1.6)
    return sum(w * np.sin(k * phase) for k, w in enumerate(weights, start=1))


def _notes(length: int, note_len: int, low: float, high: float, rng):
    """A piecewise-constant pitch line with one random note per ``note_len`` samples."""
    count = -(-length // note_len)
    semitones = rng.integers(0, 12, size=count)
    base = low * 2 ** (semitones / 12)
    base = np.clip(base * rng.choice([1, 2], size=count), low, high)
    return np.repeat(base, note_len)[:length]


def synth_track(seconds: float, sr: int, seed: int) -> dict[str, np.ndarray]:
    """One multitrack song: ``source -> (2, samples)`` float32 at ``sr``."""
    rng = np.random.default_rng(seed)
    length = int(seconds * sr)
    time = np.arange(length) / sr
    beat = int(sr * 60 / rng.uniform(90, 140))
    out = {}

    drums = np.zeros(length)
    for start in range(0, length, beat):
        t = np.arange(min(beat, length - start)) / sr
        kick = np.sin(2 * np.pi * (50 + 90 * np.exp(-t * 30)) * t) * np.exp(-t * 12)
        drums[start : start + t.size] += kick
        for half in (0, beat // 2):
            hat_start = start + half
            if hat_start >= length:
                continue
            n = min(beat // 4, length - hat_start)
            noise = np.diff(rng.standard_normal(n + 1))
            drums[hat_start : hat_start + n] += (
                0.3 * noise * np.exp(-np.arange(n) / sr * 60)
            )
    out["drums"] = drums

    bass_freq = _notes(length, beat, 41.0, 110.0, rng)
    out["bass"] = _harmonics(bass_freq, sr, 6, rng) * (0.6 + 0.4 * np.cos(np.pi * time))

    chord = np.zeros(length)
    root = _notes(length, 4 * beat, 220.0, 440.0, rng)
    for interval in (1.0, 1.26, 1.5):
        chord += _harmonics(root * interval, sr, 4, rng)
    out["other"] = chord / 3

    melody = _notes(length, beat // 2, 300.0, 900.0, rng)
    vibrato = 1 + 0.01 * np.sin(2 * np.pi * 5.5 * time)
    gate = (np.repeat(rng.random(-(-length // beat)) > 0.25, beat)[:length]).astype(
        float
    )
    out["vocals"] = _harmonics(melody * vibrato, sr, 8, rng) * gate

    tracks = {}
    for source in SOURCES:
        mono = out[source] / (np.abs(out[source]).max() + 1e-9)
        pan = rng.uniform(0.3, 0.7)
        gain = rng.uniform(0.1, 0.25)
        stereo = np.stack([mono * (1 - pan), mono * pan]) * 2 * gain
        tracks[source] = stereo.astype(np.float32)
    return tracks


def synth_multitrack(tracks: int, seconds: float, sr: int, seed: int = 0):
    """``"<track>/<source>" -> (array, sr)``, the AudioFolderDataset save/load shape."""
    data = {}
    for index in range(tracks):
        for source, audio in synth_track(seconds, sr, seed * 1000 + index).items():
            data[f"track{index:03d}/{source}"] = (audio, sr)
    return data
