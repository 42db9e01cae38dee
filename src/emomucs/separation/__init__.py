"""Source separation: loading Demucs separators, applying them, training a compact one.

One module per job, as in Demucs: :mod:`.separators` names and loads a separator,
:mod:`.separate` applies it to clips, :mod:`.hpss` is a separator that needs no
model (librosa's harmonic–percussive split), :mod:`.cache` keeps finished tracks,
:mod:`.training` trains and packages the compact HTDemucs, :mod:`.multitrack` reads
training songs, :mod:`.sdr` scores the result.
"""

from .cache import StemsCache, audio_digest
from .multitrack import group_stems, load_track, split_tracks
from .sdr import score_stems, sdr, summarize_sdr
from .separate import (
    ApplyOptions,
    demix,
    separate_batch,
    separate_tracks,
    separate_with_callable,
)
from .separators import (
    CallableSeparator,
    LoadedSeparator,
    SeparatorSpec,
    SeparatorUnavailableError,
    load_callable,
    load_separator,
)
from .training import (
    TrainingOptions,
    build_compact_htdemucs,
    evaluate_separator_sdr,
    package_model,
    train_compact_separator,
)

__all__ = [
    "ApplyOptions",
    "CallableSeparator",
    "LoadedSeparator",
    "SeparatorSpec",
    "SeparatorUnavailableError",
    "StemsCache",
    "TrainingOptions",
    "audio_digest",
    "build_compact_htdemucs",
    "demix",
    "evaluate_separator_sdr",
    "group_stems",
    "load_callable",
    "load_separator",
    "load_track",
    "package_model",
    "score_stems",
    "sdr",
    "separate_batch",
    "separate_tracks",
    "separate_with_callable",
    "split_tracks",
    "summarize_sdr",
    "train_compact_separator",
]
