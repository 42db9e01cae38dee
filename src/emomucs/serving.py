"""A trained variant's predict pipeline as an MLflow pyfunc model.

``mlflow.pyfunc.load_model("runs:/<run id>/predict_model").predict(table)`` takes a
table with a ``path`` column (or a list of paths) and returns
:meth:`~emomucs.pipelines.predict.nodes.Predictor.predict_files`' table; ``params``
``{"windows": true, "hop_seconds": 10}`` slide the window over each file.

Why a ``PythonModel`` and not kedro-mlflow's ``pipeline_ml_factory``: that API logs an
inference pipeline whose inputs, other than the one free input, are outputs of the
*training* pipeline persisted to local files. The predict pipeline needs the
separator's weights too, which ``separator_training`` (another pipeline, run once)
writes, or a pretrained Demucs from the local caches; and each variant of a training
run is a different ``{variant}.cv_models`` entry where the factory takes one fixed
pipeline pair. Here the model carries its own artifacts: the variant's
``cv_models.pt`` and, for a local separator, the repo's model files, so the logged
model predicts offline with nothing from the project.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import torch

log = logging.getLogger(__name__)

ARTIFACT_PATH = "predict_model"
"""Where in a run the model is logged: ``runs:/<run id>/predict_model``."""


class EmotionModel(mlflow.pyfunc.PythonModel):
    """Valence and arousal of audio files by a variant's ensemble (see module doc)."""

    def load_context(self, context) -> None:
        from emomucs.datasets import TorchDataset
        from emomucs.pipelines.predict.nodes import build_predictor

        config = dict(context.model_config)
        separator = dict(config.get("separator") or {})
        if "separator" in context.artifacts:
            separator["repo"] = context.artifacts["separator"]
        cv_models = TorchDataset(filepath=context.artifacts["cv_models"]).load()
        self.predictor = build_predictor(
            cv_models,
            separator,
            config["clipping"],
            config.get("apply"),
            info=dict(config.get("info") or {}),
        )

    def predict(
        self, context, model_input: Any, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        params = params or {}
        return self.predictor.predict_files(
            paths_of(model_input),
            windows=bool(params.get("windows", False)),
            hop_seconds=params.get("hop_seconds") or None,
        )


def paths_of(model_input: Any) -> list[str]:
    """The paths in a table (its ``path`` column, else its first), list or string."""
    if isinstance(model_input, pd.DataFrame):
        column = "path" if "path" in model_input else model_input.columns[0]
        return [str(p) for p in model_input[column]]
    if isinstance(model_input, str | Path):
        return [str(model_input)]
    return [str(p) for p in model_input]


def log_predict_model(
    cv_models: dict[str, Any],
    separator: dict[str, Any],
    clipping: dict[str, Any],
    apply: dict[str, Any] | None,
    info: dict[str, Any],
    project_path: Path,
    run_id: str,
    cv_models_file: Path | None = None,
) -> None:
    """Log ``cv_models`` with its separator as :class:`EmotionModel` in ``run_id``.

    Args:
        separator: ``separation.separator`` parameters; a local repo's model files
            are copied in (a relative ``repo`` is taken from ``project_path``),
            unless the variant reads the mix only.
        clipping: The clip format (``clip_seconds``, ``sample_rate``, ``channels``).
        info: ``variant``, ``run_id``, ``corpus``: shown with every prediction.
        cv_models_file: The file the catalog saved ``cv_models`` to, logged as it
            is; without it, ``cv_models`` is written to a temporary file.
    """
    from emomucs.separation.separators import local_model_files

    config = {
        "separator": {k: v for k, v in separator.items() if k != "repo"},
        "clipping": {
            k: clipping[k] for k in ("clip_seconds", "sample_rate", "channels")
        },
        "apply": dict(apply or {}),
        "info": info,
    }
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        if cv_models_file is None:
            cv_models_file = folder / "cv_models.pt"
            torch.save(cv_models, cv_models_file)
        artifacts = {"cv_models": str(cv_models_file)}
        mix_only = cv_models["inputs"]["audio"] == "mix"
        if separator.get("kind") == "local" and not mix_only:
            repo = Path(separator["repo"])
            repo = repo if repo.is_absolute() else project_path / repo
            (folder / "separator").mkdir()
            for file in local_model_files(repo, separator["name"]):
                shutil.copy2(file, folder / "separator" / file.name)
            artifacts["separator"] = str(folder / "separator")
        with mlflow.start_run(run_id=run_id, nested=True):
            mlflow.pyfunc.log_model(
                name=ARTIFACT_PATH,
                python_model=EmotionModel(),
                artifacts=artifacts,
                model_config=config,
                pip_requirements=[],
            )
    log.info("logged %s's predict model in run %s", info.get("variant"), run_id)
