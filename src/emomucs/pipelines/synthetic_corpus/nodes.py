"""Synthetic corpus: a PMEmo2019-format dataset whose labels are a known function of
the music, written with its true stems, the ground truth and the reachable R².

Audio nodes are generators with one output each: every yielded chunk is one track,
saved by Kedro as it comes, so a corpus of any size needs the memory of one track.
(A generator node with several outputs would not do: Kedro splits its chunks with
``itertools.tee``, which holds them in blocks of 57.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import numpy as np
import pandas as pd

from emomucs import SOURCES
from emomucs.audio import set_channels
from emomucs.pipelines.ingestion.nodes import (
    AROUSAL_COLUMN,
    METADATA_COLUMNS,
    VALENCE_COLUMN,
)
from emomucs.synthetic import (
    AROUSAL_WEIGHTS,
    CUE_SOURCES,
    VALENCE_WEIGHTS,
    TrackDesign,
    design_corpus,
    design_multitrack,
    label_ceiling,
    noiseless_labels,
    render_track,
    source_contributions,
    title_of,
)

logger = logging.getLogger(__name__)

ANNOTATION_COLUMNS = ["musicId", AROUSAL_COLUMN, VALENCE_COLUMN]
_DESIGN_COLUMNS = [f.name for f in fields(TrackDesign) if f.name != "music_id"]
_INTEGER_FIELDS = [
    f.name for f in fields(TrackDesign) if f.type == "int" and f.name != "music_id"
]

AudioChunk = dict[str, tuple[np.ndarray, int]]


def design_tracks(options: dict[str, Any]) -> pd.DataFrame:
    """The ground truth: every track's musical parameters and its labels.

    Args:
        options: ``n_tracks``, ``seed``, ``first_music_id``, ``chorus_range_s``,
            ``short_below_s``, ``short_fraction`` and ``label_noise_sd``.

    Returns:
        One row per track: ``musicId``, the :class:`TrackDesign` fields,
        ``arousal_noiseless``/``valence_noiseless`` (the label function's value) and
        ``arousal``/``valence`` (the published annotations), all on PMEmo's [0, 1].
    """
    designs, annotations = design_corpus(
        count=int(options["n_tracks"]),
        seed=int(options["seed"]),
        first_music_id=int(options["first_music_id"]),
        chorus_range_s=tuple(options["chorus_range_s"]),
        short_below_s=float(options["short_below_s"]),
        short_fraction=float(options["short_fraction"]),
        noise_sd=float(options["label_noise_sd"]),
    )
    rows = []
    for design, (arousal, valence) in zip(designs, annotations, strict=True):
        row = design.as_dict()
        row["musicId"] = row.pop("music_id")
        row["mode"] = design.mode
        row["arousal_noiseless"], row["valence_noiseless"] = noiseless_labels(design)
        row["arousal"], row["valence"] = float(arousal), float(valence)
        rows.append(row)
    columns = ["musicId", *_DESIGN_COLUMNS, "mode"]
    columns += ["arousal_noiseless", "valence_noiseless", "arousal", "valence"]
    return pd.DataFrame(rows, columns=columns)


def _designs(ground_truth: pd.DataFrame) -> list[TrackDesign]:
    """Rebuild the designs from the ground-truth table (as read back from csv)."""
    missing = [c for c in ["musicId", *_DESIGN_COLUMNS] if c not in ground_truth]
    if missing:
        raise ValueError(f"synthetic ground truth lacks columns {missing}")
    designs = []
    for record in ground_truth.to_dict("records"):
        values = {name: record[name] for name in _DESIGN_COLUMNS}
        for name in _INTEGER_FIELDS:
            values[name] = int(values[name])
        designs.append(TrackDesign(music_id=int(record["musicId"]), **values))
    return designs


def _mm_ss(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60:02d}:{whole % 60:02d}"


AUDIO_SUFFIX = ".flac"
"""The corpus' audio files: FLAC, as the catalog's ``synthetic_audio`` writes them
(choruses 16-bit stereo, as PMEmo's; stems 24-bit mono, the mean of 16-bit channels);
lossless, so the samples are the values a WAV holds, in about 45 % of the bytes."""
CHORUS_FOLDER = "chorus"
STEMS_FOLDER = "stems"
"""The folders of ``synthetic_audio``'s keys, as PMEmo2019 lays them out."""


def build_metadata(ground_truth: pd.DataFrame, options: dict[str, Any]) -> pd.DataFrame:
    """PMEmo's ``metadata.csv``: chorus file name, its duration and where it sits.

    ``duration`` is the chorus file's length in seconds (one decimal), and the chorus
    times are ``mm:ss`` positions in the imagined full song, as in PMEmo.
    """
    rows = []
    for design in _designs(ground_truth):
        start = design.chorus_start_s
        rows.append(
            {
                "musicId": design.music_id,
                "fileName": f"{design.music_id}{AUDIO_SUFFIX}",
                "title": title_of(design),
                "artist": "emomucs synthetic",
                "album": f"Synthetic corpus (seed {options['seed']})",
                "duration": design.duration_s,
                "chorus_start_time": _mm_ss(start),
                "chorus_end_time": _mm_ss(start + design.duration_s),
            }
        )
    return pd.DataFrame(rows, columns=METADATA_COLUMNS)


def build_static_annotations(ground_truth: pd.DataFrame) -> pd.DataFrame:
    """PMEmo's ``annotations/static_annotations.csv``: the noisy labels on [0, 1]."""
    annotations = ground_truth[["musicId", "arousal", "valence"]]
    return annotations.set_axis(ANNOTATION_COLUMNS, axis=1).reset_index(drop=True)


def estimate_ceiling(
    ground_truth: pd.DataFrame, options: dict[str, Any]
) -> dict[str, Any]:
    """The best R² any model can reach on this corpus, per dimension.

    Returns:
        ``noise_sd`` (on [0, 1]), the label functions' weights and, for ``arousal`` and
        ``valence``, the variances on the models' [-1, 1] scale,
        ``r2_theoretical = 1 - noise_var / label_var`` and ``r2_empirical`` (the R² of
        the noiseless labels as predictions of the annotations).
    """
    noise_sd = float(options["label_noise_sd"])
    ceiling: dict[str, Any] = {
        "scale": "[-1, 1] (2 * PMEmo label - 1)",
        "n_tracks": len(ground_truth),
        "noise_sd": noise_sd,
        "label_function_weights": {
            "arousal": AROUSAL_WEIGHTS,
            "valence": VALENCE_WEIGHTS,
        },
    }
    for dimension in ("arousal", "valence"):
        ceiling[dimension] = label_ceiling(
            ground_truth[f"{dimension}_noiseless"].to_numpy(),
            ground_truth[dimension].to_numpy(),
            noise_sd,
        )
        logger.info(
            "synthetic corpus: best reachable R² for %s is %.3f (theory) / %.3f "
            "(this sample)",
            dimension,
            ceiling[dimension]["r2_theoretical"],
            ceiling[dimension]["r2_empirical"],
        )
    return ceiling


def estimate_contributions(ground_truth: pd.DataFrame) -> dict[str, Any]:
    """Each source's true share of each dimension, from the corpus' construction.

    A dimension's noiseless label is a weighted sum of cues, each living in one
    stem; its variance over the corpus splits exactly into one covariance term per
    source (:func:`emomucs.synthetic.source_contributions`).

    Returns:
        ``definition``, ``cue_sources``, ``label_function_weights``,
        ``weight_shares`` (each source's summed cue weights) and, for ``arousal``
        and ``valence``, ``{source: share}`` over every source, summing to 1.
    """
    designs = _designs(ground_truth)
    shares = source_contributions(designs)
    weights = {"arousal": AROUSAL_WEIGHTS, "valence": VALENCE_WEIGHTS}
    contributions: dict[str, Any] = {
        "definition": (
            "share of a dimension's noiseless label variance over this corpus carried "
            "by a source's cues: Cov(y_source, y) / Var(y), where y is the label "
            "function and y_source the weighted sum of that source's cues"
        ),
        "n_tracks": len(designs),
        "cue_sources": dict(CUE_SOURCES),
        "label_function_weights": weights,
        "weight_shares": {
            dimension: {
                source: float(
                    sum(w for n, w in dim_weights.items() if CUE_SOURCES[n] == source)
                )
                for source in SOURCES
            }
            for dimension, dim_weights in weights.items()
        },
        **shares,
    }
    for dimension in ("arousal", "valence"):
        logger.info(
            "synthetic corpus: %s carried by %s",
            dimension,
            ", ".join(f"{s} {v:.2f}" for s, v in shares[dimension].items() if v > 0),
        )
    return contributions


def _channels(options: dict[str, Any]) -> int:
    return 2 if options.get("stereo", True) else 1


def render_tracks(
    ground_truth: pd.DataFrame, options: dict[str, Any]
) -> Iterator[AudioChunk]:
    """Render each track's chorus and its four true stems, one track per chunk.

    The stems are rendered in the corpus' channels (stereo by default) on the 16-bit
    grid; the chorus is their sum, exact on that grid. Each stem is stored as the mean
    of its channels, the one form the project reads (oracle stems, SDR: mono at the
    feature rate), at about 60 % of stereo's bytes. That mean needs one bit more than
    16 (24-bit FLAC, whose unused low bits cost next to nothing), so the stored files
    keep an exact relation: the stems sum to the chorus' channel mean, sample for
    sample, and read back as the very samples a stereo stem's down-mix gave. One
    chunk holds both, so no track waits in memory for another output's turn.

    Yields:
        ``{"chorus/<musicId>": (chorus, rate), "stems/<musicId>/<source>": (stem,
        rate)}``, the chorus ``(channels, samples)``, each stem ``(1, samples)``.
    """
    rate = int(options["sample_rate"])
    channels = _channels(options)
    for design in _designs(ground_truth):
        stems = render_track(design, rate, channels)
        chorus = stems.sum(axis=0, dtype=np.float32)
        mono = set_channels(stems, 1)  # the mean of the channels: exact in float32
        yield {
            f"{CHORUS_FOLDER}/{design.music_id}": (chorus, rate),
            **{
                f"{STEMS_FOLDER}/{design.music_id}/{source}": (stem, rate)
                for source, stem in zip(SOURCES, mono, strict=True)
            },
        }


def render_multitrack(options: dict[str, Any]) -> Iterator[AudioChunk]:
    """Unlabelled multitrack songs for training a source separator, one per chunk.

    Args:
        options: ``sample_rate``, ``stereo`` and ``multitrack``: ``n_tracks``,
            ``seed`` (must differ from the corpus seed), ``duration_s``.

    Yields:
        ``{"track_<nnn>/<source>": (stem, rate)}`` for the four sources of one song.
    """
    settings = options["multitrack"]
    if int(settings["seed"]) == int(options["seed"]):
        raise ValueError(
            f"synthetic_corpus.multitrack.seed {settings['seed']} equals the corpus "
            "seed: the separator would train on the music it is evaluated on"
        )
    rate = int(options["sample_rate"])
    designs = design_multitrack(
        int(settings["n_tracks"]), int(settings["seed"]), float(settings["duration_s"])
    )
    for design in designs:
        stems = render_track(design, rate, _channels(options))
        yield {
            f"track_{design.music_id:03d}/{source}": (stem, rate)
            for source, stem in zip(SOURCES, stems)
        }
