"""How much each source contributes to an EmoMucs variant's predictions.

Computed from the stored models and features, without retraining: every outer
fold's tested model (:func:`emomucs.training.selected_models`) predicts that fold's
test tracks intact and with one source taken away. Methods (the ``method`` column):

- ``silence``: the source's input replaced by the features of digital silence,
  made by the project's own feature code (:func:`silence_features`). For the
  log-mel that is 0 dB in every band and frame: ``power_to_db(ref=max)`` measures
  each clip against its own maximum, and a silent clip's maximum is its floor.
  Far from any input the model has seen: it asks what the model does when the
  stem is silent, as the pipeline would feature it.
- ``mean``: the source's input replaced by its mean over the training tracks of
  the split the model was trained on (per band and frame). An input the model
  has seen the like of, carrying no track-specific cue.
- ``shapley``: exact Shapley values of the fusion head over sources (every fusion:
  the head reads the sources' parts, ``EmoMucs.fuse``): all ``2**n_sources``
  coalitions, an absent source's part (for late fusion: its own valence and arousal
  output) set to its mean over the split's training tracks.
  Exact for the head and this baseline; the head is not linear (ReLU), so
  interactions between sources are shared out equally, and coalitions put parts
  side by side that never co-occurred in training.
- ``attention``: the mean attention weight of the source, where the variant's
  ``cv_predictions`` carry ``attention_<dimension>_<source>`` columns.

For ``silence`` and ``mean``, ``r2_drop`` is the R² of the intact model minus the
R² with the source ablated, and ``mean_abs_change`` the mean absolute change of a
track's prediction. For ``shapley``, ``r2_drop`` is the source's Shapley share of
the R² game (the shares add up to R² with every source minus R² with none) and
``mean_abs_change`` the mean absolute Shapley value of a track's prediction. For
``attention``, ``mean_weight``. Scopes: ``fold`` (one outer fold), ``mean`` (over
outer folds) and ``pooled`` (all outer folds' test tracks as one set); each repeat
(seed) is scored on its own, then averaged over repeats (``repeat`` −1).
"""

from __future__ import annotations

import inspect
import math
from collections import Counter
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import torch

from emomucs.models import from_checkpoint
from emomucs.training import (
    SelectedModel,
    Standardiser,
    predict,
    r2,
    selected_models,
)
from emomucs.training.data import (
    FeatureSet,
    select_inputs,
    select_labels,
    validate_features,
)
from emomucs.training.folds import TEST
from emomucs.training.loop import resolve_device
from emomucs.training.metrics import DIMENSIONS, attention_column

ABLATIONS = ("silence", "mean")
"""Input ablations: what replaces the source's features."""

METHODS = (*ABLATIONS, "shapley", "attention")

PART_FUSIONS = ("early", "mid", "late", "attention")
"""Fusions whose head reads the sources' parts, each computed from its own source's
input alone (``EmoMucs.fuse``): ablations recompute one part, and the head's
Shapley values are taken over the parts."""

COLUMNS = [
    "label",
    "repeat",
    "scope",
    "outer_fold",
    "n_tracks",
    "method",
    "source",
    "dimension",
    "r2_model",
    "r2_without",
    "r2_drop",
    "mean_abs_change",
    "mean_weight",
]
"""Columns of the contributions table."""

ALL_REPEATS = -1
"""``repeat`` of the rows averaged over repeats (the table's headline rows)."""


@dataclass(frozen=True)
class ContributionOptions:
    """Settings of the contribution computation.

    Attributes:
        eval_batch_size: Tracks per forward pass (the training's, so the intact
            predictions are those stored).
        device: ``cpu``, ``cuda``… or ``auto``.
        shapley: Compute the fusion head's Shapley values.
        tolerance: Largest difference allowed between the recomputed intact
            predictions and the stored ``cv_predictions``; more means the features
            or models are not those the predictions came from.
    """

    eval_batch_size: int = 32
    device: str = "cpu"
    shapley: bool = True
    tolerance: float = 1e-3

    @classmethod
    def from_params(cls, *params: dict[str, Any]) -> ContributionOptions:
        """Build from parameter blocks (later ones win), ignoring other keys."""
        names = {f.name for f in fields(cls)}
        merged: dict[str, Any] = {}
        for block in params:
            merged.update({k: v for k, v in (block or {}).items() if k in names})
        return cls(**merged)


