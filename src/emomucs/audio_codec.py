"""Compact storage of float audio: 16-bit FLAC scaled to each signal's own peak.

Clips, mix, stems and the stems cache are stored this way, a third to a quarter of
their float32 size. Each row (one channel of one source) is divided by its own peak before
rounding to 16 bits, so the rounding error stays about 96 dB below that row's peak
whatever its level: a quiet stem keeps its detail, and the log-mel features, which are
in dB relative to each source's maximum and floored 80 dB below it, move by at most a
few tenths of a dB (0.38 dB at most on the corpus' true stems,
``benchmarks/results/footprint.md``; float16 moved them by up to 1.5 dB at half the size). FLAC itself is lossless and deterministic, so a rerun that
makes the same audio writes the same bytes.

Arrays FLAC cannot hold (more than 8 rows, NaN or infinity, no samples) are kept as
float32: :func:`encode` returns None for them.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

FLAC_MAX_CHANNELS = 8
_FULL_SCALE = 32767

QUANTISATION_STEP = 1.0 / _FULL_SCALE
"""The largest error of a decoded sample, relative to its row's peak, is half this."""


def encode(audio: np.ndarray, sample_rate: int) -> tuple[bytes, list[float]] | None:
    """``(..., samples)`` float audio as FLAC bytes and one peak scale per row.

    Returns:
        ``(flac_bytes, scales)``, or None when FLAC cannot hold the array.
    """
    audio = np.asarray(audio)
    rows = audio.reshape(-1, audio.shape[-1]) if audio.ndim else audio.reshape(1, 1)
    if (
        audio.ndim == 0
        or rows.shape[0] > FLAC_MAX_CHANNELS
        or rows.shape[0] == 0
        or rows.shape[1] == 0
        or not np.isfinite(rows).all()
    ):
        return None
    peaks = np.abs(rows).max(axis=1).astype(np.float32)
    peaks[peaks == 0] = 1.0
    # float64 so that decoding (ints * peak / full scale) gives the peaks back exactly
    ints = np.round(rows / peaks[:, None].astype(np.float64) * _FULL_SCALE)
    buffer = io.BytesIO()
    sf.write(
        buffer,
        ints.astype(np.int16).T,
        int(sample_rate),
        format="FLAC",
        subtype="PCM_16",
    )
    return buffer.getvalue(), [float(peak) for peak in peaks]


def decode(data: bytes, scales: list[float], shape: tuple[int, ...]) -> np.ndarray:
    """The float32 array :func:`encode` stored, within half a step of each row's peak."""
    ints, _ = sf.read(io.BytesIO(bytes(data)), dtype="int16", always_2d=True)
    peaks = np.asarray(scales, dtype=np.float32).astype(np.float64)
    if ints.shape[1] != len(peaks):
        raise ValueError(
            f"FLAC holds {ints.shape[1]} channels, its scales name {len(peaks)}"
        )
    rows = ints.T * peaks[:, None] / _FULL_SCALE  # exact at the peaks
    return rows.astype(np.float32).reshape(shape)
