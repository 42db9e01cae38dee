"""Kedro hooks, one module per job; ``settings.py`` registers them.

- :mod:`~emomucs.hooks.parameters`: the run's parameters are checked against their
  schema before anything runs (:class:`ValidateParametersHook`);
- :mod:`~emomucs.hooks.dead_runs`: MLflow runs a killed process left RUNNING are
  marked KILLED when the next run starts (:class:`MarkKilledRunsHook`);
- :mod:`~emomucs.hooks.mlflow_runs`: identity tags and run-level artifacts on the
  parent MLflow run, a child run per experiment variant
  (:class:`MlflowVariantRunsHook`), built from
  :mod:`~emomucs.hooks.identity` (what identifies a run),
  :mod:`~emomucs.hooks.metrics` (metrics read from saved results),
  :mod:`~emomucs.hooks.artifacts` (the files the catalog saved, logged as they are)
  and :mod:`~emomucs.hooks.predict_model` (the predict pipeline as an MLflow model).
"""

from emomucs.fingerprints import corpus_fingerprint
from emomucs.hooks.dead_runs import MarkKilledRunsHook
from emomucs.hooks.identity import RUN_HOST, RUN_PID, corpus_name, git_identity
from emomucs.hooks.mlflow_runs import MlflowVariantRunsHook, flatten
from emomucs.hooks.parameters import ValidateParametersHook

__all__ = [
    "RUN_HOST",
    "RUN_PID",
    "MarkKilledRunsHook",
    "MlflowVariantRunsHook",
    "ValidateParametersHook",
    "corpus_fingerprint",
    "corpus_name",
    "flatten",
    "git_identity",
]
