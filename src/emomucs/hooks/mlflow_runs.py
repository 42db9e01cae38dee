"""MLflow: tags on the parent run, and a child run per experiment variant.

kedro-mlflow opens one MLflow run per ``kedro run`` (the *parent*) and logs the
parameters every node reads. :class:`MlflowVariantRunsHook` adds, without any
MLflow call in a node:

- on the parent: tags naming the code (git commit, dirty tree), the corpus (its
  root, track count and a fingerprint of ids and labels), the separator and the
  process (:mod:`~emomucs.hooks.identity`); the run-level artifacts (results
  table, figures, SDR reports) as they are saved, and the separator's SDR per
  source as metrics;
- one child run per variant (namespace ``<group>.<name>`` that writes a
  ``cv_summary``), nested under the parent, holding that variant's parameters
  (flattened), per-fold metrics (``step`` = outer fold), mean/sd/pooled metrics,
  the validation and training loss per epoch of the inner split tested on each
  outer fold (:mod:`~emomucs.hooks.metrics`), and its predictions, scores,
  training log, figures and models as artifacts (the files the catalog saved,
  :mod:`~emomucs.hooks.artifacts`); for a multi-source variant also its source
  contributions (table, summary and figure, and the pooled values as
  ``contribution_*`` metrics); for ``predict.variant``, its predict model
  (:mod:`~emomucs.hooks.predict_model`). Children of one parent compare side by
  side in the MLflow UI.

It only logs where kedro-mlflow has a run open, so it is silent when tracking is
disabled. MLflow failures are logged as warnings and never stop training.
Runners: sequential and thread runners (hooks run in this process).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from kedro.framework.hooks import hook_impl
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from emomucs.fingerprints import corpus_fingerprint
from emomucs.hooks import metrics
from emomucs.hooks.artifacts import (
    RUN_ARTIFACTS,
    VARIANT_ARTIFACTS,
    log_file,
    saved_file,
)
from emomucs.hooks.identity import (
    corpus_name,
    git_identity,
    process_identity,
    separator_of,
)
from emomucs.hooks.predict_model import log_variant_predict_model, wants_predict_model

log = logging.getLogger(__name__)

SUMMARY = "cv_summary"
"""A namespace that writes ``<namespace>.cv_summary`` is an experiment variant."""

SHARED_PARAMETERS = ("cv", "training", "networks", "features", "separation")
"""Parameter blocks every variant depends on, logged in each child run too."""


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


class MlflowVariantRunsHook:
    """Parent-run identity tags and artifacts, and a child run per variant.

    Args:
        log_models: Log each variant's ``cv_models`` (every split's checkpoint) as
            an artifact; turn off when the tracking store's disk is scarce.
        run_artifacts: Run-level dataset -> artifact file (default
            :data:`~emomucs.hooks.artifacts.RUN_ARTIFACTS`).
        variant_artifacts: Variant dataset suffix -> artifact file (default
            :data:`~emomucs.hooks.artifacts.VARIANT_ARTIFACTS`).
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
        self._catalog: Any = None
        self._variants: set[str] = set()
        self._children: dict[str, str] = {}
        self._identity: dict[str, str] = {}
        self._predict_models: tuple[str, Any, Path | None] | None = None

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
        self._catalog = catalog
        suffix = f".{SUMMARY}"
        self._variants = {
            name[: -len(suffix)]
            for name in pipeline.all_outputs()
            if name.endswith(suffix)
        }
        identity = git_identity(self._project_path or Path.cwd())
        identity.update(process_identity())
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
            self._guard(self._log_predict_model, *self._predict_models)
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

    def _tag_parent(self, tags: Mapping[str, str]) -> None:
        """Tag the parent and every child with the identity tags that are new."""
        fresh = {k: str(v) for k, v in tags.items() if self._identity.get(k) != str(v)}
        if not fresh:
            return
        self._identity.update(fresh)
        for run_id in (self._parent, *self._children.values()):
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
        separator = separator_of(data)
        if separator:
            self._tag_parent({"separator": str(separator)})

    def _log_dataset(self, name: str, data: Any) -> None:
        namespace, _, suffix = name.rpartition(".")
        if namespace in self._variants and suffix in self.variant_artifacts:
            self._log_variant(namespace, suffix, name, data)
        elif name in self.run_artifacts:
            self._log_saved(self._parent, self.run_artifacts[name], name, data)
        if name in metrics.SDR_REPORTS and isinstance(data, Mapping):
            if data.get("sources"):
                self._log_metrics(self._parent, metrics.sdr_metrics(name, data))

    def _log_saved(self, run_id: str, artifact_file: str, name: str, data: Any) -> None:
        """Log the file the catalog saved for ``name`` as ``artifact_file``."""
        path = saved_file(self._catalog, name, data)
        if path is None:
            log.info("MLflow: %s left no local file; not logged as an artifact", name)
            return
        log_file(self._client, run_id, path, artifact_file)

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

    def _log_variant(self, variant: str, suffix: str, name: str, data: Any) -> None:
        if suffix == "cv_models" and wants_predict_model(self._params, variant):
            # logged as a model when the run ends
            self._predict_models = (
                variant,
                data,
                saved_file(self._catalog, name, data),
            )
        if suffix == "cv_models" and not self.log_models:
            return
        run_id = self._child(variant)
        if suffix == "cv_summary":
            self._log_metrics(run_id, metrics.summary_metrics(data))
            tags = metrics.summary_tags(data)
            self._client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        elif suffix == "cv_metrics":
            self._log_metrics(run_id, metrics.fold_metrics(data))
        elif suffix == "training_log":
            self._log_metrics(run_id, metrics.loss_metrics(data))
        elif suffix == "contribution_summary":
            self._log_metrics(run_id, metrics.contribution_metrics(data))
        self._log_saved(run_id, self.variant_artifacts[suffix], name, data)

    def _log_predict_model(
        self, variant: str, cv_models: Any, cv_models_file: Path | None
    ) -> None:
        log_variant_predict_model(
            self._params,
            variant,
            cv_models,
            cv_models_file,
            self._child(variant),
            self._corpus_root,
            self._project_path or Path.cwd(),
        )

    # MLflow writes ----------------------------------------------------------------

    def _log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        items = [
            Param(k, str(v)[:MAX_PARAM_VAL_LENGTH]) for k, v in sorted(params.items())
        ]
        for start in range(0, len(items), 100):  # MLflow's batch limit
            self._client.log_batch(run_id, params=items[start : start + 100])

    def _log_metrics(self, run_id: str, items: list[Metric]) -> None:
        for start in range(0, len(items), 1000):  # MLflow's batch limit
            self._client.log_batch(run_id, metrics=items[start : start + 1000])

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
