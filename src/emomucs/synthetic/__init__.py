"""A synthetic PMEmo-format corpus: designed tracks, four rendered stems, known labels.

Pure numpy/scipy, no Kedro and no I/O; the ``synthetic_corpus`` pipeline writes it out.
"""

from .design import (
    AROUSAL_WEIGHTS,
    CUE_SOURCES,
    LABEL_WEIGHTS,
    VALENCE_WEIGHTS,
    TrackDesign,
    add_label_noise,
    arousal_of,
    chorus_durations,
    design_corpus,
    design_from_targets,
    design_multitrack,
    label_ceiling,
    noiseless_labels,
    sample_pmemo_targets,
    source_contributions,
    title_of,
    valence_of,
)
from .render import render_track

__all__ = [
    "AROUSAL_WEIGHTS",
    "CUE_SOURCES",
    "LABEL_WEIGHTS",
    "VALENCE_WEIGHTS",
    "TrackDesign",
    "add_label_noise",
    "arousal_of",
    "chorus_durations",
    "design_corpus",
    "design_from_targets",
    "design_multitrack",
    "label_ceiling",
    "noiseless_labels",
    "render_track",
    "sample_pmemo_targets",
    "source_contributions",
    "title_of",
    "valence_of",
]