def silence_features(features: FeatureSet) -> torch.Tensor:
    """One source's input for a digitally silent clip, through the feature code.

    Returns:
        ``values.shape[2:]``: zeros for a waveform; for a spectral representation
        what its function (:data:`emomucs.pipelines.features.nodes.SPECTRAL`)
        makes of a clip of zeros of the same length (a log-mel or constant-Q:
        0 dB everywhere, see the module docstring; a chromagram: zeros).
    """
    shape = tuple(features["values"].shape[2:])
    if features["representation"] == "waveform":
        return torch.zeros(shape)
    # Imported here: the feature stage imports the training package this one uses.
    from emomucs.pipelines.features.nodes import SPECTRAL

    compute = SPECTRAL[features["representation"]]
    settings = features["settings"]
    options = {
        k: settings[k] for k in inspect.signature(compute).parameters if k in settings
    }
    n_samples = (shape[-1] - 1) * int(options["hop_length"])  # librosa, centred
    silent = np.zeros((1, n_samples), dtype=np.float32)
    values = compute(silent, int(features["sample_rate"]), **options)[0]
    if values.shape != shape:
        raise ValueError(
            f"silence features have shape {values.shape}, the features {shape}"
        )
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


@dataclass
class _Fold:
    """One tested model's predictions on its outer fold, intact and ablated."""

    repeat: int
    outer: int
    truth: np.ndarray
    intact: np.ndarray
    ablated: dict[tuple[str, str], np.ndarray]
    coalitions: np.ndarray | None  # (2**n_sources, tracks, outputs), bit i: source i


def _split_ids(folds: pd.DataFrame, outer: int, inner: int) -> tuple[np.ndarray, ...]:
    part = folds[folds["outer_fold"] == outer]
    test = np.sort(part.loc[part["inner_fold"] == TEST, "musicId"].to_numpy())
    train = part.loc[
        (part["inner_fold"] != TEST) & (part["inner_fold"] != inner), "musicId"
    ].to_numpy()
    if not len(test) or not len(train):
        raise ValueError(f"outer fold {outer}, inner split {inner}: not in the folds")
    return test, np.sort(train)


def _explain_fold(
    chosen: SelectedModel,
    features: FeatureSet,
    track_table: pd.DataFrame,
    folds: pd.DataFrame,
    silence: torch.Tensor,
    options: ContributionOptions,
    label: str,
) -> _Fold:
    checkpoint = chosen.checkpoint
    where = f"{label}, repeat {chosen.repeat}, outer fold {chosen.outer}"
    if checkpoint["model"] != "EmoMucs":
        raise ValueError(f"{where}: a {checkpoint['model']} has no sources to ablate")
    sources = list(checkpoint["kwargs"]["sources"])
    model = from_checkpoint(checkpoint).to(resolve_device(options.device))
    standardise = Standardiser.from_state(checkpoint["standardiser"])
    test, train = _split_ids(folds, chosen.outer, chosen.inner)
    x_test = select_inputs(features, sources, test, label)
    x_train = select_inputs(features, sources, train, label)
    size = options.eval_batch_size
    means = x_train.mean(dim=0)  # (sources, ...): each source's training mean
    baselines = {"silence": silence.expand_as(means), "mean": means}
    if getattr(model, "fusion", None) in PART_FUSIONS:
        intact, ablated, coalitions = _ablate_parts(
            model, standardise, x_test, x_train, baselines, size, options.shapley
        )
    else:  # a model whose sources meet before its head: run the whole model
        intact = predict(model, standardise(x_test), size).numpy()
        ablated, coalitions = {}, None
        for i, source in enumerate(sources):
            for method in ABLATIONS:
                x = x_test.clone()
                x[:, i] = baselines[method][i]
                ablated[(method, source)] = predict(model, standardise(x), size).numpy()
    return _Fold(
        chosen.repeat,
        chosen.outer,
        select_labels(track_table, test).numpy(),
        intact,
        ablated,
        coalitions,
    )


