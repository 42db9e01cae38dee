"""``emomucs predict``, the predict pipeline and the MLflow-served model, end to end.

One tiny project per module: 12 synthetic tracks of 3 s, a tiny local Demucs
separator, 2 × 2 folds, 2 epochs, MLflow on; ``kedro run`` trains only what the
summary of ``emomucs_late.c1d_full`` needs (``--to-outputs``), and logs its predict
model. The tests predict the real PMEmo sample choruses in ``../shared``.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import soundfile
import yaml

from emomucs.datasets import TorchDataset
from emomucs.interpret import silence_features
from emomucs.models import from_checkpoint
from emomucs.pipelines.clipping.nodes import _conform
from emomucs.pipelines.predict.nodes import (
    PredictError,
    build_predictor,
    decode_audio,
    window_starts,
)
from emomucs.training import Standardiser, predict, selected_models
from emomucs.training.data import select_inputs
from tests.tiny_project import (
    PROJECT,
    kedro,
    latest,
    make_project,
    make_synthetic_corpus,
    subprocess_env,
    write_tiny_repo,
)

SAMPLES = PROJECT.parent / "shared" / "pmemo_samples" / "PMEmo2019" / "chorus"
VARIANT = "emomucs_late.c1d_full"
CLIP_S = 3.0


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("predict") / "project"
    repo = path / "data" / "06_models" / "separator"
    write_tiny_repo(repo)
    make_project(
        path,
        {
            "synthetic_corpus": {
                "n_tracks": 12,
                "chorus_range_s": [2.0, 4.0],
                "short_below_s": 3.0,
                "multitrack": {"n_tracks": 2, "duration_s": 3.0},
            },
            "clipping": {"clip_seconds": CLIP_S, "min_chorus_s": 1.0},
            "separation": {
                "separator": {"kind": "local", "name": "tiny", "repo": str(repo)},
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
        },
    )
    # MLflow on for the training run: it logs the predict model
    mlflow_conf = yaml.safe_load((PROJECT / "conf/base/mlflow.yml").read_text())
    (path / "conf" / "tiny" / "mlflow.yml").write_text(yaml.safe_dump(mlflow_conf))
    make_synthetic_corpus(path)
    kedro(
        path,
        "run",
        "--pipeline=emomucs_late",
        f"--to-outputs={VARIANT}.cv_summary",
        "--env=tiny",
    )
    return path


def emomucs(project: Path, *args: str) -> subprocess.CompletedProcess:
    """``emomucs ...`` (the console script's entry point) in ``project``."""
    return subprocess.run(
        [sys.executable, "-c", "from emomucs.__main__ import main; main()", *args],
        cwd=project,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_cli_predicts_each_file_and_names_the_corrupt_one(project, tmp_path):
    folder = tmp_path / "songs"
    shutil.copytree(SAMPLES, folder)
    (folder / "broken.mp3").write_bytes(b"not audio at all" * 64)
    done = emomucs(project, "predict", str(folder), "--env=tiny", "--format=csv")
    assert done.returncode == 1, done.stderr[-3000:]
    rows = pd.read_csv(io.StringIO(done.stdout))
    assert sorted(Path(p).name for p in rows["path"]) == sorted(
        p.name for p in SAMPLES.glob("*.mp3")
    )
    assert len(rows) == 4
    for dim in ("valence", "arousal"):
        assert rows[dim].between(0, 1).all()
        assert np.allclose(rows[dim], (rows[f"{dim}_model"] + 1) / 2)
        assert (rows[f"{dim}_sd"] >= 0).all()
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.mp3" in errors[0], done.stderr[-2000:]
    assert VARIANT in done.stderr and "synthetic" in done.stderr


def test_ensemble_is_the_mean_of_the_fold_models(project):
    params = yaml.safe_load((project / "conf/tiny/parameters.yml").read_text())
    cv_models = TorchDataset(
        filepath=str(latest(project, f"data/06_models/{VARIANT}/cv_models.pt"))
    ).load()
    predictor = build_predictor(
        cv_models, params["separation"]["separator"], params["clipping"]
    )
    # every repeat's outer folds: 2 folds × training.repeats
    assert len(predictor.models) == len(selected_models(cv_models)) > 2
    sample = sorted(SAMPLES.glob("*.mp3"))[0]
    row = predictor.predict_files([sample]).iloc[0]
    # the same clip and features, through each fold's model on its own
    audio, rate = decode_audio(sample)
    clip_audio, _ = _conform(audio, rate, predictor.clip_options)
    window = round(CLIP_S * predictor.clip_rate)
    start = max(0, (clip_audio.shape[-1] - window) // 2)
    features = predictor.features_of(clip_audio, rate, [start])
    x = select_inputs(features, cv_models["experiment"]["sources"], [0])
    each = np.stack(
        [
            predict(
                from_checkpoint(m.checkpoint),
                Standardiser.from_state(m.checkpoint["standardiser"])(x),
                batch_size=4,
            ).numpy()[0]
            for m in selected_models(cv_models)
        ]
    )
    assert each.shape == (len(predictor.models), 2)
    assert not np.allclose(each[0], each[1])  # two different models
    assert row["valence_model"] == pytest.approx(each[:, 0].mean(), abs=1e-6)
    assert row["arousal_model"] == pytest.approx(each[:, 1].mean(), abs=1e-6)
    assert row["valence_sd"] == pytest.approx(each[:, 0].std() / 2, abs=1e-6)
    # per-source contributions: the output minus the output with that stem silent
    sources = list(cv_models["experiment"]["sources"])
    assert predictor.explained == sources
    silent = x.clone()
    silent[:, sources.index("vocals")] = silence_features(features)
    without = np.stack(
        [
            predict(
                from_checkpoint(m.checkpoint),
                Standardiser.from_state(m.checkpoint["standardiser"])(silent),
                batch_size=4,
            ).numpy()[0]
            for m in selected_models(cv_models)
        ]
    )
    for d, dim in enumerate(("valence", "arousal")):
        expected = (each[:, d] - without[:, d]).mean() / 2
        assert row[f"{dim}_from_vocals"] == pytest.approx(expected, abs=1e-6)
    assert not np.isclose(row["valence_from_vocals"], 0.0)


def test_windows_give_a_row_per_window_and_their_mean(project):
    sample = sorted(SAMPLES.glob("*.mp3"))[0]
    done = emomucs(
        project, "predict", str(sample), "--env=tiny", "--windows", "--format=json"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = pd.DataFrame(json.loads(done.stdout))
    windows = rows[rows["window"] != "mean"]
    seconds = soundfile.info(str(sample)).duration
    rate = 22050  # the clips' rate (clipping.sample_rate)
    window = round(CLIP_S * rate)
    assert len(windows) == len(window_starts(round(seconds * rate), window, window))
    assert len(windows) > 1
    mean = rows[rows["window"] == "mean"].iloc[0]
    for dim in ("valence", "arousal"):
        assert mean[f"{dim}_model"] == pytest.approx(windows[f"{dim}_model"].mean())


def test_mlflow_model_predicts_what_the_cli_does(project):
    uri = f"sqlite:///{project / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        runs = mlflow.search_runs(
            search_all_experiments=True, filter_string=f"tags.variant = '{VARIANT}'"
        )
    finally:
        mlflow.set_tracking_uri(None)
    assert len(runs) == 1
    run_id = runs["run_id"].iloc[0]
    sample = sorted(SAMPLES.glob("*.mp3"))[0]
    # a fresh process, offline, reading the model back from the sqlite store
    script = (
        "import sys, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri({uri!r})\n"
        f"model = mlflow.pyfunc.load_model('runs:/{run_id}/predict_model')\n"
        f"out = model.predict(pd.DataFrame({{'path': [{str(sample)!r}]}}))\n"
        "sys.stdout.write(out.to_json(orient='records'))\n"
    )
    served = subprocess.run(
        [sys.executable, "-c", script],
        cwd=project.parent,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert served.returncode == 0, served.stderr[-3000:]
    served_row = json.loads(served.stdout.strip().splitlines()[-1])[0]
    done = emomucs(project, "predict", str(sample), "--env=tiny", "--format=json")
    assert done.returncode == 0, done.stderr[-3000:]
    cli_row = json.loads(done.stdout)[0]
    for column in ("valence", "arousal", "valence_sd", "arousal_from_vocals"):
        assert served_row[column] == pytest.approx(cli_row[column], abs=1e-6)
    by_run = emomucs(
        project, "predict", str(sample), f"--run={run_id}", "--format=json"
    )
    assert by_run.returncode == 0, by_run.stderr[-3000:]
    assert run_id in by_run.stderr
    assert json.loads(by_run.stdout)[0]["valence"] == pytest.approx(
        cli_row["valence"], abs=1e-6
    )


def test_another_separator_than_the_training_one_is_refused(project, tmp_path):
    params = yaml.safe_load((project / "conf/tiny/parameters.yml").read_text())
    cv_models = TorchDataset(
        filepath=str(latest(project, f"data/06_models/{VARIANT}/cv_models.pt"))
    ).load()
    other = tmp_path / "other"
    write_tiny_repo(other, seed=1)
    separator = {"kind": "local", "name": "tiny", "repo": str(other)}
    with pytest.raises(PredictError, match="trained on stems of local:tiny:"):
        build_predictor(cv_models, separator, params["clipping"])


def test_predict_pipeline_writes_the_cli_numbers(project):
    kedro(
        project,
        "run",
        "--pipeline=predict",
        "--env=tiny",
        f"--params=predict.paths={SAMPLES}",
    )
    table = pd.read_csv(latest(project, "data/07_model_output/predictions.csv"))
    assert len(table) == 4 and table["error"].isna().all()
    assert (table["variant"] == VARIANT).all()
    done = emomucs(project, "predict", str(SAMPLES), "--env=tiny", "--format=csv")
    assert done.returncode == 0, done.stderr[-3000:]
    cli = pd.read_csv(io.StringIO(done.stdout))
    assert list(cli["path"]) == list(table["path"])
    for column in ("valence", "arousal", "valence_sd", "arousal_from_drums"):
        assert np.allclose(cli[column], table[column], atol=1e-6)
