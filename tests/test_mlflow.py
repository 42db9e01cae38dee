"""MLflow after one tiny ``kedro run --pipeline=emomucs_late``.

:func:`tiny_run` builds a throw-away copy of the project (this checkout's code and
``conf``, plus a ``tiny`` environment: 12 synthetic tracks of 3 s, oracle stems,
2 × 2 folds, 2 epochs), commits it to a fresh git repository, and runs
``synthetic_corpus`` then ``emomucs_late`` as a user would, from the command line.
It runs once per test session; the notebook and kedro-viz tests reuse it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.io import Version
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from emomucs.hooks import (
    MlflowVariantRunsHook,
    corpus_fingerprint,
    flatten,
    git_identity,
)

PROJECT = Path(__file__).resolve().parents[1]
PIPELINE = "emomucs_late"

TINY_OVERRIDES = {
    "synthetic_corpus": {
        "n_tracks": 12,
        "chorus_range_s": [2.0, 4.0],
        "short_below_s": 3.0,
        "multitrack": {"n_tracks": 2, "duration_s": 3.0},
    },
    "clipping": {"clip_seconds": 3.0, "min_chorus_s": 1.0},
    "separation": {
        "separator": {"kind": "oracle", "name": "truth"},
        "cache_dir": None,
        "progress": False,
    },
    "cv": {"outer_folds": 2, "inner_folds": 2},
    "training": {
        "batch_size": 8,
        "eval_batch_size": 8,
        "max_epochs": 2,
        "patience": 1,
        "cache_dir": None,
        "num_threads": 1,
        "progress": False,
    },
}
"""Leaves changed in the base parameters; the ``tiny`` env gets whole blocks,
since an environment replaces a top-level key rather than merging into it."""


def _merge(base: dict, changes: dict) -> dict:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = _merge(base[key], value)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class TinyRun:
    """A tiny project after ``kedro run --pipeline=emomucs_late``."""

    path: Path
    commit: str
    log: str

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.path / 'mlflow.db'}"

    def latest(self, relative: str) -> Path:
        """The newest version of a versioned dataset's file."""
        folder = self.path / relative
        version = sorted(p.name for p in folder.iterdir())[-1]
        return folder / version / folder.name


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KEDRO_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="1",
        HF_HUB_OFFLINE="1",
        CI="true",
        OMP_NUM_THREADS="1",
        MPLBACKEND="Agg",
    )
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PROJECT / "src"), *filter(None, [env.get("PYTHONPATH")])]
    )
    return env


def kedro(path: Path, *args: str, timeout: int = 900) -> str:
    """Run the kedro CLI in ``path``; fail with its output when it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        check=False,
        cwd=path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = done.stdout + done.stderr
    if done.returncode:
        raise AssertionError(f"kedro {' '.join(args)} failed:\n{output[-6000:]}")
    return output


def make_tiny_project(path: Path) -> Path:
    """This checkout's project (code linked, config copied) with a ``tiny`` env."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT / "pyproject.toml", path / "pyproject.toml")
    shutil.copytree(PROJECT / "conf" / "base", path / "conf" / "base")
    (path / "conf" / "local").mkdir(parents=True)
    # Kedro wants a src folder inside the project; the code itself comes from this
    # checkout through PYTHONPATH (see _env), so the run tests what is checked out.
    (path / "src").mkdir()
    if (PROJECT / "notebooks").is_dir():
        shutil.copytree(PROJECT / "notebooks", path / "notebooks")
    base = OmegaConfigLoader(
        str(path / "conf"), base_env="base", default_run_env="base"
    )
    params = base["parameters"]
    tiny = {key: _merge(params[key], value) for key, value in TINY_OVERRIDES.items()}
    (path / "conf" / "tiny").mkdir()
    (path / "conf" / "tiny" / "parameters.yml").write_text(yaml.safe_dump(tiny))
    return path


