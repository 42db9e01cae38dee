"""Per-source contributions of EmoMucs models, from stored checkpoints."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

from emomucs import SOURCES
from emomucs.audio import AudioSet
from emomucs.interpret import (
    ALL_REPEATS,
    ContributionOptions,
    rank_sources,
    shapley_values,
    silence_features,
    source_contributions,
)
from emomucs.interpret import contributions as contributions_module
from emomucs.models import to_checkpoint
from emomucs.pipelines.features.nodes import compute_log_mel
from emomucs.training import (
    CVOptions,
    ExperimentSpec,
    SelectedModel,
    Standardiser,
    TrainOptions,
    assign_folds,
    predict,
    run_nested_cv,
    score,
)
from emomucs.training.data import input_kwargs, select_inputs
from emomucs.training.folds import TEST
from emomucs.training.metrics import DIMENSIONS
from tests.training.conftest import FEATURE_OPTIONS
from tests.training.synthetic import make_corpus

IGNORED = "bass"


def _emomucs(fusion: str, strategy: str = "full") -> ExperimentSpec:
    return ExperimentSpec.from_params(
        {
            "model": "EmoMucs",
            "source_model": "C1D",
            "sources": list(SOURCES),
            "fusion": fusion,
            "strategy": strategy,
        }
    )


def _hand_built(small_corpus, fusion: str):
    """cv_models and cv_predictions of an untrained EmoMucs whose head has zero
    weights on the ``IGNORED`` source's part (attention: on its projection),
    tested on every outer fold."""
    table, features = small_corpus
    folds = assign_folds(table["musicId"], 3, 2, seed=0)
    torch.manual_seed(0)
    model = _emomucs(fusion).build(input_kwargs(features)).eval()
    part = model.fused_size // len(SOURCES)
    i = SOURCES.index(IGNORED)
    with torch.no_grad():
        if fusion == "attention":  # the source's embedding no longer reads its part
            model.head.project[i][1].weight.zero_()
        else:
            model.head[1].weight[:, i * part : (i + 1) * part] = 0.0
    models, selected, predictions = {}, {}, []
    for k in range(3):
        rows = folds[folds["outer_fold"] == k]
        train = rows.loc[(rows["inner_fold"] != TEST) & (rows["inner_fold"] != 1)]
        test = np.sort(rows.loc[rows["inner_fold"] == TEST, "musicId"].to_numpy())
        standardise = Standardiser.fit(
            select_inputs(features, SOURCES, train["musicId"].to_numpy())
        )
        models[k] = {1: {**to_checkpoint(model), "standardiser": standardise.state()}}
        selected[k] = 1
        guess = predict(model, standardise(select_inputs(features, SOURCES, test)), 32)
        truth = table.set_index("musicId").loc[test]
        predictions.append(
            pd.DataFrame(
                {
                    "musicId": test,
                    "outer_fold": k,
                    "inner_split": 1,
                    **{d: truth[d].to_numpy() for d in DIMENSIONS},
                    **{
                        f"{d}_pred": guess[:, n].numpy()
                        for n, d in enumerate(DIMENSIONS)
                    },
                }
            )
        )
    cv_models = {
        "label": f"hand-built {fusion}",
        "selected": selected,
        "models": models,
    }
    return cv_models, folds, pd.concat(predictions, ignore_index=True)


@pytest.mark.parametrize("fusion", ["early", "mid", "late", "attention"])
def test_a_source_the_head_ignores_contributes_exactly_zero(small_corpus, fusion):
    table, features = small_corpus
    cv_models, folds, predictions = _hand_built(small_corpus, fusion)
    result = source_contributions(cv_models, features, table, folds, predictions)
    assert set(result["method"]) == {"silence", "mean", "shapley"}
    assert set(result["scope"]) == {"fold", "mean", "pooled"}
    assert (result["repeat"] == ALL_REPEATS).all()
    ignored = result[result["source"] == IGNORED]
    assert len(ignored) == 3 * 2 * (3 + 1 + 1)  # methods × dimensions × scopes
    assert (ignored["r2_drop"] == 0.0).all()
    assert (ignored["mean_abs_change"] == 0.0).all()
    # The others do move the predictions, so zero is not what every source gets.
    others = result[(result["source"] != IGNORED) & (result["scope"] == "pooled")]
    assert (others.groupby("method")["mean_abs_change"].max() > 1e-4).all()


@pytest.mark.parametrize("fusion", ["early", "mid", "late", "attention"])
def test_ablating_a_fused_part_is_ablating_the_input(small_corpus, fusion, monkeypatch):
    """The shortcut (recompute only the ablated source's part, then the head) gives
    what the whole model gives on the ablated input."""
    table, features = small_corpus
    cv_models, folds, predictions = _hand_built(small_corpus, fusion)
    shortcut = source_contributions(cv_models, features, table, folds, predictions)
    monkeypatch.setattr(contributions_module, "PART_FUSIONS", ())
    whole = source_contributions(cv_models, features, table, folds, predictions)
    assert set(whole["method"]) == {"silence", "mean"}
    shortcut = shortcut[shortcut["method"] != "shapley"].reset_index(drop=True)
    # float32 paths that sum in another order (and, with several torch threads, in
    # another order per run): R² drops are O(1), so 1e-5 is rounding, not a gap
    pd.testing.assert_frame_equal(whole, shortcut, rtol=1e-4, atol=1e-5)
    assert (whole["mean_abs_change"] > 1e-4).sum() > len(whole) / 2


def test_predictions_that_are_not_the_stored_ones_are_refused(small_corpus):
    table, features = small_corpus
    cv_models, folds, predictions = _hand_built(small_corpus, "late")
    predictions.loc[predictions["outer_fold"] == 2, "arousal_pred"] += 0.5
    with pytest.raises(ValueError, match=r"hand-built late, repeat 0, outer fold 2"):
        source_contributions(cv_models, features, table, folds, predictions)


def test_repeats_are_scored_one_by_one_then_averaged(small_corpus, monkeypatch):
    """Two repeats (the same models here) and attention weights that differ by
    repeat: ablation rows equal one repeat's, attention rows the repeats' mean."""
    table, features = small_corpus
    cv_models, folds, predictions = _hand_built(small_corpus, "late")
    one_repeat = source_contributions(cv_models, features, table, folds, predictions)
    listed = contributions_module.selected_models(cv_models)
    monkeypatch.setattr(
        contributions_module,
        "selected_models",
        lambda _: (
            listed + [SelectedModel(1, m.outer, m.inner, m.checkpoint) for m in listed]
        ),
    )
    weights = {0: [0.1, 0.2, 0.3, 0.4], 1: [0.3, 0.2, 0.1, 0.4]}
    stored = pd.concat(
        [
            predictions.assign(
                repeat=r,
                **{
                    f"attention_{d}_{s}": w
                    for d in DIMENSIONS
                    for s, w in zip(SOURCES, weights[r], strict=True)
                },
            )
            for r in (0, 1)
        ],
        ignore_index=True,
    )
    result = source_contributions(cv_models, features, table, folds, stored)
    assert set(result["repeat"]) == {ALL_REPEATS, 0, 1}
    ablations = result[(result["method"] != "attention") & (result["repeat"] == -1)]
    expected = one_repeat[one_repeat["method"] != "attention"]
    pd.testing.assert_frame_equal(
        ablations.reset_index(drop=True), expected.reset_index(drop=True)
    )
    attention = result[
        (result["method"] == "attention") & (result["scope"] == "pooled")
    ]
    mean = attention[attention["repeat"] == -1].set_index(["dimension", "source"])
    assert mean.loc[("valence", "drums"), "mean_weight"] == pytest.approx(0.2)
    assert mean.loc[("arousal", "vocals"), "mean_weight"] == pytest.approx(0.4)
    first = attention[attention["repeat"] == 0].set_index(["dimension", "source"])
    assert first.loc[("valence", "other"), "mean_weight"] == pytest.approx(0.3)
    assert rank_sources(result, "attention", "valence")[0][0] == "vocals"


def test_silence_is_what_the_feature_code_makes_of_a_silent_stem():
    """A digitally silent stem through compute_log_mel gives the silence features:
    0 dB everywhere, as power_to_db(ref=max) measures a clip against itself."""
    table, _, stems = make_corpus(n_tracks=3, seconds=2.0, seed=1)
    audio = dict(stems.audio)
    first = int(table["musicId"].iloc[0])
    silent = audio[first].copy()
    silent[SOURCES.index("vocals")] = 0.0
    audio[first] = silent
    features = compute_log_mel(
        AudioSet(stems.sample_rate, audio, sources=SOURCES), FEATURE_OPTIONS
    )
    expected = features["values"][0, SOURCES.index("vocals")]
    assert torch.equal(silence_features(features), expected)
    assert torch.equal(expected, torch.zeros_like(expected))
    waveform = {**features, "representation": "waveform", "values": torch.ones(3, 4, 9)}
    assert torch.equal(silence_features(waveform), torch.zeros(9))


def test_shapley_values_are_the_mean_marginal_contribution_over_orders():
    rng = np.random.default_rng(0)
    n = 3
    values = rng.normal(size=(2**n, 2))
    phi = shapley_values(values)
    expected = np.zeros((n, 2))
    for order in itertools.permutations(range(n)):
        mask = 0
        for player in order:
            expected[player] += values[mask | 1 << player] - values[mask]
            mask |= 1 << player
    assert np.allclose(phi, expected / math.factorial(n))
    assert np.allclose(phi.sum(axis=0), values[-1] - values[0])
    with pytest.raises(ValueError, match="power of two"):
        shapley_values(np.zeros(6))


@pytest.mark.slow
def test_ablation_ranks_the_source_that_carries_each_dimension_first():
    """Valence is the vocals' pitch, arousal the drums' (tests/training/synthetic.py).

    Late fusion, freeze, 48 tracks, 2 × 2 folds: pooled R² 0.32 (valence) and 0.37
    (arousal). Silencing a stem is left out: 0 dB in every band is an input far from
    any the networks saw and moves predictions for every source (docs/contributions.md).
    """
    table, _, stems = make_corpus(n_tracks=48, seconds=2.0, seed=11)
    features = compute_log_mel(stems, FEATURE_OPTIONS)
    folds = assign_folds(table["musicId"], 2, 2, seed=0)
    options = CVOptions(
        TrainOptions(max_epochs=40, patience=8, batch_size=8, progress=False),
        standardise=True,
    )
    pretrained = {
        s: run_nested_cv(
            ExperimentSpec.from_params({"model": "C1D", "sources": [s]}),
            features,
            table,
            folds,
            options,
        ).models
        for s in SOURCES
    }
    result = run_nested_cv(
        _emomucs("late", "freeze"), features, table, folds, options, pretrained
    )
    scores = score(result.predictions)
    assert scores["r2_valence"] > 0.2 and scores["r2_arousal"] > 0.2, scores
    table_ = source_contributions(
        result.models, features, table, folds, result.predictions, ContributionOptions()
    )
    for method in ("mean", "shapley"):
        assert rank_sources(table_, method, "valence")[0][0] == "vocals", method
        assert rank_sources(table_, method, "arousal")[0][0] == "drums", method