def _ablate_parts(
    model,
    standardise: Standardiser,
    x_test: torch.Tensor,
    x_train: torch.Tensor,
    baselines: dict[str, torch.Tensor],
    size: int,
    shapley: bool,
) -> tuple[np.ndarray, dict[tuple[str, str], np.ndarray], np.ndarray | None]:
    """Intact and ablated predictions, and the head's coalitions, through the fused
    parts.

    Each source network computes its part from its own input alone (eval mode:
    batch-norm on running statistics, no dropout), so ablating a source only
    changes its part: the baseline's part is computed once and put in place of the
    track's, and only the head runs again. The same as running the whole model
    on the ablated input (a test checks it), at a fraction of the cost.
    """
    fused = predict(model, standardise(x_test), size, forward=model.fuse)
    # each source's columns: source networks of different kinds give parts of
    # different sizes
    slices = list(model.part_slices().values())

    def head(x: torch.Tensor) -> np.ndarray:
        return predict(model, x, size, forward=model.head).numpy()

    def with_parts(replacement: torch.Tensor, absent: list[int]) -> np.ndarray:
        x = fused.clone()
        for i in absent:
            x[:, slices[i]] = replacement[slices[i]]
        return head(x)

    ablated = {}
    for method, baseline in baselines.items():
        parts = predict(model, standardise(baseline[None]), 1, forward=model.fuse)[0]
        for i, source in enumerate(model.sources):
            ablated[(method, source)] = with_parts(parts, [i])
    coalitions = None
    if shapley:
        # An absent source's part is its mean part over the training tracks.
        mean_part = predict(model, standardise(x_train), size, forward=model.fuse)
        mean_part = mean_part.mean(dim=0)
        n = len(model.sources)
        coalitions = np.stack(
            [
                with_parts(mean_part, [i for i in range(n) if not mask >> i & 1])
                for mask in range(2**n)
            ]
        )
    return head(fused), ablated, coalitions


def shapley_values(values: np.ndarray) -> np.ndarray:
    """Exact Shapley values from a game's value of every coalition.

    Args:
        values: ``(2**n, ...)``: entry ``mask`` is the value of the coalition of
            the players whose bit is set in ``mask``.

    Returns:
        ``(n, ...)``: player ``i``'s weighted mean marginal contribution
        ``v(S ∪ {i}) − v(S)`` over coalitions ``S`` without ``i``; they add up to
        ``v(all) − v(none)``.
    """
    n = int(round(math.log2(len(values))))
    if 2**n != len(values):
        raise ValueError(f"{len(values)} coalition values: not a power of two")
    phi = np.zeros((n, *values.shape[1:]))
    for i in range(n):
        for mask in range(2**n):
            if mask >> i & 1:
                continue
            size = bin(mask).count("1")
            weight = math.factorial(size) * math.factorial(n - size - 1)
            phi[i] += (
                weight / math.factorial(n) * (values[mask | 1 << i] - values[mask])
            )
    return phi


def _score(folds: list[_Fold], sources: list[str]) -> list[dict[str, Any]]:
    """Rows of one scope: ``folds`` taken as one set of tracks."""
    truth = np.concatenate([f.truth for f in folds])
    intact = np.concatenate([f.intact for f in folds])
    rows = []
    for d, dim in enumerate(DIMENSIONS):
        r2_model = r2(truth[:, d], intact[:, d])
        common = {"dimension": dim, "r2_model": r2_model, "n_tracks": len(truth)}
        for method, source in folds[0].ablated:
            guess = np.concatenate([f.ablated[(method, source)] for f in folds])
            without = r2(truth[:, d], guess[:, d])
            rows.append(
                {
                    **common,
                    "method": method,
                    "source": source,
                    "r2_without": without,
                    "r2_drop": r2_model - without,
                    "mean_abs_change": float(np.mean(np.abs(guess - intact)[:, d])),
                }
            )
        if folds[0].coalitions is not None:
            coalitions = np.concatenate([f.coalitions[..., d] for f in folds], axis=1)
            game = np.array([r2(truth[:, d], guess) for guess in coalitions])
            shares = shapley_values(game)
            per_track = shapley_values(coalitions)
            for i, source in enumerate(sources):
                rows.append(
                    {
                        **common,
                        "method": "shapley",
                        "source": source,
                        "r2_drop": float(shares[i]),
                        "mean_abs_change": float(np.mean(np.abs(per_track[i]))),
                    }
                )
    return rows


