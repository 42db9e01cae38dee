"""Clipping: one seeded fixed-length clip per chorus, at the rate separation expects."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from emomucs.audio import (
    AudioError,
    AudioSet,
    LazyAudio,
    describe_downmix,
    downmix_surround,
    fix_length,
    resample,
    set_channels,
)
from emomucs.errors import DatasetInputError
from emomucs.pipelines.ingestion.nodes import audio_key
from emomucs.progress import progress
from emomucs.rejections import Rejections

logger = logging.getLogger(__name__)


def choose_offset(music_id: int, available: int, wanted: int, seed: int) -> int:
    """A uniformly random clip start in samples, from a generator seeded per track.

    Seeding with ``(seed, musicId)`` makes a track's clip independent of which other
    tracks are in the run, unlike one generator shared across the loop.
    """
    latest_start = max(0, available - wanted)
    return int(np.random.default_rng([seed, music_id]).integers(0, latest_start + 1))


def _level_dbfs(audio: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return 20.0 * np.log10(rms) if rms > 0 else -np.inf


def _conform(
    audio: np.ndarray, rate: int, options: dict[str, Any]
) -> tuple[np.ndarray, dict[str, object]]:
    """Resample and map channels to the clip format, reporting what was changed."""
    channels = int(options["channels"])
    flags = {
        "source_sample_rate": rate,
        "source_channels": audio.shape[0],
        "resampled": rate != int(options["sample_rate"]),
        "channels_changed": audio.shape[0] != channels,
    }
    if audio.shape[0] > 2 and channels != audio.shape[0]:
        audio = downmix_surround(audio)
    audio = set_channels(audio, channels)
    return resample(audio, rate, int(options["sample_rate"])), flags


def _cut_clip(
    loader: Callable, offset: int, clip_samples: int, options: dict[str, Any]
) -> np.ndarray:
    """Decode a chorus again and cut its clip: the same samples as the first pass."""
    audio, source_rate = loader()
    audio, _ = _conform(audio, source_rate, options)
    clip = fix_length(audio[:, offset : offset + clip_samples], clip_samples)
    return np.ascontiguousarray(clip, dtype=np.float32)


def clip_choruses(
    tracks: pd.DataFrame, choruses: dict[str, Callable], options: dict[str, Any]
) -> tuple[AudioSet, pd.DataFrame, pd.DataFrame]:
    """Decode each chorus and cut one ``clip_seconds`` clip at a seeded random offset.

    Choruses shorter than the clip are zero-padded at the end (as in the paper). Each
    chorus is decoded once here to check it and draw its offset, and again when its
    clip is looked up (a :class:`~emomucs.audio.LazyAudio`), so the clips of the
    corpus are never in memory together.

    Args:
        tracks: Candidate tracks from ingestion (``musicId``, ``fileName``, ``duration``).
        choruses: ``key -> loader`` from the chorus folder dataset.
        options: ``clip_seconds``, ``seed``, ``sample_rate``, ``channels``,
            ``min_chorus_s``, ``silence_dbfs``, ``duration_tolerance_s``, ``on_bad_track``.

    Returns:
        The clips, a per-track table (offset, padding, seed, conversions) and rejections.
    """
    rate = int(options["sample_rate"])
    clip_samples = round(float(options["clip_seconds"]) * rate)
    seed = int(options["seed"])
    rejections = Rejections("clipping", options.get("on_bad_track", "skip"))
    clips: dict[int, Callable[[], np.ndarray]] = {}
    rows = []
    for raw_id, file_name, duration in progress(
        tracks[["musicId", "fileName", "duration"]].itertuples(index=False),
        total=len(tracks),
        desc="clipping",
        unit="track",
    ):
        music_id = int(raw_id)
        try:
            audio, source_rate = choruses[audio_key(file_name)]()
        except AudioError as error:
            rejections.add(music_id, f"unreadable audio: {error}")
            continue
        seconds = audio.shape[-1] / source_rate
        if abs(seconds - duration) > float(options["duration_tolerance_s"]):
            rejections.add(
                music_id,
                f"audio lasts {seconds:.1f} s but metadata duration is {duration:.1f} s "
                "(truncated or wrong file?)",
            )
            continue
        if seconds < float(options["min_chorus_s"]):
            rejections.add(
                music_id,
                f"chorus lasts {seconds:.1f} s, under min_chorus_s "
                f"{float(options['min_chorus_s']):g} s",
            )
            continue
        level = _level_dbfs(audio)
        if level < float(options["silence_dbfs"]):
            rejections.add(
                music_id,
                f"silent chorus ({level:.1f} dBFS, threshold {options['silence_dbfs']})",
            )
            continue
        audio, flags = _conform(audio, source_rate, options)
        if flags["source_channels"] > 2 and flags["channels_changed"]:
            logger.warning(
                "track %s: %d audio channels, %s; then to %s channel(s)",
                music_id,
                flags["source_channels"],
                describe_downmix(flags["source_channels"]),
                options["channels"],
            )
        offset = choose_offset(music_id, audio.shape[-1], clip_samples, seed)
        padding = max(0, clip_samples - (audio.shape[-1] - offset))
        clips[music_id] = partial(
            _cut_clip, choruses[audio_key(file_name)], offset, clip_samples, options
        )
        rows.append(
            {
                "musicId": music_id,
                "chorus_s": seconds,
                "offset_s": offset / rate,
                "padded_s": padding / rate,
                "seed": seed,
                **flags,
            }
        )
    table = pd.DataFrame(
        rows,
        columns=[
            "musicId",
            "chorus_s",
            "offset_s",
            "padded_s",
            "seed",
            "source_sample_rate",
            "source_channels",
            "resampled",
            "channels_changed",
        ],
    )
    padded = table[table["padded_s"] > 0]
    logger.info(
        "clipping: %d clips of %g s; %d zero-padded (mean %.1f s of padding)",
        len(table),
        float(options["clip_seconds"]),
        len(padded),
        padded["padded_s"].mean() if len(padded) else 0.0,
    )
    converted = table[table["resampled"] | table["channels_changed"]]
    if len(converted):
        logger.info(
            "clipping: %d tracks resampled or re-channelled: %s",
            len(converted),
            converted["musicId"].tolist(),
        )
    shapes = {music_id: (int(options["channels"]), clip_samples) for music_id in clips}
    clip_set = AudioSet(
        sample_rate=rate, audio=LazyAudio(clips, shapes), attrs={"kind": "clips"}
    )
    return clip_set, table, rejections.to_frame()


def finalise_tracks(
    candidates: pd.DataFrame,
    clip_table: pd.DataFrame,
    ingestion_rejections: pd.DataFrame,
    clip_rejections: pd.DataFrame,
    metadata: pd.DataFrame,
    options: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tracks every later stage uses, and every rejection with its reason.

    Raises:
        DatasetInputError: Fewer than ``min_surviving_fraction`` of the metadata rows survived.
    """
    tracks = candidates.merge(clip_table, on="musicId", how="inner", validate="1:1")
    rejected = pd.concat([ingestion_rejections, clip_rejections], ignore_index=True)
    fraction = len(tracks) / max(1, len(metadata))
    minimum = float(options["min_surviving_fraction"])
    if fraction < minimum:
        reasons = rejected["reason"].value_counts().head(5).to_dict()
        raise DatasetInputError(
            f"only {len(tracks)} of {len(metadata)} tracks survived ingestion and "
            f"clipping ({fraction:.0%} < min_surviving_fraction {minimum:.0%}); "
            f"most frequent reasons: {reasons}"
        )
    if len(rejected):
        logger.warning(
            "%d rejections recorded in rejected_tracks; %d tracks kept",
            len(rejected),
            len(tracks),
        )
    return tracks.sort_values("musicId").reset_index(drop=True), rejected
