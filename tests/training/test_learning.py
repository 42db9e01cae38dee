"""Learning tests: each network, fusion and strategy learns labels that its inputs
carry, on the synthetic corpus of tests/training/synthetic.py (valence is the pitch of
a tone in the vocals, arousal that of a tone in the drums; bass and other carry
nothing). A bug that breaks learning (a detached head, a fusion that drops a source,
pretrained weights not loaded) fails these; the shape tests would not notice.

Measured figures for each test are in its docstring (pooled R² over the out-of-fold
predictions, on the corpus and training seeds noted).
"""

from __future__ import annotations

import os

import pytest

from emomucs import SOURCES
from emomucs.audio import AudioSet
from emomucs.pipelines.features.nodes import compute_log_mel
from emomucs.training import (
    CVOptions,
    ExperimentSpec,
    TrainOptions,
    assign_folds,
    run_nested_cv,
    score,
)
from tests.training.conftest import FEATURE_OPTIONS
from tests.training.synthetic import make_corpus

SEED = int(os.environ.get("EMOMUCS_LEARNING_SEED", "0"))
"""Corpus and training seed; the figures in the docstrings were measured over 0-2."""

BAR = 0.3
"""Pooled R² every learning test must pass: 0 is predicting the mean, and a broken
model scores at or below it; the lowest measured over seeds 0-2 was 0.44."""

NETWORKS = {"C1D": {"pooling": "mean"}, "C2D": {"n_filters": 8}}
"""The base recipe's network settings (conf/base/parameters/experiments.yml)."""


def _options(max_epochs: int = 60) -> CVOptions:
    # Unscaled dB inputs (the paper's): per-band standardisation learned less at this
    # size (64 tracks, seed 0: C2D on the vocals R² valence -0.18 against 0.75).
    return CVOptions(
        TrainOptions(max_epochs=max_epochs, patience=10, batch_size=16, progress=False),
        seed=SEED,
    )


def _spec(**params) -> ExperimentSpec:
    return ExperimentSpec.from_params(params, NETWORKS)


@pytest.fixture(scope="module")
def corpus():
    """96 tracks of 2 s: labels, stems log-mels, the log-mels of a mix without the
    drums (so the mix carries valence and not arousal), the fold table."""
    table, _, stems = make_corpus(n_tracks=96, seconds=2.0, seed=SEED)
    keep = [SOURCES.index(s) for s in ("bass", "other", "vocals")]
    mix = AudioSet(
        stems.sample_rate,
        {i: audio[keep].sum(axis=0) for i, audio in stems.audio.items()},
    )
    folds = assign_folds(table["musicId"], 3, 2, seed=SEED)
    return (
        table,
        compute_log_mel(stems, FEATURE_OPTIONS),
        compute_log_mel(mix, FEATURE_OPTIONS),
        folds,
    )


def _scores(spec, features, corpus, pretrained=None) -> dict[str, float]:
    table, _, _, folds = corpus
    result = run_nested_cv(spec, features, table, folds, _options(), pretrained)
    return score(result.predictions)


def test_c2d_learns_the_label_its_source_carries(corpus):
    """C2D on the vocals learns valence (the vocals' pitch) and not arousal (the
    drums'). Measured (seeds 0, 1, 2): R² valence 0.59, 0.83, 0.70; arousal -0.34, -0.30,
    -0.37."""
    scores = _scores(_spec(model="C2D", sources=["vocals"]), corpus[1], corpus)
    assert scores["r2_valence"] > BAR, scores
    assert scores["r2_arousal"] < 0.2, scores  # nothing in the vocals carries it


def test_mix_baseline_learns_the_label_the_mix_carries(corpus):
    """C1D on a mix of bass, other and vocals learns valence (the vocals' pitch)
    through the mix's feature path; the drums, and so arousal, are not in it. (With
    the drums in, the two tones share bands and neither C1D nor C2D learned both at
    this size: R² 0.1-0.35.) Measured (seeds 0, 1, 2): R² valence 0.44, 0.66, 0.65; arousal -0.17, -0.09,
    -0.25.
    """
    scores = _scores(_spec(model="C1D", sources=["mix"]), corpus[2], corpus)
    assert scores["r2_valence"] > BAR, scores
    assert scores["r2_arousal"] < 0.2, scores


@pytest.mark.parametrize("fusion", ["early", "mid"])
def test_fusion_learns_each_label_from_the_source_that_carries_it(corpus, fusion):
    """EmoMucs-C1D (early: stems stacked as channels; mid: hidden features
    concatenated) trained from scratch. Measured (seeds 0, 1, 2): early R² valence 0.73,
    0.68, 0.51, arousal 0.67, 0.82, 0.77; mid valence 0.56, 0.66, 0.70, arousal 0.55,
    0.85, 0.68."""
    spec = _spec(
        model="EmoMucs",
        source_model="C1D",
        sources=list(SOURCES),
        fusion=fusion,
        strategy="full",
    )
    scores = _scores(spec, corpus[1], corpus)
    assert scores["r2_valence"] > BAR, scores
    assert scores["r2_arousal"] > BAR, scores


def test_finetune_starts_from_the_single_source_models_and_learns(corpus):
    """Late fusion, finetune: the vocals and drums C1Ds trained first, then the
    whole model. Measured (seeds 0, 1, 2): R² valence 0.85, 0.85, 0.83;
    arousal 0.86, 0.70, 0.85."""
    table, features, _, folds = corpus
    sources = ["vocals", "drums"]
    pretrained = {
        s: run_nested_cv(
            _spec(model="C1D", sources=[s]), features, table, folds, _options()
        ).models
        for s in sources
    }
    spec = _spec(
        model="EmoMucs",
        source_model="C1D",
        sources=sources,
        fusion="late",
        strategy="finetune",
    )
    scores = _scores(spec, features, corpus, pretrained)
    assert scores["r2_valence"] > BAR, scores
    assert scores["r2_arousal"] > BAR, scores
