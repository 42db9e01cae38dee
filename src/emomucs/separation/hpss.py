"""A separator that needs no training and no download: librosa's harmonic–percussive
split, as two stems, ``drums`` (percussive) and ``harmonic``.

Plugged in as a plain callable (``separation.separator.kind: callable``, ``target:
emomucs.separation.hpss:separate_harmonic_percussive``; docs/separators.md). Median
filtering of the spectrogram along time keeps sustained partials (harmonic), along
frequency broadband onsets (percussive) (Fitzgerald 2010). With ``margin`` 1 the two
soft masks sum to 1, so the stems add up to the input up to the STFT's round trip.
"""

from __future__ import annotations

import librosa
import numpy as np

STEMS = ("drums", "harmonic")


def separate_harmonic_percussive(
    audio: np.ndarray,
    sample_rate: int,
    kernel_size: int = 31,
    margin: float = 1.0,
    n_fft: int = 2048,
    hop_length: int = 512,
) -> dict[str, np.ndarray]:
    """Split a clip into its percussive (``drums``) and harmonic parts.

    Args:
        audio: ``(channels, samples)`` or ``(samples,)``; channels are down-mixed
            first (the project's stems are mono, and it halves the work).
        sample_rate: Of ``audio`` (the split itself does not depend on it).
        kernel_size: Median filter length, frames and bins (librosa's default).
        margin: Separation margin; above 1 leaves a residual in neither stem, so
            the stems no longer sum to the input.
        n_fft: STFT size.
        hop_length: STFT hop.

    Returns:
        ``{"drums": (1, samples), "harmonic": (1, samples)}`` float32.
    """
    mono = np.asarray(audio, dtype=np.float32)
    if mono.ndim == 2:
        mono = mono.mean(axis=0)
    if mono.ndim != 1:
        raise ValueError(f"HPSS: expected (channels, samples), got {audio.shape}")
    spectrum = librosa.stft(mono, n_fft=n_fft, hop_length=hop_length)
    harmonic, percussive = librosa.decompose.hpss(
        spectrum, kernel_size=kernel_size, margin=margin
    )
    length = mono.shape[-1]

    def back(part: np.ndarray) -> np.ndarray:
        signal = librosa.istft(part, hop_length=hop_length, n_fft=n_fft, length=length)
        return signal.astype(np.float32)[None]

    return {"drums": back(percussive), "harmonic": back(harmonic)}


separate_harmonic_percussive.sources = STEMS
