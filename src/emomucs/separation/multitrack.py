"""Multitrack corpora for separator training: ``<track>/<source>`` audio, split by track."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import numpy as np

from emomucs import SOURCES
from emomucs.audio import resample, set_channels

logger = logging.getLogger(__name__)

AudioLoader = Callable[[], tuple[np.ndarray, int]]


def group_stems(stems: Mapping[str, AudioLoader]) -> dict[str, dict[str, AudioLoader]]:
    """``"<track>/<source>"`` keys grouped as ``track -> source -> loader``.

    Files named after anything but the four sources (a MUSDB ``mixture``, say) are
    ignored: the training mix is always the sum of the sources.

    Raises:
        ValueError: A track lacks one of the four sources.
    """
    tracks: dict[str, dict[str, AudioLoader]] = {}
    for key, loader in stems.items():
        track, _, source = key.rpartition("/")
        if track and source in SOURCES:
            tracks.setdefault(track, {})[source] = loader
    for track, sources in tracks.items():
        missing = [source for source in SOURCES if source not in sources]
        if missing:
            raise ValueError(f"track {track}: no {', '.join(missing)} stem")
    return dict(sorted(tracks.items()))


def load_track(
    track: str,
    loaders: Mapping[str, AudioLoader],
    sample_rate: int,
    channels: int,
) -> np.ndarray:
    """One track's sources as ``(4, channels, samples)`` float32 at ``sample_rate``.

    Sources of unequal length are cut to the shortest (a sample or two of resampling
    slack is common); a large mismatch is an error.
    """
    arrays = []
    for source in SOURCES:
        audio, rate = loaders[source]()
        arrays.append(resample(set_channels(audio, channels), rate, sample_rate))
    lengths = [array.shape[-1] for array in arrays]
    if max(lengths) - min(lengths) > sample_rate // 10:
        raise ValueError(
            f"track {track}: sources differ in length ({dict(zip(SOURCES, lengths, strict=True))} samples)"
        )
    shortest = min(lengths)
    return np.stack([array[..., :shortest] for array in arrays]).astype(np.float32)


def split_tracks(
    tracks: list[str], valid_fraction: float, seed: int, min_valid: int = 1
) -> dict[str, list[str]]:
    """A seeded train/validation split by track (never by excerpt, so no leakage).

    Raises:
        ValueError: Too few tracks to hold out ``min_valid`` and still train.
    """
    tracks = sorted(tracks)
    valid_count = max(min_valid, round(len(tracks) * valid_fraction))
    if len(tracks) - valid_count < 1:
        raise ValueError(
            f"{len(tracks)} multitrack songs cannot give {valid_count} validation "
            "songs and at least one training song"
        )
    order = np.random.default_rng(seed).permutation(len(tracks))
    valid = sorted(tracks[index] for index in order[:valid_count])
    train = sorted(tracks[index] for index in order[valid_count:])
    return {"train": train, "valid": valid}
