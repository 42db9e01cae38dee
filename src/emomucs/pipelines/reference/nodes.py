"""Reference: ridge regression on per-band log-mel statistics, on the shared folds.

The networks see a log-mel spectrogram; the reference sees a few numbers per mel
band of the same spectrogram (its mean and sd over time) and fits a standardised
ridge regression on each outer fold's training part, so its out-of-fold R² says how
much of the labels the features carry in a form a linear model can read. Run on the
true stems of the synthetic corpus, it shows whether the corpus' cues are audible in
40 mel bands (its R² should come near ``ceiling.json``'s); run beside a variant, it
is the bar that variant should reach on the same folds and the same stems.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression, RidgeCV
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from emomucs.datasets.summary_dataset import store_name
from emomucs.fingerprints import corpus_fingerprint
from emomucs.training import FeatureSet
from emomucs.training.folds import TEST, fingerprint_folds
from emomucs.training.metrics import DIMENSIONS, METRICS, summarise_folds

logger = logging.getLogger(__name__)

ALL_STEMS = "stems"
"""Input set of every stem: one ridge per stem, stacked (:class:`_StackedRidge`)."""

ALL_STEMS_CONCATENATED = "stems_concatenated"
"""Input set of every stem's statistics side by side, in one ridge."""

BandStatistics = dict[str, Any]
"""``music_ids`` (array), ``sources`` (list) and ``values``:
``(tracks, sources, statistics)`` float64."""

_STATISTICS = {
    "mean": lambda frames: frames.mean(axis=-1),
    "sd": lambda frames: frames.std(axis=-1),
}


