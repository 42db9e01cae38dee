"""The predict pipeline of ``predict.variant`` as an MLflow model in its child run."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emomucs.hooks.identity import corpus_name

log = logging.getLogger(__name__)


def wants_predict_model(params: Mapping[str, Any], variant: str) -> bool:
    """Whether ``variant``'s ``cv_models`` is to be logged as a predict model
    (``predict.log_model`` and ``predict.variant``)."""
    predict = params.get("predict") or {}
    return bool(predict.get("log_model")) and predict.get("variant") == variant


def log_variant_predict_model(
    params: Mapping[str, Any],
    variant: str,
    cv_models: Mapping[str, Any],
    cv_models_file: Path | None,
    run_id: str,
    corpus_root: str | None,
    project_path: Path,
) -> None:
    """Log ``variant``'s predict pipeline (:mod:`emomucs.serving`) in ``run_id``;
    not for oracle stems, which new audio lacks.

    Args:
        params: The run's parameters (``separation``, ``clipping``).
        cv_models_file: The file the catalog saved ``cv_models`` to (None: written
            again from ``cv_models``).
        corpus_root: The corpus' root folder, named with every prediction.
    """
    from emomucs.serving import log_predict_model

    if cv_models["inputs"]["audio"] == "oracle":
        log.info("predict model of %s not logged: trained on oracle stems", variant)
        return
    separation = params.get("separation", {})
    info = {"variant": variant, "run_id": run_id}
    if corpus_root is not None:
        info["corpus"] = corpus_name(corpus_root)
    log_predict_model(
        dict(cv_models),
        separation.get("separator", {}),
        params["clipping"],
        separation.get("apply"),
        info,
        project_path,
        run_id,
        cv_models_file,
    )
