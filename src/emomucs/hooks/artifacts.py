"""Which saved datasets become MLflow artifacts, and the files the catalog wrote.

An artifact is the file the catalog saved in this run (its versioned path), logged
as it is: nothing is serialised a second time, so the artifact is byte for byte
the stored file. Datasets that leave no local file (memory datasets, remote
stores) are not logged.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kedro.io.core import AbstractVersionedDataset
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

VARIANT_ARTIFACTS = {
    "cv_summary": "cv_summary.json",
    "cv_metrics": "cv_metrics.csv",
    "cv_predictions": "cv_predictions.csv",
    "training_log": "training_log.csv",
    "cv_models": "models/cv_models.pt",
    "prediction_scatter": "plots/prediction_scatter.png",
    "attention_weights_plot": "plots/attention_weights.png",
    "contributions": "contributions/contributions.csv",
    "contribution_summary": "contributions/contribution_summary.json",
    "contributions_plot": "plots/contributions.png",
}
"""Variant dataset suffix -> artifact file in the variant's child run."""

RUN_ARTIFACTS = {
    "results_table": "results/results_table.csv",
    "results_markdown": "results/results_table.md",
    "results_differences": "results/results_differences.csv",
    "paper_results": "results/paper_results.csv",
    "results_heatmap": "plots/results_heatmap.png",
    "contributions_overview": "plots/contributions_overview.png",
    "source_learning_curves": "plots/source_learning_curves.png",
    "emotion_plane": "plots/emotion_plane.png",
    "separation_sdr_plot": "plots/separation_sdr.png",
    "separator_sdr_plot": "plots/separator_sdr.png",
    "separation_sdr": "separation/separation_sdr.json",
    "separator_sdr": "separation/separator_sdr.json",
    "rejected_tracks": "data/rejected_tracks.csv",
    "synthetic_ceiling": "data/synthetic_ceiling.json",
}
"""Run-level dataset -> artifact file in the parent run."""


def saved_file(catalog: Any, name: str, data: Any) -> Path | None:
    """The local file the catalog saved ``name`` (holding ``data``) to in this run.

    A versioned dataset's file is the one of this run's save version; a dataset
    whose file depends on the data (``SummaryDataset``) names it with
    ``saved_file(data)``. None for datasets with no local file.
    """
    dataset = catalog.get(name) if catalog is not None else None
    if dataset is None or getattr(dataset, "_protocol", "file") != "file":
        return None
    if callable(getattr(dataset, "saved_file", None)):
        path = Path(dataset.saved_file(data))
    else:
        # kedro's file datasets keep their path in `_filepath` (kedro-mlflow reads
        # it the same way); a versioned one saves under its resolved save version
        filepath = getattr(dataset, "_filepath", None)
        if filepath is None:
            return None
        if isinstance(dataset, AbstractVersionedDataset) and dataset._version:
            filepath = dataset._get_versioned_path(dataset.resolve_save_version())
        path = Path(str(filepath))
    return path if path.is_file() else None


def log_file(client: MlflowClient, run_id: str, path: Path, artifact_file: str) -> None:
    """Log the file ``path`` as ``artifact_file`` (folder and name) in ``run_id``."""
    folder, _, filename = artifact_file.rpartition("/")
    if path.name == filename:
        client.log_artifact(run_id, str(path), folder or None)
        return
    with tempfile.TemporaryDirectory() as scratch:  # the artifact's own name
        named = Path(scratch) / filename
        try:
            os.link(path, named)
        except OSError:  # another file system
            shutil.copyfile(path, named)
        client.log_artifact(run_id, str(named), folder or None)