def summarise_bands(
    features: FeatureSet, track_table: pd.DataFrame, options: dict[str, Any]
) -> BandStatistics:
    """Per-band statistics over time of each track's and source's log-mel.

    Args:
        features: A ``log_mel`` feature set ``(tracks, sources, n_mels, frames)``.
        track_table: ``musicId`` and ``padded_s`` (the zero padding at the end of a
            clip shorter than the clip length).
        options: ``statistics`` (names among ``mean``, ``sd``) and
            ``exclude_padding``: when true, frames of the end padding are left out
            (they sit at the floor in every band and would lower every mean by the
            share of padding, a nuisance common to all sources).

    Returns:
        The statistics, ``n_mels`` per statistic, per track and source.

    Raises:
        ValueError: ``features`` is not a log-mel set, names an unknown statistic, or
            holds a track the track table lacks.
    """
    if features["representation"] != "log_mel":
        raise ValueError(
            f"reference: needs a log_mel feature set, got {features['representation']}"
        )
    names = list(options["statistics"])
    unknown = sorted(set(names) - set(_STATISTICS))
    if unknown:
        raise ValueError(
            f"reference: unknown statistics {unknown}, choose from {sorted(_STATISTICS)}"
        )
    music_ids = features["music_ids"].numpy()
    padded = track_table.set_index("musicId")["padded_s"]
    missing = sorted(set(music_ids.tolist()) - set(padded.index))
    if missing:
        raise ValueError(f"track {missing[0]}: in the features, not in track_table")
    values = features["values"].numpy()
    hop = int(features["settings"]["hop_length"])
    rate = int(features["sample_rate"])
    frames = values.shape[-1]
    rows = np.empty((len(music_ids), values.shape[1], len(names) * values.shape[2]))
    for row, music_id in enumerate(music_ids):
        kept = frames
        if options.get("exclude_padding", True):
            padding_frames = int(float(padded[music_id]) * rate // hop)
            kept = max(1, frames - padding_frames)
        track = values[row, :, :, :kept].astype(np.float64)
        rows[row] = np.concatenate(
            [_STATISTICS[name](track) for name in names], axis=-1
        )
    attrs = features["settings"].get("audio_attrs", {})
    return {
        "music_ids": music_ids,
        "sources": list(features["sources"]),
        "values": rows,
        "statistics": names,
        "separator": attrs.get("separator", attrs.get("kind", "unknown")),
    }


def _input_sets(
    mix: BandStatistics, stems: BandStatistics
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``name -> (music_ids, X)``: the mix, all stems (stacked and concatenated),
    each stem alone. ``X`` is ``(tracks, features)``, or ``(tracks, sources,
    features)`` for the stacked set."""
    sets = {"mix": (mix["music_ids"], mix["values"].reshape(len(mix["values"]), -1))}
    values = stems["values"]
    sets[ALL_STEMS] = (stems["music_ids"], values)
    sets[ALL_STEMS_CONCATENATED] = (stems["music_ids"], values.reshape(len(values), -1))
    for index, source in enumerate(stems["sources"]):
        sets[source] = (stems["music_ids"], values[:, index])
    return sets


def _ridge(options: dict[str, Any]):
    alphas = np.logspace(*options["alpha_log10_range"], int(options["n_alphas"]))
    # RidgeCV picks each target's alpha by leave-one-out on the training part only
    return make_pipeline(
        StandardScaler(), RidgeCV(alphas=alphas, alpha_per_target=True)
    )


class _StackedRidge:
    """One ridge per source, combined by a non-negative linear regression.

    The combination is fitted on the sources' out-of-fold predictions over
    ``stacking_folds`` splits of the training part, so it weighs each source by
    what it predicts on tracks its ridge has not seen. With the cues spread over
    sources, this needs far fewer tracks than one ridge over every source's
    statistics side by side (which is reported too, as ``stems_concatenated``).
    """

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options

    def fit(self, values: np.ndarray, targets: np.ndarray) -> _StackedRidge:
        # a small corpus' training part may hold fewer tracks than stacking_folds
        splits = min(int(self.options["stacking_folds"]), len(values))
        if splits < 2:
            raise ValueError(
                f"reference: {len(values)} training track(s) cannot fit the stacking"
            )
        folds = KFold(splits, shuffle=True, random_state=0)
        sources = range(values.shape[1])
        inner = np.stack(
            [
                cross_val_predict(_ridge(self.options), values[:, s], targets, cv=folds)
                for s in sources
            ],
            axis=1,
        )  # (tracks, sources, targets)
        self.ridges = [_ridge(self.options).fit(values[:, s], targets) for s in sources]
        self.combiners = [
            LinearRegression(positive=True).fit(inner[:, :, t], targets[:, t])
            for t in range(targets.shape[1])
        ]
        return self

    def predict(self, values: np.ndarray) -> np.ndarray:
        each = np.stack(
            [ridge.predict(values[:, s]) for s, ridge in enumerate(self.ridges)], axis=1
        )
        return np.column_stack(
            [c.predict(each[:, :, t]) for t, c in enumerate(self.combiners)]
        )


def _regressor(name: str, options: dict[str, Any]):
    return _StackedRidge(options) if name == ALL_STEMS else _ridge(options)


def score_reference(
    mix: BandStatistics,
    stems: BandStatistics,
    track_table: pd.DataFrame,
    cv_folds: pd.DataFrame,
    options: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit and score the reference on every outer fold, for every input set.

    Each outer fold's regressor is fitted on that fold's training tracks (every
    track whose ``inner_fold`` is not ``-1``) and predicts its test tracks, as the
    networks' folds do; the ridge penalty is chosen inside the training part.

    Args:
        mix: Band statistics of the mix.
        stems: Band statistics of the stems (the run's separator's, or the true
            ones with the oracle separator).
        track_table: ``musicId``, ``valence``, ``arousal`` (on [-1, 1]).
        cv_folds: The shared fold table.
        options: ``alpha_log10_range`` and ``n_alphas`` (the ridge penalties tried)
            and ``stacking_folds`` (splits of the training part that fit the
            stacked ridge's combination).

    Returns:
        The scores, one row per input set × dimension × scope (``fold`` per outer
        fold, ``mean``, ``sd``, ``pooled``) with ``rmse`` and ``r2``; and the
        out-of-fold predictions (``input_set``, ``outer_fold``, ``musicId``,
        targets and ``<dimension>_pred``).
    """
    labels = track_table.set_index("musicId")[list(DIMENSIONS)]
    predictions = []
    for name, (music_ids, values) in _input_sets(mix, stems).items():
        row_of = {int(m): i for i, m in enumerate(music_ids)}
        for outer, fold in cv_folds.groupby("outer_fold", sort=True):
            test = fold.loc[fold["inner_fold"] == TEST, "musicId"].astype(int)
            train = fold.loc[fold["inner_fold"] != TEST, "musicId"].astype(int)
            absent = sorted((set(test) | set(train)) - set(row_of))
            if absent:
                raise ValueError(
                    f"track {absent[0]}: in cv_folds, not in the {name} features"
                )
            model = _regressor(name, options)
            model.fit(values[[row_of[m] for m in train]], labels.loc[train].to_numpy())
            guess = model.predict(values[[row_of[m] for m in test]])
            part = labels.loc[test].reset_index()
            part[[f"{d}_pred" for d in DIMENSIONS]] = guess
            predictions.append(part.assign(input_set=name, outer_fold=int(outer)))
    predictions = pd.concat(predictions, ignore_index=True)
    scores = []
    for name, part in predictions.groupby("input_set", sort=False):
        table = summarise_folds(part)
        # fitted once: the scopes over repeats say nothing here
        table = table[table["scope"].isin(["fold", "mean", "sd", "pooled"])]
        for dimension in DIMENSIONS:
            scores.append(
                table[["scope", "outer_fold", "n_tracks"]].assign(
                    input_set=name,
                    dimension=dimension,
                    **{m: table[f"{m}_{dimension}"] for m in METRICS},
                )
            )
    scores = pd.concat(scores, ignore_index=True)
    columns = ["input_set", "dimension", "scope", "outer_fold", "n_tracks"]
    columns += list(METRICS)
    order = ["input_set", "outer_fold", "musicId", *DIMENSIONS]
    order += [f"{d}_pred" for d in DIMENSIONS]
    return scores[columns], predictions[order]


def summarise_reference(
    scores: pd.DataFrame,
    stems: BandStatistics,
    ceiling: dict[str, Any],
    track_table: pd.DataFrame,
    cv_folds: pd.DataFrame,
    options: dict[str, Any],
) -> dict[str, Any]:
    """Pooled R² per input set and dimension, beside the corpus' ceiling.

    Args:
        scores: :func:`score_reference`'s table.
        stems: The stems' band statistics (for the separator that made them).
        ceiling: The corpus' ``ceiling.json`` (empty for a corpus without one,
            e.g. real PMEmo).
        track_table: The corpus (its fingerprint names the summary).
        cv_folds: The folds the reference was scored on (their fingerprint lets
            the results table compare it with variants on the same folds only).
        options: ``tolerance``: how far below the ceiling the reference on all
            stems may stay and still count as reaching it.

    Returns:
        ``pooled_r2`` and ``fold_sd_r2`` (``{input_set: {dimension: value}}``),
        ``stems`` (the separator), ``corpus`` and ``folds`` (fingerprints),
        ``key`` (stems and corpus: the summary's file in the store), and, with a
        ceiling, ``ceiling`` (theoretical and empirical R² per dimension),
        ``gap_to_ceiling`` (the empirical ceiling minus the stems' pooled R²) and
        ``reaches_ceiling``.
    """
    pooled = scores[scores["scope"] == "pooled"]
    spread = scores[scores["scope"] == "sd"]
    separator = str(stems.get("separator", "unknown"))
    corpus = corpus_fingerprint(track_table)
    summary: dict[str, Any] = {
        "regressor": (
            "standardised ridge (RidgeCV, leave-one-out alpha per target); "
            f"'{ALL_STEMS}': one per stem, stacked by a non-negative linear "
            "regression on inner out-of-fold predictions"
        ),
        "features": "per-band log-mel " + " and ".join(stems.get("statistics", [])),
        "stems": separator,
        "corpus": corpus,
        "folds": fingerprint_folds(cv_folds),
        "key": f"{store_name(separator)}__{corpus}",
        "n_tracks": int(pooled["n_tracks"].max()),
        "n_outer_folds": int(
            scores.loc[scores["scope"] == "fold", "outer_fold"].nunique()
        ),
        "pooled_r2": {
            name: dict(zip(part["dimension"], part["r2"].astype(float), strict=True))
            for name, part in pooled.groupby("input_set", sort=False)
        },
        "fold_sd_r2": {
            name: dict(zip(part["dimension"], part["r2"].astype(float), strict=True))
            for name, part in spread.groupby("input_set", sort=False)
        },
    }
    if not ceiling or not all(d in ceiling for d in DIMENSIONS):
        summary["ceiling"] = None
        logger.info("reference: the corpus has no ceiling.json; no ceiling to compare")
        return summary
    tolerance = float(options["tolerance"])
    summary["ceiling"] = {
        d: {
            "r2_theoretical": float(ceiling[d]["r2_theoretical"]),
            "r2_empirical": float(ceiling[d]["r2_empirical"]),
        }
        for d in DIMENSIONS
    }
    reached = summary["pooled_r2"][ALL_STEMS]
    gaps = {d: summary["ceiling"][d]["r2_empirical"] - reached[d] for d in DIMENSIONS}
    summary["gap_to_ceiling"] = gaps
    summary["tolerance"] = tolerance
    summary["reaches_ceiling"] = bool(all(g <= tolerance for g in gaps.values()))
    for d in DIMENSIONS:
        logger.info(
            "reference on %s stems: pooled %s R² %.3f, ceiling %.3f (gap %.3f)",
            summary["stems"],
            d,
            reached[d],
            summary["ceiling"][d]["r2_empirical"],
            gaps[d],
        )
    return summary