def _git(path: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        cwd=path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


_RUN: TinyRun | None = None


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    """One tiny ``emomucs_late`` run per session (about a minute on two cores)."""
    global _RUN  # noqa: PLW0603 - shared by the notebook and kedro-viz tests
    if _RUN is None:
        path = make_tiny_project(tmp_path_factory.mktemp("tiny") / "project")
        _git(path, "init", "-q")
        _git(path, "add", "pyproject.toml", "conf")
        _git(path, "commit", "-q", "-m", "tiny project")
        log = kedro(path, "run", "--pipeline=synthetic_corpus", "--env=tiny")
        log += kedro(path, "run", f"--pipeline={PIPELINE}", "--env=tiny")
        _RUN = TinyRun(path, _git(path, "rev-parse", "HEAD"), log)
    return _RUN


@pytest.fixture(scope="module")
def runs(tiny_run) -> pd.DataFrame:
    mlflow.set_tracking_uri(tiny_run.tracking_uri)
    try:
        return mlflow.search_runs(search_all_experiments=True)
    finally:
        mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def client(tiny_run) -> MlflowClient:
    return MlflowClient(tracking_uri=tiny_run.tracking_uri)


@pytest.fixture(scope="module")
def parent(runs) -> pd.Series:
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    parents = parents[parents["tags.pipeline_names"].astype(str).str.contains(PIPELINE)]
    assert len(parents) == 1, parents[["run_id", "tags.mlflow.runName"]]
    return parents.iloc[0]


@pytest.fixture(scope="module")
def children(runs, parent) -> pd.DataFrame:
    return runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]].set_index(
        "tags.variant"
    )


def _expected_variants() -> list[str]:
    from emomucs.pipeline_registry import register_pipelines
    from emomucs.pipelines.experiments import variant_namespaces

    return variant_namespaces(register_pipelines()[PIPELINE])


@pytest.mark.slow
def test_one_child_run_per_variant(parent, children):
    assert parent["status"] == "FINISHED"
    assert sorted(children.index) == _expected_variants()
    assert set(children["status"]) == {"FINISHED"}
    assert (children["experiment_id"] == parent["experiment_id"]).all()
    assert (children["tags.mlflow.runName"] == children.index).all()


@pytest.mark.slow
def test_children_hold_the_stored_scores(tiny_run, children):
    for variant, run in children.iterrows():
        # one file per audio and corpus; this run has one of each
        (path,) = (tiny_run.path / f"data/08_reporting/cv_summaries/{variant}").glob(
            "*.json"
        )
        stored = json.loads(path.read_text())
        assert run["tags.label"] == stored["label"]
        for scope in ("mean", "sd", "pooled"):
            for metric, value in stored["metrics"][scope].items():
                assert run[f"metrics.{metric}_{scope}"] == pytest.approx(value), variant


@pytest.mark.slow
def test_per_fold_metrics_are_stepped_by_repeat_and_outer_fold(
    tiny_run, children, client
):
    variant = "emomucs_late.c1d_freeze"
    table = pd.read_csv(tiny_run.latest(f"data/08_reporting/{variant}/cv_metrics.csv"))
    folds = table[table["scope"] == "fold"]
    n_folds = folds["outer_fold"].nunique()
    folds = folds.set_index(folds["repeat"] * n_folds + folds["outer_fold"])
    history = client.get_metric_history(
        children.loc[variant, "run_id"], "r2_arousal_fold"
    )
    assert sorted(m.step for m in history) == sorted(folds.index)
    for m in history:
        assert m.value == pytest.approx(folds.loc[m.step, "r2_arousal"])
    losses = client.get_metric_history(
        children.loc[variant, "run_id"], "val_loss_outer0"
    )
    assert [m.step for m in sorted(losses, key=lambda m: m.step)][0] == 1


