"""Nodes of the separation pipeline: clips in, mono stems and mix at the feature rate out."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emomucs import SOURCES
from emomucs.audio import AudioSet, LazyAudio, fix_length, resample, set_channels
from emomucs.device import torch_threads
from emomucs.errors import DatasetInputError
from emomucs.separation import (
    ApplyOptions,
    SeparatorSpec,
    StemsCache,
    load_separator,
    score_stems,
    separate_tracks,
)

logger = logging.getLogger(__name__)

AudioLoader = Callable[[], tuple[np.ndarray, int]]

ORACLE = "oracle"


def _to_output(
    audio: np.ndarray, rate: int, output_rate: int, samples: int
) -> np.ndarray:
    return fix_length(resample(set_channels(audio, 1), rate, output_rate), samples)


def _output_samples(clips: AudioSet, music_id: int, output_rate: int) -> int:
    return round(clips.shape(music_id)[-1] * output_rate / clips.sample_rate)


def _cut_oracle_track(
    loaders: list[AudioLoader],
    offset_s: float,
    seconds: float,
    output_rate: int,
    samples: int,
) -> np.ndarray:
    stems = []
    for loader in loaders:
        stem, rate = loader()
        start = round(offset_s * rate)
        excerpt = fix_length(stem[..., start:], math.ceil(seconds * rate))
        stems.append(_to_output(excerpt, rate, output_rate, samples))
    return np.stack(stems)


def _downmix_track(
    clips: AudioSet, music_id: int, output_rate: int, samples: int
) -> np.ndarray:
    return _to_output(clips.audio[music_id], clips.sample_rate, output_rate, samples)


def cut_oracle_stems(
    clips: AudioSet,
    clip_table: pd.DataFrame,
    oracle_stems: Mapping[str, AudioLoader],
    options: dict[str, Any],
) -> AudioSet:
    """The true stems of each clip's excerpt, mono at the output rate.

    The excerpt is the clip's: ``offset_s`` from ``clip_table``, as long as the clip,
    zero-padded past the end of the song as the clip was. Tracks without stems are left
    out; a corpus without any gives an empty set (oracle separation then fails, and
    scoring reports that it had nothing to compare with). Each track is cut when it
    is looked up (a :class:`~emomucs.audio.LazyAudio`), so the true stems of the
    corpus are never in memory together.

    Args:
        clips: The clips, for their ids, lengths and rate.
        clip_table: ``musicId`` and ``offset_s`` of each clip.
        oracle_stems: ``"<musicId>/<source>" -> loader`` (an AudioFolderDataset).
        options: ``separation`` parameters (``output_sample_rate``).
    """
    output_rate = int(options["output_sample_rate"])
    offsets = clip_table.set_index("musicId")["offset_s"]
    loaders: dict[int, Callable[[], np.ndarray]] = {}
    shapes: dict[int, tuple[int, ...]] = {}
    for music_id in clips.music_ids:
        keys = [f"{music_id}/{source}" for source in SOURCES]
        present = [key in oracle_stems for key in keys]
        if not any(present):
            continue
        if not all(present):
            missing = [s for s, p in zip(SOURCES, present, strict=True) if not p]
            raise DatasetInputError(
                f"track {music_id}: oracle stems lack {', '.join(missing)}"
            )
        if music_id not in offsets.index:
            raise ValueError(f"track {music_id}: no row in clip_table for its offset")
        seconds = clips.shape(music_id)[-1] / clips.sample_rate
        samples = _output_samples(clips, music_id, output_rate)
        loaders[music_id] = partial(
            _cut_oracle_track,
            [oracle_stems[key] for key in keys],
            float(offsets.loc[music_id]),
            seconds,
            output_rate,
            samples,
        )
        shapes[music_id] = (len(SOURCES), 1, samples)
    audio = LazyAudio(loaders, shapes)
    if audio and len(audio) < len(clips):
        logger.warning("oracle stems exist for %d of %d clips", len(audio), len(clips))
    return AudioSet(output_rate, audio, SOURCES, {"separator": ORACLE})


def separate_sources(
    clips: AudioSet,
    oracle_clip_stems: AudioSet,
    options: dict[str, Any],
    separator: dict[str, Any] | None = None,
) -> AudioSet:
    """Stems of every clip with the separator the parameters name.

    Reads the separator's weights (a local Demucs repo or the pretrained caches) and
    keeps finished tracks in ``options["cache_dir"]`` so a killed run resumes: both are
    documented exceptions to "nodes touch no files" (see
    :mod:`emomucs.separation.cache`); the stems themselves go through the catalog.

    Args:
        clips: ``(channels, samples)`` clips at any rate.
        oracle_clip_stems: Output of :func:`cut_oracle_stems`, used by ``oracle``.
        options: ``separation`` parameters: ``separator``, ``apply``,
            ``output_sample_rate``, ``cache_dir``, ``seed``, ``progress``,
            ``num_threads`` (torch CPU threads while separating here; None keeps
            torch's), ``workers`` (local worker processes, each with those
            threads) and ``corpus_root`` (the dataset root, to warn when a local
            separator meets a corpus other than the synthetic one).
        separator: Another separator than ``options["separator"]`` (the
            ``<namespace>.separator`` parameters of a separator namespace such as
            ``hpss``), with the other options shared.

    Returns:
        ``(stems, 1, samples)`` mono stems at the output rate: the four sources for
        a Demucs model or the oracle, a plain function's own stems (e.g. drums and
        harmonic); the separator identity in ``attrs["separator"]``.

    Raises:
        SeparatorUnavailableError: The separator cannot be loaded (the message says
            how to get it or what to use instead).
    """
    spec = SeparatorSpec.from_options(separator or options["separator"])
    output_rate = int(options["output_sample_rate"])
    if spec.kind == ORACLE:
        return _oracle_stems(clips, oracle_clip_stems)
    loaded = load_separator(spec)
    _warn_if_not_its_corpus(spec, loaded.identity, options.get("corpus_root"))
    apply = ApplyOptions.from_options(options.get("apply"))
    logger.info(
        "separating %d clips with %s into %s",
        len(clips),
        loaded.identity,
        ", ".join(loaded.stem_names),
    )
    with torch_threads(options.get("num_threads")):
        stems = separate_tracks(
            clips.audio,
            clips.sample_rate,
            loaded,
            output_rate,
            apply,
            StemsCache(options.get("cache_dir")),
            seed=int(options.get("seed", 0)),
            progress=bool(options.get("progress", True)),
            workers=options.get("workers", 1),
        )
    attrs = {
        "separator": loaded.identity,
        "apply": repr(apply.cache_config()),
        "clips_sample_rate": str(clips.sample_rate),
    }
    return AudioSet(output_rate, stems, loaded.stem_names, attrs)


def _warn_if_not_its_corpus(
    spec: SeparatorSpec, identity: str, corpus_root: str | None
) -> None:
    """Warn (once: this node runs once per run) when the compact separator, trained
    on the synthetic multitracks, separates a corpus other than the synthetic one."""
    if spec.kind != "local" or corpus_root is None:
        return
    if "synthetic" in Path(str(corpus_root)).parts:
        return
    logger.warning(
        "separator %s is a local model; the one separator_training makes is trained "
        "on synthetic multitracks and is not meant for real music, but the corpus is "
        "%s. Its stems of real music will be poor: use separation.separator.kind: "
        "pretrained, name: htdemucs (docs/data.md), unless this model was trained "
        "on music like this corpus",
        identity,
        corpus_root,
    )


def _oracle_stems(clips: AudioSet, oracle: AudioSet) -> AudioSet:
    if not oracle.audio:
        raise DatasetInputError(
            "separator kind oracle: this corpus has no true stems (expected "
            "<dataset_root>/stems/<musicId>/<source>.wav or .flac); use kind local or pretrained"
        )
    missing = [music_id for music_id in clips.music_ids if music_id not in oracle.audio]
    if missing:
        raise DatasetInputError(
            f"tracks {missing[:10]}: no oracle stems under <dataset_root>/stems "
            f"({len(missing)} of {len(clips)} clips); use kind local or pretrained"
        )
    if isinstance(oracle.audio, LazyAudio):
        audio = LazyAudio(
            {
                music_id: partial(oracle.audio.__getitem__, music_id)
                for music_id in clips.music_ids
            },
            {music_id: oracle.shape(music_id) for music_id in clips.music_ids},
        )
    else:
        audio = {music_id: oracle.audio[music_id] for music_id in clips.music_ids}
    return AudioSet(oracle.sample_rate, audio, SOURCES, {"separator": ORACLE})


def downmix_clips(clips: AudioSet, options: dict[str, Any]) -> AudioSet:
    """The clips as mono at the output rate, the counterpart of the stems.

    Each track is down-mixed when it is looked up (a :class:`~emomucs.audio.LazyAudio`),
    so saving the mix goes one track at a time.
    """
    output_rate = int(options["output_sample_rate"])
    samples = {
        music_id: _output_samples(clips, music_id, output_rate)
        for music_id in clips.music_ids
    }
    audio = LazyAudio(
        {
            music_id: partial(_downmix_track, clips, music_id, output_rate, length)
            for music_id, length in samples.items()
        },
        {music_id: (1, length) for music_id, length in samples.items()},
    )
    return AudioSet(output_rate, audio, (), {"source": "mix"})


def score_separation(
    stems: AudioSet,
    mix: AudioSet,
    oracle_clip_stems: AudioSet,
    options: dict[str, Any] | None = None,
) -> dict:
    """SDR of the stems and of the mix-as-estimate floor against the true stems.

    Args:
        options: ``separation`` parameters; ``workers`` scores tracks side by side.

    Returns:
        A JSON-ready report with ``available: false`` and the reason when the corpus has
        no true stems.
    """
    workers = (options or {}).get("workers", 1)
    report = score_stems(stems, mix, oracle_clip_stems, workers=workers)
    report["separator"] = stems.attrs.get("separator", "unknown")
    return report