def _attention_rows(
    predictions: pd.DataFrame, sources: list[str], label: str
) -> list[dict[str, Any]]:
    wanted = [attention_column(d, s) for d in DIMENSIONS for s in sources]
    present = [c for c in wanted if c in predictions.columns]
    if not present:
        return []
    if len(present) < len(wanted):
        missing = sorted(set(wanted) - set(present))
        raise ValueError(f"{label}: cv_predictions lacks attention columns {missing}")
    rows = []
    for repeat, by_repeat in predictions.groupby("repeat"):
        parts = [("fold", int(k), p) for k, p in by_repeat.groupby("outer_fold")]
        for scope, outer, part in [*parts, ("pooled", -1, by_repeat)]:
            for dim in DIMENSIONS:
                for source in sources:
                    rows.append(
                        {
                            "repeat": int(repeat),
                            "scope": scope,
                            "outer_fold": outer,
                            "n_tracks": len(part),
                            "method": "attention",
                            "source": source,
                            "dimension": dim,
                            "mean_weight": float(
                                part[attention_column(dim, source)].mean()
                            ),
                        }
                    )
    return rows


def _check_against_stored(
    fold: _Fold, test: np.ndarray, predictions: pd.DataFrame, tolerance: float, label
) -> None:
    """Fail when the recomputed intact predictions are not the stored ones."""
    where = f"{label}, repeat {fold.repeat}, outer fold {fold.outer}"
    stored = predictions[
        (predictions["repeat"] == fold.repeat)
        & (predictions["outer_fold"] == fold.outer)
    ].set_index("musicId")
    if sorted(stored.index) != sorted(test.tolist()):
        raise ValueError(f"{where}: cv_predictions do not hold this fold's test tracks")
    stored = stored.loc[test, [f"{d}_pred" for d in DIMENSIONS]].to_numpy()
    gap = float(np.max(np.abs(stored - fold.intact)))
    if gap > tolerance:
        raise ValueError(
            f"{where}: the stored models predict up to {gap:.3g} away from "
            "cv_predictions on these features; were they trained on other features?"
        )


def source_contributions(
    cv_models: dict[str, Any],
    features: FeatureSet,
    track_table: pd.DataFrame,
    folds: pd.DataFrame,
    cv_predictions: pd.DataFrame | None = None,
    options: ContributionOptions | None = None,
) -> pd.DataFrame:
    """Every source's contribution to one EmoMucs variant, by every method.

    Args:
        cv_models: The variant's nested-CV models.
        features: The feature set it was trained on.
        track_table: Labels (``musicId``, ``valence``, ``arousal``).
        folds: The shared fold table.
        cv_predictions: Its stored out-of-fold predictions (optional ``repeat``
            column): checked against the recomputed ones, and the source of the
            ``attention`` rows when it has attention columns.
        options: See :class:`ContributionOptions`.

    Returns:
        The table of :data:`COLUMNS` (see the module docstring).

    Raises:
        ValueError: Not an EmoMucs variant, features or folds that do not fit, or
            predictions that differ from the stored ones.
    """
    options = options or ContributionOptions()
    label = cv_models.get("label", "variant")
    validate_features(features, label)
    chosen = selected_models(cv_models)
    if not chosen:
        raise ValueError(f"{label}: cv_models holds no tested model")
    sources = list(chosen[0].checkpoint["kwargs"].get("sources", []))
    silence = silence_features(features)
    if cv_predictions is not None and "repeat" not in cv_predictions.columns:
        cv_predictions = cv_predictions.assign(repeat=0)
    by_repeat: dict[int, list[_Fold]] = {}
    for model in chosen:
        fold = _explain_fold(
            model, features, track_table, folds, silence, options, label
        )
        if cv_predictions is not None:
            test, _ = _split_ids(folds, model.outer, model.inner)
            _check_against_stored(fold, test, cv_predictions, options.tolerance, label)
        by_repeat.setdefault(model.repeat, []).append(fold)
    rows = []
    for repeat, repeat_folds in sorted(by_repeat.items()):
        repeat_folds.sort(key=lambda f: f.outer)
        for fold in repeat_folds:
            rows += [
                {**row, "repeat": repeat, "scope": "fold", "outer_fold": fold.outer}
                for row in _score([fold], sources)
            ]
        rows += [
            {**row, "repeat": repeat, "scope": "pooled", "outer_fold": -1}
            for row in _score(repeat_folds, sources)
        ]
    if cv_predictions is not None:
        rows += _attention_rows(cv_predictions, sources, label)
    table = pd.DataFrame(rows).assign(label=label)
    table = pd.concat([table, _fold_means(table)], ignore_index=True)
    return _average_repeats(table)