@pytest.mark.slow
def test_children_are_comparable(children):
    """Every child has the same parameter and metric columns, so the MLflow UI can
    put them side by side."""
    params = children.filter(
        regex=r"^params\.((training|cv|networks|features|separation)\..+|experiment\.(model|sources)|variant)$"
    )
    assert params.shape[1] > 20
    metrics = children.filter(regex=r"^metrics\.(rmse|r2)_(valence|arousal)_")
    assert params.notna().all().all(), params.columns[params.isna().any()].tolist()
    assert metrics.notna().all().all()
    assert metrics.shape[1] == 16  # 4 metrics × (mean, sd, pooled, last fold)
    assert set(children["params.experiment.fusion"].dropna()) >= {"late"}
    assert set(children["params.training.max_epochs"]) == {"2"}
    freeze = children.loc["emomucs_late.c2d_freeze"]
    assert freeze["params.experiment.strategy"] == "freeze"
    assert freeze["params.experiment.source_model"] == "C2D"


@pytest.mark.slow
def test_parent_is_tagged_with_code_corpus_and_separator(tiny_run, parent):
    table = pd.read_csv(tiny_run.latest("data/03_primary/track_table.csv"))
    assert parent["tags.git_commit"] == tiny_run.commit
    assert parent["tags.git_dirty"] == "false"
    assert parent["tags.corpus"] == "synthetic"
    assert parent["tags.corpus_tracks"] == str(len(table))
    assert parent["tags.corpus_fingerprint"] == corpus_fingerprint(table)
    assert parent["tags.separator"] == "oracle"
    # kedro-mlflow logs every parameter the nodes read, flattened
    assert parent["params.training.max_epochs"] == "2"
    assert parent["params.emomucs_late.c1d_freeze.experiment.strategy"] == "freeze"


@pytest.mark.slow
def test_artifacts(tiny_run, parent, children, client, tmp_path):
    def listing(run_id: str, folder: str | None = None) -> set[str]:
        return {a.path for a in client.list_artifacts(run_id, folder)}

    child = children.loc["emomucs_late.c2d_full", "run_id"]
    assert {"cv_predictions.csv", "cv_metrics.csv", "training_log.csv"} <= listing(
        child
    )
    assert listing(child, "plots") == {
        "plots/prediction_scatter.png",
        "plots/contributions.png",
    }
    assert listing(child, "models") == {"models/cv_models.pt"}
    assert {
        "plots/results_heatmap.png",
        "plots/emotion_plane.png",
        "plots/source_learning_curves.png",
    } <= listing(parent["run_id"], "plots")
    logged = client.download_artifacts(
        parent["run_id"], "results/results_table.csv", str(tmp_path)
    )
    stored = pd.read_csv(tiny_run.latest("data/08_reporting/results_table.csv"))
    pd.testing.assert_frame_equal(pd.read_csv(logged), stored)
    predictions = pd.read_csv(
        client.download_artifacts(child, "cv_predictions.csv", str(tmp_path))
    )
    assert np.allclose(
        predictions["valence_pred"],
        pd.read_csv(
            tiny_run.latest(
                "data/07_model_output/emomucs_late.c2d_full/cv_predictions.csv"
            )
        )["valence_pred"],
    )


@pytest.mark.slow
def test_contributions_are_logged_to_the_variant_run(
    tiny_run, parent, children, client, tmp_path
):
    """Every EmoMucs variant of the run gets its source contributions: the table
    and figure in its child run, pooled values as metrics; single-source variants
    none; the overview on the parent; a section in the results table."""
    variant = "emomucs_late.c1d_freeze"
    run_id = children.loc[variant, "run_id"]
    assert {
        "contributions/contributions.csv",
        "contributions/contribution_summary.json",
    } <= {a.path for a in client.list_artifacts(run_id, "contributions")}
    logged = pd.read_csv(
        client.download_artifacts(
            run_id, "contributions/contributions.csv", str(tmp_path)
        )
    )
    stored = pd.read_csv(
        tiny_run.latest(f"data/08_reporting/{variant}/contributions.csv")
    )
    pd.testing.assert_frame_equal(logged, stored)
    pooled = stored[(stored["scope"] == "pooled") & (stored["repeat"] == -1)]
    row = pooled[
        (pooled["method"] == "mean")
        & (pooled["dimension"] == "arousal")
        & (pooled["source"] == "vocals")
    ]
    metric = children.loc[variant, "metrics.contribution_mean_arousal_vocals"]
    assert metric == pytest.approx(float(row["r2_drop"].iloc[0]))
    emomucs = [v for v in children.index if v.startswith("emomucs_late.")]
    assert (
        children.loc[emomucs, "metrics.contribution_shapley_valence_drums"]
        .notna()
        .all()
    )
    singles = [v for v in children.index if v.startswith("sources.")]
    assert children.loc[singles, "metrics.contribution_mean_valence_drums"].isna().all()
    assert "plots/contributions_overview.png" in {
        a.path for a in client.list_artifacts(parent["run_id"], "plots")
    }
    markdown = tiny_run.latest("data/08_reporting/results_table.md").read_text()
    assert f"| {variant} | oracle | valence |" in markdown


