"""Same parameters and seeds give the same clips, stems, features, folds, models and
metrics on the CPU, run after run.

Two throw-away copies of the project (fresh data folders, the same synthetic corpus
and the same tiny local Demucs separator) each run, from the command line,

    kedro run --pipeline=sources --to-outputs=sources.c1d_vocals.cv_metrics --env=tiny

that is ingestion → clipping → separation (the real Demucs code path, with its stems
cache) → log-mel features → shared folds → nested CV of one variant → metrics. The
two runs use different ``PYTHONHASHSEED`` values, so nothing may depend on set or
dict-of-str ordering. Both use one torch thread; these tests pin the CPU, since CUDA
kernels (cuDNN convolutions and their backward passes, atomics in pooling backward,
TF32) are not bit-for-bit reproducible by default.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from emomucs.datasets import AudioFolderDataset
from emomucs.pipelines.clipping.nodes import clip_choruses
from emomucs.pipelines.ingestion.nodes import audio_key
from tests.tiny_project import (
    kedro,
    latest,
    make_project,
    make_synthetic_corpus,
    project_config,
    write_tiny_repo,
)

VARIANT = "sources.c1d_vocals"
RUN = ("run", "--pipeline=sources", f"--to-outputs={VARIANT}.cv_metrics", "--env=tiny")
OVERRIDES = {
    "synthetic_corpus": {
        "n_tracks": 12,
        "chorus_range_s": [2.0, 6.0],  # most choruses leave room for a random offset
        "short_below_s": 3.0,
        "multitrack": {"n_tracks": 2, "duration_s": 3.0},
    },
    "clipping": {"clip_seconds": 3.0, "min_chorus_s": 1.0},
    "separation": {
        "separator": {
            "kind": "local",
            "name": "tiny",
            "repo": "data/06_models/separator",
        },
        "apply": {"device": "cpu"},
        "progress": False,
    },
    "cv": {"outer_folds": 2, "inner_folds": 2},
    "training": {
        "batch_size": 8,
        "eval_batch_size": 8,
        "max_epochs": 2,
        "patience": 1,
        "num_threads": 1,
        "device": "cpu",
        "progress": False,
    },
}
RAW = "data/01_raw"
SEPARATOR = "data/06_models/separator"


@pytest.fixture(scope="module")
def projects(tmp_path_factory) -> tuple[Path, Path]:
    """Two projects after the same tiny run (about 45 s on two busy cores)."""
    root = tmp_path_factory.mktemp("determinism")
    first = make_project(root / "first", OVERRIDES)
    second = make_project(root / "second", OVERRIDES)
    write_tiny_repo(first / SEPARATOR)
    shutil.copytree(first / SEPARATOR, second / SEPARATOR)
    make_synthetic_corpus(first)
    shutil.copytree(first / RAW, second / RAW)
    kedro(first, *RUN, env={"PYTHONHASHSEED": "1"})
    kedro(second, *RUN, env={"PYTHONHASHSEED": "2"})
    return first, second


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def _assert_same_arrays(a: Path, b: Path) -> None:
    tracks = a.parent / f"{a.stem}.tracks"
    if tracks.is_dir():  # a per-track version: the manifest and each track file
        other = b.parent / tracks.name
        names = sorted(p.name for p in tracks.iterdir())
        assert names == sorted(p.name for p in other.iterdir()) and names
        for name in names:
            _assert_same_arrays(tracks / name, other / name)
    first, second = _npz(a), _npz(b)
    assert sorted(first) == sorted(second)
    for key, value in first.items():
        # array_equal, not allclose: bit for bit, with the dtype and shape
        assert value.dtype == second[key].dtype and value.shape == second[key].shape
        assert np.array_equal(value, second[key]), f"{a.parent.parent.name}: {key}"


def _assert_same_tree(a, b, where: str = "") -> None:
    """Nested dicts/lists of tensors and plain values, equal bit for bit."""
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            _assert_same_tree(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_tree(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.slow
def test_same_seed_gives_identical_clips_stems_and_features(projects):
    first, second = projects
    # the clips and the mix stay in memory (cut from the choruses on lookup); the
    # stems, separated from them, carry any difference in the clips
    stems = "data/03_primary/stems.npz"
    _assert_same_arrays(latest(first, stems), latest(second, stems))
    for unstored in ("data/02_intermediate/clips.npz", "data/03_primary/mix.npz"):
        assert not (first / unstored).exists()
    for table in (
        "data/02_intermediate/clip_table.csv",
        "data/03_primary/track_table.csv",
        "data/08_reporting/rejected_tracks.csv",
    ):
        assert latest(first, table).read_bytes() == latest(second, table).read_bytes()
    clip_table = pd.read_csv(latest(first, "data/02_intermediate/clip_table.csv"))
    assert len(clip_table) == 12 and (clip_table["offset_s"] > 0).sum() >= 6
    features = "data/04_feature/stems_log_mel.pt"
    _assert_same_tree(
        torch.load(latest(first, features), weights_only=True),
        torch.load(latest(second, features), weights_only=True),
    )


@pytest.mark.slow
def test_same_seed_gives_identical_folds_models_and_metrics(projects):
    first, second = projects
    for table in (
        "data/05_model_input/cv_folds.csv",
        f"data/07_model_output/{VARIANT}/cv_predictions.csv",
        f"data/07_model_output/{VARIANT}/training_log.csv",
        f"data/08_reporting/{VARIANT}/cv_metrics.csv",
    ):
        assert latest(first, table).read_bytes() == latest(second, table).read_bytes()
    metrics = pd.read_csv(latest(first, f"data/08_reporting/{VARIANT}/cv_metrics.csv"))
    # every score is a number (the sd over repeats needs two repeats)
    scores = metrics[metrics["scope"] != "pooled_sd"]
    assert scores.drop(columns="scope").notna().all().all()
    models = f"data/06_models/{VARIANT}/cv_models.pt"
    _assert_same_tree(
        torch.load(latest(first, models), weights_only=True),
        torch.load(latest(second, models), weights_only=True),
    )
    # one stored summary (one audio, one corpus), the same in both projects
    (summary,) = (first / f"data/08_reporting/cv_summaries/{VARIANT}").glob("*.json")
    same = second / summary.relative_to(first)
    assert json.loads(summary.read_text()) == json.loads(same.read_text())


@pytest.mark.slow
def test_another_clipping_seed_moves_the_clips(projects):
    """The clipping node on the run's own inputs: its seed reproduces the run's
    offsets exactly, another seed draws other offsets where the chorus leaves room."""
    _, project = projects
    config = project_config(project)
    options = config["parameters"]["clipping"]
    candidates = pd.read_parquet(
        latest(project, "data/02_intermediate/candidate_tracks.parquet")
    )
    choruses = AudioFolderDataset(
        path=str(project / config["catalog"]["pmemo_choruses"]["path"])
    ).load()
    clips, table, _ = clip_choruses(candidates, choruses, options)
    run_table = pd.read_csv(latest(project, "data/02_intermediate/clip_table.csv"))
    pd.testing.assert_frame_equal(
        table.reset_index(drop=True)[run_table.columns],
        run_table,
        check_dtype=False,
        check_exact=True,
    )
    for music_id, clip in clips.audio.items():
        # the run keeps no copy of its clips: each is its chorus cut at the table's
        # offset, the samples of the chorus file exactly (no rate or channel change)
        file_name = candidates.set_index("musicId").loc[music_id, "fileName"]
        chorus, rate = choruses[audio_key(file_name)]()
        start = round(
            float(table.set_index("musicId").loc[music_id, "offset_s"]) * rate
        )
        cut = chorus[:, start : start + clip.shape[-1]]
        assert rate == 22050 and np.array_equal(clip[:, : cut.shape[-1]], cut)
        assert not clip[:, cut.shape[-1] :].any()  # zero padding past the chorus

    reseeded, other, _ = clip_choruses(
        candidates, choruses, {**options, "seed": options["seed"] + 1}
    )
    merged = table.merge(other, on="musicId", suffixes=("", "_other"))
    padded = merged["padded_s"] > 0  # no room: the clip starts at 0 whatever the seed
    assert (merged.loc[padded, ["offset_s", "offset_s_other"]] == 0).all().all()
    room = merged[~padded]
    assert len(room) >= 6
    assert (room["offset_s"] != room["offset_s_other"]).all(), room
    for music_id in room["musicId"]:
        assert not np.array_equal(clips.audio[music_id], reseeded.audio[music_id])
