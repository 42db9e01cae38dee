"""Nodes of separator training: split songs, train the compact HTDemucs, score it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from emomucs.separation import (
    ApplyOptions,
    TrainingOptions,
    evaluate_separator_sdr,
    group_stems,
    load_track,
    package_model,
    split_tracks,
    train_compact_separator,
)

logger = logging.getLogger(__name__)

AudioLoader = Callable[[], tuple[np.ndarray, int]]


def split_multitrack(
    multitrack: Mapping[str, AudioLoader], options: dict[str, Any]
) -> dict[str, list[str]]:
    """A seeded train/validation split of the multitrack songs, by song.

    Args:
        multitrack: ``"<track>/<source>" -> loader`` (MUSDB-style folder).
        options: ``separator_training`` parameters (``valid_fraction``, ``seed``).

    Raises:
        ValueError: No songs, a song without all four sources, or too few songs.
    """
    tracks = list(group_stems(multitrack))
    if not tracks:
        raise ValueError(
            "no multitrack songs to train the separator on: expected "
            "<track>/{drums,bass,other,vocals}.wav under the separator_training_stems "
            "folder (make them with `kedro run --pipeline=synthetic_corpus`)"
        )
    split = split_tracks(tracks, float(options["valid_fraction"]), int(options["seed"]))
    logger.info(
        "separator songs: %d train, %d validation",
        len(split["train"]),
        len(split["valid"]),
    )
    return split


def _training_options(options: dict[str, Any]) -> TrainingOptions:
    return TrainingOptions.from_options(
        {**options["training"], "seed": int(options["seed"])}
    )


def _load_songs(
    multitrack: Mapping[str, AudioLoader],
    songs: list[str],
    sample_rate: int,
    channels: int,
) -> dict[str, np.ndarray]:
    groups = group_stems(multitrack)
    return {
        song: load_track(song, groups[song], sample_rate, channels) for song in songs
    }


def train_separator(
    multitrack: Mapping[str, AudioLoader],
    split: dict[str, list[str]],
    options: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train the compact HTDemucs on the training songs.

    Returns:
        The model package (for a local Demucs repo) and the training history.
    """
    training = _training_options(options)
    songs = _load_songs(
        multitrack, split["train"], training.sample_rate, training.audio_channels
    )
    model, history = train_compact_separator(
        list(songs.values()), training, progress=bool(options.get("progress", True))
    )
    logger.info(
        "separator trained: %d steps in %.0f s, final loss %.4f",
        history["steps"],
        history["seconds"],
        float(np.mean(history["loss"][-20:])),
    )
    training_args = {**training.as_dict(), "train_songs": split["train"]}
    history = {**history, "train_songs": len(split["train"])}
    return package_model(model, training_args), history


def evaluate_separator(
    package: dict[str, Any],
    multitrack: Mapping[str, AudioLoader],
    split: dict[str, list[str]],
    options: dict[str, Any],
) -> dict[str, Any]:
    """SDR per source on the validation songs, for the model and the mix-as-estimate floor.

    The model is rebuilt from its saved package, so this scores what separation loads.
    """
    from demucs.states import load_model

    model = load_model(package)
    model.eval()
    songs = _load_songs(
        multitrack, split["valid"], int(model.samplerate), int(model.audio_channels)
    )
    apply = ApplyOptions.from_options(options.get("evaluation"))
    report = evaluate_separator_sdr(model, songs, apply, seed=int(options["seed"]))
    report["songs"] = split["valid"]
    report["sample_rate"] = int(model.samplerate)
    report["training_args"] = package.get("training_args", {})
    logger.info(
        "separator SDR on %d held-out songs: %.2f dB (floor %.2f dB, gain %.2f dB)",
        report["tracks"],
        report["mean"]["model_db"],
        report["mean"]["floor_db"],
        report["mean"]["gain_db"],
    )
    return report
