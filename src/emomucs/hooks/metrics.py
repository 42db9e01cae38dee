"""MLflow metrics and tags read from what the pipelines save (no MLflow calls)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pandas as pd
from mlflow.entities import Metric

from emomucs.training.metrics import SUMMARY_SCOPES

METRIC_SCOPES = SUMMARY_SCOPES[:3]
"""Scopes of a ``cv_summary`` logged as ``<metric>_<scope>``: mean, sd and pooled
(not ``pooled_sd``)."""

SDR_REPORTS = ("separation_sdr", "separator_sdr")
"""Datasets whose per-source SDR becomes parent-run metrics."""


def now_ms() -> int:
    """MLflow's timestamp: milliseconds since the epoch."""
    return int(time.time() * 1000)


def summary_metrics(summary: Mapping[str, Any]) -> list[Metric]:
    """``<metric>_<scope>`` for the mean, sd and pooled scores of a ``cv_summary``."""
    return [
        Metric(f"{metric}_{scope}", float(value), now_ms(), 0)
        for scope in METRIC_SCOPES
        for metric, value in summary["metrics"].get(scope, {}).items()
    ]


def summary_tags(summary: Mapping[str, Any]) -> dict[str, str]:
    """What a ``cv_summary`` says about its run: label, folds, audio, fingerprint."""
    tags = {
        "label": summary.get("label", ""),
        "folds": summary.get("folds", ""),
        "n_tracks": summary.get("n_tracks", ""),
        "n_outer_folds": summary.get("n_outer_folds", ""),
        "n_repeats": summary.get("n_repeats", ""),
        "audio": summary.get("inputs", {}).get("audio", ""),
        "settings_fingerprint": summary.get("fingerprint", ""),
    }
    return {k: str(v) for k, v in tags.items()}


def fold_metrics(table: pd.DataFrame) -> list[Metric]:
    """``<metric>_fold`` per outer fold of a ``cv_metrics`` table; ``step`` = outer
    fold, continued through repeats (repeat r, fold k of K: r·K+k)."""
    folds = table[table["scope"] == "fold"]
    if "repeat" not in folds.columns:
        folds = folds.assign(repeat=0)
    columns = [
        c
        for c in folds.columns
        if c not in ("scope", "repeat", "outer_fold", "n_tracks")
    ]
    steps = folds["repeat"] * folds["outer_fold"].nunique() + folds["outer_fold"]
    stamp = now_ms()
    return [
        Metric(f"{column}_fold", float(row[column]), stamp, int(step))
        for step, (_, row) in zip(steps, folds.iterrows(), strict=True)
        for column in columns
    ]


def loss_metrics(training_log: pd.DataFrame) -> list[Metric]:
    """Loss per epoch of the inner split tested on each outer fold
    (``train_loss_outer<k>``, ``val_loss_outer<k>``; repeats after the first under
    their own names) and its best epoch."""
    selected = training_log[training_log["selected"].astype(bool)]
    if "repeat" not in selected.columns:
        selected = selected.assign(repeat=0)
    stamp = now_ms()
    metrics = []
    for (repeat, outer), split in selected.groupby(["repeat", "outer_fold"]):
        suffix = f"_repeat{int(repeat)}" if repeat else ""
        for _, row in split.iterrows():
            for loss in ("train_loss", "val_loss"):
                metrics.append(
                    Metric(
                        f"{loss}_outer{int(outer)}{suffix}",
                        float(row[loss]),
                        stamp,
                        int(row["epoch"]),
                    )
                )
        metrics.append(
            Metric(
                f"best_epoch_fold{suffix}",
                float(split["best_epoch"].iloc[0]),
                stamp,
                int(outer),
            )
        )
    return metrics


def contribution_metrics(summary: Mapping[str, Any]) -> list[Metric]:
    """Pooled contribution of each source as ``contribution_<method>_<dimension>_
    <source>`` (R² drop or Shapley share; mean weight for attention)."""
    stamp = now_ms()
    metrics = []
    for row in summary.get("pooled", []):
        column = "mean_weight" if row["method"] == "attention" else "r2_drop"
        if row.get(column) is None:
            continue
        name = f"contribution_{row['method']}_{row['dimension']}_{row['source']}"
        metrics.append(Metric(name, float(row[column]), stamp, 0))
    return metrics


def sdr_metrics(name: str, report: Mapping[str, Any]) -> list[Metric]:
    """``<report>.<source>.<key>`` and ``<report>.mean.<key>`` of an SDR report."""
    stamp = now_ms()
    metrics = [
        Metric(f"{name}.{source}.{key}", float(value), stamp, 0)
        for source, values in report.get("sources", {}).items()
        for key, value in values.items()
    ]
    metrics += [
        Metric(f"{name}.mean.{key}", float(value), stamp, 0)
        for key, value in (report.get("mean") or {}).items()
    ]
    return metrics
