"""MLflow child runs per experiment variant, and what identifies a run.

kedro-mlflow opens one MLflow run per ``kedro run`` (the *parent*) and logs the
parameters every node reads. :class:`MlflowVariantRunsHook` adds, without any
MLflow call in a node:

- on the parent: tags naming the code (git commit, dirty tree), the corpus (its
  root, track count and a fingerprint of ids and labels) and the separator; the
  run-level artifacts (results table, figures, SDR reports) as they are saved, and
  the separator's SDR per source as metrics;
- one child run per variant (namespace ``<group>.<name>`` that writes a
  ``cv_summary``), nested under the parent, holding that variant's parameters
  (flattened), per-fold metrics (``step`` = outer fold), mean/sd/pooled metrics,
  the validation and training loss per epoch of the inner split tested on each
  outer fold, and its predictions, scores, training log, figures and models as
  artifacts; for a multi-source variant also its source contributions (table,
  summary and figure, and the pooled values as ``contribution_*`` metrics).
  Children of one parent compare side by side in the MLflow UI.

Each run is tagged with its process id and host (``run_pid``, ``run_host``); when a
run starts, the runs of its experiment left RUNNING by a process of the same host that
no longer exists (a ``kill -9``, an out-of-memory kill) are marked KILLED, with an
``end_reason`` tag saying so.

It only logs where kedro-mlflow has a run open, so it is silent when tracking is
disabled. MLflow failures are logged as warnings and never stop training.
Runners: sequential and thread runners (hooks run in this process).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from kedro.framework.hooks import hook_impl
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from emomucs.audio import AudioSet
from emomucs.fingerprints import corpus_fingerprint

log = logging.getLogger(__name__)

SUMMARY = "cv_summary"
"""A namespace that writes ``<namespace>.cv_summary`` is an experiment variant."""

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

SDR_REPORTS = ("separation_sdr", "separator_sdr")
"""Datasets whose per-source SDR becomes parent-run metrics."""

SHARED_PARAMETERS = ("cv", "training", "networks", "features", "separation")
"""Parameter blocks every variant depends on, logged in each child run too."""

METRIC_SCOPES = ("mean", "sd", "pooled")

RUN_PID, RUN_HOST = "run_pid", "run_host"
"""Tags naming the process that holds a run open, so a later run can tell whether
it is still alive."""


def flatten(value: Any, prefix: str = "", sep: str = ".") -> dict[str, str]:
    """Nested dicts as ``{"a.b.c": "value"}``; lists become their string."""
    if isinstance(value, Mapping):
        flat: dict[str, str] = {}
        for key, item in value.items():
            flat.update(
                flatten(item, f"{prefix}{sep}{key}" if prefix else str(key), sep)
            )
        return flat
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return {prefix: str(value)}


def git_identity(path: str | Path) -> dict[str, str]:
    """The commit checked out at ``path`` and whether tracked files differ from it.

    Returns ``{"git_commit": "unknown"}`` outside a git work tree or without git.
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args],
            cwd=path,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown"}
    return {
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        MLFLOW_GIT_COMMIT: commit,
    }


def corpus_name(root: str) -> str:
    """``synthetic`` for the generated corpus, else the root folder's name."""
    parts = Path(root).parts
    return "synthetic" if "synthetic" in parts else (Path(root).name or root)


def _separator_of(data: Any) -> str | None:
    """The separator named by stems (an AudioSet) or by a stems feature set."""
    if isinstance(data, AudioSet):
        return data.attrs.get("separator") if data.sources else None
    if isinstance(data, Mapping) and "settings" in data and "sources" in data:
        if list(data["sources"]) != ["mix"]:
            settings = data["settings"]
            if isinstance(settings, Mapping):
                return (settings.get("audio_attrs") or {}).get("separator")
    return None


def _process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _now_ms() -> int:
    return int(time.time() * 1000)


