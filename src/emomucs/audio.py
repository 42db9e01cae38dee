"""Audio containers and conversions shared by every stage.

Arrays are float32 shaped ``(channels, samples)``; stems add a leading source axis:
``(sources, channels, samples)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

AUDIO_EXTENSIONS = (".mp3", ".wav", ".flac")


class AudioError(ValueError):
    """Audio that cannot be used: unreadable, empty or otherwise broken."""


@dataclass
class AudioSet:
    """Audio of many tracks at one sample rate, keyed by musicId.

    Attributes:
        sample_rate: Sample rate in Hz shared by every track.
        audio: ``musicId -> array``; ``(channels, samples)`` for clips,
            ``(sources, channels, samples)`` for stems.
        sources: Names of the leading axis for stems, empty for clips.
        attrs: Free-form provenance (e.g. the separator identity), saved with the set.
    """

    sample_rate: int
    audio: dict[int, np.ndarray]
    sources: tuple[str, ...] = ()
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def music_ids(self) -> list[int]:
        return sorted(self.audio)

    def __len__(self) -> int:
        return len(self.audio)


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an mp3, wav or flac file as float32 ``(channels, samples)``.

    Raises:
        AudioError: The file is missing, empty, undecodable or holds no samples.
    """
    path = Path(path)
    if path.suffix.lower() not in AUDIO_EXTENSIONS:
        raise AudioError(f"{path.name}: unsupported audio extension {path.suffix!r}")
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path.name}: empty file (0 bytes)")
    try:
        data, sample_rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as error:  # libsndfile raises several types for broken input
        raise AudioError(f"{path.name}: cannot decode audio ({error})") from error
    if data.shape[0] == 0:
        raise AudioError(f"{path.name}: decoded to 0 samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{path.name}: decoded samples contain NaN or infinity")
    return np.ascontiguousarray(data.T), int(sample_rate)


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling along the last axis; a no-op when the rates match."""
    if source_rate == target_rate:
        return audio.astype(np.float32, copy=False)
    divisor = gcd(int(source_rate), int(target_rate))
    resampled = resample_poly(
        audio, target_rate // divisor, source_rate // divisor, axis=-1
    )
    return resampled.astype(np.float32)


def set_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """Down-mix to mono by averaging, or up-mix mono by copying; other changes fail."""
    current = audio.shape[-2]
    if current == channels:
        return audio
    if channels == 1:
        return audio.mean(axis=-2, keepdims=True, dtype=np.float32)
    if current == 1:
        return np.repeat(audio, channels, axis=-2)
    raise AudioError(f"cannot map {current} channels to {channels}")


def fix_length(audio: np.ndarray, samples: int) -> np.ndarray:
    """Cut or zero-pad at the end to exactly ``samples`` along the last axis."""
    current = audio.shape[-1]
    if current >= samples:
        return audio[..., :samples]
    padding = [(0, 0)] * (audio.ndim - 1) + [(0, samples - current)]
    return np.pad(audio, padding)
