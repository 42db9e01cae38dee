"""Experiments: shared folds, nested CV of one variant, and its scores.

Thin wrappers around :mod:`emomucs.training`; every variant runs the same nodes
with its own namespace's ``experiment`` parameters.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from emomucs.training import (
    CVOptions,
    ExperimentSpec,
    FeatureSet,
    assign_folds,
    run_nested_cv,
    summarise_folds,
)
from emomucs.training.folds import fingerprint_folds
from emomucs.training.metrics import METRIC_COLUMNS


def assign_cv_folds(track_table: pd.DataFrame, options: dict[str, Any]) -> pd.DataFrame:
    """The nested KFold assignment every variant shares.

    Args:
        track_table: One row per track (``musicId``).
        options: ``outer_folds``, ``inner_folds``, ``seed`` and the optional
            ``min_train_tracks`` and ``min_test_tracks`` (default 1).

    Returns:
        Columns ``outer_fold``, ``musicId``, ``inner_fold`` (−1: test track).

    Raises:
        DatasetInputError: The corpus has too few tracks for these folds, before
            any model trains.
    """
    return assign_folds(
        track_table["musicId"].to_numpy(),
        int(options["outer_folds"]),
        int(options["inner_folds"]),
        int(options["seed"]),
        min_train_tracks=int(options.get("min_train_tracks", 1)),
        min_test_tracks=int(options.get("min_test_tracks", 1)),
    )


def train_nested_cv(
    features: FeatureSet,
    track_table: pd.DataFrame,
    cv_folds: pd.DataFrame,
    experiment: dict[str, Any],
    networks: dict[str, Any],
    training: dict[str, Any],
    *pretrained: dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Nested CV of one variant: every inner split trained, the best per outer
    fold tested on it.

    Args:
        features: The feature set holding the variant's sources.
        track_table: Labels (``musicId``, ``valence``, ``arousal``).
        cv_folds: The shared fold table.
        experiment: The variant (see :class:`~emomucs.training.ExperimentSpec`).
        networks: Network name -> arguments every variant of it shares.
        training: Optimiser, stopping and CV settings
            (see :class:`~emomucs.training.CVOptions`).
        *pretrained: For finetune/freeze: each source's single-source ``cv_models``,
            in any order (each names its source).

    Returns:
        ``cv_models`` (every split's checkpoint and which one was tested),
        ``cv_predictions`` (out-of-fold, one row per repeat and track) and
        ``training_log``.
    """
    spec = ExperimentSpec.from_params(experiment, networks)
    by_source = {}
    for models in pretrained:
        source = models["experiment"]["sources"][0]
        if source in by_source:
            raise ValueError(f"{spec.label}: two pretrained model sets for {source!r}")
        by_source[source] = models
    result = run_nested_cv(
        spec,
        features,
        track_table,
        cv_folds,
        CVOptions.from_params(training),
        pretrained=by_source,
    )
    return result.models, result.predictions, result.log


def evaluate_predictions(
    cv_predictions: pd.DataFrame,
    cv_folds: pd.DataFrame,
    cv_models: dict[str, Any],
    experiment: dict[str, Any],
    networks: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """RMSE and R² per outer fold, their mean ± sd, and on pooled predictions.

    Args:
        cv_predictions: Out-of-fold predictions of the variant.
        cv_folds: The shared fold table.
        cv_models: The variant's models; the summary names the inputs they were
            trained on (so stems of different separators are told apart).
        experiment: The variant's parameters.
        networks: Arguments shared by every variant of a network.

    Returns:
        ``cv_metrics`` (a row per repeat and outer fold, then ``mean``, ``sd``,
        ``pooled``) and
        ``cv_summary``: the variant, its label, its inputs and the summary rows as
        plain JSON, which the results table reads.
    """
    spec = ExperimentSpec.from_params(experiment, networks)
    metrics = summarise_folds(cv_predictions)
    summary_rows = metrics.set_index("scope").loc[["mean", "sd", "pooled"]]
    summary = {
        "label": spec.label,
        "experiment": spec.to_dict(),
        "folds": fingerprint_folds(cv_folds),
        "n_outer_folds": int(cv_folds["outer_fold"].nunique()),
        "n_tracks": int(cv_predictions["musicId"].nunique()),
        "n_repeats": int(cv_predictions.get("repeat", pd.Series([0])).nunique()),
        "inputs": cv_models.get("inputs", {}),
        "metrics": {
            scope: {m: float(row[m]) for m in METRIC_COLUMNS}
            for scope, row in summary_rows.iterrows()
        },
    }
    return metrics, summary