class MlflowVariantRunsHook:
    """Parent-run identity tags and artifacts, and a child run per variant.

    Args:
        log_models: Log each variant's ``cv_models`` (every split's checkpoint) as
            an artifact; turn off when the tracking store's disk is scarce.
        run_artifacts: Run-level dataset -> artifact file (default
            :data:`RUN_ARTIFACTS`).
        variant_artifacts: Variant dataset suffix -> artifact file (default
            :data:`VARIANT_ARTIFACTS`).
        shared_parameters: Parameter blocks logged in every child run.
    """

    def __init__(
        self,
        log_models: bool = True,
        run_artifacts: Mapping[str, str] | None = None,
        variant_artifacts: Mapping[str, str] | None = None,
        shared_parameters: Iterable[str] = SHARED_PARAMETERS,
    ) -> None:
        self.log_models = log_models
        self.run_artifacts = dict(
            RUN_ARTIFACTS if run_artifacts is None else run_artifacts
        )
        self.variant_artifacts = dict(
            VARIANT_ARTIFACTS if variant_artifacts is None else variant_artifacts
        )
        self.shared_parameters = tuple(shared_parameters)
        self._lock = threading.RLock()
        self._reset()
        self._project_path: Path | None = None
        self._params: dict[str, Any] = {}
        self._corpus_root: str | None = None

    def _reset(self) -> None:
        self._client: MlflowClient | None = None
        self._parent: str | None = None
        self._experiment: str | None = None
        self._variants: set[str] = set()
        self._children: dict[str, str] = {}
        self._identity: dict[str, str] = {}
        self._predict_models: dict[str, Any] | None = None

    # Kedro hooks -----------------------------------------------------------------

    @hook_impl
    def after_context_created(self, context) -> None:
        self._project_path = Path(context.project_path)
        self._params = dict(context.params)
        root = self._params.get("dataset_root")
        if root is None:
            try:
                root = context.config_loader["globals"].get("dataset_root")
            except Exception:  # no globals file: the corpus root stays unknown
                root = None
        self._corpus_root = None if root is None else str(root)

    @hook_impl(trylast=True)  # after kedro-mlflow has opened the parent run
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline, catalog
    ) -> None:
        self._reset()
        run = mlflow.active_run()
        if run is None:
            return
        self._client = MlflowClient()
        self._parent = run.info.run_id
        self._experiment = run.info.experiment_id
        suffix = f".{SUMMARY}"
        self._variants = {
            name[: -len(suffix)]
            for name in pipeline.all_outputs()
            if name.endswith(suffix)
        }
        self._close_dead_runs()
        identity = git_identity(self._project_path or Path.cwd())
        identity.update({RUN_PID: str(os.getpid()), RUN_HOST: socket.gethostname()})
        if self._corpus_root is not None:
            identity["corpus"] = corpus_name(self._corpus_root)
            identity["corpus_root"] = self._corpus_root
        separator = self._params.get("separation", {}).get("separator", {})
        if separator:
            identity["separator_config"] = (
                f"{separator.get('kind')}:{separator.get('name')}"
            )
        identity["variants"] = str(len(self._variants))
        self._tag_parent(identity)

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any, node=None) -> None:
        if self._parent is not None:
            self._guard(self._observe, dataset_name, data)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node=None) -> None:
        if self._parent is None:
            return
        self._guard(self._observe, dataset_name, data)
        self._guard(self._log_dataset, dataset_name, data)

    @hook_impl(tryfirst=True)  # close children before kedro-mlflow ends the parent
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        if self._predict_models is not None:
            variant = self._params["predict"]["variant"]
            self._guard(self._log_predict_model, variant)
        self._finish(RunStatus.FINISHED)

    @hook_impl(tryfirst=True)
    def on_pipeline_error(self, error, run_params, pipeline, catalog) -> None:
        self._finish(RunStatus.FAILED)

    # Parent run --------------------------------------------------------------------

    def _guard(self, action, *args) -> None:
        try:
            action(*args)
        except Exception as error:  # tracking must never stop a training run
            log.warning(
                "MLflow logging of %s failed: %s", args[0], error, exc_info=True
            )

    def _close_dead_runs(self) -> None:
        """Mark KILLED the runs of this experiment left RUNNING by a process of this
        host that no longer exists (killed by SIGKILL, out of memory, power loss).

        Runs of other hosts, of live processes and without the process tags are left
        as they are: whether they still run cannot be told from here.
        """
        host = socket.gethostname()
        try:
            running = self._client.search_runs(
                [self._experiment],
                filter_string=(
                    f"attributes.status = 'RUNNING' and tags.{RUN_HOST} = '{host}'"
                ),
                max_results=1000,
            )
            for run in running:
                pid = run.data.tags.get(RUN_PID, "")
                if run.info.run_id == self._parent or not pid.isdigit():
                    continue
                if _process_alive(int(pid)):
                    continue
                reason = (
                    f"process {pid} on {host} ended without closing this run "
                    f"(killed?); marked KILLED by run {self._parent}"
                )
                self._client.set_tag(run.info.run_id, "end_reason", reason)
                self._client.set_terminated(
                    run.info.run_id, RunStatus.to_string(RunStatus.KILLED)
                )
                log.warning("MLflow run %s: %s", run.info.run_id, reason)
        except Exception as error:  # tidying must never stop a run
            log.warning("MLflow: could not check for dead runs: %s", error)

    def _tag_parent(self, tags: Mapping[str, str]) -> None:
        fresh = {k: str(v) for k, v in tags.items() if self._identity.get(k) != str(v)}
        if not fresh:
            return
        self._identity.update(fresh)
        self._client.log_batch(
            self._parent, tags=[RunTag(k, v) for k, v in fresh.items()]
        )
        for run_id in self._children.values():
            self._client.log_batch(
                run_id, tags=[RunTag(k, v) for k, v in fresh.items()]
            )

    def _observe(self, name: str, data: Any) -> None:
        """Identity tags from data passing through: the corpus and the separator."""
        if name == "track_table" and isinstance(data, pd.DataFrame):
            self._tag_parent(
                {
                    "corpus_tracks": str(len(data)),
                    "corpus_fingerprint": corpus_fingerprint(data),
                }
            )
            return
        separator = _separator_of(data)
        if separator:
            self._tag_parent({"separator": str(separator)})

    def _log_dataset(self, name: str, data: Any) -> None:
        namespace, _, suffix = name.rpartition(".")
        if namespace in self._variants and suffix in self.variant_artifacts:
            self._log_variant(namespace, suffix, data)
        elif name in self.run_artifacts:
            self._log_artifact(self._parent, self.run_artifacts[name], data)
        if name in SDR_REPORTS and isinstance(data, Mapping) and data.get("sources"):
            metrics = [
                Metric(f"{name}.{source}.{key}", float(value), _now_ms(), 0)
                for source, values in data["sources"].items()
                for key, value in values.items()
            ]
            metrics += [
                Metric(f"{name}.mean.{key}", float(value), _now_ms(), 0)
                for key, value in (data.get("mean") or {}).items()
            ]
            self._log_metrics(self._parent, metrics)

    # Child runs -------------------------------------------------------------------

    def _child(self, variant: str) -> str:
        with self._lock:
            if variant in self._children:
                return self._children[variant]
            group, _, short = variant.partition(".")
            tags = {
                MLFLOW_PARENT_RUN_ID: self._parent,
                "variant": variant,
                "variant_group": group,
                "variant_name": short,
                **self._identity,
            }
            run = self._client.create_run(self._experiment, tags=tags, run_name=variant)
            run_id = run.info.run_id
            self._children[variant] = run_id
        params = {"variant": variant}
        node: Any = self._params
        for part in variant.split("."):
            node = node.get(part, {}) if isinstance(node, Mapping) else {}
        params.update(flatten(node))
        for block in self.shared_parameters:
            if block in self._params:
                params.update(flatten(self._params[block], block))
        self._log_params(run_id, params)
        return run_id

    def _log_variant(self, variant: str, suffix: str, data: Any) -> None:
        predict = self._params.get("predict") or {}
        if (
            suffix == "cv_models"
            and predict.get("log_model")
            and predict.get("variant") == variant
        ):
            self._predict_models = data  # logged as a model when the run ends
        if suffix == "cv_models" and not self.log_models:
            return
        run_id = self._child(variant)
        if suffix == "cv_summary":
            self._log_summary(run_id, data)
        elif suffix == "cv_metrics":
            self._log_fold_metrics(run_id, data)
        elif suffix == "training_log":
            self._log_losses(run_id, data)
        elif suffix == "contribution_summary":
            self._log_contributions(run_id, data)
        self._log_artifact(run_id, self.variant_artifacts[suffix], data)

    def _log_predict_model(self, variant: str) -> None:
        """The variant's predict pipeline as an MLflow model in its child run
        (:mod:`emomucs.serving`); not for oracle stems, which new audio lacks."""
        from emomucs.serving import log_predict_model

        separation = self._params.get("separation", {})
        if self._predict_models["inputs"]["audio"] == "oracle":
            log.info("predict model of %s not logged: trained on oracle stems", variant)
            return
        run_id = self._child(variant)
        info = {"variant": variant, "run_id": run_id}
        if self._corpus_root is not None:
            info["corpus"] = corpus_name(self._corpus_root)
        log_predict_model(
            self._predict_models,
            separation.get("separator", {}),
            self._params["clipping"],
            separation.get("apply"),
            info,
            self._project_path or Path.cwd(),
            run_id,
        )

    def _log_summary(self, run_id: str, summary: Mapping[str, Any]) -> None:
        metrics = [
            Metric(f"{metric}_{scope}", float(value), _now_ms(), 0)
            for scope in METRIC_SCOPES
            for metric, value in summary["metrics"].get(scope, {}).items()
        ]
        self._log_metrics(run_id, metrics)
        tags = {
            "label": summary.get("label", ""),
            "folds": summary.get("folds", ""),
            "n_tracks": summary.get("n_tracks", ""),
            "n_outer_folds": summary.get("n_outer_folds", ""),
            "n_repeats": summary.get("n_repeats", ""),
            "audio": summary.get("inputs", {}).get("audio", ""),
            "settings_fingerprint": summary.get("fingerprint", ""),
        }
        self._client.log_batch(
            run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()]
        )

    def _log_fold_metrics(self, run_id: str, table: pd.DataFrame) -> None:
        folds = table[table["scope"] == "fold"]
        if "repeat" not in folds.columns:
            folds = folds.assign(repeat=0)
        columns = [
            c
            for c in folds.columns
            if c not in ("scope", "repeat", "outer_fold", "n_tracks")
        ]
        # step = outer fold, continued through repeats (repeat r, fold k of K: r·K+k)
        repeats = folds["repeat"] if "repeat" in folds else pd.Series(0, folds.index)
        steps = repeats * folds["outer_fold"].nunique() + folds["outer_fold"]
        stamp = _now_ms()
        # Stepped by outer fold; repeats after the first get their own metric names.
        metrics = [
            Metric(f"{column}_fold", float(row[column]), stamp, int(step))
            for step, (_, row) in zip(steps, folds.iterrows(), strict=True)
            for column in columns
        ]
        self._log_metrics(run_id, metrics)

    def _log_losses(self, run_id: str, training_log: pd.DataFrame) -> None:
        """Loss per epoch of the inner split tested on each outer fold (repeats
        after the first under their own names)."""
        selected = training_log[training_log["selected"].astype(bool)]
        if "repeat" not in selected.columns:
            selected = selected.assign(repeat=0)
        stamp = _now_ms()
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
        self._log_metrics(run_id, metrics)

    def _log_contributions(self, run_id: str, summary: Mapping[str, Any]) -> None:
        """Pooled contribution of each source as metrics
        ``contribution_<method>_<dimension>_<source>`` (R² drop or Shapley share;
        mean weight for attention)."""
        stamp = _now_ms()
        metrics = []
        for row in summary.get("pooled", []):
            column = "mean_weight" if row["method"] == "attention" else "r2_drop"
            if row.get(column) is None:
                continue
            name = f"contribution_{row['method']}_{row['dimension']}_{row['source']}"
            metrics.append(Metric(name, float(row[column]), stamp, 0))
        self._log_metrics(run_id, metrics)

    # MLflow writes ----------------------------------------------------------------

    def _log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        items = [
            Param(k, str(v)[:MAX_PARAM_VAL_LENGTH]) for k, v in sorted(params.items())
        ]
        for start in range(0, len(items), 100):  # MLflow's batch limit
            self._client.log_batch(run_id, params=items[start : start + 100])

    def _log_metrics(self, run_id: str, metrics: list[Metric]) -> None:
        for start in range(0, len(metrics), 1000):  # MLflow's batch limit
            self._client.log_batch(run_id, metrics=metrics[start : start + 1000])

    def _log_artifact(self, run_id: str, artifact_file: str, data: Any) -> None:
        """Write ``data`` as ``artifact_file`` in the run, by its type."""
        if hasattr(data, "savefig"):
            self._client.log_figure(run_id, data, artifact_file)
        elif isinstance(data, pd.DataFrame):
            self._upload(run_id, artifact_file, lambda p: data.to_csv(p, index=False))
        elif isinstance(data, str):
            self._client.log_text(run_id, data, artifact_file)
        elif artifact_file.endswith(".json"):
            self._client.log_text(
                run_id, json.dumps(data, indent=2, default=str), artifact_file
            )
        elif artifact_file.endswith(".pt"):
            import torch

            self._upload(run_id, artifact_file, lambda p: torch.save(data, p))
        else:
            log.warning(
                "MLflow: no writer for %s (%s)", artifact_file, type(data).__name__
            )

    def _upload(self, run_id: str, artifact_file: str, write) -> None:
        folder, _, filename = artifact_file.rpartition("/")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / filename
            write(path)
            self._client.log_artifact(run_id, str(path), folder or None)

    def _finish(self, status: int) -> None:
        if self._client is not None:
            for variant, run_id in self._children.items():
                try:
                    self._client.set_terminated(run_id, RunStatus.to_string(status))
                except Exception as error:  # closing must not hide the run's own error
                    log.warning(
                        "MLflow: could not close the run of %s: %s", variant, error
                    )
        self._reset()
