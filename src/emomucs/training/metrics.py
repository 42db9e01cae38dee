"""RMSE and R² per emotion dimension, per outer fold and on pooled predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd

DIMENSIONS = ("valence", "arousal")
METRICS = ("rmse", "r2")
METRIC_COLUMNS = [f"{m}_{d}" for m in METRICS for d in DIMENSIONS]


def attention_column(dimension: str, source: str) -> str:
    """The ``cv_predictions`` column holding a track's attention weight of
    ``source`` for ``dimension`` (attention fusion only), e.g.
    ``attention_valence_vocals``; scores ignore these columns."""
    return f"attention_{dimension}_{source}"


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination, as scikit-learn's ``r2_score``.

    A constant target gives 1.0 for a perfect prediction and 0.0 otherwise, which is
    scikit-learn's convention too.
    """
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    residual = np.sum((y_true - y_pred) ** 2)
    total = np.sum((y_true - y_true.mean()) ** 2)
    if total == 0:
        return 1.0 if residual == 0 else 0.0
    return float(1.0 - residual / total)


def score(predictions: pd.DataFrame) -> dict[str, float]:
    """RMSE and R² of each dimension.

    Args:
        predictions: Columns ``valence``, ``arousal`` (targets) and
            ``valence_pred``, ``arousal_pred``.
    """
    scores = {}
    for dim in DIMENSIONS:
        truth, guess = predictions[dim], predictions[f"{dim}_pred"]
        scores[f"rmse_{dim}"] = rmse(truth, guess)
        scores[f"r2_{dim}"] = r2(truth, guess)
    return scores


def summarise_folds(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per-(repeat, outer fold) scores, their mean and sample sd, and the pooled
    scores.

    Pooled scores treat the out-of-fold predictions of all outer folds of a repeat
    as one set, averaged over repeats; they differ from the mean of per-fold scores
    (R² especially), so both are kept. Predictions without a ``repeat`` column are
    one repeat, 0.

    Returns:
        Rows ``fold`` (one per repeat and outer fold), ``mean``, ``sd`` (ddof 1,
        over the ``fold`` rows) and ``pooled``; columns ``scope``, ``repeat`` and
        ``outer_fold`` (−1 for the summaries), ``n_tracks`` and the metric columns.
    """
    if "repeat" not in predictions.columns:
        predictions = predictions.assign(repeat=0)
    rows = []
    for (r, k), part in predictions.groupby(["repeat", "outer_fold"], sort=True):
        rows.append(
            {"scope": "fold", "repeat": int(r), "outer_fold": int(k)}
            | {"n_tracks": len(part)}
            | score(part)
        )
    per_fold = pd.DataFrame(rows)
    by_repeat = [score(part) for _, part in predictions.groupby("repeat", sort=True)]
    n_total = len(predictions) // len(by_repeat)
    summary = [
        {"scope": "mean", **per_fold[METRIC_COLUMNS].mean().to_dict()},
        {"scope": "sd", **per_fold[METRIC_COLUMNS].std(ddof=1).to_dict()},
        {"scope": "pooled", **pd.DataFrame(by_repeat).mean().to_dict()},
    ]
    summary = pd.DataFrame(summary).assign(repeat=-1, outer_fold=-1, n_tracks=n_total)
    table = pd.concat([per_fold, summary], ignore_index=True)
    return table[["scope", "repeat", "outer_fold", "n_tracks", *METRIC_COLUMNS]]