KEYS = ["scope", "outer_fold", "method", "source", "dimension"]
VALUES = ["r2_model", "r2_without", "r2_drop", "mean_abs_change", "mean_weight"]


def _fold_means(table: pd.DataFrame) -> pd.DataFrame:
    """``mean`` scope rows: each repeat's fold rows averaged over outer folds."""
    folds = table[table["scope"] == "fold"].reindex(columns=COLUMNS)
    keys = ["label", "repeat", "method", "source", "dimension"]
    means = folds.groupby(keys, sort=False)[VALUES].mean().reset_index()
    counts = folds.groupby(keys, sort=False)["n_tracks"].sum().to_numpy()
    return means.assign(scope="mean", outer_fold=-1, n_tracks=counts)


def _average_repeats(table: pd.DataFrame) -> pd.DataFrame:
    """Per-repeat rows (when there are several) and their mean (``repeat`` −1)."""
    table = table.reindex(columns=COLUMNS)
    n_repeats = table["repeat"].nunique()
    keys = ["label", *KEYS]
    mean = table.groupby(keys, sort=False)[VALUES].mean().reset_index()
    n_tracks = table.groupby(keys, sort=False)["n_tracks"].first().to_numpy()
    mean = mean.assign(repeat=ALL_REPEATS, n_tracks=n_tracks).reindex(columns=COLUMNS)
    parts = [mean] if n_repeats == 1 else [mean, table]
    order = {s: i for i, s in enumerate(("fold", "mean", "pooled"))}
    out = pd.concat(parts, ignore_index=True)
    out = out.sort_values(
        ["repeat", "scope", "outer_fold", "method", "dimension"],
        key=lambda c: c.map(order) if c.name == "scope" else c,
        kind="stable",
        ignore_index=True,
    )
    out["repeat"] = out["repeat"].astype(int)
    out["outer_fold"] = out["outer_fold"].astype(int)
    out["n_tracks"] = out["n_tracks"].astype(int)
    return out


def rank_sources(
    table: pd.DataFrame, method: str, dimension: str, scope: str = "pooled"
) -> list[tuple[str, float]]:
    """Sources by contribution, largest first: ``(source, value)``.

    The value is ``r2_drop`` (``mean_weight`` for attention) of the rows averaged
    over repeats.
    """
    rows = table[
        (table["repeat"] == ALL_REPEATS)
        & (table["scope"] == scope)
        & (table["method"] == method)
        & (table["dimension"] == dimension)
    ]
    column = "mean_weight" if method == "attention" else "r2_drop"
    ranked = rows.sort_values(column, ascending=False, kind="stable")
    return [(str(s), float(v)) for s, v in zip(ranked["source"], ranked[column])]


def collect_contribution_summaries(
    stored: dict[str, Any], fresh: tuple[dict[str, Any], ...] = ()
) -> dict[str, dict[str, Any]]:
    """Contribution summaries by variant: the stored ones, updated by this run's.

    Args:
        stored: ``<variant>/<audio>__<corpus>`` (or a bare ``<variant>``, written
            before summaries were keyed) → summary (or its loader), as the results
            store loads.
        fresh: Summaries of this run; one replaces the stored summary with the
            same label and key (keeping its variant name), one with no stored file
            (an in-memory run) is added under its label.

    Returns:
        ``<variant>`` → summary, or ``<variant>/<key>`` for a variant stored for
        several audios or corpora, sorted by name.
    """
    found: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for name in sorted(stored):
        value = stored[name]
        summary = value() if callable(value) else value
        found[(summary["label"], summary.get("key", ""))] = (name, summary)
    for summary in fresh:
        identity = (summary["label"], summary.get("key", ""))
        found[identity] = (found.get(identity, (summary["label"], None))[0], summary)
    variants = Counter(name.split("/")[0] for name, _ in found.values())
    named = {
        (name if variants[name.split("/")[0]] > 1 else name.split("/")[0]): summary
        for name, summary in found.values()
    }
    return dict(sorted(named.items()))


def summary_ranking(
    summary: dict[str, Any], method: str, dimension: str
) -> list[tuple[str, float]]:
    """Sources of a contribution summary by pooled contribution, largest first."""
    column = "mean_weight" if method == "attention" else "r2_drop"
    rows = [
        (row["source"], row[column])
        for row in summary["pooled"]
        if row["method"] == method and row["dimension"] == dimension
    ]
    return sorted(rows, key=lambda item: -item[1])
