"""Ingestion and clipping on the four real PMEmo2019 samples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from emomucs.audio import AudioSet
from emomucs.datasets import AudioFolderDataset
from emomucs.pipelines import clipping, ingestion
from emomucs.pipelines.clipping.nodes import choose_offset, clip_choruses
from emomucs.pipelines.ingestion.nodes import (
    attach_labels,
    locate_audio,
    parse_chorus_time,
    validate_metadata,
)

INGESTION = {"on_bad_track": "skip", "chorus_span_tolerance_s": 5.0}
CLIPPING = {
    "clip_seconds": 20.0,
    "seed": 7,
    "sample_rate": 44100,
    "channels": 2,
    "min_chorus_s": 5.0,
    "silence_dbfs": -60.0,
    "duration_tolerance_s": 1.0,
    "on_bad_track": "skip",
    "min_surviving_fraction": 0.5,
}


@pytest.fixture(scope="module")
def real_tables(pmemo_samples):
    metadata = pd.read_csv(pmemo_samples / "metadata.csv")
    annotations = pd.read_csv(pmemo_samples / "annotations" / "static_annotations.csv")
    choruses = AudioFolderDataset(str(pmemo_samples / "chorus")).load()
    return metadata, annotations, choruses


@pytest.fixture(scope="module")
def candidates(real_tables):
    metadata, annotations, choruses = real_tables
    valid, rejected_metadata = validate_metadata(metadata, INGESTION)
    labelled, rejected_labels = attach_labels(valid, annotations, metadata, INGESTION)
    located, rejected_audio = locate_audio(labelled, choruses, INGESTION)
    assert rejected_metadata.empty and rejected_labels.empty and rejected_audio.empty
    return located


def test_parse_chorus_time():
    assert parse_chorus_time("02:50") == 170.0
    assert parse_chorus_time("1:05.5") == 65.5
    with pytest.raises(ValueError, match="not mm:ss"):
        parse_chorus_time("2m50")


def test_ingestion_reads_real_metadata_and_rescales_labels(candidates):
    assert candidates["musicId"].tolist() == [108, 372, 634, 683]
    row = candidates.set_index("musicId").loc[108]
    assert row["chorus_start_s"] == 170.0 and row["chorus_end_s"] == 217.0
    # 108 is annotated arousal 0.863, valence 0.863 on [0, 1]
    assert row["arousal"] == pytest.approx(2 * 0.863 - 1)
    assert row["valence"] == pytest.approx(2 * 0.863 - 1)
    assert candidates.set_index("musicId").loc[372, "valence"] == pytest.approx(-0.65)
    assert candidates[["arousal", "valence"]].abs().max().max() <= 1.0


def test_clips_are_exactly_clip_seconds_of_stereo_mp3_audio(candidates, real_tables):
    clips, table, rejected = clip_choruses(candidates, real_tables[2], CLIPPING)
    assert rejected.empty
    assert clips.sample_rate == 44100 and clips.music_ids == [108, 372, 634, 683]
    for clip in clips.audio.values():
        assert clip.shape == (2, 20 * 44100) and clip.dtype == np.float32
        assert np.abs(clip).max() > 0.01  # real music, not padding
    assert (table["padded_s"] == 0).all()
    assert (
        (table["offset_s"] >= 0) & (table["offset_s"] <= table["chorus_s"] - 20)
    ).all()
    assert (table["seed"] == 7).all() and not table["resampled"].any()


def test_short_choruses_are_zero_padded_and_recorded(candidates, real_tables):
    options = {**CLIPPING, "clip_seconds": 47.0, "sample_rate": 22050}
    clips, table, _ = clip_choruses(candidates, real_tables[2], options)
    table = table.set_index("musicId")
    # 634 and 683 last about 45 s: about 2 s of padding each; 108 and 372 are longer
    assert table.loc[634, "padded_s"] == pytest.approx(
        47.0 - table.loc[634, "chorus_s"], abs=1e-3
    )
    assert table.loc[108, "padded_s"] == 0.0
    assert table.loc[634, "resampled"]
    padded_clip = clips.audio[634]
    assert padded_clip.shape == (2, round(47.0 * 22050))
    tail = round(table.loc[634, "padded_s"] * 22050) - 1
    assert np.all(padded_clip[:, -tail:] == 0.0)


def test_offsets_are_seeded_per_track_and_reproducible(candidates, real_tables):
    first, table_a, _ = clip_choruses(candidates, real_tables[2], CLIPPING)
    only_634 = candidates[candidates["musicId"] == 634]
    second, table_b, _ = clip_choruses(only_634, real_tables[2], CLIPPING)
    np.testing.assert_array_equal(first.audio[634], second.audio[634])
    other_seed, table_c, _ = clip_choruses(
        only_634, real_tables[2], {**CLIPPING, "seed": 8}
    )
    assert table_c["offset_s"].iloc[0] != table_b["offset_s"].iloc[0]


def test_choose_offset_stays_inside_the_chorus():
    offsets = [choose_offset(i, 1000, 300, seed=1) for i in range(200)]
    assert min(offsets) >= 0 and max(offsets) <= 700
    assert len(set(offsets)) > 100
    assert choose_offset(5, 100, 300, seed=1) == 0


def test_data_pipeline_runs_on_real_samples_with_memory_catalog(
    pmemo_samples, real_tables
):
    metadata, annotations, choruses = real_tables
    catalog = DataCatalog(
        {
            "pmemo_metadata": MemoryDataset(metadata),
            "pmemo_static_annotations": MemoryDataset(annotations),
            "pmemo_choruses": MemoryDataset(choruses, copy_mode="assign"),
            "params:ingestion": MemoryDataset(INGESTION),
            "params:clipping": MemoryDataset({**CLIPPING, "clip_seconds": 3.0}),
        }
    )
    pipeline = ingestion.create_pipeline() + clipping.create_pipeline()
    SequentialRunner().run(pipeline, catalog)
    tracks = catalog.load("track_table")
    clips = catalog.load("clips")
    assert isinstance(clips, AudioSet)
    assert tracks["musicId"].tolist() == clips.music_ids == [108, 372, 634, 683]
    assert {"arousal", "valence", "offset_s", "padded_s", "seed"} <= set(tracks.columns)
    assert catalog.load("rejected_tracks").empty
    assert all(c.shape == (2, 3 * 44100) for c in clips.audio.values())