# Pieces of the hook, without a Kedro run ------------------------------------------


def test_git_identity(tmp_path):
    assert git_identity(tmp_path) == {"git_commit": "unknown"}
    (tmp_path / "a.txt").write_text("1")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "commit", "-q", "-m", "a")
    clean = git_identity(tmp_path)
    assert clean["git_commit"] == _git(tmp_path, "rev-parse", "HEAD")
    assert clean["git_dirty"] == "false"
    (tmp_path / "a.txt").write_text("2")
    assert git_identity(tmp_path)["git_dirty"] == "true"


def test_corpus_fingerprint_follows_tracks_and_labels():
    table = pd.DataFrame(
        {"musicId": [3, 1], "valence": [0.1, -0.2], "arousal": [0.5, 0.0]}
    )
    same = table.iloc[::-1].assign(title="ignored")
    assert corpus_fingerprint(table) == corpus_fingerprint(same)
    relabelled = table.assign(valence=[0.1, -0.25])
    assert corpus_fingerprint(table) != corpus_fingerprint(relabelled)


def test_flatten():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {
        "a.b": "1",
        "a.c": "1,2",
        "d": "None",
    }


def test_hook_is_silent_without_a_run(tmp_path):
    """With tracking off (no active run) the hook logs nothing and raises nothing."""
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        from kedro.pipeline import Pipeline

        hook = MlflowVariantRunsHook()
        hook.before_pipeline_run({}, Pipeline([]), None)
        hook.after_dataset_saved("g.v.cv_summary", {"label": "x", "metrics": {}}, None)
        hook.after_dataset_saved("results_heatmap", Figure(), None)
        hook.after_pipeline_run({}, Pipeline([]), None)
        assert mlflow.search_runs(search_all_experiments=True).empty
    finally:
        mlflow.set_tracking_uri(None)


def test_saved_file_is_the_version_this_run_wrote(tmp_path):
    """Artifacts are the files the catalog saved (this run's version), not a copy
    written again; datasets without a local file give none."""
    from kedro.io import DataCatalog, MemoryDataset
    from kedro_datasets.pandas import CSVDataset

    from emomucs.datasets import SummaryDataset
    from emomucs.hooks.artifacts import saved_file

    table = pd.DataFrame({"a": [1, 2]})
    catalog = DataCatalog(
        {
            "table": CSVDataset(
                filepath=str(tmp_path / "table.csv"),
                version=Version(None, "2026-01-01T00.00.00.000Z"),
                save_args={"index": False},
            ),
            "v.cv_summary": SummaryDataset(folder=str(tmp_path / "summaries")),
            "memory": MemoryDataset(),
        }
    )
    catalog.save("table", table)
    path = saved_file(catalog, "table", table)
    assert path == tmp_path / "table.csv" / "2026-01-01T00.00.00.000Z" / "table.csv"
    pd.testing.assert_frame_equal(pd.read_csv(path), table)
    summary = {"key": "oracle__abc", "metrics": {}}
    catalog.save("v.cv_summary", summary)
    assert json.loads(saved_file(catalog, "v.cv_summary", summary).read_text()) == (
        summary
    )
    catalog.save("memory", table)
    assert saved_file(catalog, "memory", table) is None
    assert saved_file(catalog, "unknown", table) is None
