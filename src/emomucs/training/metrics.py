"""RMSE and R² per emotion dimension: per training repeat and outer fold, pooled per
repeat, summarised over repeats, and paired differences between two variants.

Scores come from scikit-learn; t quantiles from scipy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

DIMENSIONS = ("valence", "arousal")
METRICS = {"rmse": "RMSE", "r2": "R²"}
"""Metric -> its name in tables and figures; every metric is scored per dimension."""
METRIC_COLUMNS = [f"{m}_{d}" for m in METRICS for d in DIMENSIONS]
LOWER_IS_BETTER = frozenset(f"rmse_{d}" for d in DIMENSIONS)
"""Metrics where a smaller value is the better model."""


def metric_name(column: str, short: bool = False) -> str:
    """A metric column as readers see it: ``RMSE valence``, or ``RMSE V`` when
    ``short``."""
    metric, _, dimension = column.partition("_")
    return f"{METRICS[metric]} {dimension[0].upper() if short else dimension}"


def metric_title(column: str) -> str:
    """``RMSE valence (lower is better)``."""
    better = "lower" if column in LOWER_IS_BETTER else "higher"
    return f"{metric_name(column)} ({better} is better)"


SUMMARY_SCOPES = ("mean", "sd", "pooled", "pooled_sd")
"""Rows of a variant's summary: ``mean``/``sd`` over outer folds × repeats,
``pooled``/``pooled_sd`` over repeats of the pooled score of each repeat."""


def attention_column(dimension: str, source: str) -> str:
    """The ``cv_predictions`` column holding a track's attention weight of
    ``source`` for ``dimension`` (attention fusion only), e.g.
    ``attention_valence_vocals``; scores ignore these columns."""
    return f"attention_{dimension}_{source}"


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error (scikit-learn's ``mean_squared_error``, rooted)."""
    from sklearn.metrics import mean_squared_error  # here: workers never import it

    return float(np.sqrt(mean_squared_error(y_true, y_pred)))


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination (scikit-learn's ``r2_score``).

    A constant target gives 1.0 for a perfect prediction and 0.0 otherwise
    (scikit-learn's ``force_finite``).
    """
    from sklearn.metrics import r2_score

    return float(r2_score(y_true, y_pred))


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


def with_repeat(predictions: pd.DataFrame) -> pd.DataFrame:
    """``predictions`` with an integer ``repeat`` column (0 where it had none)."""
    if "repeat" in predictions.columns:
        return predictions.astype({"repeat": int})
    return predictions.assign(repeat=0)


def summarise_folds(predictions: pd.DataFrame) -> pd.DataFrame:
    """Scores per (repeat, outer fold), per repeat pooled, and their summaries.

    Pooled scores treat the out-of-fold predictions of one repeat's outer folds as
    one set; they differ from the mean of per-fold scores (R² especially), so both
    are kept. ``predictions`` without a ``repeat`` column is one repeat (0).

    Returns:
        Columns ``scope``, ``repeat``, ``outer_fold``, ``n_tracks`` and the metric
        columns; rows ``fold`` (one per repeat and outer fold), ``repeat`` (pooled
        over one repeat's outer folds; ``outer_fold`` −1), then, with ``repeat`` and
        ``outer_fold`` −1: ``mean`` and ``sd`` (ddof 1) over the ``fold`` rows,
        ``pooled`` and ``pooled_sd`` (ddof 1; NaN for one repeat) over the
        ``repeat`` rows.
    """
    predictions = with_repeat(predictions)
    folds, repeats = [], []
    for (r, k), part in predictions.groupby(["repeat", "outer_fold"], sort=True):
        folds.append(
            {"scope": "fold", "repeat": r, "outer_fold": k, "n_tracks": len(part)}
            | score(part)
        )
    for r, part in predictions.groupby("repeat", sort=True):
        repeats.append(
            {"scope": "repeat", "repeat": r, "outer_fold": -1, "n_tracks": len(part)}
            | score(part)
        )
    per_fold, per_repeat = pd.DataFrame(folds), pd.DataFrame(repeats)
    n_tracks = predictions["musicId"].nunique()
    sd_repeats = (
        per_repeat[METRIC_COLUMNS].std(ddof=1)
        if len(per_repeat) > 1
        else pd.Series(np.nan, index=METRIC_COLUMNS)
    )
    summary = pd.DataFrame(
        [
            {"scope": "mean", **per_fold[METRIC_COLUMNS].mean().to_dict()},
            {"scope": "sd", **per_fold[METRIC_COLUMNS].std(ddof=1).to_dict()},
            {"scope": "pooled", **per_repeat[METRIC_COLUMNS].mean().to_dict()},
            {"scope": "pooled_sd", **sd_repeats.to_dict()},
        ]
    ).assign(repeat=-1, outer_fold=-1, n_tracks=n_tracks)
    table = pd.concat([per_fold, per_repeat, summary], ignore_index=True)
    table = table[["scope", "repeat", "outer_fold", "n_tracks", *METRIC_COLUMNS]]
    return table.astype({"repeat": int, "outer_fold": int, "n_tracks": int})


def paired_difference(
    differences: np.ndarray, test_train_ratio: float, level: float = 0.95
) -> dict[str, float]:
    """Mean of paired differences with Nadeau and Bengio's corrected t interval.

    ``differences`` holds one value per (repeat, outer fold) — a variant's score
    minus its baseline's on the same test fold. These are not independent: every
    two outer folds share most of their training tracks, so the plain t interval
    over them is too narrow. Nadeau & Bengio (2003, *Machine Learning* 52) widen
    the variance by ``1/J + n_test/n_train`` instead of ``1/J`` (``J`` resamples);
    Bouckaert & Frank (2004) use it for repeated k-fold CV, where ``n_test/n_train``
    is ``1/(k − 1)``. The correction is itself an approximation (it assumes the
    correlation between resamples is ``n_test/n``), not an exact bound.

    Args:
        differences: One paired difference per resample.
        test_train_ratio: Test-fold size over training-part size.
        level: Two-sided confidence level.

    Returns:
        ``n``, ``mean``, ``sd`` (ddof 1), ``ci_low``/``ci_high`` (corrected),
        ``ci_low_naive``/``ci_high_naive`` (plain t over the resamples, for
        comparison), ``t`` and ``p_value`` (corrected, two-sided); NaN where
        fewer than two differences exist.
    """
    d = np.asarray(differences, dtype=float)
    n = len(d)
    result = {"n": n, "mean": float(d.mean()) if n else np.nan}
    keys = ("sd", "ci_low", "ci_high", "ci_low_naive", "ci_high_naive", "t", "p_value")
    if n < 2:
        return result | dict.fromkeys(keys, np.nan)
    sd = float(d.std(ddof=1))
    from scipy import stats

    quantile = float(stats.t.ppf(0.5 + level / 2, df=n - 1))
    corrected = sd * np.sqrt(1 / n + test_train_ratio)
    naive = sd * np.sqrt(1 / n)
    if corrected > 0:
        t = result["mean"] / corrected
        p = float(2 * stats.t.sf(abs(t), df=n - 1))
    else:  # identical differences: exact, no spread
        t = np.inf if result["mean"] else 0.0
        p = 0.0 if result["mean"] else 1.0
    return result | {
        "sd": sd,
        "ci_low": result["mean"] - quantile * corrected,
        "ci_high": result["mean"] + quantile * corrected,
        "ci_low_naive": result["mean"] - quantile * naive,
        "ci_high_naive": result["mean"] + quantile * naive,
        "t": float(t),
        "p_value": p,
    }


def compare_folds(
    variant: list[dict[str, Any]],
    baseline: list[dict[str, Any]],
    n_tracks: int,
    level: float = 0.95,
) -> dict[str, dict[str, float]]:
    """Paired differences (variant − baseline) of every metric.

    Args:
        variant: Per-fold scores, dicts with ``repeat``, ``outer_fold``,
            ``n_tracks`` and the metric columns (a summary's ``per_fold``).
        baseline: The same for the baseline, on the same folds.
        n_tracks: Tracks in the corpus (test fold + training part).
        level: Two-sided confidence level.

    Returns:
        Metric -> :func:`paired_difference`; pairs are the (repeat, outer fold)
        both have.
    """
    ours = {(f["repeat"], f["outer_fold"]): f for f in variant}
    theirs = {(f["repeat"], f["outer_fold"]): f for f in baseline}
    pairs = sorted(set(ours) & set(theirs))
    n_test = float(np.mean([ours[p]["n_tracks"] for p in pairs])) if pairs else 0.0
    ratio = n_test / (n_tracks - n_test) if n_tracks > n_test else np.nan
    return {
        metric: paired_difference(
            [ours[p][metric] - theirs[p][metric] for p in pairs], ratio, level
        )
        | {"test_train_ratio": ratio}
        for metric in METRIC_COLUMNS
    }
