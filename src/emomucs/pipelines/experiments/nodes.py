"""Experiments: shared folds, nested CV of one variant, and its scores.

Thin wrappers around :mod:`emomucs.training`; every variant runs the same nodes
with its own namespace's ``experiment`` parameters.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from emomucs.datasets.summary_dataset import store_name
from emomucs.fingerprints import (
    code_fingerprint,
    corpus_fingerprint,
    settings_fingerprint,
)
from emomucs.interpret import ContributionOptions, source_contributions
from emomucs.training import (
    CVOptions,
    ExperimentSpec,
    FeatureSet,
    assign_folds,
    run_nested_cv,
    summarise_folds,
)
from emomucs.training.data import describe_inputs
from emomucs.training.folds import fingerprint_folds
from emomucs.training.metrics import METRIC_COLUMNS, SUMMARY_SCOPES

UNRECORDED_TRAINING = ("cache_dir", "progress", "num_threads", "workers")
"""Training parameters that do not change a score (where, on how many processes
and how verbosely)."""


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


def training_settings(training: dict[str, Any]) -> dict[str, Any]:
    """The ``training`` parameters that change a variant's scores."""
    return {k: v for k, v in training.items() if k not in UNRECORDED_TRAINING}


def check_pretrained_settings(
    label: str,
    features: FeatureSet,
    training: dict[str, Any],
    pretrained: dict[str, dict[str, Any]],
) -> None:
    """Raise ``ValueError`` when a finetune/freeze variant's single-source models
    were trained on other audio, other features or other standardisation.

    Args:
        label: The variant, for messages.
        features: The variant's feature set.
        training: The variant's ``training`` parameters.
        pretrained: Source -> that source's ``cv_models``.
    """
    inputs = describe_inputs(features)
    wanted = {
        "audio": inputs["audio"],
        "features": inputs["features"],
        "standardise": bool(training.get("standardise", False)),
    }
    for source, models in sorted(pretrained.items()):
        recorded = models.get("inputs", {})
        standardise = models.get("training", {}).get("standardise")
        if "features" not in recorded or standardise is None:
            raise ValueError(
                f"{label}: the {source!r} models ({models.get('label')}) do not "
                "record their feature and standardisation settings (trained by an "
                "older version); rerun them (kedro run --pipeline=sources)"
            )
        found = {
            "audio": recorded.get("audio"),
            "features": recorded["features"],
            "standardise": bool(standardise),
        }
        differing = [k for k in wanted if found[k] != wanted[k]]
        if differing:
            details = "; ".join(
                f"{k}: {found[k]!r} there, {wanted[k]!r} here" for k in differing
            )
            raise ValueError(
                f"{label}: the {source!r} models ({models.get('label')}) were "
                f"trained with other {', '.join(differing)} ({details}); rerun them"
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
            in any order (each names its source); they must have been trained on
            the same audio and features, with the same standardisation.

    Returns:
        ``cv_models`` (every split's checkpoint, which one was tested, and the
        ``training`` settings that changed the scores), ``cv_predictions``
        (out-of-fold, one row per track and repeat) and ``training_log``.
    """
    spec = ExperimentSpec.from_params(experiment, networks)
    by_source = {}
    for models in pretrained:
        source = models["experiment"]["sources"][0]
        if source in by_source:
            raise ValueError(f"{spec.label}: two pretrained model sets for {source!r}")
        by_source[source] = models
    if spec.pretrained:
        check_pretrained_settings(
            spec.label,
            features,
            training,
            {s: m for s, m in by_source.items() if s in spec.sources},
        )
    result = run_nested_cv(
        spec,
        features,
        track_table,
        cv_folds,
        CVOptions.from_params(training),
        pretrained=by_source,
    )
    return (
        {**result.models, "training": training_settings(training)},
        result.predictions,
        result.log,
    )


def _plain(value: float) -> float | None:
    """A float for JSON; None for NaN (an sd over one repeat)."""
    return None if pd.isna(value) else float(value)


def evaluate_predictions(
    cv_predictions: pd.DataFrame,
    cv_folds: pd.DataFrame,
    cv_models: dict[str, Any],
    track_table: pd.DataFrame,
    experiment: dict[str, Any],
    networks: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Scores per (repeat, outer fold), pooled per repeat, and their summaries,
    with every setting that changes them.

    Args:
        cv_predictions: Out-of-fold predictions of the variant (a ``repeat``
            column when trained more than once; absent means one repeat).
        cv_folds: The shared fold table.
        cv_models: The variant's models; they name the inputs and training
            settings they were trained with.
        track_table: The corpus (its track ids and labels are fingerprinted).
        experiment: The variant's parameters.
        networks: Arguments shared by every variant of a network.

    Returns:
        ``cv_metrics`` (see :func:`~emomucs.training.summarise_folds`) and
        ``cv_summary``, plain JSON the results table reads:

        - ``label``, ``experiment``, ``folds``, ``n_outer_folds``, ``n_repeats``,
          ``n_tracks``, ``inputs``;
        - ``metrics``: ``mean``/``sd`` over outer folds × repeats,
          ``pooled``/``pooled_sd`` over repeats (sd None for one repeat);
        - ``per_fold`` (repeat, outer fold, tracks, scores) and ``per_repeat``,
          which paired differences between variants use;
        - ``settings``: corpus, audio, folds, features, training, the network's
          shared arguments and the code; ``fingerprint`` hashes them with the
          experiment; ``key`` (audio and corpus) names the summary's file in the
          results store.
    """
    spec = ExperimentSpec.from_params(experiment, networks)
    metrics = summarise_folds(cv_predictions)
    by_scope = metrics.set_index("scope")
    inputs = cv_models.get("inputs", {})
    corpus = corpus_fingerprint(track_table)
    audio = inputs.get("audio", "unknown")
    settings = {
        "corpus": {"fingerprint": corpus, "n_tracks": len(track_table)},
        "audio": audio,
        "folds": fingerprint_folds(cv_folds),
        "features": inputs.get("features", {}),
        "training": cv_models.get("training", {}),
        "network": {spec.network: spec.network_kwargs},
        "code": code_fingerprint(),
    }

    def rows(scope: str) -> list[dict[str, Any]]:
        part = metrics[metrics["scope"] == scope]
        keep = ["repeat", "outer_fold", "n_tracks"]
        return [
            {k: int(row[k]) for k in keep} | {m: float(row[m]) for m in METRIC_COLUMNS}
            for _, row in part.iterrows()
        ]

    per_fold = rows("fold")
    summary = {
        "label": spec.label,
        "experiment": spec.to_dict(),
        "folds": settings["folds"],
        "n_outer_folds": int(cv_folds["outer_fold"].nunique()),
        "n_repeats": len({f["repeat"] for f in per_fold}),
        "n_tracks": int(cv_predictions["musicId"].nunique()),
        "inputs": inputs,
        "metrics": {
            scope: {m: _plain(by_scope.loc[scope, m]) for m in METRIC_COLUMNS}
            for scope in SUMMARY_SCOPES
        },
        "per_fold": per_fold,
        "per_repeat": [
            {k: v for k, v in r.items() if k != "outer_fold"} for r in rows("repeat")
        ],
        "settings": settings,
        "fingerprint": settings_fingerprint([settings, spec.to_dict()]),
        "key": f"{store_name(audio)}__{corpus}",
    }
    return metrics, summary


def compute_source_contributions(
    features: FeatureSet,
    track_table: pd.DataFrame,
    cv_folds: pd.DataFrame,
    cv_models: dict[str, Any],
    cv_predictions: pd.DataFrame,
    training: dict[str, Any],
    options: dict[str, Any],
    true_shares: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Each source's contribution to a multi-source variant's predictions.

    Ablation by silence and by the training-part mean, the fusion head's Shapley
    values and, for attention fusion, the mean attention weights (see
    :mod:`emomucs.interpret.contributions`), from the stored models: nothing is
    retrained.

    Args:
        features: The feature set the variant was trained on.
        track_table: Labels.
        cv_folds: The shared fold table.
        cv_models: The variant's models.
        cv_predictions: Its out-of-fold predictions (checked against the models).
        training: The ``training`` parameters (``eval_batch_size``, ``device``).
        options: The ``contributions`` parameters (``shapley``, ``tolerance``).
        true_shares: The corpus' true source shares per dimension (a synthetic
            corpus' ``contributions.json``; empty for real data): kept in the
            summary, so a ranking is only ever compared with its own corpus' truth.

    Returns:
        ``contributions`` (source × dimension × method × scope) and
        ``contribution_summary``: the pooled rows averaged over repeats as plain
        JSON, which the results table and the figure across variants read, with
        ``key`` (audio and corpus: its file in the store, as ``cv_summary``'s).
    """
    table = source_contributions(
        cv_models,
        features,
        track_table,
        cv_folds,
        cv_predictions,
        ContributionOptions.from_params(training, options),
    )
    pooled = table[(table["repeat"] == -1) & (table["scope"] == "pooled")]
    inputs = cv_models.get("inputs", {})
    corpus = corpus_fingerprint(track_table)
    summary = {
        "label": cv_models.get("label"),
        "folds": fingerprint_folds(cv_folds),
        "corpus": corpus,
        "key": f"{store_name(inputs.get('audio', 'unknown'))}__{corpus}",
        "true_shares": dict(true_shares) if true_shares else None,
        "inputs": inputs,
        "n_repeats": int(table.loc[table["repeat"] >= 0, "repeat"].nunique()) or 1,
        "pooled": json.loads(
            pooled.drop(columns=["label", "repeat", "scope", "outer_fold"]).to_json(
                orient="records"
            )
        ),
    }
    return table, summary
