"""Features: log-mel spectrograms, harmonic front ends (chroma, constant-Q) and mono
waveforms of the mix and of each stem.

Every representation comes out as one feature set per input (see
:mod:`emomucs.training.data`): a ``(tracks, sources, ...)`` tensor with the track
ids and the settings that made it. No statistics are fitted here: any
standardisation is fitted inside training, on each split's training part only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

import librosa
import numpy as np
import torch
from tqdm.auto import tqdm

from emomucs.audio import AudioSet, fix_length, is_lazy, resample, set_channels
from emomucs.device import one_blas_thread
from emomucs.fanout import in_chunks, map_in_order
from emomucs.progress import progress, quiet_progress
from emomucs.training.data import FeatureSet

MIX = "mix"


def _source_names(audio: AudioSet) -> list[str]:
    return list(audio.sources) if audio.sources else [MIX]


def _mono_sources(
    audio: AudioSet, music_id: int, sample_rate: int, what: str
) -> np.ndarray:
    """One track as mono ``(sources, samples)`` at ``sample_rate``."""
    array = np.asarray(audio.audio[music_id], dtype=np.float32)
    expected = 3 if audio.sources else 2
    if array.ndim != expected:
        shape = (
            "(sources, channels, samples)" if audio.sources else "(channels, samples)"
        )
        raise ValueError(
            f"track {music_id}: {what} audio has shape {array.shape}, expected {shape}"
        )
    if not audio.sources:
        array = array[None]
    if array.shape[0] != len(_source_names(audio)):
        raise ValueError(
            f"track {music_id}: {what} has {array.shape[0]} sources, "
            f"expected {len(audio.sources)} {list(audio.sources)}"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"track {music_id}: {what} audio contains NaN or infinity")
    mono = set_channels(array, 1)[:, 0]
    return resample(mono, audio.sample_rate, sample_rate)


def _common_length(
    audio: AudioSet, sample_rate: int, tolerance_s: float, what: str
) -> int:
    """The longest track's length at ``sample_rate``; fail when a track is much
    shorter. Read from the shapes, before any decoding work.

    Clips are cut to one length upstream, so a large difference means a broken
    clip or stem, not something to pad away silently.
    """
    lengths = {
        # resample_poly's output length.
        music_id: math.ceil(audio.shape(music_id)[-1] * sample_rate / audio.sample_rate)
        for music_id in audio.music_ids
    }
    longest = max(lengths.values())
    for music_id, length in lengths.items():
        if longest - length > tolerance_s * sample_rate:
            raise ValueError(
                f"track {music_id}: {what} is {length / sample_rate:.2f} s long, "
                f"others up to {longest / sample_rate:.2f} s"
            )
    return longest


def _feature_set(
    audio: AudioSet,
    representation: str,
    music_ids: list[int],
    values: np.ndarray,
    sample_rate: int,
    settings: dict[str, Any],
) -> FeatureSet:
    return {
        "representation": representation,
        "sources": _source_names(audio),
        "music_ids": torch.as_tensor(music_ids, dtype=torch.int64),
        "values": torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)),
        "sample_rate": int(sample_rate),
        "settings": {
            **settings,
            "audio_attrs": {k: str(v) for k, v in audio.attrs.items()},
        },
    }


def _track_length(audio: AudioSet, options: dict[str, Any], what: str) -> int:
    """The samples every track is cut or padded to at the features' rate; fails on
    no tracks or a much shorter one (:func:`_common_length`)."""
    if len(audio) == 0:
        raise ValueError(f"{what}: no tracks")
    rate = int(options["sample_rate"])
    return _common_length(audio, rate, float(options["length_tolerance_s"]), what)


def _mono_tracks(
    audio: AudioSet, options: dict[str, Any], what: str, step: str
) -> Iterator[tuple[int, np.ndarray]]:
    """Each track as mono ``(sources, samples)`` at one rate and length, in id order.

    One track at a time, so memory holds the input and the output, not a third copy.
    """
    rate = int(options["sample_rate"])
    length = _track_length(audio, options, what)
    for music_id in progress(audio.music_ids, desc=f"{what}: {step}"):
        yield music_id, fix_length(_mono_sources(audio, music_id, rate, what), length)


def log_mel(
    audio: np.ndarray,
    sample_rate: int,
    n_mels: int,
    n_fft: int,
    hop_length: int,
    top_db: float,
) -> np.ndarray:
    """Power mel spectrograms in dB relative to each signal's own maximum, floored
    ``top_db`` below it: librosa's ``melspectrogram`` then ``power_to_db(ref=np.max)``,
    as the original, computed for all sources of a track at once.

    Args:
        audio: Mono signals ``(sources, samples)``.

    Returns:
        ``(sources, n_mels, 1 + samples // hop_length)`` float32 in
        ``[-top_db, 0]``. Digital silence gives all zeros (librosa's behaviour with
        ``ref=max``), as in the original.
    """
    spectrum = np.abs(librosa.stft(audio, n_fft=n_fft, hop_length=hop_length)) ** 2
    # A matrix product (BLAS), as librosa's own melspectrogram does: np.einsum
    # without optimize loops in C and made this function 5x slower than librosa
    # file by file (benchmarks/results/features.md).
    power = np.matmul(_mel_basis(sample_rate, n_fft, n_mels), spectrum)
    return np.stack([librosa.power_to_db(p, ref=np.max, top_db=top_db) for p in power])


@lru_cache(maxsize=8)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)


def _constant_q_magnitude(
    audio: np.ndarray,
    sample_rate: int,
    n_bins: int,
    bins_per_octave: int,
    fmin_note: str,
    hop_length: int,
) -> np.ndarray:
    return np.abs(
        librosa.cqt(
            audio,
            sr=sample_rate,
            hop_length=hop_length,
            fmin=librosa.note_to_hz(fmin_note),
            n_bins=n_bins,
            bins_per_octave=bins_per_octave,
        )
    )


def constant_q(
    audio: np.ndarray,
    sample_rate: int,
    n_bins: int,
    bins_per_octave: int,
    fmin_note: str,
    hop_length: int,
    top_db: float,
) -> np.ndarray:
    """Constant-Q power spectrograms in dB relative to each signal's maximum,
    floored ``top_db`` below it (as :func:`log_mel`): one bin per semitone by
    default, where 40 mel bands put several semitones in one band.

    Args:
        audio: Mono signals ``(sources, samples)``.

    Returns:
        ``(sources, n_bins, 1 + samples // hop_length)`` float32 in ``[-top_db, 0]``.
    """
    power = (
        _constant_q_magnitude(
            audio, sample_rate, n_bins, bins_per_octave, fmin_note, hop_length
        )
        ** 2
    )
    return np.stack([librosa.power_to_db(p, ref=np.max, top_db=top_db) for p in power])


def chroma(
    audio: np.ndarray,
    sample_rate: int,
    n_chroma: int,
    bins_per_octave: int,
    n_octaves: int,
    fmin_note: str,
    hop_length: int,
) -> np.ndarray:
    """Chromagrams: the constant-Q spectrum folded onto pitch classes, each frame
    scaled to its largest class (librosa's ``chroma_cqt``), so key and chords show
    whatever the octave and loudness.

    Args:
        audio: Mono signals ``(sources, samples)``.

    Returns:
        ``(sources, n_chroma, 1 + samples // hop_length)`` float32 in ``[0, 1]``;
        silent frames are 0.
    """
    magnitude = _constant_q_magnitude(
        audio,
        sample_rate,
        n_octaves * bins_per_octave,
        bins_per_octave,
        fmin_note,
        hop_length,
    )
    return librosa.feature.chroma_cqt(
        C=magnitude,
        sr=sample_rate,
        hop_length=hop_length,
        fmin=librosa.note_to_hz(fmin_note),
        n_chroma=n_chroma,
        bins_per_octave=bins_per_octave,
    ).astype(np.float32)


SPECTRAL = {"log_mel": log_mel, "chroma": chroma, "cqt": constant_q}
"""Representation -> the function computing it for one track's mono sources
``(sources, samples)``, called with the representation's settings."""


def spectral_chunk(
    music_ids: tuple[int, ...],
    audio: AudioSet,
    compute: Callable[..., np.ndarray],
    settings: dict[str, Any],
    rate: int,
    length: int,
    what: str,
) -> np.ndarray:
    """One fan-out task of :func:`_spectral_features`: ``(tracks, ...)`` of
    ``music_ids``, decoded and computed one track at a time."""
    with one_blas_thread():
        return np.stack(
            [
                compute(
                    fix_length(_mono_sources(audio, music_id, rate, what), length),
                    rate,
                    **settings,
                )
                for music_id in music_ids
            ]
        ).astype(np.float32, copy=False)


def _spectral_features(
    audio: AudioSet, options: dict[str, Any], representation: str
) -> FeatureSet:
    what = "stems" if audio.sources else "mix"
    length = _track_length(audio, options, what)
    block = options[representation]
    settings = {key: block[key] for key in sorted(block)}
    rate = int(options["sample_rate"])
    ids = audio.music_ids
    step = representation.replace("_", "-")
    bar = tqdm(total=len(ids), desc=f"{what}: {step}", disable=quiet_progress())
    with bar:
        # each task decodes its own tracks, so the corpus is never in memory whole
        chunks = map_in_order(
            spectral_chunk,
            in_chunks(ids),
            shared={
                "audio": audio,
                "compute": SPECTRAL[representation],
                "settings": settings,
                "rate": rate,
                "length": length,
                "what": what,
            },
            label=f"{what}-{step}",
            on_done=lambda job, _: bar.update(len(job)),
            # audio held in memory would be copied whole to every worker
            workers=options.get("workers", 1) if is_lazy(audio) else 1,
        )
    values = np.concatenate(chunks)
    return _feature_set(audio, representation, ids, values, rate, settings)


def compute_log_mel(audio: AudioSet, options: dict[str, Any]) -> FeatureSet:
    """Log-mel spectrograms of every track and source.

    Args:
        audio: The mix (clips) or the stems, keyed by musicId.
        options: ``sample_rate``, ``length_tolerance_s`` and ``log_mel``
            (``n_mels``, ``n_fft``, ``hop_length``, ``top_db``).

    Returns:
        A ``log_mel`` feature set, ``(tracks, sources, n_mels, frames)``; 862 frames
        for 20 s at 22,050 Hz with hop 512.
    """
    return _spectral_features(audio, options, "log_mel")


def compute_chroma(audio: AudioSet, options: dict[str, Any]) -> FeatureSet:
    """Chromagrams of every track and source (:func:`chroma`).

    Args:
        audio: The mix (clips) or the stems, keyed by musicId.
        options: ``sample_rate``, ``length_tolerance_s`` and ``chroma``
            (``n_chroma``, ``bins_per_octave``, ``n_octaves``, ``fmin_note``,
            ``hop_length``).

    Returns:
        A ``chroma`` feature set, ``(tracks, sources, n_chroma, frames)``.
    """
    return _spectral_features(audio, options, "chroma")


def compute_constant_q(audio: AudioSet, options: dict[str, Any]) -> FeatureSet:
    """Constant-Q spectrograms in dB of every track and source (:func:`constant_q`).

    Args:
        audio: The mix (clips) or the stems, keyed by musicId.
        options: ``sample_rate``, ``length_tolerance_s`` and ``cqt`` (``n_bins``,
            ``bins_per_octave``, ``fmin_note``, ``hop_length``, ``top_db``).

    Returns:
        A ``cqt`` feature set, ``(tracks, sources, n_bins, frames)``.
    """
    return _spectral_features(audio, options, "cqt")


def collect_waveforms(audio: AudioSet, options: dict[str, Any]) -> FeatureSet:
    """Mono waveforms of every track and source, one length, at ``sample_rate``.

    Args:
        audio: The mix (clips) or the stems, keyed by musicId.
        options: ``sample_rate`` and ``length_tolerance_s``.

    Returns:
        A ``waveform`` feature set, ``(tracks, sources, samples)``.
    """
    what = "stems" if audio.sources else "mix"
    values = None
    for row, (_, track) in enumerate(_mono_tracks(audio, options, what, "waveform")):
        if values is None:
            values = np.empty((len(audio), *track.shape), dtype=np.float32)
        values[row] = track
    rate = int(options["sample_rate"])
    return _feature_set(audio, "waveform", audio.music_ids, values, rate, {})
