"""``emomucs predict`` / ``kedro predict``: a trained variant on new audio files.

The model comes from this project's files (``--variant``: the variant's newest
``cv_models`` and the separator the parameters name) or from an MLflow run
(``--run``: the ``predict_model`` a training run logged, see :mod:`emomucs.serving`).
It is loaded once; every file then goes through
:meth:`~emomucs.pipelines.predict.nodes.Predictor.predict_files`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click
import pandas as pd

from emomucs.hooks.identity import corpus_name
from emomucs.pipelines.predict.nodes import (
    PredictError,
    Predictor,
    build_predictor,
    find_audio_files,
)

SYNTHETIC_WARNING = (
    "warning: this model was trained on the synthetic corpus: its numbers mean "
    "nothing on real music (docs/predict.md: train on real PMEmo first)"
)


def logs_to_stderr() -> None:
    """Send log records to stderr, so stdout holds only the results (Kedro's rich
    logging writes to stdout)."""
    from rich.console import Console
    from rich.logging import RichHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, RichHandler):
            handler.console = Console(stderr=True)
        elif (
            isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout
        ):
            handler.setStream(sys.stderr)


def project_predictor(
    variant: str | None, checkpoint: str | None, env: str | None
) -> Predictor:
    """The predictor of a variant trained in the project in the working directory."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    project = Path.cwd()
    bootstrap_project(project)
    runtime = {"predict_variant": variant} if variant else {}
    with KedroSession.create(project, env=env, runtime_params=runtime) as session:
        logs_to_stderr()
        context = session.load_context()
        params = context.params
        name = params["predict"]["variant"]
        try:
            cv_models = context.catalog.load("predict_cv_models")
        except Exception as error:
            raise PredictError(
                f"no trained model of {name} in {project / 'data/06_models'}: run "
                f"its experiment pipeline first ({error.__class__.__name__})"
            ) from error
        root = params.get("dataset_root") or context.config_loader["globals"].get(
            "dataset_root", ""
        )
        separation = params["separation"]
        return build_predictor(
            cv_models,
            separation["separator"],
            params["clipping"],
            separation.get("apply"),
            checkpoint=checkpoint,
            info={"variant": name, "corpus": corpus_name(str(root))},
        )


def mlflow_predictor(run_id: str) -> Predictor:
    """The predictor an MLflow run logged (tracking URI: ``MLFLOW_TRACKING_URI``,
    else the project's ``sqlite:///mlflow.db``)."""
    import mlflow

    from emomucs.serving import ARTIFACT_PATH

    uri = os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    mlflow.set_tracking_uri(uri)
    try:
        model = mlflow.pyfunc.load_model(f"runs:/{run_id}/{ARTIFACT_PATH}")
    except Exception as error:
        raise PredictError(
            f"run {run_id} has no loadable {ARTIFACT_PATH} in {uri}: {error}"
        ) from error
    return model.unwrap_python_model().predictor


def describe(predictor: Predictor) -> list[str]:
    """Header lines: which model, trained on what."""
    info = predictor.info
    lines = [
        f"model: {info.get('variant')} (ensemble of {len(predictor.models)} outer-fold "
        f"models: {', '.join(label for label, _, _ in predictor.models)}), "
        f"run {info.get('run_id') or '-'}, trained on corpus "
        f"{info.get('corpus', 'unknown')}, audio {info.get('audio')}",
        "valence, arousal: PMEmo's [0, 1] scale; _sd: the models' spread; "
        "_model: the models' [-1, 1] scale",
    ]
    if predictor.synthetic:
        lines.append(SYNTHETIC_WARNING)
    return lines


def render(table: pd.DataFrame, output_format: str) -> str:
    """The predicted rows (errors left out) as a table, JSON records or CSV."""
    rows = table[table["error"].isna()].drop(columns="error")
    if output_format == "csv":
        return rows.to_csv(index=False)
    if output_format == "json":
        return json.dumps(json.loads(rows.to_json(orient="records")), indent=1)
    shown = rows.assign(path=[Path(p).name for p in rows["path"]])
    if shown["window"].isna().all():
        shown = shown.drop(columns="window")
    return shown.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="")


def run_predict(
    paths: list[str],
    variant: str | None,
    run_id: str | None,
    windows: bool,
    hop: float | None,
    checkpoint: str | None,
    output_format: str,
    env: str | None,
) -> int:
    """Predict, print, and return the exit status: 1 when any file failed."""
    if variant and run_id:
        raise click.UsageError("give --variant or --run, not both")
    logs_to_stderr()
    try:
        if run_id:
            if checkpoint:
                raise click.UsageError("--checkpoint needs --variant")
            predictor = mlflow_predictor(run_id)
        else:
            predictor = project_predictor(variant, checkpoint, env)
    except PredictError as error:
        raise click.ClickException(str(error)) from None
    header = describe(predictor)
    # json and csv keep stdout machine-readable: the header goes to stderr
    for line in header:
        click.echo(line, err=output_format != "table")
    files = find_audio_files(paths)
    if files.empty:
        raise click.ClickException(f"no audio files in {', '.join(paths)}")
    table = predictor.predict_files(
        files["path"], windows=windows, hop_seconds=hop, progress=True
    )
    click.echo(render(table, output_format))
    failed = table[table["error"].notna()]
    for path, error in zip(failed["path"], failed["error"], strict=True):
        reason = error.removeprefix(f"{Path(path).name}: ")
        click.echo(f"error: {path}: {reason}", err=True)
    return 1 if len(failed) else 0
